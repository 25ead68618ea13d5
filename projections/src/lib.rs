//! credledger's read models, fed from the log.
//!
//! A runner subscribes to the store from the lowest checkpoint, applies each batch of events to
//! every projector in one SQLite transaction that also moves the projectors' checkpoints, and only
//! after the commit updates the in-memory hot index and announces the projected position. So a
//! restart resumes exactly where the rows end, and a rebuild from position 0 gives the same rows.
//!
//! Read models live in their own SQLite file beside the log, so the projection writer never
//! competes with the store's group-commit writer for the log's write lock.

mod credential;
mod hot_index;
pub mod ledger;
mod migrate;
mod projector;
pub mod queries;
mod runner;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use credledger_store::{EventStore, StoreError};
use rusqlite::OptionalExtension;
use tokio::sync::watch;

pub use credential::Credential;
pub use hot_index::HotIndex;

/// Why the read models could not be opened, updated or queried.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The read-model database failed; the runner stops and the server should be restarted
    /// (it resumes from the last committed checkpoint).
    #[error("read-model database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// No connection could be taken from the pool.
    #[error("read-model connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// The log could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored row or event could not be decoded: the file was written by a newer release or
    /// is damaged. Rebuild the read models from the log.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// An event does not fit the read models (e.g. a lifecycle stream without an id).
    #[error("event at position {position}: {reason}")]
    Corrupt { position: u64, reason: &'static str },
    /// The file's schema is newer than this release knows.
    #[error("read-model schema version {found} is newer than this release ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// The runner stopped before reaching the awaited position.
    #[error("the projection runner has stopped")]
    Stopped,
}

impl ProjectionError {
    pub(crate) fn corrupt(position: u64, reason: &'static str) -> Self {
        Self::Corrupt { position, reason }
    }
}

/// The read models, the hot index, and the position they have reached. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Projections {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    pool: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
    hot_index: HotIndex,
    projected: watch::Sender<u64>,
    /// Why the runner's last attempt failed, until a batch is applied again.
    failure: std::sync::Mutex<Option<String>>,
    /// Read-model transactions committed since open: one per batch of events applied.
    transactions: std::sync::atomic::AtomicU64,
}

impl Projections {
    /// Opens (creating if needed) the read-model file, applies its migrations and loads the hot
    /// index from the inventory it holds.
    pub fn open(path: &Path) -> Result<Self, ProjectionError> {
        let mut connection = migrate::connect(path)?;
        migrate::apply(&mut connection)?;
        let position = runner::checkpoint(&connection)?;
        let hot_index = HotIndex::default();
        runner::load_hot_index(&connection, &hot_index)?;
        drop(connection);
        let manager = r2d2_sqlite::SqliteConnectionManager::file(path).with_init(|c| {
            c.pragma_update(None, "busy_timeout", 5000)?;
            c.set_prepared_statement_cache_capacity(64);
            c.pragma_update(None, "query_only", true)
        });
        let pool = r2d2::Pool::builder().max_size(8).build(manager)?;
        let (projected, _) = watch::channel(position);
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                pool,
                hot_index,
                projected,
                failure: std::sync::Mutex::default(),
                transactions: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Starts the runner: it follows the log from the checkpoint until the task is aborted.
    pub fn start(&self, store: Arc<dyn EventStore>) -> tokio::task::JoinHandle<Result<(), ProjectionError>> {
        let projections = self.clone();
        tokio::spawn(async move {
            // A failed read of the log (a dropped database connection, a busy pool) must not
            // freeze the read models and the hot index: resume from the checkpoints after a pause.
            // The stream ends without an error only when the store closes.
            loop {
                match runner::run(&projections, store.clone(), None).await {
                    Ok(()) => return Ok(()),
                    Err(error) => {
                        tracing::error!(%error, "projection runner failed; resuming from its checkpoints in a second");
                        projections.set_failure(Some(error.to_string()));
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }

    /// Applies every event up to the log's current head, then returns the position reached.
    /// Used by rebuilds and by tests that want the models current without a background task.
    pub async fn catch_up(&self, store: Arc<dyn EventStore>) -> Result<u64, ProjectionError> {
        let head = store.head().await?;
        if head > self.position() {
            runner::run(self, store, Some(head)).await?;
        }
        Ok(self.position())
    }

    /// Read-model transactions the runner has committed since open, one per batch of events:
    /// fewer transactions than events is batching at work.
    pub fn transactions(&self) -> u64 {
        self.inner.transactions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The last position applied to every read model and to the hot index.
    pub fn position(&self) -> u64 {
        *self.inner.projected.borrow()
    }

    /// Waits until the read models include `position` (read-your-writes for commands).
    pub async fn wait_for(&self, position: u64) -> Result<(), ProjectionError> {
        let mut receiver = self.inner.projected.subscribe();
        receiver.wait_for(|projected| *projected >= position).await.map_err(|_| ProjectionError::Stopped)?;
        Ok(())
    }

    /// The position and leaf hash of the last event the read models applied (`None` before the
    /// first), so that a start can check the log still holds that very event.
    pub fn projected_tip(&self) -> Result<Option<(u64, [u8; 32])>, ProjectionError> {
        let connection = self.reader()?;
        let tip: Option<(i64, Vec<u8>)> = connection
            .query_row("SELECT position, leaf_hash FROM projected_tip", [], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        tip.map(|(position, hash)| {
            let hash = <[u8; 32]>::try_from(hash.as_slice())
                .map_err(|_| ProjectionError::Decode("the projected tip's leaf hash is not 32 bytes".to_owned()))?;
            Ok((position as u64, hash))
        })
        .transpose()
    }

    /// Where a background job has read the log to (0: from the start).
    pub fn job_checkpoint(&self, job: &str) -> Result<u64, ProjectionError> {
        let connection = self.reader()?;
        let position: Option<i64> = connection
            .query_row("SELECT position FROM job_checkpoints WHERE job = ?1", [job], |row| row.get(0))
            .optional()?;
        Ok(position.map_or(0, |p| p as u64))
    }

    pub fn save_job_checkpoint(&self, job: &str, position: u64) -> Result<(), ProjectionError> {
        let connection = migrate::connect(self.path())?;
        connection.execute(
            "INSERT INTO job_checkpoints (job, position) VALUES (?1, ?2) \
             ON CONFLICT (job) DO UPDATE SET position = excluded.position",
            rusqlite::params![job, position as i64],
        )?;
        Ok(())
    }

    pub fn hot_index(&self) -> &HotIndex {
        &self.inner.hot_index
    }

    /// A read-only connection to the read models.
    pub(crate) fn reader(
        &self,
    ) -> Result<r2d2::PooledConnection<r2d2_sqlite::SqliteConnectionManager>, ProjectionError> {
        Ok(self.inner.pool.get()?)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(crate) fn announce(&self, position: u64) {
        self.inner.transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.set_failure(None);
        self.inner.projected.send_replace(position);
    }

    /// Why the read models are not keeping up with the log (their file failed, or the log
    /// could not be read), until a batch is applied again.
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.lock().ok().and_then(|failure| failure.clone())
    }

    fn set_failure(&self, failure: Option<String>) {
        if let Ok(mut current) = self.inner.failure.lock() {
            *current = failure;
        }
    }
}
