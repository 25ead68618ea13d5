//! credledger's domain: the vocabulary of the ledger, its events, the deciders that say which
//! events a command produces, and the access policy.
//!
//! Everything here is a pure function of its arguments: no IO, no async, no clock, no randomness.
//! Time and random bytes come in as arguments, so every rule is testable as a table.

mod actor;
pub mod credential;
mod error;
pub mod event;
mod ids;
pub mod ledger;
pub mod machine_identity;
pub mod machine_key;
pub mod machine_token;
pub mod names;
pub mod organization;
pub mod personal_token;
pub mod policy;
pub mod secrets;
pub mod service_credential;
pub mod time_format;
pub mod token;
pub mod usage;
pub mod values;

pub use actor::{Actor, ActorKind, RequestMeta};
pub use credential::{CredentialKind, Flag, FlagReason, Status};
pub use error::DomainError;
pub use event::{DomainEvent, SCHEMA_VERSION};
pub use ids::{CredentialId, EventId, InvalidId, MemberId, OrgId, ProjectId};
