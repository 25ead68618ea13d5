//! The `ledger` stream: the ledger's signed checkpoints, recorded in the log they commit to.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The stream every checkpoint is appended to.
pub const STREAM: &str = "ledger";

/// The event type of a checkpoint.
pub const CHECKPOINT_SIGNED: &str = "CheckpointSigned";

/// A checkpoint the server signed: the log's first `tree_size` events have Merkle root
/// `root_hash`. `note` is the signed note itself (C2SP signed-note text), which any verifier
/// checks with the ledger's public key; the other fields repeat what it states, for queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointSigned {
    pub origin: String,
    pub tree_size: u64,
    /// Hex.
    pub root_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub signed_at: OffsetDateTime,
    pub note: String,
}
