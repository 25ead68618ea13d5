//! The SQLite backend, the embedded default: one file holds the whole log.
//!
//! Appends go through one writer thread (`writer`) that owns the only write connection and
//! commits by group commit, in WAL mode with `synchronous=FULL` so that an acknowledged append
//! survives a power cut. Reads go through a pool of read-only connections on blocking threads;
//! WAL lets them run beside the writer, and each sees whole batches only, so no reader ever sees
//! a position before the ones below it.

pub(crate) mod checkpointer;
mod migrate;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::BoxStream;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::recent::Recent;
use crate::{
    AppendResult, Basis, EventStore, ExpectedVersion, NewEvent, RawEvent, RecordedEvent, StoreError, envelope,
};
use writer::{Message, Writer};

/// Appends that may wait for the writer before `append` itself waits: backpressure, not a limit
/// on batch size.
const QUEUE: usize = 16 * 1024;

/// How long a connection waits for SQLite's lock before reporting it busy. Only a checkpoint or
/// another process competes with the writer, so a wait this long means something is wrong.
const BUSY_TIMEOUT_MS: u32 = 5000;

/// WAL pages after which a commit checkpoints itself (see `checkpointer`): 32 MiB of 4 KiB pages.
const WAL_BOUND_PAGES: i64 = 8192;

/// The log in one SQLite file. Cheap to share behind an `Arc`; dropping the last handle lets the
/// writer commit what is queued and stop.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    appends: mpsc::Sender<Message>,
    reader: Arc<Reader>,
    commits: Arc<AtomicU64>,
}

/// What reads need, shared with every subscription so a subscription outlives no borrow.
#[derive(Debug)]
struct Reader {
    pool: r2d2::Pool<SqliteConnectionManager>,
    head: watch::Receiver<u64>,
    /// The batches this process committed last, served to its subscriptions without a read.
    recent: Arc<Recent>,
}

impl SqliteStore {
    /// Opens the log at `path`, creating the file and its directory if missing, applies the
    /// migrations and starts the writer.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let opening = path.clone();
        let (connection, pool, head) =
            tokio::task::spawn_blocking(move || prepare(&opening)).await.map_err(|_| StoreError::Closed)??;
        let (head_sender, head_receiver) = watch::channel(head);
        let (appends, receiver) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let recent = Arc::new(Recent::default());
        let checkpoint = checkpointer::Checkpointer::start(&path, "credledger-log-checkpoint", "event log")?;
        let writer = Writer::new(connection, head_sender, commits.clone(), recent.clone(), checkpoint);
        std::thread::Builder::new().name("credledger-log-writer".to_owned()).spawn(move || writer.run(receiver))?;
        tracing::debug!(path = %path.display(), head, "event store opened");
        Ok(Self { path, appends, reader: Arc::new(Reader { pool, head: head_receiver, recent }), commits })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transactions the writer has committed since open. Fewer commits than appends is group
    /// commit at work.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// Opens the write connection, migrates, reads the head and fills the read pool.
fn prepare(path: &Path) -> Result<(Connection, r2d2::Pool<SqliteConnectionManager>, u64), StoreError> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut connection = Connection::open(path)?;
    let mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still durable, but readers and the writer will block each other.
        tracing::warn!(mode, "the event log is not in WAL mode");
    }
    // FULL: the WAL is synced at every commit, so an acknowledged append survives a power cut.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
    // 32 MiB of page cache keeps the indexes' hot pages in memory as the log grows, so a big
    // batch does not spill pages to the WAL before its commit.
    connection.pragma_update(None, "cache_size", -32768)?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    // The checkpoint thread copies the WAL back after commits; the writer's own checkpoint
    // (inside a commit) only bounds the WAL, at 32 MiB, should that thread fall behind.
    connection.pragma_update(None, "wal_autocheckpoint", WAL_BOUND_PAGES)?;
    // Once a checkpoint has copied everything and the WAL starts over, its file is cut back to
    // 4 MiB instead of keeping its largest size on disk.
    connection.pragma_update(None, "journal_size_limit", 4 << 20)?;
    connection.set_prepared_statement_cache_capacity(64);
    migrate::apply(&mut connection)?;
    let head: i64 = connection.query_row(include_str!("head.sql"), [], |row| row.get(0))?;
    let head = u64::try_from(head)
        .map_err(|_| StoreError::Corrupt { position: 0, reason: "the head position is negative".to_owned() })?;
    let manager = SqliteConnectionManager::file(path).with_init(|connection| {
        connection.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
        connection.pragma_update(None, "query_only", true)
    });
    let pool = r2d2::Pool::builder()
        .max_size(8)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(10))
        .build(manager)?;
    Ok((connection, pool, head))
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        crate::batch::submit(&self.appends, Message::Append, stream, expected, events, None).await
    }

    async fn append_on_basis(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        basis: Basis,
    ) -> Result<AppendResult, StoreError> {
        crate::batch::submit(&self.appends, Message::Append, stream, expected, events, Some(basis)).await
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        crate::check_stream_name(stream)?;
        let stream = stream.to_owned();
        let from_version = i64::try_from(from_version).unwrap_or(i64::MAX);
        self.reader
            .query(move |connection| {
                let mut statement = connection.prepare_cached(include_str!("read_stream.sql"))?;
                decode_rows(statement.query((stream, from_version))?)
            })
            .await
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.reader.read_all(from_position, limit).await
    }

    async fn read_raw(&self, from_position: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError> {
        let (from_position, limit) = bounds(from_position, limit);
        self.reader
            .query(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT position, org_id, envelope, leaf_hash FROM events WHERE position >= ?1 \
                     ORDER BY position LIMIT ?2",
                )?;
                let rows = statement.query_map((from_position, limit), |row| {
                    Ok(RawEvent {
                        position: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        org_id: row.get(1)?,
                        envelope: Arc::from(row.get::<_, Vec<u8>>(2)?),
                        leaf_hash: row.get(3)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn read_leaf_hashes(&self, from_position: u64, limit: usize) -> Result<Vec<[u8; 32]>, StoreError> {
        let (from, limit) = bounds(from_position, limit);
        self.reader
            .query(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT position, leaf_hash FROM events WHERE position >= ?1 ORDER BY position LIMIT ?2",
                )?;
                let mut rows = statement.query((from, limit))?;
                let mut hashes = Vec::new();
                while let Some(row) = rows.next()? {
                    let position: i64 = row.get(0)?;
                    let hash = row.get_ref(1)?.as_blob().ok().and_then(|hash| <[u8; 32]>::try_from(hash).ok());
                    hashes.push(hash.ok_or_else(|| StoreError::Corrupt {
                        position: u64::try_from(position).unwrap_or(0),
                        reason: "the leaf hash is not 32 bytes".to_owned(),
                    })?);
                }
                Ok(hashes)
            })
            .await
    }

    fn subscribe(&self, from_position: u64) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        crate::follow::follow(self.reader.clone(), self.reader.head.clone(), from_position)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Ok(*self.reader.head.borrow())
    }

    async fn import(&self, rows: Vec<RawEvent>) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.appends.send(Message::Import(rows, reply)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn close(&self) {
        // Fails only when the writer is already stopping; then there is just the wait.
        let _ = self.appends.send(Message::Close).await;
        // The writer drops the head sender last, after committing the queue and closing its
        // connection; `changed` fails from then on.
        let mut head = self.reader.head.clone();
        while head.changed().await.is_ok() {}
    }
}

impl Reader {
    /// Runs a read on a pooled connection on a blocking thread.
    async fn query<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || read(&*pool.get()?)).await.map_err(|_| StoreError::Closed)?
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from_position = i64::try_from(from_position).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(move |connection| {
            let mut statement = connection.prepare_cached(include_str!("read_all.sql"))?;
            decode_rows(statement.query((from_position, limit))?)
        })
        .await
    }
}

/// A position and a limit as SQLite integers (`limit` 0 reads nothing).
fn bounds(from_position: u64, limit: usize) -> (i64, i64) {
    (i64::try_from(from_position).unwrap_or(i64::MAX), i64::try_from(limit).unwrap_or(i64::MAX))
}

/// Decodes `(position, envelope, leaf_hash)` rows, checking each envelope against its row.
fn decode_rows(mut rows: rusqlite::Rows<'_>) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let position: i64 = row.get(0)?;
        let corrupt = |reason: &str| StoreError::Corrupt {
            position: u64::try_from(position).unwrap_or(0),
            reason: reason.to_owned(),
        };
        let envelope = row.get_ref(1)?.as_blob().map_err(|_| corrupt("the envelope is not a blob"))?;
        let leaf_hash = row.get_ref(2)?.as_blob().map_err(|_| corrupt("the leaf hash is not 32 bytes"))?;
        events.push(envelope::decode_stored(position, envelope, leaf_hash)?);
    }
    Ok(events)
}

#[async_trait::async_trait]
impl crate::follow::Pages for Reader {
    async fn page(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        match self.recent.page(from_position, limit) {
            Some(page) => Ok(page),
            None => self.read_all(from_position, limit).await,
        }
    }
}
