//! The checks of a whole-ledger export, in one pass: every line in its place with its own bytes,
//! every stream and organization sequence contiguous, every checkpoint recorded in the log
//! matching the events before it, and the root of them all the header checkpoint's.

use std::collections::HashMap;
use std::io::BufRead;

use credledger_domain::OrgId;

use super::compact_range::RecentPrefixes;
use super::lifecycle::Lifecycles;
use super::line::{self, CheckpointPayload};
use super::parallel::{self, Parsed};
use super::{Context, Scope, Verified, VerifyError};
use crate::checkpoint::CheckpointVerifier;

pub(super) fn verify(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    context: &mut Context<'_>,
) -> Result<Verified, VerifyError> {
    let tree_size = context.header.tree_size;
    let trusted = context.trusted.clone();
    let mut prefixes = RecentPrefixes::new();
    // The version, and the orgSequence, each stream and organization must show next.
    let mut streams: HashMap<String, u64> = HashMap::new();
    let mut organizations: HashMap<OrgId, u64> = HashMap::new();
    let mut lifecycles = Lifecycles::default();
    let (mut checked, mut unchecked) = (0, 0);
    // The largest prefix whose root a checkpoint proved: an alteration found later lies after it.
    let mut proven = 0;
    parallel::for_each_line(reader, buf, |parsed| {
        context.lines += 1;
        let position = prefixes.size() + 1;
        let line_number = context.lines;
        let malformed =
            |reason: String| VerifyError::MalformedLine { line: line_number, after_position: position - 1, reason };
        let line = match parsed {
            Parsed::TooLong => return Err(malformed(parallel::too_long())),
            Parsed::Unreadable(error) => return Err(VerifyError::Read(error)),
            Parsed::WorkerFailed => return Err(parallel::worker_lost()),
            Parsed::Malformed(reason) => return Err(malformed(reason)),
            Parsed::Line(line) => line,
        };
        if line.position != position {
            return Err(VerifyError::UnexpectedPosition { expected: position, found: line.position });
        }
        if position > tree_size {
            return Err(VerifyError::BeyondTreeSize { position, tree_size });
        }
        let recorded = line.recorded.ok_or_else(|| malformed("its leafHash is not a hex SHA-256 hash".to_owned()))?;
        let computed = line.computed;
        if computed != recorded {
            return Err(VerifyError::LeafHashMismatch { position, recorded, computed });
        }
        let fields = line.fields.map_err(|reason| VerifyError::MalformedEnvelope { position, reason })?;
        if fields.position != position {
            return Err(VerifyError::EnvelopeElsewhere { position, envelope_position: fields.position });
        }
        let due = streams.get(fields.stream.as_ref()).copied().unwrap_or(0);
        if fields.version != due {
            return Err(VerifyError::StreamVersionGap {
                position,
                stream: fields.stream.into_owned(),
                expected: due,
                found: fields.version,
            });
        }
        match streams.get_mut(fields.stream.as_ref()) {
            Some(next) => *next += 1,
            None => {
                streams.insert(fields.stream.clone().into_owned(), 1);
            }
        }
        match (fields.org_id, fields.org_sequence) {
            (Some(org_id), Some(found)) => {
                let next = organizations.entry(org_id).or_insert(1);
                if found != *next {
                    return Err(VerifyError::OrgSequenceGap { position, org_id, expected: *next, found });
                }
                *next += 1;
            }
            (None, None) => {}
            _ => {
                return Err(VerifyError::MalformedEnvelope {
                    position,
                    reason: "orgId and orgSequence must be both present or both absent".to_owned(),
                });
            }
        }
        prefixes.push(computed);
        lifecycles.observe(position, &fields.stream, &fields.event_type)?;

        if let Some(envelope) = line.checkpoint_envelope.as_deref().filter(|_| fields.is_checkpoint()) {
            match check_recorded_checkpoint(envelope, position, context.key, &prefixes, proven)? {
                Some(size) => {
                    checked += 1;
                    proven = proven.max(size);
                }
                None => unchecked += 1,
            }
        }
        if let Some(trusted) = trusted.as_ref().filter(|trusted| trusted.tree_size == position) {
            if prefixes.root() != trusted.root_hash {
                return Err(VerifyError::TrustedMismatch { tree_size: position, altered_from: proven + 1 });
            }
            proven = proven.max(position);
        }
        context.report(position, position, false);
        Ok(())
    })?;

    let present = prefixes.size();
    context.report(present, present, true);
    if present < tree_size {
        return Err(VerifyError::Truncated { present, tree_size });
    }
    let root_hash = prefixes.root();
    if root_hash != context.header.root_hash {
        return Err(VerifyError::RootMismatch { tree_size, altered_from: proven + 1 });
    }
    if let Some(trusted) = trusted.as_ref().filter(|trusted| trusted.tree_size > tree_size) {
        return Err(VerifyError::ExportOlderThanTrusted { export_size: tree_size, trusted_size: trusted.tree_size });
    }
    Ok(Verified {
        scope: Scope::Ledger,
        events: present,
        streams: streams.len() as u64,
        organizations: organizations.len() as u64,
        checkpoints_checked: checked,
        checkpoints_unchecked: unchecked,
        tree_size,
        root_hash,
        made_under: context.header.clone(),
        trusted,
    })
}

/// Checks a `CheckpointSigned` event at `position`: its note is signed by the key, its payload
/// agrees with the note, and its root is that of the prefix it covers. Returns the tree size it
/// proved, or `None` when that prefix lies too far back to be checked in one pass.
fn check_recorded_checkpoint(
    envelope: &[u8],
    position: u64,
    key: &CheckpointVerifier,
    prefixes: &RecentPrefixes,
    proven: u64,
) -> Result<Option<u64>, VerifyError> {
    let invalid = |reason: String| VerifyError::EmbeddedCheckpointInvalid { position, reason };
    let payload = CheckpointPayload::decode(envelope).map_err(|error| invalid(format!("its payload: {error}")))?;
    let checkpoint = key.verify(&payload.note).map_err(|error| invalid(error.to_string()))?;
    if payload.tree_size != checkpoint.tree_size || line::hash(&payload.root_hash) != Some(checkpoint.root_hash) {
        return Err(invalid("its payload states another tree size or root than its signed note".to_owned()));
    }
    let tree_size = checkpoint.tree_size;
    if tree_size >= position {
        return Err(VerifyError::EmbeddedCheckpointAhead { position, tree_size });
    }
    match prefixes.root_at(tree_size) {
        None => Ok(None),
        Some(root) if root == checkpoint.root_hash => Ok(Some(tree_size)),
        Some(_) => Err(VerifyError::EmbeddedCheckpointMismatch {
            position,
            tree_size,
            altered_from: if proven < tree_size { proven + 1 } else { 1 },
        }),
    }
}
