//! Copying the WAL back into the database file beside the writer rather than inside its commits.
//!
//! SQLite's automatic checkpoint runs in the connection that commits, after the commit and before
//! the call returns: every few hundred commits one batch waited for thousands of pages to be
//! copied and synced, which is the tail of the append latency. Here the writer only wakes this
//! thread after a commit; it runs a PASSIVE checkpoint on its own connection (which never blocks
//! the writer or a reader) at most every [`INTERVAL`]. The writer's own automatic checkpoint stays
//! as a bound on the WAL should this thread fall behind. The writer stops the thread before it
//! closes its own connection, so the file is left as SQLite leaves it after its last connection:
//! checkpointed, without a WAL. The event log's writer and the projection runner (for the read
//! models' file) each run one.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::BUSY_TIMEOUT_MS;
use crate::StoreError;

/// The least time between two checkpoints: commits in between are copied together.
const INTERVAL: Duration = Duration::from_millis(50);

/// The running checkpoint thread: wake it after commits, stop it with [`Checkpointer::stop`].
#[derive(Debug)]
pub struct Checkpointer {
    wake: SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
    /// What the file holds, for the thread's name and messages: "event log", "read models".
    what: &'static str,
}

impl Checkpointer {
    /// Starts the checkpoint thread for the SQLite file at `path`; `name` names the thread,
    /// `what` says in messages what the file holds.
    pub fn start(path: &Path, name: &str, what: &'static str) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        let (wake, woken) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            run(&connection, &woken, what);
            if let Err((_, error)) = connection.close() {
                tracing::warn!(%error, what, "closing a checkpoint connection");
            }
        })?;
        Ok(Self { wake, thread, what })
    }

    /// After a commit: a wake-up already pending covers this one too.
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Stops the thread and waits for it, so that its connection is closed before the writer's:
    /// the writer's is then the file's last, and closing it checkpoints and removes the WAL.
    pub fn stop(self) {
        let Self { wake, thread, what } = self;
        drop(wake);
        if thread.join().is_err() {
            tracing::warn!(what, "a checkpoint thread panicked");
        }
    }
}

/// Checkpoints after each wake-up, at most every [`INTERVAL`], until the writer is gone.
fn run(connection: &Connection, woken: &Receiver<()>, what: &'static str) {
    let mut last: Option<Instant> = None;
    let mut stopping = false;
    while !stopping && woken.recv().is_ok() {
        // Stopped while waiting: the commits that woke it are still copied, once, before it ends.
        if let Some(wait) = last.map(|last| INTERVAL.saturating_sub(last.elapsed())).filter(|wait| !wait.is_zero()) {
            stopping = matches!(woken.recv_timeout(wait), Err(RecvTimeoutError::Disconnected));
        }
        let copied = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match copied {
            Ok((_, wal_pages, copied_pages)) => tracing::trace!(what, wal_pages, copied_pages, "checkpoint"),
            // Nothing is lost: the WAL keeps every frame until a later checkpoint copies it.
            Err(error) => tracing::warn!(%error, what, "checkpointing a WAL failed"),
        }
        last = Some(Instant::now());
    }
}
