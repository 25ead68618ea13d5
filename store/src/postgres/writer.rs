//! This process's writer: a task that commits appends by group commit, each batch in one
//! transaction under the cluster-wide append lock.
//!
//! It waits for the first queued append, takes everything else already queued (up to
//! [`MAX_BATCH_EVENTS`]), takes the append lock, reads what admission needs in three queries (the
//! head, which event ids are recorded, each stream's version and each organization's sequence),
//! judges every append with [`Batch`], inserts the admitted rows with one `INSERT … SELECT FROM
//! unnest(…)`, notifies, commits, and only then answers. The lock is held from the head read to
//! the commit, so another process's batch starts from this one's head.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use credledger_domain::{EventId, OrgId};
use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::{APPEND_LOCK, CHANNEL};
use crate::batch::{AppendRequest, Batch, Committed, Outcome, Recorded, Row, imported, unsigned};
use crate::{RawEvent, StoreError};

/// Most events taken into one batch. A single larger append still goes in whole, alone.
const MAX_BATCH_EVENTS: usize = 4096;

const INSERT: &str = "INSERT INTO events \
    (position, stream, version, org_id, org_sequence, event_id, event_type, envelope, leaf_hash) \
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::bigint[], $6::uuid[], \
    $7::text[], $8::bytea[], $9::bytea[])";

#[derive(Debug)]
pub(super) enum Message {
    Append(AppendRequest),
    /// Rows of another log to store as they are; answered with the new head.
    Import(Vec<RawEvent>, oneshot::Sender<Result<u64, StoreError>>),
    /// A head another process committed, as the listener learnt of it.
    Seen(u64),
    /// Stop accepting, commit what is queued, then stop.
    Close,
}

#[derive(Debug)]
pub(super) struct Writer {
    pub pool: Pool,
    /// The last committed position this process knows of, published after each commit (its own
    /// or one the listener saw): `head()` and every subscription read it.
    pub head: watch::Sender<u64>,
    pub commits: Arc<AtomicU64>,
}

impl Writer {
    /// Runs until the store is closed or dropped; dropping the head sender at the end tells
    /// `close()` and the subscriptions that the writer is gone.
    pub(super) async fn run(self, mut receiver: mpsc::Receiver<Message>) {
        while let Some(first) = receiver.recv().await {
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
                        let _ = reply.send(self.import(&rows).await);
                    }
                    Message::Seen(head) => self.publish(head),
                    Message::Close => receiver.close(),
                }
                if events >= MAX_BATCH_EVENTS {
                    break;
                }
                next = receiver.try_recv().ok();
            }
            if !requests.is_empty() {
                self.commit(requests).await;
            }
        }
        tracing::debug!("event store writer stopped");
    }

    /// Raises the published head; a head lower than one already published is old news.
    fn publish(&self, head: u64) {
        self.head.send_if_modified(|published| {
            let newer = head > *published;
            if newer {
                *published = head;
            }
            newer
        });
    }

    async fn commit(&self, requests: Vec<AppendRequest>) {
        let started = std::time::Instant::now();
        let appends = requests.len();
        let written = self.write(&requests).await;
        metrics::histogram!("credledger_store_batch_appends").record(appends as f64);
        metrics::histogram!("credledger_store_batch_seconds").record(started.elapsed().as_secs_f64());
        match written {
            Ok((outcomes, committed)) => {
                if let Some(head) = committed {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    self.publish(head);
                }
                for (request, outcome) in requests.into_iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, appends, "event store batch failed");
                let error = Arc::new(error);
                for request in requests {
                    let _ = request.reply.send(Err(StoreError::BatchFailed(error.clone())));
                }
            }
        }
    }

    async fn write(&self, requests: &[AppendRequest]) -> Result<(Vec<Outcome>, Option<u64>), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = begin(&mut client).await?;
        let head = lock_and_read_head(&tx).await?;
        let ids: Vec<EventId> =
            requests.iter().flat_map(|request| request.events.iter().map(|event| event.event_id)).collect();
        let mut batch = Batch::begin(head, find_recorded(&tx, &ids).await?, Utc::now());
        let mut log = Prefetched::read(&tx, requests).await?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            let basis = request.basis.as_ref();
            outcomes.push(batch.admit(&mut log, &request.stream, request.expected, &request.events, basis)?);
        }
        let Some((rows, head)) = batch.into_rows() else {
            // Only refusals and retries: nothing to commit (dropping `tx` rolls back).
            return Ok((outcomes, None));
        };
        insert(&tx, &rows).await?;
        notify(&tx, head).await?;
        tx.commit().await?;
        tracing::debug!(appends = requests.len(), events = rows.len(), head, "committed batch");
        Ok((outcomes, Some(head)))
    }

    async fn import(&self, rows: &[RawEvent]) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = begin(&mut client).await?;
        let head = lock_and_read_head(&tx).await?;
        let events = imported(rows, head)?;
        let Some(last) = events.last().map(|event| event.position) else { return Ok(head) };
        insert(&tx, &Batch::import_rows(&events)).await?;
        notify(&tx, last).await?;
        tx.commit().await?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.publish(last);
        Ok(last)
    }
}

/// Starts a writer's transaction, READ COMMITTED whatever the database's default: each statement
/// then sees what committed before it, so the reads after the lock wait see every batch committed
/// by the process that held it (a REPEATABLE READ snapshot would be taken before the wait).
async fn begin(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>, StoreError> {
    Ok(client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::ReadCommitted).start().await?)
}

/// Takes the append lock (released at commit or rollback) and reads the committed head under it.
async fn lock_and_read_head(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let lock = tx.prepare_cached("SELECT pg_advisory_xact_lock($1)").await?;
    tx.execute(&lock, &[&APPEND_LOCK]).await?;
    let statement = tx.prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events").await?;
    unsigned(tx.query_one(&statement, &[]).await?.get(0), 0, "the head position is negative")
}

/// Delivered to every listener when (and only if) the transaction commits.
async fn notify(tx: &Transaction<'_>, head: u64) -> Result<(), StoreError> {
    let statement = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    tx.execute(&statement, &[&CHANNEL, &head.to_string()]).await?;
    Ok(())
}

/// Where those of `ids` that the log already holds sit.
async fn find_recorded(tx: &Transaction<'_>, ids: &[EventId]) -> Result<HashMap<EventId, Recorded>, StoreError> {
    let uuids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    let statement = tx
        .prepare_cached("SELECT event_id, position, stream, version, event_type FROM events WHERE event_id = ANY($1)")
        .await?;
    let mut recorded = HashMap::new();
    for row in tx.query(&statement, &[&uuids]).await? {
        let position = unsigned(row.get(1), 0, "negative position")?;
        let version = unsigned(row.get(3), position, "negative stream version")?;
        let event_id = EventId::from_uuid(row.get(0));
        recorded.insert(event_id, Recorded { position, stream: row.get(2), version, event_type: row.get(4) });
    }
    Ok(recorded)
}

/// The versions of the batch's streams, the last positions of those and of the streams its appends
/// were based on, and the sequences of its organizations, read under the lock in two queries (one
/// index probe per stream or organization), for admission to consult.
struct Prefetched {
    versions: HashMap<String, Option<u64>>,
    sequences: HashMap<OrgId, u64>,
    last_positions: HashMap<String, Option<u64>>,
}

impl Prefetched {
    async fn read(tx: &Transaction<'_>, requests: &[AppendRequest]) -> Result<Self, StoreError> {
        // The streams appended to and those appends are based on, each probed once for its last
        // event's version and position.
        let streams: Vec<&str> = requests
            .iter()
            .flat_map(|request| {
                std::iter::once(request.stream.as_str())
                    .chain(request.basis.as_ref().map(|basis| basis.stream.as_str()))
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let orgs: Vec<Uuid> = requests
            .iter()
            .flat_map(|request| request.events.iter().filter_map(|event| event.org_id.map(|org| *org.as_uuid())))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let statement = tx
            .prepare_cached(
                "SELECT s.stream, last.version, last.position FROM unnest($1::text[]) AS s(stream) \
                 LEFT JOIN LATERAL (SELECT version, position FROM events WHERE stream = s.stream \
                 ORDER BY version DESC LIMIT 1) AS last ON true",
            )
            .await?;
        let mut versions = HashMap::with_capacity(streams.len());
        let mut last_positions = HashMap::with_capacity(streams.len());
        for row in tx.query(&statement, &[&streams]).await? {
            let stream: String = row.get(0);
            let version =
                row.get::<_, Option<i64>>(1).map(|v| unsigned(v, 0, "negative stream version")).transpose()?;
            let position = row.get::<_, Option<i64>>(2).map(|p| unsigned(p, 0, "negative position")).transpose()?;
            versions.insert(stream.clone(), version);
            last_positions.insert(stream, position);
        }
        let mut sequences = HashMap::with_capacity(orgs.len());
        if !orgs.is_empty() {
            let statement = tx
                .prepare_cached(
                    "SELECT o.org_id, (SELECT MAX(org_sequence) FROM events WHERE org_id = o.org_id) \
                     FROM unnest($1::uuid[]) AS o(org_id)",
                )
                .await?;
            for row in tx.query(&statement, &[&orgs]).await? {
                let sequence =
                    unsigned(row.get::<_, Option<i64>>(1).unwrap_or(0), 0, "negative organization sequence")?;
                sequences.insert(OrgId::from_uuid(row.get(0)), sequence);
            }
        }
        Ok(Self { versions, sequences, last_positions })
    }
}

impl Committed for Prefetched {
    fn stream_version(&mut self, stream: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.versions.get(stream).copied().flatten())
    }

    fn org_sequence(&mut self, org: OrgId) -> Result<u64, StoreError> {
        Ok(self.sequences.get(&org).copied().unwrap_or(0))
    }

    fn last_position(&mut self, stream: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.last_positions.get(stream).copied().flatten())
    }
}

/// Writes every row with one statement: one array per column, unnested into rows.
async fn insert(tx: &Transaction<'_>, rows: &[Row<'_>]) -> Result<(), StoreError> {
    let positions: Vec<i64> = rows.iter().map(|row| row.position).collect();
    let streams: Vec<&str> = rows.iter().map(|row| row.stream).collect();
    let versions: Vec<i64> = rows.iter().map(|row| row.version).collect();
    let orgs: Vec<Option<Uuid>> = rows.iter().map(|row| row.org_id.map(|org| *org.as_uuid())).collect();
    let sequences: Vec<Option<i64>> = rows.iter().map(|row| row.org_sequence).collect();
    let ids: Vec<Uuid> = rows.iter().map(|row| *row.event_id.as_uuid()).collect();
    let types: Vec<&str> = rows.iter().map(|row| row.event_type).collect();
    let envelopes: Vec<&[u8]> = rows.iter().map(|row| row.envelope.as_slice()).collect();
    let hashes: Vec<&[u8]> = rows.iter().map(|row| &row.leaf_hash[..]).collect();
    let statement = tx.prepare_cached(INSERT).await?;
    tx.execute(&statement, &[&positions, &streams, &versions, &orgs, &sequences, &ids, &types, &envelopes, &hashes])
        .await?;
    Ok(())
}
