//! Identifiers of the ledger's aggregates.
//!
//! Every id is a UUID chosen by the caller (the domain has no randomness); new ids are version 7
//! so that they sort by creation time. Parsing accepts any well-formed UUID so that ids minted by
//! older releases keep working.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} id")]
pub struct InvalidId {
    pub kind: &'static str,
    pub input: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID the caller generated (use a v7 UUID for new ids).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub fn parse(input: &str) -> Result<Self, InvalidId> {
                Uuid::try_parse(input.trim()).map(Self).map_err(|_| InvalidId {
                    kind: $kind,
                    input: input.chars().take(64).collect(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// An organization: the tenant. Nothing crosses organizations.
    OrgId,
    "organization"
);
uuid_id!(
    /// A human member of an organization.
    MemberId,
    "member"
);
uuid_id!(
    /// A credential of any kind: PAT, machine token, service credential, machine identity.
    CredentialId,
    "credential"
);
uuid_id!(
    /// A project of an organization.
    ProjectId,
    "project"
);
uuid_id!(
    /// The identity of one event: its idempotency key.
    EventId,
    "event"
);
