//! The single writer: a task that commits appends to the ledger stream by group commit.
//!
//! As in the SQLite writer, it waits for the first queued append, takes everything else already
//! queued (up to [`MAX_BATCH_EVENTS`]), and judges each append with `batch` against the index
//! as if they were committed one by one. All admitted events then go to EventStoreDB as ONE
//! `append_to_stream` whose expected revision is the head they were numbered from, so positions
//! can only land where they were computed. If another node appended first, EventStoreDB refuses
//! the whole append; the writer catches the index up and judges the batch again. Callers are
//! answered only after EventStoreDB acknowledged the append, and after the index and the
//! published head include it.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventstore::{AppendToStreamOptions, EventData, ExpectedRevision};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::Shared;
use super::index::{Entry, Index, LedgerMetadata};
use crate::StoreError;
use crate::batch::{AppendRequest, Batch, Outcome, Row};

/// Most events taken into one batch. A single larger append still goes in whole, alone.
const MAX_BATCH_EVENTS: usize = 1024;

/// Most bytes of data and metadata sent in one append. EventStoreDB refuses appends over its
/// `MaxAppendSize` (1 MiB by default); a batch over this is split, so only a single append that
/// is too big by itself can meet that refusal.
pub(super) const MAX_APPEND_BYTES: usize = 768 * 1024;

/// What one event costs in an append beyond its data: metadata, id, type, framing.
pub(super) const EVENT_OVERHEAD_BYTES: usize = 320;

/// How often one batch is judged again after other nodes appended first, before its appends
/// fail: a node that never wins means something else keeps writing to the ledger stream.
const MAX_CONFLICTS: usize = 64;

#[derive(Debug)]
pub(super) enum Message {
    Append(AppendRequest),
    /// Stop accepting, commit what is queued, then stop.
    Close,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    /// Set when an append failed without an answer (it may or may not have landed): the next
    /// batch first catches the index up, so a retry of that append is recognised as one.
    suspect: bool,
}

/// A batch as judged against the index.
struct Judged {
    outcomes: Vec<Outcome>,
    /// The events to append, and the head they were numbered from; `None` when every append was
    /// refused or was a retry.
    append: Option<Append>,
}

struct Append {
    head_before: u64,
    events: Vec<EventData>,
    entries: Vec<Entry>,
    bytes: usize,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared, suspect: false }
    }

    /// Runs until the store is closed or dropped, then drops the head publisher, which tells
    /// `close()` and the subscriptions that the writer is gone.
    pub(super) async fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        let mut pending: VecDeque<AppendRequest> = VecDeque::new();
        loop {
            if pending.is_empty() {
                match receiver.recv().await {
                    Some(message) => take(&mut receiver, &mut pending, message),
                    None => break,
                }
            }
            while let Ok(message) = receiver.try_recv() {
                take(&mut receiver, &mut pending, message);
                if pending.iter().map(|request| request.events.len()).sum::<usize>() >= MAX_BATCH_EVENTS {
                    break;
                }
            }
            let mut batch = Vec::new();
            let mut events = 0;
            while let Some(request) = pending.pop_front() {
                events += request.events.len();
                batch.push(request);
                if events >= MAX_BATCH_EVENTS {
                    break;
                }
            }
            // Appends split off a batch too big for one EventStoreDB append go first next time.
            for request in self.commit(batch).await.into_iter().rev() {
                pending.push_front(request);
            }
        }
        drop(self.shared.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
        tracing::debug!("EventStoreDB event store writer stopped");
    }

    /// Commits a prefix of `requests` and answers its callers; returns the rest, split off
    /// because the whole would not fit in one append.
    async fn commit(&mut self, mut requests: Vec<AppendRequest>) -> Vec<AppendRequest> {
        let started = std::time::Instant::now();
        let recorded_at = Utc::now();
        let mut take = requests.len();
        let mut conflicts = 0;
        loop {
            if self.suspect {
                if let Err(error) = self.shared.catch_up().await {
                    fail(requests, error);
                    return Vec::new();
                }
                self.suspect = false;
            }
            let judged = {
                let mut index = self.shared.index();
                if let Some(damage) = index.damage() {
                    let damage = damage.to_owned();
                    for request in requests {
                        let _ = request.reply.send(Err(StoreError::ReadOnly(damage.clone())));
                    }
                    return Vec::new();
                }
                judge(&mut index, &requests[..take], recorded_at)
            };
            let judged = match judged {
                Ok(judged) => judged,
                Err(error) => {
                    fail(requests, error);
                    return Vec::new();
                }
            };
            let Some(append) = judged.append else {
                // Only refusals and retries: nothing to write.
                let rest = requests.split_off(take);
                answer(requests, judged.outcomes);
                return rest;
            };
            if append.bytes > MAX_APPEND_BYTES && take > 1 {
                take /= 2;
                continue;
            }

            let head_before = append.head_before;
            let count = append.entries.len() as u64;
            let expected = match head_before {
                0 => ExpectedRevision::NoStream,
                head => ExpectedRevision::Exact(head - 1),
            };
            let options = AppendToStreamOptions::default().expected_revision(expected);
            let connection = &self.shared.connection;
            let written =
                connection.client().append_to_stream(connection.ledger.as_str(), &options, append.events).await;
            let rest = requests.split_off(take);
            match written {
                Ok(result) => {
                    let head = head_before + count;
                    let mut index = self.shared.index();
                    if result.next_expected_version == head - 1 {
                        for entry in append.entries {
                            index.apply(entry);
                        }
                    } else {
                        // The revisions EventStoreDB gave are not the positions the envelopes
                        // carry (the stream was deleted and recreated, or truncated).
                        let reason = format!("the append landed at revision {}", result.next_expected_version);
                        index.mark_damaged(head_before + 1, &reason);
                    }
                    let damage = index.damage().map(str::to_owned);
                    let head = index.head();
                    drop(index);
                    self.shared.publish(head);
                    metrics::histogram!("credledger_store_batch_appends").record(requests.len() as f64);
                    metrics::histogram!("credledger_store_batch_seconds").record(started.elapsed().as_secs_f64());
                    tracing::debug!(appends = requests.len(), events = count, head, "committed batch to EventStoreDB");
                    match damage {
                        None => answer(requests, judged.outcomes),
                        Some(damage) => fail(requests, StoreError::ReadOnly(damage)),
                    }
                    return rest;
                }
                Err(eventstore::Error::WrongExpectedVersion { .. }) if conflicts < MAX_CONFLICTS => {
                    // Another node appended first: nothing of ours was written.
                    conflicts += 1;
                    requests.extend(rest);
                    if let Err(error) = self.shared.catch_up().await {
                        fail(requests, error);
                        return Vec::new();
                    }
                }
                Err(error) => {
                    self.suspect = true;
                    let error = connection.failed(error);
                    tracing::error!(%error, appends = requests.len(), "EventStoreDB append failed");
                    fail(requests, error);
                    return rest;
                }
            }
        }
    }
}

/// Queues a message: an append, or the close that stops new ones (those already queued are
/// still handed out by the receiver until it is empty).
fn take(receiver: &mut mpsc::Receiver<Message>, pending: &mut VecDeque<AppendRequest>, message: Message) {
    match message {
        Message::Append(request) => pending.push_back(request),
        Message::Close => receiver.close(),
    }
}

fn answer(requests: Vec<AppendRequest>, outcomes: Vec<Outcome>) {
    for (request, outcome) in requests.into_iter().zip(outcomes) {
        // A caller that stopped waiting has nothing to be told; its retry with the same event
        // ids finds the original result.
        let _ = request.reply.send(outcome);
    }
}

fn fail(requests: Vec<AppendRequest>, error: StoreError) {
    let error = Arc::new(error);
    for request in requests {
        let _ = request.reply.send(Err(StoreError::BatchFailed(error.clone())));
    }
}

/// Judges `requests` against the index and builds the EventStoreDB events of those admitted.
fn judge(index: &mut Index, requests: &[AppendRequest], recorded_at: DateTime<Utc>) -> Result<Judged, StoreError> {
    let head_before = index.head();
    let ids = requests.iter().flat_map(|request| request.events.iter().map(|event| event.event_id));
    let mut batch = Batch::begin(head_before, index.recorded(ids), recorded_at);
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        outcomes.push(batch.admit(
            index,
            &request.stream,
            request.expected,
            &request.events,
            request.basis.as_ref(),
        )?);
    }
    let Some((rows, _)) = batch.into_rows() else {
        return Ok(Judged { outcomes, append: None });
    };
    let mut append = Append { head_before, events: Vec::with_capacity(rows.len()), entries: Vec::new(), bytes: 0 };
    for row in rows {
        let (event, entry) = event_data(row)?;
        append.bytes += event.1 + EVENT_OVERHEAD_BYTES;
        append.events.push(event.0);
        append.entries.push(entry);
    }
    Ok(Judged { outcomes, append: Some(append) })
}

/// The EventStoreDB event for a row (with its data size) and the row's index entry. The row was
/// built from typed ids and a serialised envelope, so none of the conversions back can fail
/// short of a bug; if one does, the batch fails rather than write something unreadable.
pub(super) fn event_data(row: Row<'_>) -> Result<((EventData, usize), Entry), StoreError> {
    let position = row.position as u64;
    let bug =
        |reason: String| StoreError::EventStoreDb(format!("cannot build the event at position {position}: {reason}"));
    let (event_id, org_id) = (row.event_id, row.org_id);
    let org = match (org_id, row.org_sequence) {
        (Some(org), Some(sequence)) => Some((org, sequence as u64)),
        (None, None) => None,
        _ => return Err(bug("an organization without a sequence".to_owned())),
    };
    let metadata = LedgerMetadata {
        leaf_hash: hex::encode(row.leaf_hash),
        stream: row.stream.to_owned(),
        version: row.version as u64,
        org_id,
        org_sequence: org.map(|(_, sequence)| sequence),
    };
    let size = row.envelope.len();
    let event = envelope_event(row.event_type, row.envelope, &metadata)
        .map_err(|error| bug(error.to_string()))?
        .id(*event_id.as_uuid());
    let entry = Entry {
        position,
        event_id,
        event_type: row.event_type.to_owned(),
        stream: metadata.stream,
        version: metadata.version,
        org,
    };
    Ok(((event, size), entry))
}

/// An event whose data is exactly `envelope`, marked as JSON so that EventStoreDB's UI and
/// projections can read it. Serialising a `RawValue` writes its text verbatim, so the stored
/// bytes are the hashed bytes.
fn envelope_event(event_type: &str, envelope: Vec<u8>, metadata: &LedgerMetadata) -> Result<EventData, StoreError> {
    let text = String::from_utf8(envelope)
        .map_err(|error| StoreError::EventStoreDb(format!("the envelope is not UTF-8: {error}")))?;
    let raw = RawValue::from_string(text).map_err(StoreError::Encode)?;
    let event = EventData::json(event_type, &raw).map_err(StoreError::Encode)?;
    event.metadata_as_json(metadata).map_err(StoreError::Encode)
}

/// Exactly the bytes an [`EventData`] built by [`envelope_event`] carries: what the unit test
/// checks, since `EventData` does not show its payload.
#[cfg(test)]
fn envelope_bytes(envelope: &[u8]) -> Vec<u8> {
    let raw = RawValue::from_string(String::from_utf8(envelope.to_vec()).unwrap()).unwrap();
    serde_json::to_vec(&raw).unwrap()
}

#[cfg(test)]
mod tests {
    use credledger_domain::EventId;
    use credledger_domain::{Actor, RequestMeta};
    use uuid::Uuid;

    use super::*;
    use crate::envelope::Envelope;

    #[test]
    fn a_raw_json_value_is_written_byte_for_byte() {
        let actor = Actor::system("test");
        let request =
            RequestMeta { ip: Some("2001:db8::1".into()), user_agent: Some("ü \"q\"".into()), request_id: None };
        let payload = serde_json::json!({"z": 1, "a": [1.5, null, "\u{1F600}"], "esc": "\\n\t"});
        let envelope = Envelope {
            position: 3,
            stream: "mt-1",
            version: 0,
            org_id: None,
            org_sequence: None,
            event_id: EventId::from_uuid(Uuid::from_u128(1)),
            event_type: "T",
            schema_version: 1,
            occurred_at: DateTime::UNIX_EPOCH,
            recorded_at: DateTime::UNIX_EPOCH,
            actor: &actor,
            request: Some(&request),
            payload: &payload,
        }
        .encode()
        .unwrap();
        assert_eq!(envelope_bytes(&envelope), envelope);
        // The same serialisation `EventData::json` runs.
        let metadata = LedgerMetadata {
            leaf_hash: String::new(),
            stream: String::new(),
            version: 0,
            org_id: None,
            org_sequence: None,
        };
        assert!(envelope_event("T", envelope, &metadata).is_ok());
    }
}
