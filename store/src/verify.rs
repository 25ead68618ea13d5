//! Offline verification of an export: proof, without trusting the server or its database, that
//! no event of the ledger was altered, removed, inserted or reordered, or the first position
//! where one was and why.
//!
//! An export is NDJSON. Line 1 is a header naming the signed checkpoint the export was made
//! under; each further line is one event: its position, the leaf hash recorded at append, (for an
//! organization's export) its inclusion proof, and the exact envelope bytes, always last:
//!
//! ```text
//! {"format":"credledger-export","version":1,"scope":"ledger","treeSize":N,"rootHash":"…","checkpoint":"…"}
//! {"position":1,"leafHash":"…","envelope":{…}}
//! {"position":2,"leafHash":"…","inclusionProof":["…"],"envelope":{…}}   (organization scope)
//! ```
//!
//! A **ledger** export holds positions `1..=treeSize`. Each line is checked for its place (its
//! position is its line number and the position its envelope states), its bytes (they hash to
//! the recorded leaf hash), and the sequences it continues (its stream's version, its
//! organization's `orgSequence`). The Merkle root of the first `n` leaves is kept up to date in
//! one pass; every `CheckpointSigned` event of the log is verified with the key and its root
//! compared with the root of the prefix it signs, so a mismatch is narrowed to the events between
//! the last checkpoint that matched and the first that does not. Finally the root of all the
//! events must be the header checkpoint's.
//!
//! In both scopes, no use of a credential may follow, in log order, the event that stopped it
//! (its revocation, disabling or recorded expiry): the writers refuse such a use where the log is
//! ordered, and the verifier names any it finds (see `lifecycle`).
//!
//! An **organization** export holds one organization's events up to the tree size: each is
//! proven part of the ledger by its inclusion proof against the header checkpoint, and their
//! `orgSequence` runs from 1 without a gap, so an omitted entry is named.
//!
//! Without a trusted checkpoint, the export is only proven consistent with the checkpoint it
//! carries (a real one, signed by the key, but possibly an old one): pass one obtained
//! independently — from monitor mode, or published by the operator — to rule out an older or
//! replaced export.
//!
//! Everything here is pure and streaming: it reads a [`BufRead`] in batches of lines, taken apart
//! (split, hashed, their few fields read) on every core and checked in order on the calling
//! thread (see `parallel`); it never holds more than a few batches, a compact range of the Merkle
//! tree, a bounded window of recent prefixes, and one counter per stream and per organization.

mod compact_range;

pub use compact_range::CompactRange;
mod ledger;
mod lifecycle;
mod line;
mod organization;
mod parallel;
#[cfg(test)]
mod tests;

use std::io::BufRead;

use credledger_domain::OrgId;

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointVerifier};
use crate::merkle::ProofError;
use line::{Header, LineRead};

/// The format name and version this release reads.
const FORMAT: &str = "credledger-export";
const VERSION: u32 = 1;

/// How often (in events) the progress callback is called.
const PROGRESS_EVERY: u64 = 4096;

/// What an export covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole ledger, positions `1..=tree_size`.
    Ledger,
    /// One organization's events up to the tree size.
    Organization(OrgId),
}

/// How far verification has got, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events verified so far.
    pub events: u64,
    /// The position of the last one (positions run up to `tree_size`).
    pub position: u64,
    /// The tree size of the export's checkpoint.
    pub tree_size: u64,
}

/// A verified export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub scope: Scope,
    /// Events verified.
    pub events: u64,
    /// Distinct streams among them (ledger scope; 0 for an organization's export).
    pub streams: u64,
    /// Distinct organizations among them.
    pub organizations: u64,
    /// `CheckpointSigned` events whose signature and root were checked against the events.
    pub checkpoints_checked: u64,
    /// `CheckpointSigned` events whose signature verified but whose tree size lay too far behind
    /// them for the one-pass window: not evidence of anything, only less precision in locating
    /// an alteration.
    pub checkpoints_unchecked: u64,
    /// The number of events the proven tree covers.
    pub tree_size: u64,
    /// Its root.
    pub root_hash: [u8; 32],
    /// The checkpoint the export was made under (its header's), verified with the key.
    pub made_under: Checkpoint,
    /// The trusted checkpoint it was checked against, if one was given.
    pub trusted: Option<Checkpoint>,
}

/// Why an export does not verify. The variants that name a position are tampering (or damage)
/// found at that position or within a range starting there; see [`VerifyError::position`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The export could not be read (a file or network error): nothing is proven either way.
    #[error("reading the export: {0}")]
    Read(#[source] std::io::Error),
    /// Line 1 is not the header of an export this release reads.
    #[error("not a credledger export: {0}")]
    Header(String),
    /// The checkpoint the header names is not signed by the ledger's key (or is malformed): the
    /// export proves nothing.
    #[error("the export's checkpoint cannot be trusted: {0}")]
    HeaderCheckpoint(#[source] CheckpointError),
    /// The header's tree size or root differ from those its own signed checkpoint states.
    #[error(
        "the export's header states tree size {header_size} but its signed checkpoint {checkpoint_size} (or their \
         roots differ): the header was altered"
    )]
    HeaderDisagrees { header_size: u64, checkpoint_size: u64 },
    /// The checkpoint given as trusted is not signed by the key (or is malformed).
    #[error("the trusted checkpoint does not verify: {0}")]
    TrustedCheckpoint(#[source] CheckpointError),
    /// An organization's export was made under another checkpoint than the trusted one, so its
    /// inclusion proofs cannot be checked against it.
    #[error(
        "the export was made under the checkpoint of tree size {export_size}, not under the trusted one (tree size \
         {trusted_size}): its proofs cannot be checked against the trusted checkpoint; export again under it"
    )]
    NotUnderTrusted { export_size: u64, trusted_size: u64 },
    /// A line is not an export line (or is longer than the limit).
    #[error(
        "line {line} of the export, where the event after position {after_position} belongs, cannot be read: {reason}"
    )]
    MalformedLine { line: u64, after_position: u64, reason: String },
    /// A line of a ledger export holds another position than its place: events were removed,
    /// inserted or reordered.
    #[error("{}", unexpected_position(*.expected, *.found))]
    UnexpectedPosition { expected: u64, found: u64 },
    /// An organization's export goes back or repeats a position.
    #[error("position {found} follows position {previous}: the export's events were reordered or repeated")]
    PositionNotIncreasing { previous: u64, found: u64 },
    /// A line lies beyond the tree size of the export's checkpoint.
    #[error("position {position} lies beyond the {tree_size} events of the export's checkpoint: it was added")]
    BeyondTreeSize { position: u64, tree_size: u64 },
    /// The envelope stored at a position states another one: events were moved or swapped.
    #[error(
        "the event at position {position} says it was recorded at position {envelope_position}: events were moved \
         or swapped"
    )]
    EnvelopeElsewhere { position: u64, envelope_position: u64 },
    /// An event's bytes do not hash to the leaf hash recorded when it was appended.
    #[error(
        "the event at position {position} was altered: its bytes hash to {}, not to the leaf hash {} recorded when \
         it was appended", hex::encode(.computed), hex::encode(.recorded)
    )]
    LeafHashMismatch { position: u64, recorded: [u8; 32], computed: [u8; 32] },
    /// An event's bytes are not an envelope (not JSON, not UTF-8, missing fields).
    #[error("the event at position {position} is not a readable envelope ({reason}): it was damaged")]
    MalformedEnvelope { position: u64, reason: String },
    /// A stream's versions skip or repeat: events of the stream were removed, inserted or reordered.
    #[error("{}", stream_gap(*.position, .stream, *.expected, *.found))]
    StreamVersionGap { position: u64, stream: String, expected: u64, found: u64 },
    /// An organization's `orgSequence` skips or repeats: its entries were omitted or reordered.
    #[error("{}", org_gap(*.position, *.org_id, *.expected, *.found))]
    OrgSequenceGap { position: u64, org_id: OrgId, expected: u64, found: u64 },
    /// An organization's export holds another organization's event (or a server-wide one).
    #[error("the event at position {position} belongs to {}, not to organization {expected}",
        .found.map_or_else(|| "no organization".to_owned(), |org| format!("organization {org}")))]
    WrongOrganization { position: u64, expected: OrgId, found: Option<OrgId> },
    /// An event of an organization's export is not proven part of the ledger.
    #[error("the event at position {position} is not proven part of the ledger of {tree_size} events: {error}")]
    InclusionProof { position: u64, tree_size: u64, error: ProofError },
    /// A `CheckpointSigned` event of the log does not hold a checkpoint signed by the key.
    #[error("the checkpoint recorded at position {position} cannot be trusted: {reason}")]
    EmbeddedCheckpointInvalid { position: u64, reason: String },
    /// A `CheckpointSigned` event claims to cover itself or events after it.
    #[error(
        "the checkpoint recorded at position {position} claims {tree_size} events, but only {} precede it",
        .position - 1
    )]
    EmbeddedCheckpointAhead { position: u64, tree_size: u64 },
    /// The events do not hash to the root a checkpoint recorded in the log signed for them.
    #[error(
        "the first {tree_size} events do not hash to the root signed by the checkpoint recorded at position \
         {position}: an event in positions {altered_from}..={tree_size} was altered, removed, inserted or reordered"
    )]
    EmbeddedCheckpointMismatch { position: u64, tree_size: u64, altered_from: u64 },
    /// The export ends before the tree size of its checkpoint.
    #[error(
        "the export ends after position {present} but its checkpoint covers {tree_size} events: events {}..={tree_size} \
         are missing", .present + 1
    )]
    Truncated { present: u64, tree_size: u64 },
    /// The events do not hash to the root of the export's own checkpoint.
    #[error(
        "the {tree_size} events do not hash to the root of the export's signed checkpoint: an event in positions \
         {altered_from}..={tree_size} was altered, removed, inserted or reordered"
    )]
    RootMismatch { tree_size: u64, altered_from: u64 },
    /// The first events do not hash to the root of the trusted checkpoint.
    #[error(
        "the first {tree_size} events do not hash to the root of the trusted checkpoint: an event in positions \
         {altered_from}..={tree_size} was altered, removed, inserted or reordered"
    )]
    TrustedMismatch { tree_size: u64, altered_from: u64 },
    /// A ledger export covers fewer events than the trusted checkpoint.
    #[error(
        "the export covers {export_size} events but the trusted checkpoint {trusted_size}: events {}..={trusted_size} \
         are missing from it", .export_size + 1
    )]
    ExportOlderThanTrusted { export_size: u64, trusted_size: u64 },
    /// A use of a credential is recorded after the event that stopped it (its revocation, its
    /// disabling, its recorded expiry): the log's order says it was accepted when it must not
    /// have been, or the event was moved.
    #[error(
        "the event at position {position} records a use of credential {credential} after {stopped_by} at position \
         {stopped_at}: no use may follow the event that stopped a credential"
    )]
    UseAfterStop { position: u64, credential: String, stopped_at: u64, stopped_by: String },
}

impl VerifyError {
    /// The first position found bad, or where the range holding the alteration starts; `None`
    /// when the export as a whole cannot be read or trusted.
    pub fn position(&self) -> Option<u64> {
        match self {
            Self::Read(_)
            | Self::Header(_)
            | Self::HeaderCheckpoint(_)
            | Self::HeaderDisagrees { .. }
            | Self::TrustedCheckpoint(_)
            | Self::NotUnderTrusted { .. } => None,
            Self::MalformedLine { after_position, .. } => Some(after_position + 1),
            // A repeat names the position shown twice: the insertion is at or before it.
            Self::UnexpectedPosition { expected, found } => Some(*expected.min(found)),
            Self::PositionNotIncreasing { found, .. } => Some(*found),
            Self::BeyondTreeSize { position, .. }
            | Self::EnvelopeElsewhere { position, .. }
            | Self::LeafHashMismatch { position, .. }
            | Self::MalformedEnvelope { position, .. }
            | Self::StreamVersionGap { position, .. }
            | Self::OrgSequenceGap { position, .. }
            | Self::WrongOrganization { position, .. }
            | Self::InclusionProof { position, .. }
            | Self::EmbeddedCheckpointInvalid { position, .. }
            | Self::EmbeddedCheckpointAhead { position, .. }
            | Self::UseAfterStop { position, .. } => Some(*position),
            Self::EmbeddedCheckpointMismatch { altered_from, .. }
            | Self::RootMismatch { altered_from, .. }
            | Self::TrustedMismatch { altered_from, .. } => Some(*altered_from),
            Self::Truncated { present, .. } => Some(present + 1),
            Self::ExportOlderThanTrusted { export_size, .. } => Some(export_size + 1),
        }
    }

    /// A stable name for the reason, for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read(_) => "read_failed",
            Self::Header(_) => "not_an_export",
            Self::HeaderCheckpoint(_) => "untrusted_export_checkpoint",
            Self::HeaderDisagrees { .. } => "header_disagrees_with_checkpoint",
            Self::TrustedCheckpoint(_) => "untrusted_checkpoint",
            Self::NotUnderTrusted { .. } => "not_made_under_trusted_checkpoint",
            Self::MalformedLine { .. } => "malformed_line",
            Self::UnexpectedPosition { .. } => "unexpected_position",
            Self::PositionNotIncreasing { .. } => "position_not_increasing",
            Self::BeyondTreeSize { .. } => "beyond_tree_size",
            Self::EnvelopeElsewhere { .. } => "envelope_position_mismatch",
            Self::LeafHashMismatch { .. } => "leaf_hash_mismatch",
            Self::MalformedEnvelope { .. } => "malformed_envelope",
            Self::StreamVersionGap { .. } => "stream_version_gap",
            Self::OrgSequenceGap { .. } => "org_sequence_gap",
            Self::WrongOrganization { .. } => "wrong_organization",
            Self::InclusionProof { .. } => "inclusion_proof_failed",
            Self::EmbeddedCheckpointInvalid { .. } => "recorded_checkpoint_invalid",
            Self::EmbeddedCheckpointAhead { .. } => "recorded_checkpoint_ahead",
            Self::EmbeddedCheckpointMismatch { .. } => "recorded_checkpoint_mismatch",
            Self::Truncated { .. } => "truncated",
            Self::RootMismatch { .. } => "root_mismatch",
            Self::TrustedMismatch { .. } => "trusted_checkpoint_mismatch",
            Self::ExportOlderThanTrusted { .. } => "export_older_than_trusted_checkpoint",
            Self::UseAfterStop { .. } => "use_after_stop",
        }
    }
}

fn unexpected_position(expected: u64, found: u64) -> String {
    if found > expected {
        let missing = if found == expected + 1 {
            format!("position {expected} is")
        } else {
            format!("positions {expected}..={} are", found - 1)
        };
        format!("{missing} missing: position {found} comes where position {expected} belongs (events were removed)")
    } else {
        format!(
            "position {found} comes again where position {expected} belongs: events were inserted, repeated or \
             reordered"
        )
    }
}

fn stream_gap(position: u64, stream: &str, expected: u64, found: u64) -> String {
    if found > expected {
        format!(
            "stream `{stream}` jumps to version {found} at position {position} where version {expected} was due: \
             events of the stream were removed"
        )
    } else {
        format!(
            "stream `{stream}` goes back to version {found} at position {position} where version {expected} was due: \
             events of the stream were inserted, repeated or reordered"
        )
    }
}

fn org_gap(position: u64, org: OrgId, expected: u64, found: u64) -> String {
    if found > expected {
        let missing = if found == expected + 1 {
            format!("entry {expected} is")
        } else {
            format!("entries {expected}..={} are", found - 1)
        };
        format!(
            "organization {org}: {missing} missing before position {position} (its orgSequence jumps from {} to \
             {found}): entries were omitted",
            expected - 1
        )
    } else {
        format!(
            "organization {org}: orgSequence goes back to {found} at position {position} where {expected} was due: \
             entries were inserted, repeated or reordered"
        )
    }
}

/// What both scopes share: the verified header checkpoint, the trusted one, and the progress
/// callback.
struct Context<'p> {
    header: Checkpoint,
    trusted: Option<Checkpoint>,
    key: &'p CheckpointVerifier,
    progress: &'p mut dyn FnMut(Progress),
    /// Lines read so far, the header included (for messages about unreadable lines).
    lines: u64,
}

impl Context<'_> {
    fn report(&mut self, events: u64, position: u64, done: bool) {
        if done || events.is_multiple_of(PROGRESS_EVERY) {
            (self.progress)(Progress { events, position, tree_size: self.header.tree_size });
        }
    }
}

/// Verifies an export read from `reader` against the ledger's `key`, and against `trusted_note`
/// (the signed note of a checkpoint obtained independently) when given. `progress` is called
/// every few thousand events and once at the end.
///
/// Returns the counts of a verified export, or the first thing found wrong.
pub fn verify_export(
    mut reader: impl BufRead,
    key: &CheckpointVerifier,
    trusted_note: Option<&str>,
    mut progress: impl FnMut(Progress),
) -> Result<Verified, VerifyError> {
    let trusted = trusted_note.map(|note| key.verify(note)).transpose().map_err(VerifyError::TrustedCheckpoint)?;
    let mut buf = Vec::with_capacity(64 << 10);
    match line::next_line(&mut reader, &mut buf).map_err(VerifyError::Read)? {
        LineRead::Line => {}
        LineRead::TooLong => return Err(VerifyError::Header("the first line is too long".to_owned())),
        LineRead::End => return Err(VerifyError::Header("the export is empty".to_owned())),
    }
    let header: Header = serde_json::from_slice(&buf).map_err(|error| VerifyError::Header(error.to_string()))?;
    if header.format != FORMAT {
        return Err(VerifyError::Header(format!("format `{}`, expected `{FORMAT}`", header.format)));
    }
    if header.version != VERSION {
        return Err(VerifyError::Header(format!(
            "format version {}, this release reads version {VERSION}",
            header.version
        )));
    }
    let scope = match (header.scope.as_str(), &header.org_id) {
        ("ledger", _) => Scope::Ledger,
        ("organization", Some(org)) => {
            Scope::Organization(OrgId::parse(org).map_err(|error| VerifyError::Header(format!("orgId: {error}")))?)
        }
        ("organization", None) => return Err(VerifyError::Header("an organization export without orgId".to_owned())),
        (other, _) => return Err(VerifyError::Header(format!("unknown scope `{other}`"))),
    };
    let checkpoint = key.verify(&header.checkpoint).map_err(VerifyError::HeaderCheckpoint)?;
    if line::hash(&header.root_hash) != Some(checkpoint.root_hash) || header.tree_size != checkpoint.tree_size {
        return Err(VerifyError::HeaderDisagrees {
            header_size: header.tree_size,
            checkpoint_size: checkpoint.tree_size,
        });
    }
    let mut context = Context { header: checkpoint, trusted, key, progress: &mut progress, lines: 1 };
    match scope {
        Scope::Ledger => ledger::verify(&mut reader, &mut buf, &mut context),
        Scope::Organization(org) => organization::verify(&mut reader, &mut buf, &mut context, org),
    }
}
