//! credledger's domain: the vocabulary of the ledger, its events, the deciders that say which
//! events a command produces, and the access policy.
//!
//! Everything here is a pure function of its arguments: no IO, no async, no clock, no randomness.
//! Time and random bytes come in as arguments, so every rule is testable as a table.

mod actor;
mod ids;
pub mod token;
pub mod values;

pub use actor::{Actor, ActorKind, RequestMeta};
pub use ids::{CredentialId, EventId, InvalidId, MemberId, OrgId, ProjectId};
