//! Copying the WAL back into the database file beside the writer rather than inside its commits.
//!
//! SQLite's automatic checkpoint runs in the connection that commits, after the commit and before
//! the call returns: every few hundred commits one batch waited for thousands of pages to be
//! copied and synced, which is the tail of the append latency. Here the writer only wakes this
//! thread after a commit; it runs a PASSIVE checkpoint on its own connection (which never blocks
//! the writer or a reader) at most every [`INTERVAL`]. The writer's own automatic checkpoint stays
//! as a bound on the WAL should this thread fall behind.

use std::path::Path;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use rusqlite::Connection;

use super::BUSY_TIMEOUT_MS;
use crate::StoreError;

/// The least time between two checkpoints: commits in between are copied together.
const INTERVAL: Duration = Duration::from_millis(50);

/// Starts the checkpoint thread for the log at `path`; it stops once every returned sender is
/// dropped (the writer stopped).
pub(super) fn start(path: &Path) -> Result<SyncSender<()>, StoreError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    let (wake, woken) = sync_channel::<()>(1);
    std::thread::Builder::new().name("credledger-log-checkpoint".to_owned()).spawn(move || {
        while woken.recv().is_ok() {
            let copied = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
            });
            match copied {
                Ok((_, wal_pages, copied_pages)) => tracing::trace!(wal_pages, copied_pages, "log checkpoint"),
                // Nothing is lost: the WAL keeps every frame until a later checkpoint copies it.
                Err(error) => tracing::warn!(%error, "checkpointing the event log's WAL failed"),
            }
            std::thread::sleep(INTERVAL);
        }
        if let Err((_, error)) = connection.close() {
            tracing::warn!(%error, "closing the event log's checkpoint connection");
        }
    })?;
    Ok(wake)
}
