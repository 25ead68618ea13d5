//! The machine identity aggregate: an Ed25519 public key registered for one machine, scoped to
//! exactly one project and one environment. The machine signs a short assertion with its private
//! key and exchanges it for a 15-minute, read-only access token; the private key never reaches
//! the server.
//!
//! | state   | exchanges assertions | can go to                                        |
//! |---------|----------------------|--------------------------------------------------|
//! | active  | yes                  | revoked; rotate-key keeps it active              |
//! | revoked | no                   | nothing: every command is `invalid_transition`   |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::credential::{Flag, FlagReason, Status};
use crate::error::DomainError;
use crate::names::Slug;
use crate::values::Conditions;
use crate::{CredentialId, MemberId, OrgId, ProjectId};

const AGGREGATE: &str = "machine";

/// An Ed25519 public key: 32 bytes, serialised as base64url.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64url(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64url())
    }
}

impl TryFrom<String> for PublicKey {
    type Error = &'static str;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        use base64::Engine as _;
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value.trim()).map_err(|_| "not base64url")?;
        <[u8; 32]>::try_from(bytes.as_slice()).map(Self).map_err(|_| "not 32 bytes")
    }
}

impl From<PublicKey> for String {
    fn from(value: PublicKey) -> Self {
        value.to_base64url()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub id: CredentialId,
    pub org_id: OrgId,
    pub name: Slug,
    pub project_id: ProjectId,
    pub environment: Slug,
    pub public_key: PublicKey,
    pub owner: MemberId,
    pub conditions: Conditions,
    pub status: Status,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub key_rotated_at: Option<DateTime<Utc>>,
    pub flagged: Option<Flag>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Absent,
    Present(Box<Machine>),
}

#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create(Box<NewMachine>),
    /// Register a new public key; the old one stops at once.
    RotateKey {
        public_key: PublicKey,
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
pub struct NewMachine {
    pub id: CredentialId,
    pub org_id: OrgId,
    pub name: Slug,
    pub project_id: ProjectId,
    pub environment: Slug,
    pub public_key: PublicKey,
    pub owner: MemberId,
    pub conditions: Conditions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    MachineCreated(Box<Created>),
    MachineKeyRotated(KeyRotated),
    MachineTransferred(crate::machine_token::Transferred),
    MachineFlagged(Flag),
    MachineRevoked(crate::machine_token::Revoked),
}

impl Event {
    pub const TYPES: [&'static str; 5] =
        ["MachineCreated", "MachineKeyRotated", "MachineTransferred", "MachineFlagged", "MachineRevoked"];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub machine_id: CredentialId,
    pub org_id: OrgId,
    pub name: Slug,
    pub project_id: ProjectId,
    pub environment: Slug,
    pub public_key: PublicKey,
    pub owner: MemberId,
    pub conditions: Conditions,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotated {
    pub public_key: PublicKey,
    pub previous_public_key: PublicKey,
    #[serde(with = "crate::time_format")]
    pub rotated_at: DateTime<Utc>,
}

pub fn stream(id: CredentialId) -> String {
    format!("mi-{id}")
}

pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    let (machine, command) = match (state, command) {
        (State::Absent, Command::Create(new)) => {
            let new = *new;
            return Ok(vec![Event::MachineCreated(Box::new(Created {
                machine_id: new.id,
                org_id: new.org_id,
                name: new.name,
                project_id: new.project_id,
                environment: new.environment,
                public_key: new.public_key,
                owner: new.owner,
                conditions: new.conditions,
                created_at: ctx.now,
            }))]);
        }
        (State::Absent, _) => return Err(DomainError::NotFound { aggregate: AGGREGATE }),
        (State::Present(_), Command::Create(_)) => return Err(DomainError::AlreadyExists { aggregate: AGGREGATE }),
        (State::Present(machine), command) => (machine, command),
    };
    if machine.status == Status::Revoked {
        return Err(DomainError::InvalidTransition { aggregate: AGGREGATE, state: "revoked", command: command.name() });
    }
    let event = match command {
        Command::Create(_) => return Err(DomainError::AlreadyExists { aggregate: AGGREGATE }),
        Command::RotateKey { public_key } => Event::MachineKeyRotated(KeyRotated {
            public_key,
            previous_public_key: machine.public_key,
            rotated_at: ctx.now,
        }),
        Command::Transfer { to } => {
            Event::MachineTransferred(crate::machine_token::Transferred { from: machine.owner, to })
        }
        Command::Flag { .. } if machine.flagged.is_some() => return Ok(Vec::new()),
        Command::Flag { reason } => Event::MachineFlagged(Flag { reason, at: ctx.now }),
        Command::Revoke { reason } => Event::MachineRevoked(crate::machine_token::Revoked { reason }),
    };
    Ok(vec![event])
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::RotateKey { .. } => "rotate the key of",
            Self::Transfer { .. } => "transfer",
            Self::Flag { .. } => "flag",
            Self::Revoke { .. } => "revoke",
        }
    }
}

pub fn evolve(state: State, event: &Event) -> State {
    let mut machine = match (state, event) {
        (State::Absent, Event::MachineCreated(created)) => {
            return State::Present(Box::new(Machine {
                id: created.machine_id,
                org_id: created.org_id,
                name: created.name.clone(),
                project_id: created.project_id,
                environment: created.environment.clone(),
                public_key: created.public_key,
                owner: created.owner,
                conditions: created.conditions.clone(),
                status: Status::Active,
                created_at: created.created_at,
                key_rotated_at: None,
                flagged: None,
            }));
        }
        (State::Absent, _) => return State::Absent,
        (State::Present(machine), _) => machine,
    };
    match event {
        Event::MachineCreated(_) => {}
        Event::MachineKeyRotated(rotated) => {
            machine.public_key = rotated.public_key;
            machine.key_rotated_at = Some(rotated.rotated_at);
        }
        Event::MachineTransferred(transferred) => {
            machine.owner = transferred.to;
            machine.flagged = None;
        }
        Event::MachineFlagged(flag) => machine.flagged = Some(*flag),
        Event::MachineRevoked(_) => machine.status = Status::Revoked,
    }
    State::Present(machine)
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
    events.into_iter().fold(State::Absent, evolve)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use uuid::Uuid;

    use super::*;

    const NOW: DateTime<Utc> = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap().and_hms_opt(10, 0, 0).unwrap().and_utc();

    fn create() -> Command {
        Command::Create(Box::new(NewMachine {
            id: CredentialId::from_uuid(Uuid::from_u128(1)),
            org_id: OrgId::from_uuid(Uuid::from_u128(2)),
            name: Slug::parse("deploy-prod").unwrap(),
            project_id: ProjectId::from_uuid(Uuid::from_u128(3)),
            environment: Slug::parse("production").unwrap(),
            public_key: PublicKey::from_bytes([1; 32]),
            owner: MemberId::from_uuid(Uuid::from_u128(4)),
            conditions: Conditions::none(),
        }))
    }

    fn run(state: State, command: Command) -> Result<State, String> {
        let events = decide(&state, command, &Context { now: NOW }).map_err(|e| e.code().to_owned())?;
        Ok(events.iter().fold(state, evolve))
    }

    fn machine(state: &State) -> &Machine {
        match state {
            State::Present(machine) => machine,
            State::Absent => panic!("absent"),
        }
    }

    #[test]
    fn rotate_key_replaces_the_key_and_revoke_is_terminal() {
        let state = run(State::Absent, create()).unwrap();
        let rotated = run(state, Command::RotateKey { public_key: PublicKey::from_bytes([2; 32]) }).unwrap();
        assert_eq!(machine(&rotated).public_key, PublicKey::from_bytes([2; 32]));
        let revoked = run(rotated, Command::Revoke { reason: None }).unwrap();
        assert_eq!(machine(&revoked).status, Status::Revoked);
        for command in [
            Command::RotateKey { public_key: PublicKey::from_bytes([3; 32]) },
            Command::Transfer { to: MemberId::from_uuid(Uuid::from_u128(5)) },
            Command::Flag { reason: FlagReason::OwnerRemoved },
            Command::Revoke { reason: None },
        ] {
            assert_eq!(run(revoked.clone(), command), Err("invalid_transition".to_owned()));
        }
        assert_eq!(run(revoked, create()), Err("already_exists".to_owned()));
        assert_eq!(run(State::Absent, Command::Revoke { reason: None }), Err("not_found".to_owned()));
    }

    #[test]
    fn transfer_clears_the_flag_and_flagging_twice_says_nothing_new() {
        let state = run(State::Absent, create()).unwrap();
        let flagged = run(state, Command::Flag { reason: FlagReason::OwnerRemoved }).unwrap();
        assert!(machine(&flagged).flagged.is_some());
        let events = decide(&flagged, Command::Flag { reason: FlagReason::OwnerRemoved }, &Context { now: NOW });
        assert_eq!(events, Ok(Vec::new()));
        let to = MemberId::from_uuid(Uuid::from_u128(6));
        let moved = run(flagged, Command::Transfer { to }).unwrap();
        assert_eq!((machine(&moved).owner, machine(&moved).flagged), (to, None));
    }

    #[test]
    fn a_public_key_round_trips_as_base64url_and_refuses_other_lengths() {
        let key = PublicKey::from_bytes([9; 32]);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<PublicKey>("\"AAAA\"").is_err());
        assert!(serde_json::from_str::<PublicKey>("\"not base64!\"").is_err());
    }
}
