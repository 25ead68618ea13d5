//! The store contract run against the SQLite backend, plus what only SQLite has: the file's
//! triggers, its migrations, and the writer's group commit.

use std::path::PathBuf;
use std::sync::Arc;

use credledger_domain::{Actor, EventId};
use credledger_store::contract::Backend;
use credledger_store::{EventStore, ExpectedVersion, NewEvent, SqliteStore, StoreError, store_contract_tests};
use tempfile::TempDir;
use uuid::Uuid;

/// A fresh log file in its own temporary directory, below a directory that does not exist yet.
struct Sqlite {
    dir: TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("data").join("events.db")
    }
}

#[async_trait::async_trait]
impl Backend for Sqlite {
    async fn open(&self) -> Arc<dyn EventStore> {
        credledger_store::open(&format!("sqlite://{}", self.path().display())).await.unwrap()
    }
}

store_contract_tests!(Sqlite::new());

fn event() -> NewEvent {
    NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: "SqliteChecked".to_owned(),
        schema_version: 1,
        org_id: None,
        occurred_at: chrono::Utc::now(),
        actor: Actor::system("test"),
        request: None,
        payload: serde_json::json!({"secret_hash": "00"}),
    }
}

#[tokio::test]
async fn the_events_table_refuses_update_and_delete() {
    let backend = Sqlite::new();
    let store = backend.open().await;
    store.append("sqlite-a", ExpectedVersion::NoStream, vec![event(), event()]).await.unwrap();
    let before = store.read_all(1, 10).await.unwrap();
    store.close().await;

    let connection = rusqlite::Connection::open(backend.path()).unwrap();
    for sql in [
        "UPDATE events SET event_type = 'Rewritten' WHERE position = 1",
        "UPDATE events SET envelope = x'00'",
        "DELETE FROM events WHERE position = 2",
        "DELETE FROM events",
    ] {
        let error = connection.execute(sql, []).unwrap_err();
        assert!(error.to_string().contains("events are append-only"), "{sql}: {error}");
    }
    drop(connection);
    assert_eq!(backend.open().await.read_all(1, 10).await.unwrap(), before);
}

#[tokio::test]
async fn a_file_migrated_by_a_newer_release_is_refused() {
    let backend = Sqlite::new();
    backend.open().await.close().await;
    let connection = rusqlite::Connection::open(backend.path()).unwrap();
    connection.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'from_the_future')", []).unwrap();
    drop(connection);
    match SqliteStore::open(backend.path()).await {
        Err(StoreError::SchemaTooNew { found: 99, supported: 1 }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn an_envelope_that_does_not_match_its_row_is_reported_as_corrupt() {
    let backend = Sqlite::new();
    let store = backend.open().await;
    store.append("sqlite-b", ExpectedVersion::NoStream, vec![event(), event()]).await.unwrap();
    store.close().await;
    // Someone with the file at hand drops the guard and swaps an envelope.
    let connection = rusqlite::Connection::open(backend.path()).unwrap();
    connection
        .execute_batch(
            "DROP TRIGGER events_refuse_update;
             UPDATE events SET envelope = (SELECT envelope FROM events WHERE position = 1) WHERE position = 2;",
        )
        .unwrap();
    drop(connection);
    let store = backend.open().await;
    match store.read_all(1, 10).await {
        Err(StoreError::Corrupt { position: 2, .. }) => {}
        other => panic!("expected Corrupt at 2, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits() {
    const APPENDS: u64 = 64;
    let backend = Sqlite::new();
    let store = Arc::new(SqliteStore::open(backend.path()).await.unwrap());
    let start = Arc::new(tokio::sync::Barrier::new(APPENDS as usize));
    let appends: Vec<_> = (0..APPENDS)
        .map(|n| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.append(&format!("sqlite-usage-{n}"), ExpectedVersion::Any, vec![event()]).await
            })
        })
        .collect();
    let mut positions = Vec::new();
    for append in appends {
        positions.push(append.await.unwrap().unwrap().first_position);
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=APPENDS).collect::<Vec<_>>());
    let commits = store.commits();
    assert!((1..APPENDS).contains(&commits), "{APPENDS} appends took {commits} commits");
}

#[tokio::test]
async fn store_urls_choose_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("log.db");
    let store = credledger_store::open(&format!("sqlite:{}", path.display())).await.unwrap();
    store.append("sqlite-c", ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    store.close().await;
    assert!(path.exists(), "the file and its directory are created");

    let error = credledger_store::open("mysql://user:hunter2@db.invalid/ledger").await.unwrap_err();
    assert!(matches!(error, StoreError::UnsupportedUrl(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "the error leaks no password: {error}");
    assert!(matches!(credledger_store::open("sqlite://").await, Err(StoreError::UnsupportedUrl(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_batch_fails_each_of_its_appends_and_the_log_goes_on() {
    let backend = Sqlite::new();
    let store = backend.open().await;
    store.append("sqlite-d", ExpectedVersion::Any, vec![event()]).await.unwrap();
    // A guard added behind the store's back makes any batch holding a `Poison` event fail.
    let connection = rusqlite::Connection::open(backend.path()).unwrap();
    connection
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.event_type = 'Poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .unwrap();
    let mut poison = event();
    poison.event_type = String::from("Poison");
    let appends: Vec<_> = (0..16)
        .map(|n| {
            let store = store.clone();
            let events = if n == 8 { vec![poison.clone()] } else { vec![event(), event()] };
            tokio::spawn(
                async move { store.append(&format!("sqlite-e-{}", n % 3), ExpectedVersion::Any, events).await },
            )
        })
        .collect();
    let mut acknowledged = Vec::new();
    for (n, append) in appends.into_iter().enumerate() {
        match append.await.unwrap() {
            Ok(result) => acknowledged.push(result),
            Err(StoreError::BatchFailed(_)) => {}
            Err(error) if n == 8 => panic!("the poisoned append failed otherwise: {error}"),
            Err(error) => panic!("append {n}: {error}"),
        }
    }
    connection.execute_batch("DROP TRIGGER poison").unwrap();
    drop(connection);

    let after = store.append("sqlite-d", ExpectedVersion::Exact(0), vec![event()]).await.unwrap();
    let all = store.read_all(1, 1000).await.unwrap();
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=after.last_position).collect::<Vec<_>>(), "no gap where the batch failed");
    assert_eq!(all.len() as u64, 2 + 2 * acknowledged.len() as u64);
    assert!(all.iter().all(|e| e.event_type != "Poison"));
}

#[tokio::test]
async fn two_writers_of_one_file_never_reuse_a_version_or_sequence_they_remember() {
    // Each writer keeps the last versions and sequences it saw in memory; an append by the other
    // process must make it read them again, or it would hand out a version twice.
    let backend = Sqlite::new();
    let first = SqliteStore::open(backend.path()).await.unwrap();
    let second = SqliteStore::open(backend.path()).await.unwrap();
    let org = credledger_domain::OrgId::from_uuid(Uuid::now_v7());
    let in_org = || NewEvent { org_id: Some(org), ..event() };
    first.append("shared", ExpectedVersion::NoStream, vec![in_org()]).await.unwrap();
    second.append("shared", ExpectedVersion::Exact(0), vec![in_org()]).await.unwrap();
    let stale = first.append("shared", ExpectedVersion::Exact(0), vec![in_org()]).await;
    assert!(matches!(stale, Err(StoreError::WrongExpectedVersion { actual: Some(1), .. })), "{stale:?}");
    let third = first.append("shared", ExpectedVersion::Any, vec![in_org()]).await.unwrap();
    assert_eq!((third.first_position, third.next_expected_version), (3, 2));
    let events = first.read_stream("shared", 0).await.unwrap();
    let sequences: Vec<_> = events.iter().map(|event| (event.version, event.org_sequence)).collect();
    assert_eq!(sequences, vec![(0, Some(1)), (1, Some(2)), (2, Some(3))]);
}

#[tokio::test]
async fn committed_events_are_copied_from_the_wal_into_the_file_beside_the_writer() {
    // Far below the WAL bound at which a commit would checkpoint itself: only the checkpoint
    // thread moves these pages into the database file.
    let backend = Sqlite::new();
    let store = SqliteStore::open(backend.path()).await.unwrap();
    let file_bytes = || std::fs::metadata(backend.path()).unwrap().len();
    let before = file_bytes();
    for n in 0..200 {
        store.append(&format!("copied-{n}"), ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while file_bytes() < before + 40 * 1024 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(file_bytes() >= before + 40 * 1024, "the file grew from {before} to {} bytes", file_bytes());
}

#[tokio::test]
async fn a_closed_log_is_one_file_without_a_wal() {
    // The checkpoint thread's connection closes before the writer's, which is then the file's
    // last: closing it copies the WAL back and removes it, so the file alone is the whole log.
    let backend = Sqlite::new();
    let store = SqliteStore::open(backend.path()).await.unwrap();
    for n in 0..50 {
        store.append(&format!("closed-{n}"), ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    }
    store.close().await;
    drop(store);
    let wal = backend.path().with_extension("db-wal");
    assert!(!wal.exists(), "{} is still there", wal.display());
    let copy = backend.dir.path().join("copy.db");
    std::fs::copy(backend.path(), &copy).unwrap();
    let reopened = SqliteStore::open(&copy).await.unwrap();
    assert_eq!(reopened.head().await.unwrap(), 50);
}
