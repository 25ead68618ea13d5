//! Who caused an event, and through which request.

use serde::{Deserialize, Serialize};

/// The kind of principal that caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Member,
    MachineToken,
    ServiceCredential,
    Machine,
    /// The server itself: first start, sweepers, process managers, checkpoint signing.
    System,
}

impl ActorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::MachineToken => "machine_token",
            Self::ServiceCredential => "service_credential",
            Self::Machine => "machine",
            Self::System => "system",
        }
    }
}

/// The principal recorded in every event's envelope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    /// The member or credential id; for `system`, the name of the component (e.g. `sweeper`).
    pub id: String,
}

impl Actor {
    pub fn system(component: &str) -> Self {
        Self { kind: ActorKind::System, id: component.to_owned() }
    }

    pub fn member(id: crate::MemberId) -> Self {
        Self { kind: ActorKind::Member, id: id.to_string() }
    }
}

/// The HTTP request that caused an event, where there was one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}
