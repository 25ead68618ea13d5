//! The `ledger` stream: the ledger's signed checkpoints, recorded in the log they commit to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    #[serde(with = "crate::time_format")]
    pub signed_at: DateTime<Utc>,
    pub note: String,
}

/// The event type of an operator's acceptance of a log that lost events.
pub const LOG_ROLLBACK_ACCEPTED: &str = "LogRollbackAccepted";

/// An operator accepted that the log lost its events after `log_head` (it was restored from an
/// older copy, or its last writes did not survive the storage) and that the ledger goes on from
/// the shorter log. Events up to `lost_through` had been acknowledged (applied by a node's read
/// models, or covered by a signed checkpoint); positions `log_head + 1` onwards are given to new
/// events from this one on. Recorded in the log itself, so an auditor sees the decision where a
/// monitor finds the earlier checkpoint no longer consistent with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogRollbackAccepted {
    /// The log's last position when the loss was accepted.
    pub log_head: u64,
    /// The last position known to have been acknowledged before the loss.
    pub lost_through: u64,
    /// The largest tree size the node's read models had seen signed (0: none).
    pub signed_tree_size: u64,
    /// Why the operator accepted the loss, in their words.
    pub reason: String,
    #[serde(with = "crate::time_format")]
    pub accepted_at: DateTime<Utc>,
}
