//! The read models as their users see them: the inventory keeps every credential, usage records
//! where and how each was used, the audit trail has one row per event, the runner resumes from
//! its checkpoint, and the hot index follows rolls and revocations.

mod common;

use chrono::TimeDelta;
use common::{Ledger, Op, T0, org, token_id};
use credledger_domain::policy::{Presented, evaluate};
use credledger_domain::{Status, policy::AccessRequest};
use credledger_projections::Projections;
use credledger_projections::queries::CredentialFilter;

fn request(at: chrono::DateTime<chrono::Utc>) -> AccessRequest<'static> {
    AccessRequest {
        org_id: Some(org()),
        ip: "10.0.0.1".parse().unwrap(),
        user_agent: None,
        at,
        route_class: credledger_domain::policy::RouteClass::Open,
        required_scope: credledger_domain::values::Scope::Read,
    }
}

async fn setup() -> (tempfile::TempDir, Ledger, Projections) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).await;
    let projections = Projections::open(&dir.path().join("read.db")).unwrap();
    (dir, ledger, projections)
}

fn statuses(
    projections: &Projections,
    filter: &CredentialFilter,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, Status)> {
    projections
        .credentials(org(), filter, now, None, 100)
        .unwrap()
        .into_iter()
        .map(|record| (record.credential.id().to_string(), record.credential.view().status))
        .collect()
}

#[tokio::test]
async fn revoked_and_expired_credentials_stay_in_the_inventory() {
    let (_dir, mut ledger, projections) = setup().await;
    for token in 0..3 {
        ledger.run(&Op::Create { token, days: Some(1) }).await;
    }
    ledger.run(&Op::Lifecycle { token: 0, command: 7 }).await; // revoke
    ledger.now += TimeDelta::days(2);
    ledger.run(&Op::Lifecycle { token: 1, command: 6 }).await; // expire
    projections.catch_up(ledger.store.clone()).await.unwrap();

    let all = statuses(&projections, &CredentialFilter::default(), ledger.now);
    assert_eq!(all.len(), 3);
    let revoked = CredentialFilter { status: Some(Status::Revoked), ..CredentialFilter::default() };
    assert_eq!(statuses(&projections, &revoked, ledger.now), vec![(token_id(0).to_string(), Status::Revoked)]);
    // Token 2 passed its expiry without a recorded event: the clock still lists it as expired.
    let expired = CredentialFilter { status: Some(Status::Expired), ..CredentialFilter::default() };
    assert_eq!(statuses(&projections, &expired, ledger.now).len(), 2);
    let active = CredentialFilter { status: Some(Status::Active), ..CredentialFilter::default() };
    assert!(statuses(&projections, &active, ledger.now).is_empty());
}

#[tokio::test]
async fn filters_find_flagged_expiring_and_unused_credentials() {
    let (_dir, mut ledger, projections) = setup().await;
    ledger.run(&Op::Create { token: 0, days: Some(3) }).await;
    ledger.run(&Op::Create { token: 1, days: None }).await;
    ledger.run(&Op::Lifecycle { token: 1, command: 4 }).await; // flag
    ledger.now += TimeDelta::days(1);
    ledger.run(&Op::Use { token: 0, ip: 1, agent: 1 }).await;
    projections.catch_up(ledger.store.clone()).await.unwrap();
    let now = ledger.now;

    let flagged = CredentialFilter { flagged: Some(true), ..CredentialFilter::default() };
    assert_eq!(statuses(&projections, &flagged, now), vec![(token_id(1).to_string(), Status::Active)]);
    let expiring = CredentialFilter { expiring_within: Some(TimeDelta::days(7)), ..CredentialFilter::default() };
    assert_eq!(statuses(&projections, &expiring, now), vec![(token_id(0).to_string(), Status::Active)]);
    let unused = CredentialFilter { unused_for: Some(TimeDelta::hours(12)), ..CredentialFilter::default() };
    assert_eq!(statuses(&projections, &unused, now), vec![(token_id(1).to_string(), Status::Active)]);

    // Pagination: pages of one, in id order, reach every credential once.
    let first = projections.credentials(org(), &CredentialFilter::default(), now, None, 1).unwrap();
    let second =
        projections.credentials(org(), &CredentialFilter::default(), now, Some(first[0].credential.id()), 1).unwrap();
    assert_eq!((first[0].credential.id(), second[0].credential.id()), (token_id(0), token_id(1)));
}

#[tokio::test]
async fn usage_records_last_use_counts_and_every_network_and_agent() {
    let (_dir, mut ledger, projections) = setup().await;
    ledger.run(&Op::Create { token: 0, days: None }).await;
    ledger.run(&Op::Use { token: 0, ip: 1, agent: 1 }).await;
    ledger.now += TimeDelta::hours(1);
    ledger.run(&Op::Use { token: 0, ip: 2, agent: 1 }).await;
    ledger.now += TimeDelta::hours(1);
    ledger.run(&Op::Deny { token: 0, ip: 2 }).await; // count 3 from 192.0.2.2
    projections.catch_up(ledger.store.clone()).await.unwrap();

    let record = projections.credential(org(), token_id(0)).unwrap().unwrap();
    assert_eq!(record.usage.use_count, 2);
    assert_eq!(record.usage.denied_count, 3);
    assert_eq!(record.usage.last_used_ip.as_deref(), Some("10.0.0.2"));
    assert_eq!(record.usage.last_used_user_agent.as_deref(), Some("agent/1"));
    assert_eq!(record.usage.last_used_at, Some(T0 + TimeDelta::hours(1)));

    let ips = projections.seen_ips(token_id(0)).unwrap();
    let ips: Vec<_> = ips.iter().map(|s| (s.value.as_str(), s.use_count, s.denied_count)).collect();
    assert_eq!(ips, vec![("192.0.2.2", 0, 3), ("10.0.0.2", 1, 0), ("10.0.0.1", 1, 0)]);
    let agents = projections.seen_user_agents(token_id(0)).unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!((agents[0].first_seen, agents[0].last_seen, agents[0].use_count), (T0, T0 + TimeDelta::hours(1), 2));
}

#[tokio::test]
async fn the_audit_trail_has_one_row_per_event_newest_first() {
    let (_dir, mut ledger, projections) = setup().await;
    ledger.run(&Op::Create { token: 0, days: None }).await;
    ledger.run(&Op::Deny { token: 0, ip: 0 }).await;
    ledger.run(&Op::Lifecycle { token: 0, command: 0 }).await; // disable
    let head = projections.catch_up(ledger.store.clone()).await.unwrap();

    let trail = projections.audit(org(), None, 10).unwrap();
    assert_eq!(trail.len() as u64, head);
    let types: Vec<_> = trail.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, vec!["MachineTokenDisabled", "CredentialAccessDenied", "MachineTokenCreated"]);
    assert_eq!(trail[1].outcome, "denied");
    assert_eq!(trail[1].ip.as_deref(), Some("192.0.2.0"));
    assert_eq!(trail[0].credential_id, Some(token_id(0).to_string()));
    let recorded = ledger.store.read_all(1, 10).await.unwrap();
    assert_eq!(trail[2].leaf_hash, hex::encode(recorded[0].leaf_hash));
    // Cursor: the page before position 2 holds only the first event.
    assert_eq!(projections.audit(org(), Some(2), 10).unwrap().len(), 1);
}

#[tokio::test]
async fn every_audit_query_kind_finds_its_entries_newest_first() {
    use credledger_projections::queries::AuditFilter;
    let pause = || std::thread::sleep(std::time::Duration::from_millis(20));
    let (_dir, mut ledger, projections) = setup().await;
    ledger.run(&Op::Create { token: 0, days: None }).await; // 1
    ledger.run(&Op::Use { token: 0, ip: 0, agent: 0 }).await; // 2
    pause();
    let window_start = chrono::Utc::now();
    ledger.run(&Op::Use { token: 0, ip: 1, agent: 0 }).await; // 3
    ledger.run(&Op::Deny { token: 0, ip: 1 }).await; // 4
    ledger.run(&Op::Use { token: 0, ip: 2, agent: 0 }).await; // 5
    // The trail keeps milliseconds and `until` excludes its own: leave a gap on both sides.
    pause();
    let window_end = chrono::Utc::now();
    pause();
    ledger.run(&Op::Use { token: 0, ip: 0, agent: 0 }).await; // 6
    ledger.run(&Op::Lifecycle { token: 0, command: 0 }).await; // 7: disable
    projections.catch_up(ledger.store.clone()).await.unwrap();
    let positions = |filter: &AuditFilter, before: Option<u64>, limit: usize| -> Vec<u64> {
        projections.audit_filtered(org(), filter, before, limit).unwrap().iter().map(|e| e.position).collect()
    };

    let by_type = |event_type: &str| AuditFilter { event_type: Some(event_type.to_owned()), ..AuditFilter::default() };
    assert_eq!(positions(&by_type("CredentialUsed"), None, 10), vec![6, 5, 3, 2]);
    assert_eq!(positions(&by_type("CredentialUsed"), Some(5), 10), vec![3, 2]);
    assert_eq!(positions(&by_type("MachineTokenDisabled"), None, 10), vec![7]);

    let window = AuditFilter { since: Some(window_start), until: Some(window_end), ..AuditFilter::default() };
    assert_eq!(positions(&window, None, 10), vec![5, 4, 3]);
    assert_eq!(positions(&window, None, 2), vec![5, 4], "a page holds the newest of the window");
    assert_eq!(positions(&window, Some(4), 10), vec![3], "the cursor continues inside the window");
    let since = AuditFilter { since: Some(window_start), ..AuditFilter::default() };
    assert_eq!(positions(&since, None, 10), vec![7, 6, 5, 4, 3]);
    let until = AuditFilter { until: Some(window_start), ..AuditFilter::default() };
    assert_eq!(positions(&until, None, 10), vec![2, 1]);
    let from_network =
        AuditFilter { ip: Some(credledger_domain::values::Cidr::parse("10.0.0.1/32").unwrap()), ..window.clone() };
    assert_eq!(positions(&from_network, None, 10), vec![3]);
    let typed_window = AuditFilter { event_type: Some("CredentialUsed".to_owned()), ..window };
    assert_eq!(positions(&typed_window, None, 10), vec![5, 3]);
}

#[tokio::test]
async fn the_runner_resumes_from_its_checkpoint_after_a_restart() {
    let (dir, mut ledger, projections) = setup().await;
    ledger.run(&Op::Create { token: 0, days: None }).await;
    ledger.run(&Op::Use { token: 0, ip: 0, agent: 0 }).await;
    assert_eq!(projections.catch_up(ledger.store.clone()).await.unwrap(), 2);
    drop(projections);

    ledger.run(&Op::Use { token: 0, ip: 0, agent: 0 }).await;
    let reopened = Projections::open(&dir.path().join("read.db")).unwrap();
    assert_eq!(reopened.position(), 2, "the checkpoint survives the restart");
    assert_eq!(reopened.catch_up(ledger.store.clone()).await.unwrap(), 3);
    // Each use counted exactly once across the restart.
    assert_eq!(reopened.credential(org(), token_id(0)).unwrap().unwrap().usage.use_count, 2);
}

#[tokio::test]
async fn wait_for_returns_once_the_background_runner_has_applied_a_position() {
    let (_dir, mut ledger, projections) = setup().await;
    let runner = projections.start(ledger.store.clone());
    ledger.run(&Op::Create { token: 0, days: None }).await;
    let head = ledger.store.head().await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), projections.wait_for(head))
        .await
        .expect("projected in time")
        .unwrap();
    assert!(projections.credential(org(), token_id(0)).unwrap().is_some());
    // Live events after the catch-up are applied too.
    ledger.run(&Op::Lifecycle { token: 0, command: 7 }).await;
    let head = ledger.store.head().await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), projections.wait_for(head)).await.unwrap().unwrap();
    let view = projections.hot_index().view(token_id(0)).unwrap();
    assert_eq!(view.status, Status::Revoked);
    runner.abort();
}

#[tokio::test]
async fn the_hot_index_refuses_a_rolled_away_value_and_honours_a_grace_period() {
    let (_dir, mut ledger, projections) = setup().await;
    ledger.run(&Op::Create { token: 0, days: None }).await;
    let first = common::secret_of(1);
    ledger.run(&Op::Lifecycle { token: 0, command: 3 }).await; // roll with 1 h grace
    let second = common::secret_of(2);
    projections.catch_up(ledger.store.clone()).await.unwrap();

    let (view, presented) = projections.hot_index().lookup(&first).unwrap();
    assert!(matches!(presented, Presented::Previous { valid_until: Some(_) }));
    assert_eq!(evaluate(&view, presented, &request(ledger.now + TimeDelta::minutes(30))), Ok(()));
    assert!(evaluate(&view, presented, &request(ledger.now + TimeDelta::hours(2))).is_err());

    // A second roll ends the first value's grace at once.
    ledger.run(&Op::Lifecycle { token: 0, command: 2 }).await;
    projections.catch_up(ledger.store.clone()).await.unwrap();
    let (view, presented) = projections.hot_index().lookup(&first).unwrap();
    assert_eq!(presented, Presented::Previous { valid_until: None });
    assert!(evaluate(&view, presented, &request(ledger.now)).is_err());
    let (_, presented) = projections.hot_index().lookup(&second).unwrap();
    assert_eq!(presented, Presented::Previous { valid_until: None });
    let (_, presented) = projections.hot_index().lookup(&common::secret_of(3)).unwrap();
    assert_eq!(presented, Presented::Current);
}

/// A runner far behind the log (a rebuild, a restart after a long stop) applies it hundreds of
/// events per transaction or more: the log is read ahead while a batch is applied, and each batch
/// takes every event already read. While the runner goes on, the read models' WAL is copied back
/// into `read.db` by the checkpoint thread, not left to grow until SQLite's own bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_far_behind_applies_hundreds_of_events_per_transaction() {
    const USES: u64 = 6000;
    let (dir, mut ledger, projections) = setup().await;
    ledger.run(&Op::Create { token: 0, days: None }).await;
    for n in 0..USES {
        ledger.run(&Op::Use { token: 0, ip: (n % 3) as u8, agent: 0 }).await;
    }
    let runner = projections.start(ledger.store.clone());
    projections.wait_for(USES + 1).await.unwrap();
    assert_eq!(projections.credential(org(), token_id(0)).unwrap().unwrap().usage.use_count, USES);
    let transactions = projections.transactions();
    assert!(transactions <= 12, "{} events took {transactions} transactions", USES + 1);

    // The file itself, without its WAL, holds the whole trail once the checkpoint has run: a copy
    // of `read.db` alone is read (a copy taken mid-checkpoint may be unreadable: not yet).
    let copy = dir.path().join("copy.db");
    let in_file = || {
        std::fs::copy(dir.path().join("read.db"), &copy).unwrap();
        rusqlite::Connection::open(&copy)
            .and_then(|connection| connection.query_row("SELECT count(*) FROM audit_trail", [], |row| row.get(0)))
            .unwrap_or(0_i64)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while in_file() < (USES + 1) as i64 {
        assert!(std::time::Instant::now() < deadline, "read.db holds {} of {} trail rows", in_file(), USES + 1);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    runner.abort();
}
