//! Copying the WAL back into the database file beside the writer rather than inside its commits.
//!
//! SQLite's automatic checkpoint runs in the connection that commits, after the commit and before
//! the call returns: every few hundred commits one batch waited for thousands of pages to be
//! copied and synced, which is the tail of the append latency. Here the writer only wakes this
//! thread after a commit; it runs a PASSIVE checkpoint on its own connection (which never blocks
//! the writer or a reader) at most every [`INTERVAL`]. The writer's own automatic checkpoint stays
//! as a bound on the WAL should this thread fall behind. The writer stops the thread before it
//! closes its own connection, so the file is left as SQLite leaves it after its last connection:
//! checkpointed, without a WAL.

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
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the checkpoint thread for the log at `path`.
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        let (wake, woken) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new().name("credledger-log-checkpoint".to_owned()).spawn(move || {
            run(&connection, &woken);
            if let Err((_, error)) = connection.close() {
                tracing::warn!(%error, "closing the event log's checkpoint connection");
            }
        })?;
        Ok(Self { wake, thread })
    }

    /// After a commit: a wake-up already pending covers this one too.
    pub(super) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Stops the thread and waits for it, so that its connection is closed before the writer's:
    /// the writer's is then the file's last, and closing it checkpoints and removes the WAL.
    pub(super) fn stop(self) {
        let Self { wake, thread } = self;
        drop(wake);
        if thread.join().is_err() {
            tracing::warn!("the event log's checkpoint thread panicked");
        }
    }
}

/// Checkpoints after each wake-up, at most every [`INTERVAL`], until the writer is gone.
fn run(connection: &Connection, woken: &Receiver<()>) {
    let mut last: Option<Instant> = None;
    while woken.recv().is_ok() {
        if let Some(wait) = last.map(|last| INTERVAL.saturating_sub(last.elapsed())).filter(|wait| !wait.is_zero())
            && let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(wait)
        {
            break;
        }
        let copied = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match copied {
            Ok((_, wal_pages, copied_pages)) => tracing::trace!(wal_pages, copied_pages, "log checkpoint"),
            // Nothing is lost: the WAL keeps every frame until a later checkpoint copies it.
            Err(error) => tracing::warn!(%error, "checkpointing the event log's WAL failed"),
        }
        last = Some(Instant::now());
    }
}
