//! What all credential kinds share: their kind, their lifecycle status, why they are flagged.

use serde::{Deserialize, Serialize};

/// The kinds of credential the ledger manages. All but the personal token are *machine
/// credentials*, which can never call routes that manage humans or other credential kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    PersonalToken,
    MachineToken,
    ServiceCredential,
    Machine,
}

impl CredentialKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PersonalToken => "personal_token",
            Self::MachineToken => "machine_token",
            Self::ServiceCredential => "service_credential",
            Self::Machine => "machine",
        }
    }

    pub const fn is_machine(self) -> bool {
        !matches!(self, Self::PersonalToken)
    }

    /// The prefix of the lifecycle stream of a credential of this kind (DESIGN.md §3).
    pub const fn stream_prefix(self) -> &'static str {
        match self {
            Self::PersonalToken => "pat-",
            Self::MachineToken => "mt-",
            Self::ServiceCredential => "sc-",
            Self::Machine => "mi-",
        }
    }
}

/// The lifecycle status of a credential as recorded by its events. Expiry is also decided by the
/// clock: see [`Status::effective`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Disabled,
    Expired,
    Revoked,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// The status at `now`: an active credential whose expiry has passed is expired even before
    /// the sweeper has recorded it.
    #[must_use]
    pub fn effective(
        self,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        match (self, expires_at) {
            (Self::Active, Some(at)) if at <= now => Self::Expired,
            (status, _) => status,
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            "expired" => Some(Self::Expired),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// Why a credential was flagged for attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagReason {
    /// Its owner was removed from the organization.
    OwnerRemoved,
}

impl FlagReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OwnerRemoved => "owner_removed",
        }
    }
}

/// A flag on a credential: it still works, but needs a new owner or revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    pub reason: FlagReason,
    #[serde(with = "crate::time_format")]
    pub at: chrono::DateTime<chrono::Utc>,
}
