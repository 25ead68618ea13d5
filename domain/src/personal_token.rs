//! The personal access token (PAT) aggregate: how humans call the API.
//!
//! A PAT is created active and may be revoked; revocation is terminal. Its expiry, if any, is
//! decided by the clock. The server-admin PAT belongs to no organization and may create them.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::credential::Status;
use crate::error::DomainError;
use crate::token::{TokenDigest, TokenPrefix};
use crate::values::TokenName;
use crate::{CredentialId, MemberId, OrgId};

const AGGREGATE: &str = "personal token";
pub const MAX_EXPIRY_DAYS: u32 = 3650;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalToken {
    pub id: CredentialId,
    /// `None` for the server-admin PAT.
    pub org_id: Option<OrgId>,
    pub member_id: Option<MemberId>,
    pub name: TokenName,
    pub secret_hash: TokenDigest,
    pub token_prefix: TokenPrefix,
    pub server_admin: bool,
    pub status: Status,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Absent,
    Present(Box<PersonalToken>),
}

#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create(Box<NewPersonalToken>),
    Revoke { reason: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPersonalToken {
    pub id: CredentialId,
    /// Both `None` for the server-admin PAT, both `Some` for a member's PAT.
    pub owner: Option<(OrgId, MemberId)>,
    pub name: TokenName,
    pub secret_hash: TokenDigest,
    pub token_prefix: TokenPrefix,
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    PersonalTokenCreated(Created),
    PersonalTokenRevoked(Revoked),
}

impl Event {
    pub const TYPES: [&'static str; 2] = ["PersonalTokenCreated", "PersonalTokenRevoked"];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub token_id: CredentialId,
    pub org_id: Option<OrgId>,
    pub member_id: Option<MemberId>,
    pub name: TokenName,
    pub secret_hash: TokenDigest,
    pub token_prefix: TokenPrefix,
    pub server_admin: bool,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    pub reason: Option<String>,
}

pub fn stream(id: CredentialId) -> String {
    format!("pat-{id}")
}

pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    match (state, command) {
        (State::Absent, Command::Create(new)) => {
            let expires_at = match new.expires_in_days {
                None => None,
                Some(days @ 1..=MAX_EXPIRY_DAYS) => Some(ctx.now + TimeDelta::days(i64::from(days))),
                Some(_) => return Err(DomainError::InvalidExpiry { max_days: MAX_EXPIRY_DAYS }),
            };
            Ok(vec![Event::PersonalTokenCreated(Created {
                token_id: new.id,
                org_id: new.owner.map(|(org, _)| org),
                member_id: new.owner.map(|(_, member)| member),
                name: new.name,
                secret_hash: new.secret_hash,
                token_prefix: new.token_prefix,
                server_admin: new.owner.is_none(),
                created_at: ctx.now,
                expires_at,
            })])
        }
        (State::Absent, Command::Revoke { .. }) => Err(DomainError::NotFound { aggregate: AGGREGATE }),
        (State::Present(_), Command::Create(_)) => Err(DomainError::AlreadyExists { aggregate: AGGREGATE }),
        (State::Present(token), Command::Revoke { reason }) => {
            if token.status == Status::Revoked {
                return Err(DomainError::InvalidTransition {
                    aggregate: AGGREGATE,
                    state: "revoked",
                    command: "revoke",
                });
            }
            Ok(vec![Event::PersonalTokenRevoked(Revoked { reason })])
        }
    }
}

pub fn evolve(state: State, event: &Event) -> State {
    match (state, event) {
        (State::Absent, Event::PersonalTokenCreated(created)) => State::Present(Box::new(PersonalToken {
            id: created.token_id,
            org_id: created.org_id,
            member_id: created.member_id,
            name: created.name.clone(),
            secret_hash: created.secret_hash,
            token_prefix: created.token_prefix.clone(),
            server_admin: created.server_admin,
            status: Status::Active,
            created_at: created.created_at,
            expires_at: created.expires_at,
        })),
        (State::Present(mut token), Event::PersonalTokenRevoked(_)) => {
            token.status = Status::Revoked;
            State::Present(token)
        }
        (state, _) => state,
    }
}
