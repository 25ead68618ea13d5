//! What the benchmarks append: events built by the domain's deciders and wrapped as the API wraps
//! them (actor, request, fresh v7 event ids), so payloads and envelopes have their real sizes
//! and the projections understand every one of them.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use credledger_domain::machine_token::{self, NewMachineToken};
use credledger_domain::names::{Email, Slug};
use credledger_domain::policy::DenyReason;
use credledger_domain::token::SecretToken;
use credledger_domain::usage::{self, CredentialAccessDenied, CredentialUsed};
use credledger_domain::values::{Cidr, Conditions, EnvHint, Scopes, TokenName, UserAgentPattern};
use credledger_domain::{
    Actor, ActorKind, CredentialId, CredentialKind, EventId, MemberId, OrgId, ProjectId, RequestMeta, SCHEMA_VERSION,
    event, organization,
};
use credledger_store::NewEvent;
use serde::Serialize;
use uuid::Uuid;

/// Routes a machine token calls, as the route templates the API records.
const ROUTES: [(&str, &str); 4] = [
    ("GET", "/v1/machine-tokens/{orgId}"),
    ("GET", "/v1/projects/{orgId}"),
    ("GET", "/v1/audit/{orgId}"),
    ("POST", "/v1/machine-tokens/{orgId}/{tokenId}/roll"),
];

const USER_AGENTS: [&str; 4] =
    ["gitlab-runner/17.2.0 (linux; amd64)", "GitHub-Actions/2.317", "curl/8.8.0", "terraform/1.9.3"];

/// Distinct client addresses each credential is used from.
const ADDRESSES_PER_CREDENTIAL: u64 = 8;

/// A deterministic pseudo-random source (SplitMix64): the same flags give the same workload.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    fn bytes32(&mut self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        bytes
    }
}

/// The organization every generated credential belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Organization {
    pub id: OrgId,
    pub owner: MemberId,
    pub project: ProjectId,
}

impl Organization {
    /// A new organization with fresh ids.
    pub fn generate() -> Self {
        Self {
            id: OrgId::from_uuid(Uuid::now_v7()),
            owner: MemberId::from_uuid(Uuid::now_v7()),
            project: ProjectId::from_uuid(Uuid::now_v7()),
        }
    }

    /// The organization's stream and its first events: created with its owner, then a project
    /// with two environments.
    pub fn creation(&self, now: DateTime<Utc>) -> anyhow::Result<(String, Vec<NewEvent>)> {
        let context = organization::Context { now };
        let create = organization::Command::Create {
            id: self.id,
            name: Slug::parse("acme")?,
            owner_id: self.owner,
            owner_email: Email::parse("ops@acme.example")?,
        };
        let mut events = organization::decide(&organization::State::Absent, create, &context)?;
        let mut state = organization::State::Absent;
        for created in &events {
            state = organization::evolve(state, created);
        }
        let project = organization::Command::CreateProject {
            project_id: self.project,
            name: Slug::parse("payments")?,
            environments: vec![Slug::parse("production")?, Slug::parse("staging")?],
        };
        events.extend(organization::decide(&state, project, &context)?);
        let events =
            events.iter().map(|created| self.lifecycle_event(created, now)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok((organization::stream(self.id), events))
    }

    /// A new machine token of the owner, created as `POST /v1/machine-tokens/{orgId}` creates it;
    /// every `conditions_every`-th one (0: none) carries conditions (two CIDRs and a user-agent
    /// glob). Returns its id, its state after creation and the event.
    pub fn machine_token(
        &self,
        index: u64,
        conditions_every: u64,
        rng: &mut Rng,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(CredentialId, machine_token::State, NewEvent)> {
        let environment_hint = EnvHint::parse(if index.is_multiple_of(3) { "staging" } else { "prod" })?;
        let secret = SecretToken::machine_token(&environment_hint, rng.bytes32());
        let conditions = if conditions_every > 0 && index.is_multiple_of(conditions_every) {
            Conditions::new(
                vec![Cidr::parse("10.0.0.0/8")?, Cidr::parse("192.0.2.0/24")?],
                Vec::new(),
                Some(UserAgentPattern::parse("gitlab-runner/*")?),
            )?
        } else {
            Conditions::none()
        };
        let id = CredentialId::from_uuid(Uuid::now_v7());
        let new = NewMachineToken {
            id,
            org_id: self.id,
            name: TokenName::parse(&format!("ci-deploy-{index}"))?,
            environment_hint,
            project_id: Some(self.project),
            owner: self.owner,
            scopes: Scopes::all(),
            conditions,
            secret_hash: secret.digest(),
            token_prefix: secret.prefix(),
            expires_in_days: Some(90),
        };
        let context = machine_token::Context { now };
        let events = machine_token::decide(
            &machine_token::State::Absent,
            machine_token::Command::Create(Box::new(new)),
            &context,
        )?;
        let created = events.first().context("creating a machine token decided no event")?;
        let state = machine_token::evolve(machine_token::State::Absent, created);
        Ok((id, state, self.lifecycle_event(created, now)?))
    }

    /// Runs a lifecycle command on a token's state: the events it decided, as the store takes
    /// them, and the state they leave.
    pub fn token_command(
        &self,
        state: machine_token::State,
        command: machine_token::Command,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(machine_token::State, Vec<NewEvent>)> {
        let decided = machine_token::decide(&state, command, &machine_token::Context { now })?;
        let mut state = state;
        let mut events = Vec::with_capacity(decided.len());
        for decided in &decided {
            state = machine_token::evolve(state, decided);
            events.push(self.lifecycle_event(decided, now)?);
        }
        Ok((state, events))
    }

    /// A fresh secret for a roll, as the API draws it.
    pub fn roll_command(rng: &mut Rng) -> anyhow::Result<machine_token::Command> {
        let secret = SecretToken::machine_token(&EnvHint::parse("prod")?, rng.bytes32());
        Ok(machine_token::Command::Roll { secret_hash: secret.digest(), token_prefix: secret.prefix(), grace: None })
    }

    /// A use of `credential` as the usage recorder writes it (DESIGN.md §5): one of a few routes,
    /// from one of the credential's few addresses and user agents; every `denied_every`-th use
    /// (0: none) is a coalesced denial instead.
    pub fn usage(
        &self,
        credential: CredentialId,
        credential_index: u64,
        denied_every: u64,
        rng: &mut Rng,
        now: DateTime<Utc>,
    ) -> anyhow::Result<NewEvent> {
        let (method, route) = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let address = rng.below(ADDRESSES_PER_CREDENTIAL);
        let ip = format!("10.{}.{}.{}", credential_index % 250, address, 10 + credential_index % 200);
        let user_agent = USER_AGENTS[((credential_index + address) % USER_AGENTS.len() as u64) as usize].to_owned();
        let request = RequestMeta {
            ip: Some(ip.clone()),
            user_agent: Some(user_agent.clone()),
            request_id: Some(Uuid::now_v7().to_string()),
        };
        let event = if denied_every > 0 && rng.below(denied_every) == 0 {
            usage::Event::CredentialAccessDenied(CredentialAccessDenied {
                credential_id: credential,
                kind: CredentialKind::MachineToken,
                org_id: Some(self.id),
                reason: DenyReason::IpNotAllowed,
                count: 1 + rng.below(4) as u32,
                method: method.to_owned(),
                route: route.to_owned(),
                ip,
                user_agent: Some(user_agent),
                at: now,
            })
        } else {
            usage::Event::CredentialUsed(CredentialUsed {
                credential_id: credential,
                kind: CredentialKind::MachineToken,
                org_id: Some(self.id),
                method: method.to_owned(),
                route: route.to_owned(),
                ip,
                user_agent: Some(user_agent),
                at: now,
                based_on: None,
            })
        };
        let actor = Actor { kind: ActorKind::MachineToken, id: credential.to_string() };
        wrap(&event, Some(self.id), actor, request, now)
    }

    /// A command's event, caused by the owner through the CLI.
    fn lifecycle_event<E: Serialize>(&self, decided: &E, now: DateTime<Utc>) -> anyhow::Result<NewEvent> {
        let request = RequestMeta {
            ip: Some("192.0.2.10".to_owned()),
            user_agent: Some("credledger-cli/0.1.0".to_owned()),
            request_id: Some(Uuid::now_v7().to_string()),
        };
        wrap(decided, Some(self.id), Actor::member(self.owner), request, now)
    }
}

/// An aggregate's event as the store takes it.
fn wrap<E: Serialize>(
    decided: &E,
    org_id: Option<OrgId>,
    actor: Actor,
    request: RequestMeta,
    now: DateTime<Utc>,
) -> anyhow::Result<NewEvent> {
    let (event_type, payload) = event::encode(decided)?;
    Ok(NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type,
        schema_version: SCHEMA_VERSION,
        org_id,
        occurred_at: now,
        actor,
        request: Some(request),
        payload,
    })
}
