//! The projection runner: log → projectors → one transaction per batch → hot index → position.

use std::collections::HashMap;
use std::sync::Arc;

use credledger_domain::CredentialId;
use credledger_domain::DomainEvent;
use credledger_domain::event::DecodeError;
use credledger_domain::token::TokenDigest;
use credledger_store::{EventStore, RecordedEvent, StoreError, WalCheckpointer};
use futures::StreamExt;
use rusqlite::{Connection, params};
use tokio_util::task::AbortOnDropHandle;

use crate::credential::Credential;
use crate::projector::{self, Effects, Projector};
use crate::{HotIndex, ProjectionError, Projections, migrate};

/// Most events applied in one read-model transaction.
const BATCH: usize = 8192;

/// Most events read from the log ahead of the batch being applied.
const READ_AHEAD: usize = BATCH;

/// WAL pages after which a read-model commit checkpoints itself, should the checkpoint thread
/// fall behind: 32 MiB of 4 KiB pages.
const WAL_BOUND_PAGES: i64 = 8192;

/// The runner's page cache, in KiB as SQLite's negative `cache_size` takes it: 64 MiB.
const RUNNER_CACHE_KIB: i64 = -65_536;

/// Credentials decoded and added to the hot index at a time when it is loaded.
const LOAD_CHUNK: usize = 4096;

/// The position every projector has reached: the runner resumes after it.
pub(crate) fn checkpoint(connection: &Connection) -> Result<u64, ProjectionError> {
    let checkpoints = checkpoints(connection)?;
    Ok(projector::all().iter().map(|p| checkpoints.get(p.name()).copied().unwrap_or(0)).min().unwrap_or(0))
}

fn checkpoints(connection: &Connection) -> Result<HashMap<String, u64>, ProjectionError> {
    let mut statement = connection.prepare("SELECT projector, position FROM projection_checkpoints")?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Fills the hot index from the inventory at start-up; the runner then continues from the
/// checkpoint the inventory was committed with.
pub(crate) fn load_hot_index(connection: &Connection, index: &HotIndex) -> Result<(), ProjectionError> {
    let count: i64 = connection.query_row("SELECT count(*) FROM credentials", [], |row| row.get(0))?;
    index.reserve(usize::try_from(count).unwrap_or(0));
    let mut statement = connection.prepare("SELECT state FROM credentials")?;
    let mut rows = statement.query([])?;
    // A chunk at a time: the decoded credentials of the whole inventory are never held at once,
    // so start-up needs little more memory than the index it builds.
    let mut credentials = Vec::with_capacity(LOAD_CHUNK);
    loop {
        let row = rows.next()?;
        if let Some(row) = row {
            let json = row.get_ref(0)?.as_str().map_err(|e| ProjectionError::Decode(e.to_string()))?;
            let credential: Credential =
                serde_json::from_str(json).map_err(|e| ProjectionError::Decode(e.to_string()))?;
            credentials.push(credential);
        }
        if credentials.len() == LOAD_CHUNK || (row.is_none() && !credentials.is_empty()) {
            index.upsert(&credentials);
            credentials.clear();
        }
        if row.is_none() {
            break;
        }
    }
    let mut statement = connection
        .prepare("SELECT credential_id, secret_hash FROM credential_secrets WHERE replaced_at IS NOT NULL")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (id, hash): (String, String) = (row.get(0)?, row.get(1)?);
        let id = CredentialId::parse(&id).map_err(|e| ProjectionError::Decode(e.to_string()))?;
        let digest = TokenDigest::from_hex(&hash).map_err(|e| ProjectionError::Decode(e.to_string()))?;
        index.retire(id, digest);
    }
    Ok(())
}

/// Follows the log from the checkpoint; returns once `until` is applied, or never if `None`.
pub(crate) async fn run(
    projections: &Projections,
    store: Arc<dyn EventStore>,
    until: Option<u64>,
) -> Result<(), ProjectionError> {
    let mut connection = migrate::connect(projections.path())?;
    // The runner writes every model: their index pages stay cached between batches instead of
    // being read again from the file (SQLite's default cache is 2 MiB).
    connection.pragma_update(None, "cache_size", RUNNER_CACHE_KIB)?;
    // The WAL is copied back by the checkpoint thread; the commit's own checkpoint only bounds it.
    connection.pragma_update(None, "wal_autocheckpoint", WAL_BOUND_PAGES)?;
    connection.pragma_update(None, "journal_size_limit", 4 << 20)?;
    let checkpoint = WalCheckpointer::start(projections.path(), "credledger-read-checkpoint", "read models")?;
    let mut done = checkpoints(&connection)?;
    let mut projectors = projector::all();
    let from = projectors.iter().map(|p| done.get(p.name()).copied().unwrap_or(0)).min().unwrap_or(0);
    let (mut events, _reading) = read_ahead(&store, from + 1);
    let applied = async {
        let mut read = Vec::with_capacity(BATCH);
        while events.recv_many(&mut read, BATCH).await > 0 {
            let batch = read.drain(..).collect::<Result<Vec<_>, _>>()?;
            let Some(last) = batch.last().map(|event| event.position) else { continue };
            let (returned, effects) = tokio::task::spawn_blocking(move || {
                let effects = apply_batch(&mut connection, &projectors, &mut done, &batch);
                ((connection, projectors, done), effects)
            })
            .await
            .map_err(|_| ProjectionError::Stopped)?;
            (connection, projectors, done) = returned;
            checkpoint.wake();
            projections.hot_index().upsert(&effects?.credentials);
            projections.announce(last);
            if until.is_some_and(|until| last >= until) {
                break;
            }
        }
        Ok(())
    }
    .await;
    // Joining the thread waits for a checkpoint in progress: not on the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || checkpoint.stop()).await;
    applied
}

/// The log from `from`, read by a task of its own up to [`READ_AHEAD`] events ahead of the
/// runner: the next events are read and decoded while a batch is applied, and a batch takes every
/// event already read, up to [`BATCH`]. The task is aborted when the returned handle is dropped,
/// however the runner ends (returned, failed, or its own task aborted).
fn read_ahead(
    store: &Arc<dyn EventStore>,
    from: u64,
) -> (tokio::sync::mpsc::Receiver<Result<RecordedEvent, StoreError>>, AbortOnDropHandle<()>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD);
    let mut log = store.subscribe(from);
    let reading = tokio::spawn(async move {
        while let Some(event) = log.next().await {
            let failed = event.is_err();
            if sender.send(event).await.is_err() || failed {
                return;
            }
        }
    });
    (receiver, AbortOnDropHandle::new(reading))
}

fn apply_batch(
    connection: &mut Connection,
    projectors: &[Box<dyn Projector>],
    done: &mut HashMap<String, u64>,
    batch: &[RecordedEvent],
) -> Result<Effects, ProjectionError> {
    let tx = connection.transaction()?;
    let mut effects = Effects::default();
    for event in batch {
        let decoded = match DomainEvent::decode(&event.event_type, &event.payload) {
            Ok(decoded) => Some(decoded),
            Err(DecodeError::UnknownType(_)) => None,
            Err(error) => return Err(ProjectionError::Decode(error.to_string())),
        };
        for projector in projectors {
            if done.get(projector.name()).is_some_and(|&position| position >= event.position) {
                continue;
            }
            projector.apply(&tx, event, decoded.as_ref(), &mut effects)?;
        }
    }
    if let Some(last) = batch.last() {
        for projector in projectors {
            let position = done.get(projector.name()).copied().unwrap_or(0).max(last.position);
            tx.prepare_cached(
                "INSERT INTO projection_checkpoints (projector, position) VALUES (?1, ?2) \
                 ON CONFLICT (projector) DO UPDATE SET position = excluded.position",
            )?
            .execute(params![projector.name(), position as i64])?;
        }
        tx.prepare_cached(
            "INSERT INTO projected_tip (singleton, position, leaf_hash) VALUES (1, ?1, ?2) \
             ON CONFLICT (singleton) DO UPDATE SET position = excluded.position, leaf_hash = excluded.leaf_hash",
        )?
        .execute(params![last.position as i64, &last.leaf_hash[..]])?;
    }
    tx.commit()?;
    if let Some(last) = batch.last() {
        for projector in projectors {
            let position = done.entry(projector.name().to_owned()).or_insert(0);
            *position = (*position).max(last.position);
        }
    }
    Ok(effects)
}
