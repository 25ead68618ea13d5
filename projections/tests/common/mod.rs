//! A small driver that runs machine-token commands through the domain's decider and appends the
//! events to a real store, as the API will.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use credledger_domain::machine_token::{self, Command, Context, NewMachineToken};
use credledger_domain::token::SecretToken;
use credledger_domain::usage::{self, CredentialAccessDenied, CredentialUsed};
use credledger_domain::values::{Conditions, EnvHint, Scopes, TokenName};
use credledger_domain::{
    Actor, CredentialId, CredentialKind, EventId, FlagReason, MemberId, OrgId, SCHEMA_VERSION, event,
    policy::DenyReason,
};
use credledger_store::{EventStore, ExpectedVersion, NewEvent};
use proptest::prelude::*;
use uuid::Uuid;

pub const T0: DateTime<Utc> = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();

#[derive(Debug, Clone)]
pub enum Op {
    Create { token: u8, days: Option<u32> },
    Lifecycle { token: u8, command: u8 },
    Use { token: u8, ip: u8, agent: u8 },
    Deny { token: u8, ip: u8 },
    Wait { hours: u16 },
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8, prop::option::of(1..5u32)).prop_map(|(token, days)| Op::Create { token, days }),
        (0..4u8, 0..8u8).prop_map(|(token, command)| Op::Lifecycle { token, command }),
        (0..4u8, 0..3u8, 0..3u8).prop_map(|(token, ip, agent)| Op::Use { token, ip, agent }),
        (0..4u8, 0..3u8).prop_map(|(token, ip)| Op::Deny { token, ip }),
        (1..72u16).prop_map(|hours| Op::Wait { hours }),
    ]
}

pub fn token_id(n: u8) -> CredentialId {
    CredentialId::from_uuid(Uuid::from_u128(1000 + u128::from(n)))
}

pub fn org() -> OrgId {
    OrgId::from_uuid(Uuid::from_u128(1))
}

pub struct Ledger {
    pub store: Arc<dyn EventStore>,
    pub now: DateTime<Utc>,
    pub next_event: u128,
    pub next_secret: u8,
}

impl Ledger {
    fn event(&mut self, event_type: String, payload: serde_json::Value) -> NewEvent {
        self.next_event += 1;
        NewEvent {
            event_id: EventId::from_uuid(Uuid::from_u128(self.next_event)),
            event_type,
            schema_version: SCHEMA_VERSION,
            org_id: Some(org()),
            occurred_at: self.now,
            actor: Actor::member(MemberId::from_uuid(Uuid::from_u128(5))),
            request: None,
            payload,
        }
    }

    pub async fn state(&self, id: CredentialId) -> (machine_token::State, Option<u64>) {
        let recorded = self.store.read_stream(&machine_token::stream(id), 0).await.unwrap();
        let events: Vec<machine_token::Event> = recorded
            .iter()
            .map(|r| match credledger_domain::DomainEvent::decode(&r.event_type, &r.payload).unwrap() {
                credledger_domain::DomainEvent::MachineToken(e) => e,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        (machine_token::fold(&events), recorded.last().map(|r| r.version))
    }

    pub async fn command(&mut self, id: CredentialId, command: Command) {
        let (state, version) = self.state(id).await;
        let Ok(events) = machine_token::decide(&state, command, &Context { now: self.now }) else { return };
        if events.is_empty() {
            return;
        }
        let new = events
            .iter()
            .map(|e| {
                let (t, p) = event::encode(e).unwrap();
                self.event(t, p)
            })
            .collect();
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        self.store.append(&machine_token::stream(id), expected, new).await.unwrap();
    }

    pub fn secret(&mut self) -> SecretToken {
        self.next_secret = self.next_secret.wrapping_add(1);
        SecretToken::machine_token(&EnvHint::parse("ci").unwrap(), [self.next_secret; 32])
    }

    pub async fn run(&mut self, op: &Op) {
        match *op {
            Op::Create { token, days } => {
                let secret = self.secret();
                let new = NewMachineToken {
                    id: token_id(token),
                    org_id: org(),
                    name: TokenName::parse(&format!("token {token}")).unwrap(),
                    environment_hint: EnvHint::parse("ci").unwrap(),
                    project_id: None,
                    owner: MemberId::from_uuid(Uuid::from_u128(5)),
                    scopes: Scopes::all(),
                    conditions: Conditions::none(),
                    secret_hash: secret.digest(),
                    token_prefix: secret.prefix(),
                    expires_in_days: days,
                };
                self.command(token_id(token), Command::Create(Box::new(new))).await;
            }
            Op::Lifecycle { token, command } => {
                let secret = self.secret();
                let command = match command {
                    0 => Command::Disable,
                    1 => Command::Enable,
                    2 => Command::Roll { secret_hash: secret.digest(), token_prefix: secret.prefix(), grace: None },
                    3 => Command::Roll {
                        secret_hash: secret.digest(),
                        token_prefix: secret.prefix(),
                        grace: Some(TimeDelta::hours(1)),
                    },
                    4 => Command::Flag { reason: FlagReason::OwnerRemoved },
                    5 => Command::Transfer { to: MemberId::from_uuid(Uuid::from_u128(6)) },
                    6 => Command::Expire,
                    _ => Command::Revoke { reason: None },
                };
                self.command(token_id(token), command).await;
            }
            Op::Use { token, ip, agent } => {
                let used = usage::Event::CredentialUsed(CredentialUsed {
                    credential_id: token_id(token),
                    kind: CredentialKind::MachineToken,
                    org_id: Some(org()),
                    method: "GET".into(),
                    route: "/v1/machine-tokens/:orgId".into(),
                    ip: format!("10.0.0.{ip}"),
                    user_agent: Some(format!("agent/{agent}")),
                    at: self.now,
                    based_on: None,
                });
                self.usage(token, &used).await;
            }
            Op::Deny { token, ip } => {
                let denied = usage::Event::CredentialAccessDenied(CredentialAccessDenied {
                    credential_id: token_id(token),
                    kind: CredentialKind::MachineToken,
                    org_id: Some(org()),
                    reason: DenyReason::IpNotAllowed,
                    count: u32::from(ip) + 1,
                    method: "POST".into(),
                    route: "/v1/machine-tokens/:orgId".into(),
                    ip: format!("192.0.2.{ip}"),
                    user_agent: None,
                    at: self.now,
                });
                self.usage(token, &denied).await;
            }
            Op::Wait { hours } => self.now += TimeDelta::hours(i64::from(hours)),
        }
    }

    pub async fn usage(&mut self, token: u8, usage_event: &usage::Event) {
        let (t, p) = event::encode(usage_event).unwrap();
        let new = self.event(t, p);
        self.store.append(&usage::stream(token_id(token)), ExpectedVersion::Any, vec![new]).await.unwrap();
    }
}

impl Ledger {
    pub async fn open(dir: &std::path::Path) -> Self {
        let store = credledger_store::open(&format!("sqlite://{}", dir.join("events.db").display())).await.unwrap();
        Self { store, now: T0, next_event: 0, next_secret: 0 }
    }
}

/// The digest of the `n`th secret a `Ledger` generated (creates and rolls each take one).
pub fn secret_of(n: u8) -> credledger_domain::token::TokenDigest {
    SecretToken::machine_token(&EnvHint::parse("ci").unwrap(), [n; 32]).digest()
}
