//! The checks of an organization's export: each event proven part of the ledger by its inclusion
//! proof against the export's checkpoint, each the organization's own, in increasing positions,
//! and its `orgSequence` running from 1 without a gap.

use std::io::BufRead;

use credledger_domain::OrgId;

use super::lifecycle::Lifecycles;
use super::parallel::{self, Parsed};
use super::{Context, Scope, Verified, VerifyError};
use crate::merkle::verify_inclusion;

pub(super) fn verify(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    context: &mut Context<'_>,
    org: OrgId,
) -> Result<Verified, VerifyError> {
    let (tree_size, root) = (context.header.tree_size, context.header.root_hash);
    // The proofs lead to the header's root: a trusted checkpoint must be that very one.
    if let Some(trusted) = &context.trusted
        && (trusted.tree_size != tree_size || trusted.root_hash != root)
    {
        return Err(VerifyError::NotUnderTrusted { export_size: tree_size, trusted_size: trusted.tree_size });
    }
    let (mut previous, mut events) = (0, 0);
    let mut lifecycles = Lifecycles::default();
    parallel::for_each_line(reader, buf, |parsed| {
        context.lines += 1;
        let line_number = context.lines;
        let malformed =
            |reason: String| VerifyError::MalformedLine { line: line_number, after_position: previous, reason };
        let line = match parsed {
            Parsed::TooLong => return Err(malformed(parallel::too_long())),
            Parsed::Unreadable(error) => return Err(VerifyError::Read(error)),
            Parsed::WorkerFailed => return Err(parallel::worker_lost()),
            Parsed::Malformed(reason) => return Err(malformed(reason)),
            Parsed::Line(line) => line,
        };
        let position = line.position;
        if position <= previous {
            return Err(VerifyError::PositionNotIncreasing { previous, found: position });
        }
        if position > tree_size {
            return Err(VerifyError::BeyondTreeSize { position, tree_size });
        }
        let recorded = line.recorded.ok_or_else(|| malformed("its leafHash is not a hex SHA-256 hash".to_owned()))?;
        let computed = line.computed;
        if computed != recorded {
            return Err(VerifyError::LeafHashMismatch { position, recorded, computed });
        }
        let proof = line
            .proof
            .ok_or_else(|| malformed("it has no inclusionProof".to_owned()))?
            .map_err(|()| malformed("its inclusionProof holds a hash that is not hex".to_owned()))?;
        verify_inclusion(&computed, position - 1, tree_size, &proof, &root)
            .map_err(|error| VerifyError::InclusionProof { position, tree_size, error })?;
        let fields = line.fields.map_err(|reason| VerifyError::MalformedEnvelope { position, reason })?;
        if fields.position != position {
            return Err(VerifyError::EnvelopeElsewhere { position, envelope_position: fields.position });
        }
        if fields.org_id != Some(org) {
            return Err(VerifyError::WrongOrganization { position, expected: org, found: fields.org_id });
        }
        let expected = events + 1;
        match fields.org_sequence {
            Some(found) if found == expected => {}
            Some(found) => return Err(VerifyError::OrgSequenceGap { position, org_id: org, expected, found }),
            None => {
                return Err(VerifyError::MalformedEnvelope {
                    position,
                    reason: "an organization's event without orgSequence".to_owned(),
                });
            }
        }
        lifecycles.observe(position, &fields.stream, &fields.event_type)?;
        previous = position;
        events += 1;
        context.report(events, position, false);
        Ok(())
    })?;
    context.report(events, previous, true);
    Ok(Verified {
        scope: Scope::Organization(org),
        events,
        streams: 0,
        organizations: 1,
        checkpoints_checked: 0,
        checkpoints_unchecked: 0,
        tree_size,
        root_hash: root,
        made_under: context.header.clone(),
        trusted: context.trusted.clone(),
    })
}
