//! The store contract: what every `EventStore` backend must do, written once and run per backend.
//!
//! A backend's test file implements [`Backend`] and invokes [`store_contract_tests!`] with an
//! expression that makes a fresh, empty backend; the macro expands to one `#[tokio::test]` per
//! check below, so a failure names the broken behaviour. The instantiating crate needs `tokio`
//! (with `macros` and `rt-multi-thread`) and `async-trait`.
//!
//! Each check is a plain async function that panics when the behaviour is broken: this module is
//! test code, compiled into the library only so that other backends' tests can reach it.

use chrono::DateTime;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use credledger_domain::{Actor, EventId, MemberId, OrgId, RequestMeta};
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{AppendResult, Basis, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};

/// A backend under test.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Opens the backend's storage. Calling it again (after dropping or closing the previous
    /// store) reopens the same storage, with everything acknowledged so far.
    async fn open(&self) -> Arc<dyn EventStore>;
}

/// Expands to one test per contract check, each on a fresh backend made by `$backend`.
#[macro_export]
macro_rules! store_contract_tests {
    ($backend:expr) => {
        $crate::store_contract_tests!(@checks $backend;
            appending_to_a_new_stream_numbers_events_from_the_start,
            a_stale_expected_version_is_refused_and_writes_nothing,
            an_append_based_on_a_view_older_than_its_basis_stream_is_refused,
            retrying_an_append_returns_its_original_result_and_records_it_once,
            an_event_id_reused_by_another_append_is_refused,
            concurrent_appends_get_gap_free_positions_in_commit_order,
            every_acknowledged_event_survives_reopening,
            the_leaf_hash_is_the_hash_of_the_stored_envelope_bytes,
            raw_rows_and_leaf_hashes_read_back_as_stored,
            imported_rows_keep_their_positions_bytes_and_hashes,
            a_subscription_sees_every_event_once_across_catch_up_and_live,
            a_subscription_starts_at_the_position_asked_for,
            a_subscription_ends_after_the_last_event_when_the_store_closes,
            malformed_appends_are_refused,
        );
    };
    (@checks $backend:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                $crate::contract::$check(&$backend).await;
            }
        )*
    };
}

/// Long enough for a slow CI disk, short enough that a hang fails instead of stalling the run.
const PATIENCE: Duration = Duration::from_secs(60);

fn org(n: u128) -> OrgId {
    OrgId::from_uuid(Uuid::from_u128(0xC0_0000 + n))
}

/// A fresh event with every envelope field filled in.
fn event(org_id: Option<OrgId>, n: u64) -> NewEvent {
    NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: "ContractChecked".to_owned(),
        schema_version: 3,
        org_id,
        occurred_at: DateTime::parse_from_rfc3339("2026-06-01T12:34:56.123456789+02:00").unwrap().to_utc(),
        actor: Actor::member(MemberId::from_uuid(Uuid::from_u128(5))),
        request: Some(RequestMeta {
            ip: Some("2001:db8::1".to_owned()),
            user_agent: Some("contract/1 \"quoted\" ünïcode".to_owned()),
            request_id: None,
        }),
        payload: serde_json::json!({"n": n, "nested": {"list": [1, 2.5, null, "x"], "flag": true}}),
    }
}

fn events(org_id: Option<OrgId>, count: u64) -> Vec<NewEvent> {
    (0..count).map(|n| event(org_id, n)).collect()
}

fn ids(events: &[NewEvent]) -> Vec<EventId> {
    events.iter().map(|event| event.event_id).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.position).collect()
}

/// The whole log, read page by page.
async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let page = store.read_all(all.len() as u64 + 1, 1000).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// A tiny deterministic generator, so a failing concurrent run can be reasoned about.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

pub async fn appending_to_a_new_stream_numbers_events_from_the_start(backend: &dyn Backend) {
    let store = backend.open().await;
    assert_eq!(store.head().await.unwrap(), 0, "a new log is empty");
    let new = vec![event(Some(org(1)), 0), event(Some(org(1)), 1), event(None, 2)];
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let result = store.append("contract-a", ExpectedVersion::NoStream, new.clone()).await.unwrap();
    let after = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    assert_eq!(result, AppendResult { first_position: 1, last_position: 3, next_expected_version: 2 });

    let recorded = store.read_stream("contract-a", 0).await.unwrap();
    assert_eq!(positions(&recorded), vec![1, 2, 3]);
    assert_eq!(recorded.iter().map(|e| e.version).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(recorded.iter().map(|e| e.org_sequence).collect::<Vec<_>>(), vec![Some(1), Some(2), None]);
    for (recorded, new) in recorded.iter().zip(&new) {
        assert_eq!(recorded.stream, "contract-a");
        assert_eq!(recorded.event_id, new.event_id);
        assert_eq!(recorded.event_type, new.event_type);
        assert_eq!(recorded.schema_version, new.schema_version);
        assert_eq!(recorded.org_id, new.org_id);
        assert_eq!(recorded.occurred_at, new.occurred_at);
        assert_eq!(recorded.actor, new.actor);
        assert_eq!(recorded.request, new.request);
        assert_eq!(recorded.payload, new.payload);
        assert!(before <= recorded.recorded_at && recorded.recorded_at <= after, "recorded_at is the append's time");
    }
    assert_eq!(store.read_stream("contract-a", 1).await.unwrap(), recorded[1..].to_vec());
    assert!(store.read_stream("contract-a", 3).await.unwrap().is_empty());
    assert!(store.read_stream("contract-nothing", 0).await.unwrap().is_empty());

    // Another stream continues the global positions and the organization's sequence.
    let result = store.append("contract-b", ExpectedVersion::NoStream, vec![event(Some(org(1)), 3)]).await.unwrap();
    assert_eq!(result, AppendResult { first_position: 4, last_position: 4, next_expected_version: 0 });
    let b = store.read_stream("contract-b", 0).await.unwrap();
    assert_eq!((b[0].position, b[0].version, b[0].org_sequence), (4, 0, Some(3)));
    assert_eq!(store.head().await.unwrap(), 4);

    assert_eq!(positions(&store.read_all(1, 2).await.unwrap()), vec![1, 2]);
    assert_eq!(positions(&store.read_all(3, 10).await.unwrap()), vec![3, 4]);
    assert_eq!(positions(&store.read_all(0, 10).await.unwrap()), vec![1, 2, 3, 4]);
    assert!(store.read_all(5, 10).await.unwrap().is_empty());
    assert!(store.read_all(1, 0).await.unwrap().is_empty());
    assert_eq!(store.read_all(1, 10).await.unwrap()[..3], recorded[..]);
}

pub async fn a_stale_expected_version_is_refused_and_writes_nothing(backend: &dyn Backend) {
    let store = backend.open().await;
    store.append("contract-c", ExpectedVersion::NoStream, events(None, 2)).await.unwrap();
    let refusals = [
        ("contract-c", ExpectedVersion::Exact(0), Some(1)),
        ("contract-c", ExpectedVersion::Exact(2), Some(1)),
        ("contract-c", ExpectedVersion::NoStream, Some(1)),
        ("contract-new", ExpectedVersion::Exact(0), None),
    ];
    for (stream, expected, actual) in refusals {
        match store.append(stream, expected, events(Some(org(2)), 2)).await {
            Err(StoreError::WrongExpectedVersion { stream: s, expected: e, actual: a }) => {
                assert_eq!((s.as_str(), e, a), (stream, expected, actual));
            }
            other => panic!("{stream} at {expected}: expected WrongExpectedVersion, got {other:?}"),
        }
    }
    assert_eq!(store.head().await.unwrap(), 2, "a refused append writes nothing");
    assert_eq!(everything(&*store).await.len(), 2);

    let result = store.append("contract-c", ExpectedVersion::Exact(1), events(Some(org(2)), 1)).await.unwrap();
    assert_eq!(result, AppendResult { first_position: 3, last_position: 3, next_expected_version: 2 });
    // Refusals consumed no organization sequence numbers either.
    assert_eq!(store.read_all(3, 1).await.unwrap()[0].org_sequence, Some(1));
    let result = store.append("contract-c", ExpectedVersion::Any, events(None, 1)).await.unwrap();
    assert_eq!(result.next_expected_version, 3);
}

/// A use judged on a credential's lifecycle up to some position must not land after a later
/// lifecycle event: the store refuses it where the log is ordered, naming that event's position.
pub async fn an_append_based_on_a_view_older_than_its_basis_stream_is_refused(backend: &dyn Backend) {
    let store = backend.open().await;
    let basis = |position| Basis { stream: "contract-life".to_owned(), position };
    // A stream without events, and one whose last event the view has seen, let the append through.
    let first = store.append_on_basis("contract-use", ExpectedVersion::Any, events(None, 1), basis(0)).await.unwrap();
    assert_eq!(first.last_position, 1);
    let created = store.append("contract-life", ExpectedVersion::NoStream, events(None, 1)).await.unwrap();
    assert_eq!(created.last_position, 2);
    let used = store.append_on_basis("contract-use", ExpectedVersion::Any, events(None, 1), basis(2)).await.unwrap();
    assert_eq!(used.last_position, 3);
    let stopped = store.append("contract-life", ExpectedVersion::Exact(0), events(None, 1)).await.unwrap();
    assert_eq!(stopped.last_position, 4);

    // Decided on the view at 3, before the event at 4: refused, and nothing written.
    let late = events(None, 1);
    match store.append_on_basis("contract-use", ExpectedVersion::Any, late.clone(), basis(3)).await {
        Err(StoreError::Superseded { stream, basis, position }) => {
            assert_eq!((stream.as_str(), basis, position), ("contract-life", 3, 4));
        }
        other => panic!("expected Superseded, got {other:?}"),
    }
    assert_eq!(store.head().await.unwrap(), 4, "a refused use writes nothing");

    // Appends queued together are judged in arrival order: a lifecycle event earlier in the same
    // batch refuses a use decided before it, and a use decided after it goes through.
    let (stopped_again, refused, admitted) = tokio::join!(
        store.append("contract-life", ExpectedVersion::Exact(1), events(None, 1)),
        async {
            tokio::task::yield_now().await;
            store.append_on_basis("contract-use", ExpectedVersion::Any, events(None, 1), basis(4)).await
        },
        store.append_on_basis("contract-use", ExpectedVersion::Any, late.clone(), basis(u64::MAX)),
    );
    let stopped_again = stopped_again.unwrap().last_position;
    match refused {
        Err(StoreError::Superseded { position, .. }) => assert_eq!(position, stopped_again),
        Ok(result) => assert!(result.last_position < stopped_again, "a use landed after the event it missed"),
        Err(other) => panic!("{other:?}"),
    }
    let admitted = admitted.unwrap();
    // A retry of a recorded use returns its result, whatever happened to the stream since.
    let retried = store.append_on_basis("contract-use", ExpectedVersion::Any, late, basis(0)).await.unwrap();
    assert_eq!(retried, admitted);
}

pub async fn retrying_an_append_returns_its_original_result_and_records_it_once(backend: &dyn Backend) {
    let store = backend.open().await;
    store.append("contract-other", ExpectedVersion::Any, events(None, 1)).await.unwrap();
    let new = events(Some(org(3)), 3);
    let original = store.append("contract-d", ExpectedVersion::NoStream, new.clone()).await.unwrap();
    store.append("contract-other", ExpectedVersion::Any, events(None, 1)).await.unwrap();
    // A retry after a lost reply gets the original result, whatever version it now expects.
    for expected in
        [ExpectedVersion::NoStream, ExpectedVersion::Any, ExpectedVersion::Exact(0), ExpectedVersion::Exact(9)]
    {
        assert_eq!(store.append("contract-d", expected, new.clone()).await.unwrap(), original, "retry with {expected}");
    }
    assert_eq!(store.read_stream("contract-d", 0).await.unwrap().len(), 3);
    assert_eq!(store.head().await.unwrap(), 5);

    // Concurrent copies of one append (possibly in one batch): one is recorded, all get its result.
    let new = events(Some(org(3)), 2);
    let copies: Vec<_> = (0..6)
        .map(|_| {
            let (store, new) = (store.clone(), new.clone());
            tokio::spawn(async move { store.append("contract-e", ExpectedVersion::NoStream, new).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for copy in copies {
        results.push(copy.await.unwrap());
    }
    assert!(results.iter().all(|result| *result == results[0]), "{results:?}");
    assert_eq!(results[0], AppendResult { first_position: 6, last_position: 7, next_expected_version: 1 });
    assert_eq!(
        ids(&new),
        store.read_stream("contract-e", 0).await.unwrap().iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    assert_eq!(store.head().await.unwrap(), 7);
    let sequences: Vec<_> = everything(&*store).await.iter().filter_map(|e| e.org_sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3, 4, 5], "a retry takes no organization sequence numbers");
}

pub async fn an_event_id_reused_by_another_append_is_refused(backend: &dyn Backend) {
    let store = backend.open().await;
    let first = events(None, 2);
    store.append("contract-f", ExpectedVersion::NoStream, first.clone()).await.unwrap();
    let fresh = event(None, 9);
    let mut retyped = first.clone();
    retyped[1].event_type = String::from("SomethingElse");
    let reuses: Vec<(&str, Vec<NewEvent>)> = vec![
        ("contract-g", first.clone()),                                           // another stream
        ("contract-f", vec![first[1].clone(), first[0].clone()]),                // another order
        ("contract-f", vec![first[0].clone(), first[1].clone(), fresh.clone()]), // plus a new one
        ("contract-f", vec![fresh.clone(), first[0].clone()]),
        ("contract-f", retyped),                            // another type
        ("contract-h", vec![fresh.clone(), fresh.clone()]), // twice in one append
    ];
    for (stream, events) in reuses {
        match store.append(stream, ExpectedVersion::Any, events.clone()).await {
            Err(StoreError::DuplicateEventId { event_id, .. }) => {
                assert!(ids(&events).contains(&event_id), "the refusal names a reused id");
            }
            other => panic!("{stream} {:?}: expected DuplicateEventId, got {other:?}", ids(&events)),
        }
    }
    assert_eq!(store.head().await.unwrap(), 2, "a refused reuse writes nothing");
    // Recorded events appended again in their place are a retry too, even one at a time.
    let again = store.append("contract-f", ExpectedVersion::NoStream, vec![first[1].clone()]).await.unwrap();
    assert_eq!(again, AppendResult { first_position: 2, last_position: 2, next_expected_version: 1 });
    // The fresh event was refused with the others, so it is still free.
    store.append("contract-h", ExpectedVersion::NoStream, vec![fresh]).await.unwrap();
}

pub async fn concurrent_appends_get_gap_free_positions_in_commit_order(backend: &dyn Backend) {
    const TASKS: u64 = 8;
    const APPENDS: usize = 200;
    let store = backend.open().await;
    let streams: Arc<Vec<String>> = Arc::new((0..12).map(|n| format!("contract-busy-{n}")).collect());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, streams) = (store.clone(), streams.clone());
            tokio::spawn(async move {
                let mut dice = Dice(task + 1);
                let mut acknowledged = Vec::new();
                let mut known: HashMap<String, u64> = HashMap::new();
                for _ in 0..APPENDS {
                    let stream = streams[dice.below(streams.len())].clone();
                    let new: Vec<NewEvent> = (0..=dice.below(2))
                        .map(|n| event([Some(org(10)), Some(org(11)), Some(org(12)), None][dice.below(4)], n as u64))
                        .collect();
                    // Half the tasks append blindly, half decide on a version and retry on conflict.
                    let mut expected = if task % 2 == 0 {
                        ExpectedVersion::Any
                    } else {
                        known.get(&stream).map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(*v))
                    };
                    let mut attempts = 0;
                    let result = loop {
                        attempts += 1;
                        assert!(attempts < 100_000, "an append never got through");
                        match store.append(&stream, expected, new.clone()).await {
                            Ok(result) => break result,
                            Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                                expected = actual.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                            }
                            Err(error) => panic!("append failed: {error}"),
                        }
                    };
                    known.insert(stream.clone(), result.next_expected_version);
                    acknowledged.push((result, stream, ids(&new)));
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(tokio::time::timeout(PATIENCE, task).await.expect("appends finish").unwrap());
    }

    let total: u64 = acknowledged.iter().map(|(_, _, ids)| ids.len() as u64).sum();
    let all = everything(&*store).await;
    assert_eq!(store.head().await.unwrap(), total);
    assert_eq!(positions(&all), (1..=total).collect::<Vec<_>>(), "positions are 1..N without gap or repeat");
    let mut claimed = HashSet::new();
    for (result, stream, ids) in &acknowledged {
        assert_eq!(result.last_position - result.first_position + 1, ids.len() as u64, "{result:?}");
        for (position, id) in (result.first_position..=result.last_position).zip(ids) {
            let recorded = &all[(position - 1) as usize];
            assert_eq!((&recorded.event_id, &recorded.stream), (id, stream), "at position {position}");
            assert!(claimed.insert(position), "position {position} acknowledged twice");
        }
        assert_eq!(all[(result.last_position - 1) as usize].version, result.next_expected_version);
    }
    let mut versions: HashMap<&str, u64> = HashMap::new();
    let mut sequences: HashMap<OrgId, u64> = HashMap::new();
    for event in &all {
        let version = versions.entry(&event.stream).or_insert(0);
        assert_eq!(event.version, *version, "stream {} at position {}", event.stream, event.position);
        *version += 1;
        match event.org_id {
            Some(org) => {
                let sequence = sequences.entry(org).or_insert(0);
                *sequence += 1;
                assert_eq!(event.org_sequence, Some(*sequence), "organization sequence at {}", event.position);
            }
            None => assert_eq!(event.org_sequence, None),
        }
    }
}

pub async fn every_acknowledged_event_survives_reopening(backend: &dyn Backend) {
    let store = backend.open().await;
    let appends: Vec<_> = (0..16u64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = format!("contract-durable-{}", n % 4);
                store.append(&stream, ExpectedVersion::Any, events(Some(org(20 + u128::from(n % 2))), 1 + n % 3)).await
            })
        })
        .collect();
    for append in appends {
        append.await.unwrap().unwrap();
    }
    let before = everything(&*store).await;
    drop(store);

    let store = backend.open().await;
    let after = everything(&*store).await;
    assert_eq!(after, before, "every acknowledged event, byte for byte, after a reopen");
    let head = before.len() as u64;
    assert_eq!(store.head().await.unwrap(), head);
    let result = store.append("contract-durable-0", ExpectedVersion::Any, events(Some(org(20)), 2)).await.unwrap();
    assert_eq!((result.first_position, result.last_position), (head + 1, head + 2), "appends continue at head + 1");
    let versions = store.read_stream("contract-durable-0", 0).await.unwrap();
    assert_eq!(versions.last().map(|e| e.version), Some(versions.len() as u64 - 1));

    store.close().await;
    assert!(matches!(
        store.append("contract-durable-0", ExpectedVersion::Any, events(None, 1)).await,
        Err(StoreError::Closed)
    ));
    let closed = everything(&*store).await;
    assert_eq!(closed.len() as u64, head + 2, "reads keep working after close");
    drop(store);

    let store = backend.open().await;
    assert_eq!(everything(&*store).await, closed);
    assert_eq!(store.head().await.unwrap(), head + 2);
}

pub async fn the_leaf_hash_is_the_hash_of_the_stored_envelope_bytes(backend: &dyn Backend) {
    let store = backend.open().await;
    store.append("contract-i", ExpectedVersion::NoStream, events(Some(org(30)), 3)).await.unwrap();
    store.append("contract-j", ExpectedVersion::NoStream, events(None, 2)).await.unwrap();
    let all = everything(&*store).await;
    assert_eq!(all.len(), 5);
    let mut hashes = HashSet::new();
    for event in &all {
        let expected: [u8; 32] = Sha256::new().chain_update([0x00]).chain_update(&event.envelope[..]).finalize().into();
        assert_eq!(event.leaf_hash, expected, "leaf hash at {}", event.position);
        assert_eq!(crate::leaf_hash(&event.envelope), expected);
        assert_eq!(
            &RecordedEvent::from_envelope(&event.envelope).unwrap(),
            event,
            "the envelope alone decodes to the event"
        );
        assert!(hashes.insert(event.leaf_hash), "leaf hashes differ");
    }
    // A flipped byte no longer matches the recorded hash.
    let mut tampered = all[0].envelope.to_vec();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x01;
    assert_ne!(crate::leaf_hash(&tampered), all[0].leaf_hash);
}

pub async fn raw_rows_and_leaf_hashes_read_back_as_stored(backend: &dyn Backend) {
    let store = backend.open().await;
    store.append("contract-r", ExpectedVersion::NoStream, events(Some(org(31)), 3)).await.unwrap();
    store.append("contract-s", ExpectedVersion::NoStream, events(None, 2)).await.unwrap();
    let all = everything(&*store).await;
    let raw = store.read_raw(2, 3).await.unwrap();
    assert_eq!(raw.iter().map(|row| row.position).collect::<Vec<_>>(), [2, 3, 4]);
    for (row, event) in raw.iter().zip(&all[1..]) {
        assert_eq!(row.envelope, event.envelope);
        assert_eq!(row.leaf_hash, event.leaf_hash.to_vec());
        assert_eq!(row.org_id, event.org_id.map(|org| org.to_string()));
    }
    let hashes = store.read_leaf_hashes(1, 100).await.unwrap();
    assert_eq!(hashes, all.iter().map(|event| event.leaf_hash).collect::<Vec<_>>());
    assert_eq!(store.read_leaf_hashes(5, 1).await.unwrap(), [all[4].leaf_hash]);
    assert!(store.read_leaf_hashes(6, 10).await.unwrap().is_empty());
    assert!(store.read_raw(1, 0).await.unwrap().is_empty());
}

pub async fn imported_rows_keep_their_positions_bytes_and_hashes(backend: &dyn Backend) {
    // The rows come from another log: an embedded one in a directory of its own.
    let dir = std::env::temp_dir().join(format!("credledger-contract-{}", Uuid::new_v4().simple()));
    let source = crate::SqliteStore::open(dir.join("source.db")).await.unwrap();
    source.append("contract-im-a", ExpectedVersion::NoStream, events(Some(org(50)), 3)).await.unwrap();
    source.append("contract-im-b", ExpectedVersion::NoStream, events(None, 2)).await.unwrap();
    source.append("contract-im-a", ExpectedVersion::Exact(2), events(Some(org(50)), 2)).await.unwrap();
    let rows = source.read_raw(1, 100).await.unwrap();
    source.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(rows.len(), 7);

    let store = backend.open().await;
    // Refused, writing nothing: a first row that is not the next position, a gap, an envelope
    // that no longer hashes to its leaf hash, and one that names another position.
    let mut altered = rows[..2].to_vec();
    let mut envelope = altered[1].envelope.to_vec();
    let last = envelope.len() - 2;
    envelope[last] ^= 0x01;
    altered[1].envelope = envelope.into();
    let mut renumbered = rows[..1].to_vec();
    renumbered[0].position = 2;
    let mut swapped = rows[..2].to_vec();
    swapped[1].envelope = rows[0].envelope.clone();
    swapped[1].leaf_hash.clone_from(&rows[0].leaf_hash);
    for (what, bad) in [
        ("not at the head", rows[1..3].to_vec()),
        ("a gap", vec![rows[0].clone(), rows[2].clone()]),
        ("an altered envelope", altered),
        ("a renumbered row", renumbered),
        ("an envelope naming another position", swapped),
    ] {
        match store.import(bad).await {
            Err(StoreError::Corrupt { .. }) => {}
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(store.head().await.unwrap(), 0, "{what} wrote nothing");
        assert!(store.read_raw(1, 10).await.unwrap().is_empty(), "{what} wrote nothing");
    }

    assert_eq!(store.import(rows[..4].to_vec()).await.unwrap(), 4);
    assert_eq!(store.import(rows[4..].to_vec()).await.unwrap(), 7);
    assert_eq!(store.import(Vec::new()).await.unwrap(), 7);
    assert_eq!(store.head().await.unwrap(), 7);
    assert_eq!(store.read_raw(1, 100).await.unwrap(), rows);
    let imported = everything(&*store).await;
    assert_eq!(positions(&imported), (1..=7).collect::<Vec<_>>());
    assert_eq!(store.read_stream("contract-im-a", 0).await.unwrap().len(), 5);

    // The log goes on from the imported streams' versions and organization sequences, and
    // imported ids are recognised.
    let next = store.append("contract-im-a", ExpectedVersion::Exact(4), events(Some(org(50)), 1)).await.unwrap();
    assert_eq!(next, AppendResult { first_position: 8, last_position: 8, next_expected_version: 5 });
    assert_eq!(store.read_all(8, 1).await.unwrap()[0].org_sequence, Some(6));
    let stale = store.append("contract-im-b", ExpectedVersion::NoStream, events(None, 1)).await;
    assert!(matches!(stale, Err(StoreError::WrongExpectedVersion { actual: Some(1), .. })), "{stale:?}");
}

pub async fn a_subscription_sees_every_event_once_across_catch_up_and_live(backend: &dyn Backend) {
    let store = backend.open().await;
    // More than a page already committed, so catch-up takes several reads.
    for n in 0..7 {
        store
            .append(&format!("contract-sub-{}", n % 3), ExpectedVersion::Any, events(Some(org(40)), 100))
            .await
            .unwrap();
    }
    let appender = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..300u64 {
                let stream = format!("contract-sub-{}", n % 5);
                store.append(&stream, ExpectedVersion::Any, events(Some(org(40)), 1 + n % 2)).await.unwrap();
            }
        })
    };
    let total = 700 + (0..300u64).map(|n| 1 + n % 2).sum::<u64>();
    let mut subscription = store.subscribe(1);
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while (seen.len() as u64) < total {
            seen.push(subscription.next().await.expect("the subscription goes on").unwrap().position);
        }
    })
    .await
    .expect("every event arrives");
    appender.await.unwrap();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "each position once, in order");
    assert_eq!(store.head().await.unwrap(), total);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), subscription.next()).await.is_err(),
        "nothing is delivered twice"
    );
}

async fn next_position(subscription: &mut BoxStream<'static, Result<RecordedEvent, StoreError>>) -> u64 {
    let item = tokio::time::timeout(PATIENCE, subscription.next()).await.expect("an event arrives");
    item.expect("the subscription goes on").unwrap().position
}

pub async fn a_subscription_starts_at_the_position_asked_for(backend: &dyn Backend) {
    let store = backend.open().await;
    // Subscribed before anything exists: waits for the first event.
    let mut early = store.subscribe(0);
    store.append("contract-k", ExpectedVersion::NoStream, events(None, 10)).await.unwrap();
    let mut middle = store.subscribe(6);
    let mut ahead = store.subscribe(12);
    assert_eq!(next_position(&mut early).await, 1);
    for position in 6..=10 {
        assert_eq!(next_position(&mut middle).await, position);
    }
    store.append("contract-k", ExpectedVersion::Exact(9), events(None, 3)).await.unwrap();
    assert_eq!(next_position(&mut middle).await, 11);
    assert_eq!(next_position(&mut ahead).await, 12, "a subscription ahead of the head waits for its position");
    assert_eq!(next_position(&mut ahead).await, 13);
}

pub async fn a_subscription_ends_after_the_last_event_when_the_store_closes(backend: &dyn Backend) {
    let store = backend.open().await;
    store.append("contract-l", ExpectedVersion::NoStream, events(None, 3)).await.unwrap();
    let mut subscription = store.subscribe(1);
    let first = tokio::time::timeout(PATIENCE, subscription.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.position, 1);
    tokio::time::timeout(PATIENCE, store.close()).await.expect("close returns");
    let rest: Vec<_> =
        tokio::time::timeout(PATIENCE, subscription.collect::<Vec<_>>()).await.expect("the subscription ends");
    let rest: Vec<u64> = rest.into_iter().map(|event| event.unwrap().position).collect();
    assert_eq!(rest, vec![2, 3], "everything committed is delivered before the end");
}

pub async fn malformed_appends_are_refused(backend: &dyn Backend) {
    let store = backend.open().await;
    assert!(matches!(store.append("contract-m", ExpectedVersion::Any, Vec::new()).await, Err(StoreError::EmptyAppend)));
    for name in ["", "has space", "new\nline", &"x".repeat(257)] {
        assert!(
            matches!(
                store.append(name, ExpectedVersion::Any, events(None, 1)).await,
                Err(StoreError::InvalidStreamName(_))
            ),
            "stream name {name:?}"
        );
    }
    assert_eq!(store.head().await.unwrap(), 0);
    // The store still works after refusals.
    assert_eq!(store.append("contract-m", ExpectedVersion::NoStream, events(None, 1)).await.unwrap().last_position, 1);
}
