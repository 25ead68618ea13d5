//! The store contract run against the PostgreSQL backend on a throwaway cluster, plus what only a
//! shared database has: the table's triggers, its migrations, and several processes (here, several
//! stores on one database) appending, following and electing a leader together.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use credledger_domain::{Actor, EventId};
use credledger_store::contract::Backend;
use credledger_store::{EventStore, ExpectedVersion, NewEvent, PostgresStore, StoreError, store_contract_tests};
use futures::StreamExt;
use uuid::Uuid;

/// A fresh database on the test cluster.
struct Postgres {
    url: String,
}

impl Postgres {
    async fn new() -> Self {
        Self { url: credledger_store::testing::database().await }
    }
}

#[async_trait::async_trait]
impl Backend for Postgres {
    async fn open(&self) -> Arc<dyn EventStore> {
        credledger_store::open(&self.url).await.unwrap()
    }
}

store_contract_tests!(Postgres::new().await);

fn event() -> NewEvent {
    NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: "PostgresChecked".to_owned(),
        schema_version: 1,
        org_id: None,
        occurred_at: chrono::Utc::now(),
        actor: Actor::system("test"),
        request: None,
        payload: serde_json::json!({"n": 1}),
    }
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn the_events_table_refuses_update_delete_and_truncate() {
    let backend = Postgres::new().await;
    let store = backend.open().await;
    store.append("pg-a", ExpectedVersion::NoStream, vec![event(), event()]).await.unwrap();
    let before = store.read_all(1, 10).await.unwrap();
    let client = client(&backend.url).await;
    for sql in [
        "UPDATE events SET event_type = 'Rewritten' WHERE position = 1",
        "UPDATE events SET envelope = '\\x00'",
        "DELETE FROM events WHERE position = 2",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        let message = error.as_db_error().map(|db| db.message().to_owned()).unwrap_or_default();
        assert!(message.contains("events are append-only"), "{sql}: {error:?}");
    }
    assert_eq!(store.read_all(1, 10).await.unwrap(), before);
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_release_is_refused() {
    let backend = Postgres::new().await;
    backend.open().await.close().await;
    client(&backend.url)
        .await
        .batch_execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'from_the_future')")
        .await
        .unwrap();
    match PostgresStore::open(&backend.url).await {
        Err(StoreError::SchemaTooNew { found: 99, supported: 2 }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_errors_that_leak_no_password() {
    let error = credledger_store::open("postgres://user:hunter2@127.0.0.1:1/ledger?bogus=1").await.unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
    // Port 1 on loopback: nothing listens there.
    let error = credledger_store::open("postgres://user:hunter2@127.0.0.1:1/ledger").await.unwrap_err();
    assert!(matches!(error, StoreError::Postgres(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_stores_on_one_database_share_one_gap_free_log() {
    const PER_STORE: usize = 60;
    let backend = Postgres::new().await;
    let nodes = [backend.open().await, backend.open().await, backend.open().await];
    let mut followers: Vec<_> = nodes.iter().map(|node| node.subscribe(1)).collect();
    let appends: Vec<_> = nodes
        .iter()
        .enumerate()
        .flat_map(|(n, node)| {
            (0..PER_STORE).map(move |i| {
                let node = node.clone();
                tokio::spawn(async move {
                    let events = vec![event(); 1 + i % 3].into_iter().map(|mut e| {
                        e.event_id = EventId::from_uuid(Uuid::now_v7());
                        e
                    });
                    node.append(&format!("pg-node-{n}-{}", i % 5), ExpectedVersion::Any, events.collect()).await
                })
            })
        })
        .collect();
    let mut acknowledged = HashSet::new();
    for append in appends {
        let result = append.await.unwrap().unwrap();
        acknowledged.extend(result.first_position..=result.last_position);
    }
    let total = acknowledged.len() as u64;
    assert_eq!(acknowledged, (1..=total).collect::<HashSet<_>>(), "positions are gap-free across stores");
    // Every store's subscription sees every store's events, once, in order, promptly.
    for follower in &mut followers {
        let seen: Vec<u64> = tokio::time::timeout(Duration::from_secs(10), async {
            let mut seen = Vec::new();
            while (seen.len() as u64) < total {
                seen.push(follower.next().await.unwrap().unwrap().position);
            }
            seen
        })
        .await
        .expect("each store sees the others' events within a few seconds");
        assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    }
    for node in &nodes {
        assert_eq!(node.head().await.unwrap(), total);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_appends_from_two_stores_never_both_succeed() {
    let backend = Postgres::new().await;
    let (a, b) = (backend.open().await, backend.open().await);
    a.append("pg-contested", ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    for round in 0..20u64 {
        let (first, second) = tokio::join!(
            a.append("pg-contested", ExpectedVersion::Exact(round), vec![event()]),
            b.append("pg-contested", ExpectedVersion::Exact(round), vec![event()]),
        );
        let outcomes = [first, second];
        let won = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes.iter().any(|outcome| matches!(outcome, Err(StoreError::WrongExpectedVersion { .. }))),
            "round {round}: {outcomes:?}"
        );
    }
    let versions: Vec<u64> = a.read_stream("pg-contested", 0).await.unwrap().iter().map(|e| e.version).collect();
    assert_eq!(versions, (0..=20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_store_leads_and_another_takes_over_when_it_closes() {
    let backend = Postgres::new().await;
    let (a, b) = (backend.open().await, backend.open().await);
    let (mut a_leads, mut b_leads) = (a.leadership(), b.leadership());
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                _ = a_leads.changed() => {}
                _ = b_leads.changed() => {}
            }
            let (a_now, b_now) = (*a_leads.borrow(), *b_leads.borrow());
            assert!(!(a_now && b_now), "two leaders at once");
            if a_now || b_now {
                return a_now;
            }
        }
    })
    .await
    .expect("a leader within a few seconds");
    // Observe a while: never two leaders.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!(*a_leads.borrow() && *b_leads.borrow()), "two leaders at once");
    }
    let (leader, mut follower) = if first { (a, b_leads) } else { (b, a_leads) };
    leader.close().await;
    tokio::time::timeout(Duration::from_secs(10), follower.wait_for(|leading| *leading))
        .await
        .expect("the other store leads within a few seconds of the leader closing")
        .unwrap();
}
