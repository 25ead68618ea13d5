//! Admission of one group-commit batch: which of its appends go ahead, and where their events
//! land.
//!
//! Every check runs inside the writer's immediate transaction, against the log as committed plus
//! an overlay of what earlier appends of the same batch will add. So the appends of a batch are
//! judged exactly as if they had been committed one by one in arrival order, and a refused append
//! never touches the others. Positions, versions and organization sequences are handed out here,
//! inside the transaction that commits them, which is what keeps them gap-free.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use credledger_domain::{EventId, OrgId};

use crate::envelope::Envelope;
use crate::{AppendResult, Basis, ExpectedVersion, NewEvent, RawEvent, RecordedEvent, StoreError, leaf_hash};

/// What one append is answered: where it landed, or why it was refused.
pub(crate) type Outcome = Result<AppendResult, StoreError>;

/// One append waiting for its backend's writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// When set, the append goes ahead only if no event of the basis stream came after it.
    pub basis: Option<Basis>,
    pub reply: tokio::sync::oneshot::Sender<Outcome>,
}

/// What every backend's `append` and `append_on_basis` do: refuses what needs no log, queues the
/// append for the backend's writer (as `wrap` makes it that writer's message), and waits for the
/// answer.
pub(crate) async fn submit<M: Send>(
    writer: &tokio::sync::mpsc::Sender<M>,
    wrap: fn(AppendRequest) -> M,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    basis: Option<Basis>,
) -> Outcome {
    crate::check_append(stream, &events)?;
    if let Some(basis) = &basis {
        crate::check_stream_name(&basis.stream)?;
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = AppendRequest { stream: stream.to_owned(), expected, events, basis, reply };
    writer.send(wrap(request)).await.map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

/// Where an already recorded (or already admitted) event sits.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub event_type: String,
}

/// The committed log as a batch sees it inside the backend's write transaction: the facts that
/// admission needs beyond the batch itself. Each is asked at most once per stream or
/// organization per batch (the batch keeps the answers in its overlay).
pub(crate) trait Committed {
    /// The version of the stream's last event; `None` when it has none.
    fn stream_version(&mut self, stream: &str) -> Result<Option<u64>, StoreError>;
    /// The sequence number of the organization's last event; 0 when it has none.
    fn org_sequence(&mut self, org: OrgId) -> Result<u64, StoreError>;
    /// The position of the stream's last event; `None` when it has none. Asked only for the
    /// basis of an append (see [`Basis`]).
    fn last_position(&mut self, stream: &str) -> Result<Option<u64>, StoreError>;
}

/// One event ready to insert, borrowing from the append that carried it.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    pub position: i64,
    pub stream: &'a str,
    pub version: i64,
    pub org_id: Option<OrgId>,
    pub org_sequence: Option<i64>,
    pub event_id: EventId,
    pub event_type: &'a str,
    pub envelope: Vec<u8>,
    pub leaf_hash: [u8; 32],
    /// The event as appended (`None` for an imported row) and the batch's clock: with the row,
    /// everything the envelope says.
    pub source: Option<&'a NewEvent>,
    pub recorded_at: DateTime<Utc>,
}

impl Row<'_> {
    /// The event as a read of the log would decode it from the envelope, built from what the
    /// envelope was encoded from instead: a just-committed event reaches this process's
    /// subscriptions without a read or a parse (see [`crate::recent`]).
    pub(crate) fn recorded(&self, envelope: Arc<[u8]>) -> Option<RecordedEvent> {
        let source = self.source?;
        Some(RecordedEvent {
            position: self.position as u64,
            stream: self.stream.to_owned(),
            version: self.version as u64,
            org_sequence: self.org_sequence.map(|sequence| sequence as u64),
            event_id: self.event_id,
            event_type: self.event_type.to_owned(),
            schema_version: source.schema_version,
            org_id: self.org_id,
            occurred_at: source.occurred_at,
            recorded_at: self.recorded_at,
            actor: source.actor.clone(),
            request: source.request.clone(),
            payload: source.payload.clone(),
            leaf_hash: self.leaf_hash,
            envelope,
        })
    }
}

/// The overlay of one batch over the committed log.
#[derive(Debug)]
pub(crate) struct Batch<'a> {
    /// The last position handed out so far.
    head: u64,
    recorded_at: DateTime<Utc>,
    /// Each stream's last version as the batch leaves it; `None` for a stream without events.
    versions: HashMap<&'a str, Option<u64>>,
    /// Each organization's last sequence number as the batch leaves it; 0 for none yet.
    org_sequences: HashMap<OrgId, u64>,
    /// The position of each basis stream's last event as the batch leaves it, and of each stream
    /// the batch wrote to; `None` for a stream without events.
    last_positions: HashMap<&'a str, Option<u64>>,
    /// The batch's event ids found in the log, plus those admitted so far in this batch.
    recorded: HashMap<EventId, Recorded>,
    rows: Vec<Row<'a>>,
}

impl<'a> Batch<'a> {
    /// Starts a batch at the committed head; `recorded` says where those of the batch's event ids
    /// that the log already holds sit.
    pub(crate) fn begin(head: u64, recorded: HashMap<EventId, Recorded>, recorded_at: DateTime<Utc>) -> Self {
        Self {
            head,
            recorded_at,
            versions: HashMap::new(),
            org_sequences: HashMap::new(),
            last_positions: HashMap::new(),
            recorded,
            rows: Vec::new(),
        }
    }

    /// Judges one append. The outer error fails the whole batch (the database failed); the inner
    /// one refuses only this append.
    pub(crate) fn admit(
        &mut self,
        log: &mut impl Committed,
        stream: &'a str,
        expected: ExpectedVersion,
        events: &'a [NewEvent],
        basis: Option<&'a Basis>,
    ) -> Result<Result<AppendResult, StoreError>, StoreError> {
        if let Some(outcome) = self.earlier_append(stream, events) {
            return Ok(outcome);
        }
        if let Some(basis) = basis {
            let last = if let Some(last) = self.last_positions.get(basis.stream.as_str()) {
                *last
            } else {
                let last = log.last_position(&basis.stream)?;
                self.last_positions.insert(&basis.stream, last);
                last
            };
            if let Some(position) = last.filter(|last| *last > basis.position) {
                return Ok(Err(StoreError::Superseded {
                    stream: basis.stream.clone(),
                    basis: basis.position,
                    position,
                }));
            }
        }
        let current = self.stream_version(log, stream)?;
        let admitted = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exact(version) => current == Some(version),
        };
        if !admitted {
            return Ok(Err(StoreError::WrongExpectedVersion { stream: stream.to_owned(), expected, actual: current }));
        }

        // Build every row before changing the overlay, so that an event that cannot be encoded
        // refuses its append without leaving half of it behind.
        let first_version = current.map_or(0, |version| version + 1);
        let mut sequences: Vec<(OrgId, u64)> = Vec::new();
        let mut rows = Vec::with_capacity(events.len());
        for (offset, event) in (0u64..).zip(events) {
            let position = self.head + 1 + offset;
            let version = first_version + offset;
            let org_sequence = match event.org_id {
                None => None,
                Some(org) => Some(self.next_org_sequence(log, &mut sequences, org)?),
            };
            let envelope = Envelope {
                position,
                stream,
                version,
                org_id: event.org_id,
                org_sequence,
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                occurred_at: event.occurred_at,
                recorded_at: self.recorded_at,
                actor: &event.actor,
                request: event.request.as_ref(),
                payload: &event.payload,
            }
            .encode();
            let envelope = match envelope {
                Ok(envelope) => envelope,
                Err(error) => return Ok(Err(StoreError::Encode(error))),
            };
            rows.push(Row {
                position: position as i64,
                stream,
                version: version as i64,
                org_id: event.org_id,
                org_sequence: org_sequence.map(|sequence| sequence as i64),
                event_id: event.event_id,
                event_type: &event.event_type,
                leaf_hash: leaf_hash(&envelope),
                envelope,
                source: Some(event),
                recorded_at: self.recorded_at,
            });
        }

        let count = events.len() as u64;
        let result = AppendResult {
            first_position: self.head + 1,
            last_position: self.head + count,
            next_expected_version: first_version + count - 1,
        };
        for (offset, event) in (0u64..).zip(events) {
            let recorded = Recorded {
                position: self.head + 1 + offset,
                stream: stream.to_owned(),
                version: first_version + offset,
                event_type: event.event_type.clone(),
            };
            self.recorded.insert(event.event_id, recorded);
        }
        self.head = result.last_position;
        self.versions.insert(stream, Some(result.next_expected_version));
        self.last_positions.insert(stream, Some(result.last_position));
        self.org_sequences.extend(sequences);
        self.rows.extend(rows);
        Ok(Ok(result))
    }

    /// The rows that import `events` (decoded from a log being moved, see [`imported`]) as they
    /// are: same positions, bytes and hashes.
    pub(crate) fn import_rows(events: &'a [RecordedEvent]) -> Vec<Row<'a>> {
        events
            .iter()
            .map(|event| Row {
                position: event.position as i64,
                stream: &event.stream,
                version: event.version as i64,
                org_id: event.org_id,
                org_sequence: event.org_sequence.map(|sequence| sequence as i64),
                event_id: event.event_id,
                event_type: &event.event_type,
                envelope: event.envelope.to_vec(),
                leaf_hash: event.leaf_hash,
                source: None,
                recorded_at: event.recorded_at,
            })
            .collect()
    }

    /// The rows to insert and the head they leave; `None` when every append was refused or was
    /// a retry, so there is nothing to commit.
    pub(crate) fn into_rows(self) -> Option<(Vec<Row<'a>>, u64)> {
        (!self.rows.is_empty()).then_some((self.rows, self.head))
    }

    /// `Some` when an event id of the append is already recorded: the original result when the
    /// append is a retry of the one that recorded them (every id, same stream and types, same
    /// order, consecutive), otherwise the refusal.
    fn earlier_append(&self, stream: &str, events: &[NewEvent]) -> Option<Result<AppendResult, StoreError>> {
        let hits: Vec<Option<&Recorded>> = events.iter().map(|event| self.recorded.get(&event.event_id)).collect();
        let (index, first) = hits.iter().enumerate().find_map(|(index, hit)| hit.map(|hit| (index, hit)))?;
        let retry = index == 0
            && hits.iter().zip(events).zip(0u64..).all(|((hit, event), offset)| {
                hit.is_some_and(|hit| {
                    hit.stream == stream
                        && hit.event_type == event.event_type
                        && hit.position == first.position + offset
                        && hit.version == first.version + offset
                })
            });
        if !retry {
            return Some(Err(StoreError::DuplicateEventId {
                event_id: events[index].event_id,
                stream: first.stream.clone(),
            }));
        }
        let count = events.len() as u64;
        Some(Ok(AppendResult {
            first_position: first.position,
            last_position: first.position + count - 1,
            next_expected_version: first.version + count - 1,
        }))
    }

    fn stream_version(&mut self, log: &mut impl Committed, stream: &'a str) -> Result<Option<u64>, StoreError> {
        if let Some(version) = self.versions.get(stream) {
            return Ok(*version);
        }
        let version = log.stream_version(stream)?;
        self.versions.insert(stream, version);
        Ok(version)
    }

    /// The next sequence number of `org` for an event of the append being built. `pending` holds
    /// the numbers the append has taken so far; they reach the overlay only if it is admitted.
    fn next_org_sequence(
        &mut self,
        log: &mut impl Committed,
        pending: &mut Vec<(OrgId, u64)>,
        org: OrgId,
    ) -> Result<u64, StoreError> {
        if let Some((_, last)) = pending.iter_mut().find(|(seen, _)| *seen == org) {
            *last += 1;
            return Ok(*last);
        }
        let next = self.org_sequence(log, org)? + 1;
        pending.push((org, next));
        Ok(next)
    }

    /// The organization's last sequence number: the overlay's, or the log's (0 for none).
    fn org_sequence(&mut self, log: &mut impl Committed, org: OrgId) -> Result<u64, StoreError> {
        if let Some(sequence) = self.org_sequences.get(&org) {
            return Ok(*sequence);
        }
        let sequence = log.org_sequence(org)?;
        self.org_sequences.insert(org, sequence);
        Ok(sequence)
    }
}

/// Decodes rows read from another log for import, refusing the import unless every row is whole
/// (its envelope decodes, names its row's position, and hashes to its stored leaf hash) and the
/// rows run gap-free from `head + 1`, where the importing log ends. Returns the decoded events.
pub(crate) fn imported(rows: &[RawEvent], head: u64) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = Vec::with_capacity(rows.len());
    for (row, expected) in rows.iter().zip(head + 1..) {
        let corrupt = |reason: String| StoreError::Corrupt { position: row.position, reason };
        if row.position != expected {
            return Err(corrupt(format!("an import must continue the log at position {expected}")));
        }
        if row.leaf_hash.as_slice() != leaf_hash(&row.envelope) {
            return Err(corrupt("the envelope does not hash to its leaf hash".to_owned()));
        }
        let position = i64::try_from(row.position).map_err(|_| corrupt("position out of range".to_owned()))?;
        events.push(crate::envelope::decode_stored(position, &row.envelope, &row.leaf_hash)?);
    }
    Ok(events)
}

/// Splits `items` into chunks whose lengths are powers of two (the largest that fits, at most
/// `max`, itself a power of two), so that a statement built for a chunk's length is one of a
/// handful the connection's statement cache keeps prepared, whatever the batch sizes.
pub(crate) fn power_of_two_chunks<T>(mut items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let len = items.len().min(max);
        let len = 1 << (usize::BITS - 1 - len.leading_zeros());
        let (chunk, rest) = items.split_at(len);
        items = rest;
        Some(chunk)
    })
}

/// `count` copies of `item`, comma-separated: the variable part of a multi-row statement, whose
/// fixed part stays in its `.sql` file.
pub(crate) fn repeated(item: &str, count: usize) -> String {
    vec![item; count].join(", ")
}

/// A stored integer that must not be negative; a negative one means a damaged file.
pub(crate) fn unsigned(value: i64, position: u64, reason: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt { position, reason: reason.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::power_of_two_chunks;

    #[test]
    fn chunks_are_powers_of_two_in_order_and_cover_everything() {
        for len in 0..600usize {
            let items: Vec<usize> = (0..len).collect();
            let chunks: Vec<&[usize]> = power_of_two_chunks(&items, 256).collect();
            assert!(chunks.iter().all(|chunk| chunk.len().is_power_of_two() && chunk.len() <= 256), "{len}");
            assert_eq!(chunks.concat(), items, "{len}");
        }
    }
}
