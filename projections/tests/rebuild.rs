//! Rebuild == incremental: whatever commands ran, and however the runner batched them, replaying
//! the log from position 0 into a fresh file gives exactly the same rows and hot index.

mod common;

use common::{Ledger, Op, op, org};
use credledger_domain::policy::AccessRequest;
use credledger_domain::token::SecretToken;
use credledger_domain::values::EnvHint;
use credledger_projections::Projections;
use proptest::prelude::*;

async fn rebuild_matches_incremental(ops: Vec<Op>, catch_up_every: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path()).await;
    let store = ledger.store.clone();
    let incremental = Projections::open(&dir.path().join("incremental.db")).unwrap();
    for (i, op) in ops.iter().enumerate() {
        ledger.run(op).await;
        if i % catch_up_every == 0 {
            incremental.catch_up(store.clone()).await.unwrap();
        }
    }
    incremental.catch_up(store.clone()).await.unwrap();

    let rebuilt = Projections::open(&dir.path().join("rebuilt.db")).unwrap();
    rebuilt.catch_up(store.clone()).await.unwrap();
    assert_eq!(rebuilt.position(), incremental.position());
    assert_eq!(rebuilt.snapshot().unwrap(), incremental.snapshot().unwrap());

    // The hot index, rebuilt from events or reloaded from the rows, answers the same.
    let reopened = Projections::open(&dir.path().join("incremental.db")).unwrap();
    let request = |at| AccessRequest {
        org_id: Some(org()),
        ip: "10.0.0.1".parse().unwrap(),
        user_agent: None,
        at,
        route_class: credledger_domain::policy::RouteClass::Open,
        required_scope: credledger_domain::values::Scope::Read,
    };
    for seed in 0..=ledger.next_secret {
        let digest = SecretToken::machine_token(&EnvHint::parse("ci").unwrap(), [seed; 32]).digest();
        let answers: Vec<_> = [&incremental, &rebuilt, &reopened]
            .iter()
            .map(|p| {
                p.hot_index().lookup(&digest).map(|(view, presented)| {
                    let decision = credledger_domain::policy::evaluate(&view, presented, &request(ledger.now));
                    ((*view).clone(), presented, decision)
                })
            })
            .collect();
        assert_eq!(answers[0], answers[1], "secret {seed}: incremental vs rebuilt");
        assert_eq!(answers[0], answers[2], "secret {seed}: incremental vs reloaded");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rebuild_from_position_zero_equals_the_incremental_run(
        ops in prop::collection::vec(op(), 1..60),
        catch_up_every in 1..8usize,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(rebuild_matches_incremental(ops, catch_up_every));
    }
}
