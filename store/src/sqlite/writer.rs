//! The single writer: a thread that owns the log's only write connection and commits appends by
//! group commit.
//!
//! SQLite has one writer at a time and each durable commit costs an fsync, so committing appends
//! one by one would cap throughput at the disk's sync rate. Instead the thread blocks for the
//! first queued append, takes everything else already queued (up to [`MAX_BATCH_EVENTS`]),
//! judges each append against the log (see `batch`), writes all admitted events with multi-row
//! inserts in one transaction, and answers every caller only after that commit is durable. The
//! more callers wait, the bigger the next batch: the fsync is shared.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::HashMap;

use chrono::Utc;
use credledger_domain::{EventId, OrgId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::checkpointer::Checkpointer;
use crate::batch::{AppendRequest, Batch, Committed, Outcome, Recorded, Row, power_of_two_chunks, repeated, unsigned};
use crate::recent::Recent;
use crate::{RawEvent, StoreError};

/// Most event ids looked up by one `IN (...)` query.
const LOOKUP_CHUNK: usize = 512;

/// Most events taken into one batch. A single larger append still goes in whole, alone.
const MAX_BATCH_EVENTS: usize = 4096;

/// Rows per multi-row INSERT: 9 parameters each, well under SQLite's limit of 32766.
const INSERT_CHUNK: usize = 256;

/// What the store asks of its writer.
#[derive(Debug)]
pub(super) enum Message {
    Append(AppendRequest),
    /// Rows of another log to store as they are (see `EventStore::import`), alone in their
    /// transaction; answered with the new head.
    Import(Vec<RawEvent>, oneshot::Sender<Result<u64, StoreError>>),
    /// Stop accepting, commit what is queued, then stop.
    Close,
}

/// Most streams the writer keeps in memory; past this it starts over.
const MAX_REMEMBERED_STREAMS: usize = 1 << 20;

/// What the writer remembers of the committed log, read once and then kept current by its own
/// commits, so that admitting an append costs no query: the position of the last event of each
/// stream an append was based on (a credential's lifecycle stream: judging a use against it),
/// each stream's last version and each organization's last sequence number. Valid while the
/// log's head is `head`: a head this writer did not leave (another process wrote the file, or a
/// commit's outcome is unknown) empties it. The unique indexes stay the last guard.
#[derive(Debug)]
struct Memory {
    head: u64,
    last_positions: HashMap<String, Option<u64>>,
    versions: HashMap<String, Option<u64>>,
    org_sequences: HashMap<OrgId, u64>,
}

impl Memory {
    fn at(head: u64) -> Self {
        Self { head, last_positions: HashMap::new(), versions: HashMap::new(), org_sequences: HashMap::new() }
    }

    /// Starts over unless the log is still at the head this writer left.
    fn check(&mut self, head: u64) {
        let full = self.last_positions.len().max(self.versions.len()) > MAX_REMEMBERED_STREAMS;
        if head != self.head || full {
            *self = Self::at(head);
        }
    }

    /// Learns a committed batch's rows, which leave the log at `head`.
    fn committed(&mut self, rows: &[Row<'_>], head: u64) {
        for row in rows {
            if let Some(last) = self.last_positions.get_mut(row.stream) {
                *last = Some(row.position as u64);
            }
            self.versions.insert(row.stream.to_owned(), Some(row.version as u64));
            if let (Some(org), Some(sequence)) = (row.org_id, row.org_sequence) {
                self.org_sequences.insert(org, sequence as u64);
            }
        }
        self.head = head;
    }
}

#[derive(Debug)]
pub(super) struct Writer {
    connection: Connection,
    /// The last committed position, published after each commit: `head()` and every
    /// subscription read it, so nobody learns of a position before it is durable.
    head: watch::Sender<u64>,
    /// Transactions committed, for observing group commit.
    commits: Arc<AtomicU64>,
    /// What the writer remembers of the committed log between its commits.
    memory: Memory,
    /// Where each committed batch goes, decoded, for this process's subscriptions.
    recent: Arc<Recent>,
    /// The thread that checkpoints the WAL, woken after commits.
    checkpoint: Checkpointer,
}

impl Writer {
    pub(super) fn new(
        connection: Connection,
        head: watch::Sender<u64>,
        commits: Arc<AtomicU64>,
        recent: Arc<Recent>,
        checkpoint: Checkpointer,
    ) -> Self {
        let memory = Memory::at(*head.borrow());
        Self { connection, head, commits, memory, recent, checkpoint }
    }

    /// Runs until the store is closed or dropped, then closes the connection and drops the head
    /// sender, which tells `close()` and the subscriptions that the writer is gone.
    pub(super) fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut requests = Vec::new();
            let mut events = 0;
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Append(request) => {
                        events += request.events.len();
                        requests.push(request);
                    }
                    Message::Import(rows, reply) => {
                        let _ = reply.send(self.import(&rows));
                    }
                    // Appends already queued are still taken (the receiver hands them out
                    // until it is empty); new ones are refused from now on.
                    Message::Close => receiver.close(),
                }
                if events >= MAX_BATCH_EVENTS {
                    break;
                }
                next = receiver.try_recv().ok();
            }
            if !requests.is_empty() {
                self.commit(requests);
            }
        }
        let Self { connection, head, checkpoint, .. } = self;
        checkpoint.stop();
        if let Err((_, error)) = connection.close() {
            tracing::warn!(%error, "closing the event log's write connection");
        }
        drop(head);
        tracing::debug!("event store writer stopped");
    }

    /// Commits one batch and answers its callers.
    fn commit(&mut self, requests: Vec<AppendRequest>) {
        let started = std::time::Instant::now();
        let appends = requests.len();
        let written = self.write(&requests);
        metrics::histogram!("credledger_store_batch_appends").record(appends as f64);
        metrics::histogram!("credledger_store_batch_seconds").record(started.elapsed().as_secs_f64());
        match written {
            Ok((outcomes, committed)) => {
                if let Some(head) = committed {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    // Publish before answering, so a caller that reads `head()` after its
                    // append returns sees its own events.
                    self.head.send_replace(head);
                    self.checkpoint.wake();
                }
                for (request, outcome) in requests.into_iter().zip(outcomes) {
                    // A caller that stopped waiting has nothing to be told; its retry with the
                    // same event ids finds the original result.
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, appends = requests.len(), "event store batch failed");
                let error = Arc::new(error);
                for request in requests {
                    let _ = request.reply.send(Err(StoreError::BatchFailed(error.clone())));
                }
            }
        }
    }

    /// Stores another log's rows as they are, after the log's last event.
    fn import(&mut self, rows: &[RawEvent]) -> Result<u64, StoreError> {
        let tx = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head: i64 = tx.prepare_cached(include_str!("head.sql"))?.query_row([], |row| row.get(0))?;
        let events = crate::batch::imported(rows, unsigned(head, 0, "the head position is negative")?)?;
        let Some(last) = events.last().map(|event| event.position) else { return Ok(head as u64) };
        insert(&tx, &Batch::import_rows(&events))?;
        tx.commit()?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.recent.clear();
        self.head.send_replace(last);
        Ok(last)
    }

    /// Judges and writes a batch in one immediate transaction. Returns each append's outcome and,
    /// when something was committed, the new head.
    fn write(&mut self, requests: &[AppendRequest]) -> Result<(Vec<Outcome>, Option<u64>), StoreError> {
        // IMMEDIATE takes the write lock before the first read, so the head and versions read
        // below cannot change before the commit, even if another process opened the file.
        let tx = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids = requests.iter().flat_map(|request| request.events.iter().map(|event| event.event_id));
        let head: i64 = tx.prepare_cached(include_str!("head.sql"))?.query_row([], |row| row.get(0))?;
        let head = unsigned(head, 0, "the head position is negative")?;
        self.memory.check(head);
        let mut batch = Batch::begin(head, find_recorded(&tx, ids)?, Utc::now());
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut log = Log { connection: &tx, memory: &mut self.memory };
        for request in requests {
            let basis = request.basis.as_ref();
            outcomes.push(batch.admit(&mut log, &request.stream, request.expected, &request.events, basis)?);
        }
        let Some((rows, head)) = batch.into_rows() else {
            // Only refusals and retries: nothing to commit (dropping `tx` rolls back).
            return Ok((outcomes, None));
        };
        insert(&tx, &rows)?;
        tx.commit()?;
        self.memory.committed(&rows, head);
        tracing::debug!(appends = requests.len(), events = rows.len(), head, "committed batch");
        // Built before the window's lock is taken, so subscriptions reading it never wait on this.
        let committed: Vec<_> = rows
            .into_iter()
            .filter_map(|mut row| {
                let envelope: Arc<[u8]> = std::mem::take(&mut row.envelope).into();
                row.recorded(envelope)
            })
            .collect();
        self.recent.publish(committed);
        Ok((outcomes, Some(head)))
    }
}

/// Where those of `event_ids` that the log already holds sit.
fn find_recorded(
    connection: &Connection,
    event_ids: impl Iterator<Item = EventId>,
) -> Result<HashMap<EventId, Recorded>, StoreError> {
    let mut ids: HashMap<String, EventId> = event_ids.map(|id| (id.to_string(), id)).collect();
    let mut recorded = HashMap::new();
    let wanted: Vec<String> = ids.keys().cloned().collect();
    for chunk in power_of_two_chunks(&wanted, LOOKUP_CHUNK) {
        let sql = format!("{} ({})", include_str!("find_event_ids.sql").trim_end(), repeated("?", chunk.len()));
        let mut statement = connection.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(chunk))?;
        while let Some(row) = rows.next()? {
            let (event_id, position, stream, version, event_type): (String, i64, String, i64, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
            let position = unsigned(position, 0, "negative position")?;
            let version = unsigned(version, position, "negative stream version")?;
            if let Some(id) = ids.remove(&event_id) {
                recorded.insert(id, Recorded { position, stream, version, event_type });
            }
        }
    }
    Ok(recorded)
}

/// The committed log through the writer's transaction, and what the writer remembers of it.
struct Log<'c> {
    connection: &'c Connection,
    memory: &'c mut Memory,
}

impl Committed for Log<'_> {
    fn stream_version(&mut self, stream: &str) -> Result<Option<u64>, StoreError> {
        if let Some(version) = self.memory.versions.get(stream) {
            return Ok(*version);
        }
        let version: Option<i64> = self
            .connection
            .prepare_cached(include_str!("stream_version.sql"))?
            .query_row([stream], |row| row.get(0))
            .optional()?
            .flatten();
        let version = version.map(|version| unsigned(version, 0, "negative stream version")).transpose()?;
        self.memory.versions.insert(stream.to_owned(), version);
        Ok(version)
    }

    fn org_sequence(&mut self, org: OrgId) -> Result<u64, StoreError> {
        if let Some(sequence) = self.memory.org_sequences.get(&org) {
            return Ok(*sequence);
        }
        let sequence: Option<i64> = self
            .connection
            .prepare_cached(include_str!("org_sequence.sql"))?
            .query_row([org.to_string()], |row| row.get(0))
            .optional()?
            .flatten();
        let sequence = unsigned(sequence.unwrap_or(0), 0, "negative organization sequence")?;
        self.memory.org_sequences.insert(org, sequence);
        Ok(sequence)
    }

    fn last_position(&mut self, stream: &str) -> Result<Option<u64>, StoreError> {
        if let Some(last) = self.memory.last_positions.get(stream) {
            return Ok(*last);
        }
        let position: Option<i64> = self
            .connection
            .prepare_cached(include_str!("last_position.sql"))?
            .query_row([stream], |row| row.get(0))
            .optional()?;
        let last = position.map(|position| unsigned(position, 0, "negative position")).transpose()?;
        self.memory.last_positions.insert(stream.to_owned(), last);
        Ok(last)
    }
}

/// Writes rows with multi-row INSERTs, a few hundred rows per statement.
fn insert(connection: &Connection, rows: &[Row<'_>]) -> rusqlite::Result<()> {
    for chunk in power_of_two_chunks(rows, INSERT_CHUNK) {
        let sql = format!(
            "{} {}",
            include_str!("insert_events.sql").trim_end(),
            repeated("(?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk.len())
        );
        let mut statement = connection.prepare_cached(&sql)?;
        let mut index = 0;
        let mut next = || {
            index += 1;
            index
        };
        for row in chunk {
            statement.raw_bind_parameter(next(), row.position)?;
            statement.raw_bind_parameter(next(), row.stream)?;
            statement.raw_bind_parameter(next(), row.version)?;
            statement.raw_bind_parameter(next(), row.org_id.map(|org| org.to_string()))?;
            statement.raw_bind_parameter(next(), row.org_sequence)?;
            statement.raw_bind_parameter(next(), row.event_id.to_string())?;
            statement.raw_bind_parameter(next(), row.event_type)?;
            statement.raw_bind_parameter(next(), row.envelope.as_slice())?;
            statement.raw_bind_parameter(next(), &row.leaf_hash[..])?;
        }
        statement.raw_execute()?;
    }
    Ok(())
}
