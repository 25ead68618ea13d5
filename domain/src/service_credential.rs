//! The service credential aggregate: an OAuth2 confidential client (`client_id` + secret) that a
//! pipeline exchanges for short-lived access tokens with the client_credentials grant.
//!
//! | state   | obtains tokens | can go to                                                        |
//! |---------|----------------|------------------------------------------------------------------|
//! | active  | yes            | expired (by the clock), revoked; rotate keeps it active          |
//! | expired | no             | active only by rotate (new secret, new expiry), revoked          |
//! | revoked | no             | nothing: every command is `invalid_transition`                   |
//!
//! Rotation replaces the secret; the old one stops at once, or after a bounded grace period.
//! Transfer clears an `owner_removed` flag, as for machine tokens.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::credential::{Flag, FlagReason, Status};
use crate::error::DomainError;
use crate::token::{ClientId, TokenDigest, TokenPrefix};
use crate::values::{Conditions, Scopes, TokenName};
use crate::{CredentialId, MemberId, OrgId};

const AGGREGATE: &str = "service credential";
pub const MAX_EXPIRY_DAYS: u32 = 3650;
/// The longest time an old secret may keep working after a rotation.
pub const MAX_ROTATION_GRACE: TimeDelta = TimeDelta::hours(24);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCredential {
    pub id: CredentialId,
    pub org_id: OrgId,
    pub client_id: ClientId,
    pub name: TokenName,
    pub owner: MemberId,
    /// The scopes an access token may carry; a token request may narrow them.
    pub scopes: Scopes,
    pub conditions: Conditions,
    pub secret_hash: TokenDigest,
    pub secret_prefix: TokenPrefix,
    pub status: Status,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
    pub lifetime_days: Option<u32>,
    pub flagged: Option<Flag>,
    pub previous_secret: Option<crate::machine_token::PreviousSecret>,
}

impl ServiceCredential {
    pub fn effective_status(&self, now: DateTime<Utc>) -> Status {
        self.status.effective(self.expires_at, now)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Absent,
    Present(Box<ServiceCredential>),
}

#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create(Box<NewServiceCredential>),
    /// Replace the secret: the caller generated it and passes its hash and prefix.
    RotateSecret {
        secret_hash: TokenDigest,
        secret_prefix: TokenPrefix,
        grace: Option<TimeDelta>,
    },
    Transfer {
        to: MemberId,
    },
    Flag {
        reason: FlagReason,
    },
    Revoke {
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServiceCredential {
    pub id: CredentialId,
    pub org_id: OrgId,
    pub client_id: ClientId,
    pub name: TokenName,
    pub owner: MemberId,
    pub scopes: Scopes,
    pub conditions: Conditions,
    pub secret_hash: TokenDigest,
    pub secret_prefix: TokenPrefix,
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    ServiceCredentialCreated(Box<Created>),
    ServiceCredentialSecretRotated(SecretRotated),
    ServiceCredentialTransferred(crate::machine_token::Transferred),
    ServiceCredentialFlagged(Flag),
    ServiceCredentialRevoked(crate::machine_token::Revoked),
}

impl Event {
    pub const TYPES: [&'static str; 5] = [
        "ServiceCredentialCreated",
        "ServiceCredentialSecretRotated",
        "ServiceCredentialTransferred",
        "ServiceCredentialFlagged",
        "ServiceCredentialRevoked",
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub credential_id: CredentialId,
    pub org_id: OrgId,
    pub client_id: ClientId,
    pub name: TokenName,
    pub owner: MemberId,
    pub scopes: Scopes,
    pub conditions: Conditions,
    pub secret_hash: TokenDigest,
    pub secret_prefix: TokenPrefix,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
    pub lifetime_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotated {
    pub secret_hash: TokenDigest,
    pub secret_prefix: TokenPrefix,
    pub previous_secret_hash: TokenDigest,
    /// When the old secret stops working; `None` means at once.
    #[serde(with = "crate::time_format::option")]
    pub previous_valid_until: Option<DateTime<Utc>>,
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

pub fn stream(id: CredentialId) -> String {
    format!("sc-{id}")
}

pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    let (credential, command) = match (state, command) {
        (State::Absent, Command::Create(new)) => return create(*new, ctx).map(|event| vec![event]),
        (State::Absent, _) => return Err(DomainError::NotFound { aggregate: AGGREGATE }),
        (State::Present(_), Command::Create(_)) => return Err(DomainError::AlreadyExists { aggregate: AGGREGATE }),
        (State::Present(credential), command) => (credential, command),
    };
    let status = credential.effective_status(ctx.now);
    if status == Status::Revoked {
        return Err(DomainError::InvalidTransition { aggregate: AGGREGATE, state: "revoked", command: command.name() });
    }
    let event = match command {
        Command::Create(_) => return Err(DomainError::AlreadyExists { aggregate: AGGREGATE }),
        Command::RotateSecret { secret_hash, secret_prefix, grace } => {
            let previous_valid_until = match grace {
                None => None,
                Some(grace) if grace > MAX_ROTATION_GRACE || grace < TimeDelta::zero() => {
                    return Err(DomainError::GracePeriodTooLong { max_seconds: MAX_ROTATION_GRACE.num_seconds() });
                }
                Some(_) if status != Status::Active => return Err(DomainError::GraceNotApplicable),
                Some(grace) => Some(ctx.now + grace),
            };
            Event::ServiceCredentialSecretRotated(SecretRotated {
                secret_hash,
                secret_prefix,
                previous_secret_hash: credential.secret_hash,
                previous_valid_until,
                expires_at: credential.lifetime_days.map(|days| ctx.now + TimeDelta::days(i64::from(days))),
            })
        }
        Command::Transfer { to } => {
            Event::ServiceCredentialTransferred(crate::machine_token::Transferred { from: credential.owner, to })
        }
        Command::Flag { .. } if credential.flagged.is_some() => return Ok(Vec::new()),
        Command::Flag { reason } => Event::ServiceCredentialFlagged(Flag { reason, at: ctx.now }),
        Command::Revoke { reason } => Event::ServiceCredentialRevoked(crate::machine_token::Revoked { reason }),
    };
    Ok(vec![event])
}

fn create(new: NewServiceCredential, ctx: &Context) -> Result<Event, DomainError> {
    let expires_at = match new.expires_in_days {
        None => None,
        Some(days @ 1..=MAX_EXPIRY_DAYS) => Some(ctx.now + TimeDelta::days(i64::from(days))),
        Some(_) => return Err(DomainError::InvalidExpiry { max_days: MAX_EXPIRY_DAYS }),
    };
    Ok(Event::ServiceCredentialCreated(Box::new(Created {
        credential_id: new.id,
        org_id: new.org_id,
        client_id: new.client_id,
        name: new.name,
        owner: new.owner,
        scopes: new.scopes,
        conditions: new.conditions,
        secret_hash: new.secret_hash,
        secret_prefix: new.secret_prefix,
        created_at: ctx.now,
        expires_at,
        lifetime_days: new.expires_in_days,
    })))
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::RotateSecret { .. } => "rotate",
            Self::Transfer { .. } => "transfer",
            Self::Flag { .. } => "flag",
            Self::Revoke { .. } => "revoke",
        }
    }
}

pub fn evolve(state: State, event: &Event) -> State {
    let mut credential = match (state, event) {
        (State::Absent, Event::ServiceCredentialCreated(created)) => {
            return State::Present(Box::new(ServiceCredential {
                id: created.credential_id,
                org_id: created.org_id,
                client_id: created.client_id.clone(),
                name: created.name.clone(),
                owner: created.owner,
                scopes: created.scopes.clone(),
                conditions: created.conditions.clone(),
                secret_hash: created.secret_hash,
                secret_prefix: created.secret_prefix.clone(),
                status: Status::Active,
                created_at: created.created_at,
                expires_at: created.expires_at,
                lifetime_days: created.lifetime_days,
                flagged: None,
                previous_secret: None,
            }));
        }
        (State::Absent, _) => return State::Absent,
        (State::Present(credential), _) => credential,
    };
    match event {
        Event::ServiceCredentialCreated(_) => {}
        Event::ServiceCredentialSecretRotated(rotated) => {
            credential.previous_secret = rotated.previous_valid_until.map(|valid_until| {
                crate::machine_token::PreviousSecret { secret_hash: rotated.previous_secret_hash, valid_until }
            });
            credential.secret_hash = rotated.secret_hash;
            credential.secret_prefix = rotated.secret_prefix.clone();
            credential.expires_at = rotated.expires_at;
        }
        Event::ServiceCredentialTransferred(transferred) => {
            credential.owner = transferred.to;
            credential.flagged = None;
        }
        Event::ServiceCredentialFlagged(flag) => credential.flagged = Some(*flag),
        Event::ServiceCredentialRevoked(_) => {
            credential.status = Status::Revoked;
            credential.previous_secret = None;
        }
    }
    State::Present(credential)
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
    events.into_iter().fold(State::Absent, evolve)
}
