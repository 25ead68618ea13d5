//! The machine token aggregate: its state, commands, events and the decider that implements the
//! lifecycle table of DESIGN.md §3.
//!
//! | state    | authenticates | can go to                                                     |
//! |----------|---------------|---------------------------------------------------------------|
//! | active   | yes           | disabled, expired, revoked; roll keeps it active              |
//! | disabled | no            | active (enable), revoked; roll keeps it disabled              |
//! | expired  | no            | active only by roll (new value, new expiry), revoked          |
//! | revoked  | no            | nothing: every command is `invalid_transition`                |

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::credential::{Flag, FlagReason, Status};
use crate::error::DomainError;
use crate::token::{TokenDigest, TokenPrefix};
use crate::values::{Conditions, EnvHint, Scopes, TokenName};
use crate::{CredentialId, MemberId, OrgId, ProjectId};

const AGGREGATE: &str = "machine token";
/// The longest lifetime a token may be given.
pub const MAX_EXPIRY_DAYS: u32 = 3650;
/// The longest time an old value may keep working after a roll.
pub const MAX_ROLL_GRACE: TimeDelta = TimeDelta::hours(24);

/// A machine token as its events left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineToken {
    pub id: CredentialId,
    pub org_id: OrgId,
    pub name: TokenName,
    pub environment_hint: EnvHint,
    pub project_id: Option<ProjectId>,
    pub owner: MemberId,
    pub scopes: Scopes,
    pub conditions: Conditions,
    pub secret_hash: TokenDigest,
    pub token_prefix: TokenPrefix,
    pub status: Status,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Kept so that rolling an expired token gives the new value the same lifetime.
    pub lifetime_days: Option<u32>,
    pub flagged: Option<Flag>,
    /// The value replaced by the last roll, while its grace period lasts.
    pub previous_secret: Option<PreviousSecret>,
}

impl MachineToken {
    pub fn effective_status(&self, now: DateTime<Utc>) -> Status {
        self.status.effective(self.expires_at, now)
    }
}

/// A rolled-away value that keeps working until `valid_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSecret {
    pub secret_hash: TokenDigest,
    #[serde(with = "crate::time_format")]
    pub valid_until: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Absent,
    Present(Box<MachineToken>),
}

/// What the decider needs to know besides the state: the time, never read from a clock here.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create(Box<NewMachineToken>),
    Update(Update),
    Disable,
    Enable,
    /// Replace the secret: the caller generated the new value and passes its hash and prefix.
    Roll {
        secret_hash: TokenDigest,
        token_prefix: TokenPrefix,
        grace: Option<TimeDelta>,
    },
    Transfer {
        to: MemberId,
    },
    Flag {
        reason: FlagReason,
    },
    Expire,
    Revoke {
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMachineToken {
    pub id: CredentialId,
    pub org_id: OrgId,
    pub name: TokenName,
    pub environment_hint: EnvHint,
    pub project_id: Option<ProjectId>,
    pub owner: MemberId,
    pub scopes: Scopes,
    pub conditions: Conditions,
    pub secret_hash: TokenDigest,
    pub token_prefix: TokenPrefix,
    pub expires_in_days: Option<u32>,
}

/// A partial update; `None` leaves a field as it is. `expires_in_days: Some(None)` removes the
/// expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub name: Option<TokenName>,
    pub scopes: Option<Scopes>,
    pub conditions: Option<Conditions>,
    pub expires_in_days: Option<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    MachineTokenCreated(Created),
    MachineTokenUpdated(Updated),
    MachineTokenDisabled(Empty),
    MachineTokenEnabled(Empty),
    MachineTokenRolled(Rolled),
    MachineTokenTransferred(Transferred),
    MachineTokenFlagged(Flag),
    MachineTokenExpired(Expired),
    MachineTokenRevoked(Revoked),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub token_id: CredentialId,
    pub org_id: OrgId,
    pub name: TokenName,
    pub environment_hint: EnvHint,
    pub project_id: Option<ProjectId>,
    pub owner: MemberId,
    pub scopes: Scopes,
    pub conditions: Conditions,
    pub secret_hash: TokenDigest,
    pub token_prefix: TokenPrefix,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
    pub lifetime_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Updated {
    pub name: Option<TokenName>,
    pub scopes: Option<Scopes>,
    pub conditions: Option<Conditions>,
    /// Present when the expiry changed.
    pub expiry: Option<Expiry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiry {
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
    pub lifetime_days: Option<u32>,
}

/// An event without payload fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rolled {
    pub secret_hash: TokenDigest,
    pub token_prefix: TokenPrefix,
    pub previous_secret_hash: TokenDigest,
    /// When the old value stops working; `None` means at once.
    #[serde(with = "crate::time_format::option")]
    pub previous_valid_until: Option<DateTime<Utc>>,
    #[serde(with = "crate::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transferred {
    pub from: MemberId,
    pub to: MemberId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expired {
    #[serde(with = "crate::time_format")]
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    pub reason: Option<String>,
}

impl Event {
    pub const TYPES: [&'static str; 9] = [
        "MachineTokenCreated",
        "MachineTokenUpdated",
        "MachineTokenDisabled",
        "MachineTokenEnabled",
        "MachineTokenRolled",
        "MachineTokenTransferred",
        "MachineTokenFlagged",
        "MachineTokenExpired",
        "MachineTokenRevoked",
    ];
}

pub fn stream(id: CredentialId) -> String {
    format!("mt-{id}")
}

pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    match (state, command) {
        (State::Absent, Command::Create(new)) => Ok(vec![create(*new, ctx)?]),
        (State::Absent, _) => Err(DomainError::NotFound { aggregate: AGGREGATE }),
        (State::Present(_), Command::Create(_)) => Err(DomainError::AlreadyExists { aggregate: AGGREGATE }),
        (State::Present(token), command) => decide_lifecycle(token, command, ctx),
    }
}

fn decide_lifecycle(token: &MachineToken, command: Command, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    let status = token.effective_status(ctx.now);
    let refuse = |command: &Command| DomainError::InvalidTransition {
        aggregate: AGGREGATE,
        state: status.as_str(),
        command: command.name(),
    };
    if status == Status::Revoked {
        return Err(refuse(&command));
    }
    let event = match command {
        Command::Update(update) => Event::MachineTokenUpdated(update_event(update, status, ctx)?),
        Command::Disable if status == Status::Active => Event::MachineTokenDisabled(Empty {}),
        Command::Enable if status == Status::Disabled => Event::MachineTokenEnabled(Empty {}),
        Command::Roll { secret_hash, token_prefix, grace } => {
            Event::MachineTokenRolled(roll(token, status, secret_hash, token_prefix, grace, ctx)?)
        }
        Command::Transfer { to } => Event::MachineTokenTransferred(Transferred { from: token.owner, to }),
        // Flagging twice says nothing new: the process manager may replay it safely.
        Command::Flag { .. } if token.flagged.is_some() => return Ok(Vec::new()),
        Command::Flag { reason } => Event::MachineTokenFlagged(Flag { reason, at: ctx.now }),
        // Expired by the clock but not yet recorded: this is the sweeper's command.
        Command::Expire if status == Status::Expired && token.status == Status::Active => {
            Event::MachineTokenExpired(Expired { expires_at: token.expires_at.unwrap_or(ctx.now) })
        }
        Command::Expire if status == Status::Active => return Err(DomainError::NotYetExpired),
        Command::Revoke { reason } => Event::MachineTokenRevoked(Revoked { reason }),
        other => return Err(refuse(&other)),
    };
    Ok(vec![event])
}

fn create(new: NewMachineToken, ctx: &Context) -> Result<Event, DomainError> {
    let expires_at = expiry_from(new.expires_in_days, ctx.now)?;
    Ok(Event::MachineTokenCreated(Created {
        token_id: new.id,
        org_id: new.org_id,
        name: new.name,
        environment_hint: new.environment_hint,
        project_id: new.project_id,
        owner: new.owner,
        scopes: new.scopes,
        conditions: new.conditions,
        secret_hash: new.secret_hash,
        token_prefix: new.token_prefix,
        created_at: ctx.now,
        expires_at,
        lifetime_days: new.expires_in_days,
    }))
}

fn expiry_from(days: Option<u32>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, DomainError> {
    match days {
        None => Ok(None),
        Some(days @ 1..=MAX_EXPIRY_DAYS) => Ok(Some(now + TimeDelta::days(i64::from(days)))),
        Some(_) => Err(DomainError::InvalidExpiry { max_days: MAX_EXPIRY_DAYS }),
    }
}

fn update_event(update: Update, status: Status, ctx: &Context) -> Result<Updated, DomainError> {
    let Update { name, scopes, conditions, expires_in_days } = update;
    if name.is_none() && scopes.is_none() && conditions.is_none() && expires_in_days.is_none() {
        return Err(DomainError::NothingToUpdate);
    }
    // A new expiry would bring an expired token back without a new value: only roll may do that.
    if expires_in_days.is_some() && status == Status::Expired {
        return Err(DomainError::InvalidTransition {
            aggregate: AGGREGATE,
            state: status.as_str(),
            command: "change the expiry of",
        });
    }
    let expiry = expires_in_days
        .map(|days| expiry_from(days, ctx.now).map(|expires_at| Expiry { expires_at, lifetime_days: days }))
        .transpose()?;
    Ok(Updated { name, scopes, conditions, expiry })
}

fn roll(
    token: &MachineToken,
    status: Status,
    secret_hash: TokenDigest,
    token_prefix: TokenPrefix,
    grace: Option<TimeDelta>,
    ctx: &Context,
) -> Result<Rolled, DomainError> {
    let previous_valid_until = match grace {
        None => None,
        Some(grace) if grace > MAX_ROLL_GRACE || grace < TimeDelta::zero() => {
            return Err(DomainError::GracePeriodTooLong { max_seconds: MAX_ROLL_GRACE.num_seconds() });
        }
        Some(_) if status != Status::Active => return Err(DomainError::GraceNotApplicable),
        Some(grace) => Some(ctx.now + grace),
    };
    // The new value gets a full lifetime: for an expired token that is what brings it back.
    let expires_at = token.lifetime_days.map(|days| ctx.now + TimeDelta::days(i64::from(days)));
    Ok(Rolled { secret_hash, token_prefix, previous_secret_hash: token.secret_hash, previous_valid_until, expires_at })
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Update(_) => "update",
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Roll { .. } => "roll",
            Self::Transfer { .. } => "transfer",
            Self::Flag { .. } => "flag",
            Self::Expire => "expire",
            Self::Revoke { .. } => "revoke",
        }
    }
}

pub fn evolve(state: State, event: &Event) -> State {
    let mut token = match (state, event) {
        (State::Absent, Event::MachineTokenCreated(created)) => {
            return State::Present(Box::new(MachineToken {
                id: created.token_id,
                org_id: created.org_id,
                name: created.name.clone(),
                environment_hint: created.environment_hint.clone(),
                project_id: created.project_id,
                owner: created.owner,
                scopes: created.scopes.clone(),
                conditions: created.conditions.clone(),
                secret_hash: created.secret_hash,
                token_prefix: created.token_prefix.clone(),
                status: Status::Active,
                created_at: created.created_at,
                expires_at: created.expires_at,
                lifetime_days: created.lifetime_days,
                flagged: None,
                previous_secret: None,
            }));
        }
        // Events out of order cannot come from this decider; a fold ignores them.
        (State::Absent, _) => return State::Absent,
        (State::Present(token), _) => token,
    };
    match event {
        Event::MachineTokenCreated(_) => {}
        Event::MachineTokenUpdated(updated) => {
            if let Some(name) = &updated.name {
                token.name = name.clone();
            }
            if let Some(scopes) = &updated.scopes {
                token.scopes = scopes.clone();
            }
            if let Some(conditions) = &updated.conditions {
                token.conditions = conditions.clone();
            }
            if let Some(expiry) = updated.expiry {
                token.expires_at = expiry.expires_at;
                token.lifetime_days = expiry.lifetime_days;
            }
        }
        Event::MachineTokenDisabled(_) => token.status = Status::Disabled,
        Event::MachineTokenEnabled(_) => token.status = Status::Active,
        Event::MachineTokenRolled(rolled) => {
            token.previous_secret = rolled
                .previous_valid_until
                .map(|valid_until| PreviousSecret { secret_hash: rolled.previous_secret_hash, valid_until });
            token.secret_hash = rolled.secret_hash;
            token.token_prefix = rolled.token_prefix.clone();
            token.expires_at = rolled.expires_at;
            if token.status == Status::Expired {
                token.status = Status::Active;
            }
        }
        Event::MachineTokenTransferred(transferred) => {
            token.owner = transferred.to;
            token.flagged = None;
        }
        Event::MachineTokenFlagged(flag) => token.flagged = Some(*flag),
        Event::MachineTokenExpired(_) => token.status = Status::Expired,
        Event::MachineTokenRevoked(_) => {
            token.status = Status::Revoked;
            token.previous_secret = None;
        }
    }
    State::Present(token)
}

/// The state after `events`, from the start of the stream.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
    events.into_iter().fold(State::Absent, evolve)
}
