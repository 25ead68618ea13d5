//! The store contract run against EventStoreDB/KurrentDB, when a server is reachable.
//!
//! Set `CREDLEDGER_TEST_ESDB_URL` (e.g. `esdb://127.0.0.1:2113?tls=false`) to run it; each test
//! writes to a fresh ledger stream of its own. Without it, every test says why it skipped.
#![cfg(feature = "eventstoredb")]

use std::sync::Arc;
use std::time::Duration;

use credledger_domain::{Actor, EventId};
use credledger_store::contract::Backend;
use credledger_store::{EventStore, ExpectedVersion, NewEvent, StoreError, store_contract_tests};
use uuid::Uuid;

const SKIP: &str = "CREDLEDGER_TEST_ESDB_URL is not set: no EventStoreDB/KurrentDB server can be installed on this \
                    machine; start one with `docker run --rm -p 2113:2113 \
                    docker.kurrent.io/kurrent-latest/kurrentdb:latest --insecure --run-projections=All` and set \
                    CREDLEDGER_TEST_ESDB_URL=esdb://127.0.0.1:2113?tls=false";

/// A fresh ledger stream on the server `CREDLEDGER_TEST_ESDB_URL` names; reopening opens the
/// same stream.
struct Esdb {
    url: String,
}

impl Esdb {
    /// `None`, after saying so, when no server is configured.
    fn from_env() -> Option<Self> {
        let Ok(base) = std::env::var("CREDLEDGER_TEST_ESDB_URL") else {
            eprintln!("skipped: {SKIP}");
            return None;
        };
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(Self { url: format!("{base}{separator}ledger=credledger-test-{}", Uuid::now_v7()) })
    }
}

#[async_trait::async_trait]
impl Backend for Esdb {
    async fn open(&self) -> Arc<dyn EventStore> {
        credledger_store::open(&self.url).await.unwrap()
    }
}

// The `return` leaves the test when no server is configured.
store_contract_tests!(match Esdb::from_env() {
    Some(backend) => backend,
    None => return,
});

fn event() -> NewEvent {
    NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: "EsdbChecked".to_owned(),
        schema_version: 1,
        org_id: None,
        occurred_at: chrono::Utc::now(),
        actor: Actor::system("test"),
        request: None,
        payload: serde_json::json!({"n": 1}),
    }
}

/// Two stores on one ledger stream stand for two API nodes: each sees the other's appends, and
/// appends racing through both still get gap-free positions and per-stream versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_ledger_see_each_other_and_never_collide() {
    let Some(backend) = Esdb::from_env() else { return };
    let a = backend.open().await;
    let b = backend.open().await;
    let first = a.append("esdb-shared", ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while b.head().await.unwrap() < first.last_position {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the other node's follower sees the append");
    assert_eq!(b.read_stream("esdb-shared", 0).await.unwrap().len(), 1);
    assert!(matches!(
        b.append("esdb-shared", ExpectedVersion::NoStream, vec![event()]).await,
        Err(StoreError::WrongExpectedVersion { actual: Some(0), .. })
    ));

    let racers: Vec<_> = (0..40)
        .map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.append("esdb-race", ExpectedVersion::Any, vec![event(), event()]).await })
        })
        .collect();
    for racer in racers {
        racer.await.unwrap().unwrap();
    }
    let all = a.read_all(1, 1000).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=81).collect::<Vec<_>>());
    let versions: Vec<u64> = all.iter().filter(|e| e.stream == "esdb-race").map(|e| e.version).collect();
    assert_eq!(versions, (0..80).collect::<Vec<_>>());
}

/// Needs no server: an unreachable one fails the open with the client's error, after the
/// client's TLS start-up ran without a panic, and without the URL's password.
#[tokio::test]
async fn an_unreachable_server_fails_the_open_cleanly() {
    let url = "esdb://admin:hunter2@127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10&gossipTimeout=500";
    let opened =
        tokio::time::timeout(Duration::from_secs(60), credledger_store::open(url)).await.expect("open gives up");
    let error = opened.unwrap_err();
    assert!(matches!(error, StoreError::EventStoreDb(_)), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("hunter2"), "{text}");
    // A client whose connection task panicked at start-up answers only that the task stopped.
    assert!(!text.contains("connection task stopped"), "the client started: {text}");
}
