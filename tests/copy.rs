//! `credledger copy` moves a ledger from the embedded store to PostgreSQL and back with positions,
//! hashes and checkpoints intact: servers on each copy accept the ledger at start, serve the same
//! signed checkpoints, and `credledger audit verify` accepts them. `credledger migrate` prepares
//! a store. Bad moves are refused with a message and a non-zero exit, writing nothing.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, eventually, run_cli};

const FAST: [&str; 2] = ["--checkpoint-interval-ms", "100"];

/// The embedded store of a directory: `DIR/events.db`.
fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("events.db").display())
}

/// A server on `store` with the ledger's key files from `keys`.
fn start(store: &str, keys: &Path) -> Server {
    let (signing, ledger) = (keys.join("signing-keys.json"), keys.join("ledger-key"));
    let args = [
        "--store",
        store,
        "--signing-key-file",
        signing.to_str().unwrap(),
        "--ledger-key-file",
        ledger.to_str().unwrap(),
        FAST[0],
        FAST[1],
    ];
    Server::start_with(&args).expect("a server starts on the store")
}

/// The checkpoints listed (newest first) end with every one of `earlier`, unchanged.
fn assert_ends_with(listed: &[Value], earlier: &[Value]) {
    assert!(listed.len() >= earlier.len() && !earlier.is_empty(), "{listed:?}");
    assert_eq!(listed[listed.len() - earlier.len()..], earlier[..]);
}

/// Waits until the server has checked the copied log and projected all of it.
async fn ready(server: &Server) {
    let client = support::Client::anonymous(server);
    eventually("the copy passes the integrity check and is projected", Duration::from_secs(20), async || {
        let ready = client.get("/readyz").await;
        assert!(ready.body.get("reason").is_none(), "{ready:?}");
        (ready.status == 200 && ready.body["status"] == "ready").then_some(())
    })
    .await;
}

/// Every signed checkpoint the server lists, newest first.
async fn checkpoints(server: &Server, admin_token: &str) -> Vec<Value> {
    let listed = server.client(admin_token).get("/v1/ledger/checkpoints?limit=1000").await;
    assert_eq!(listed.status, 200, "{listed:?}");
    listed.body["items"].as_array().cloned().expect("items")
}

/// `audit verify` in monitor mode with a fresh state file: the whole ledger, against the latest
/// checkpoint.
fn verify(server: &Server, admin_token: &str, state: &Path) {
    let verified = run_cli(
        &["audit", "verify", "-o", "json", "--url", &server.base_url, "--state", state.to_str().unwrap()],
        &[("CREDLEDGER_TOKEN", admin_token)],
    );
    assert_eq!(verified.code, 0, "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_copied_to_postgres_and_back_verifies_with_the_same_checkpoints() {
    support::sqlite_only();
    let keys = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let original = sqlite_url(&files.path().join("original"));

    // Some history on the embedded store, with signed checkpoints.
    let server = start(&original, keys.path());
    let admin_token = server.admin_token.clone().unwrap();
    let (org, _, owner_pat) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_pat);
    let (id, value) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    for _ in 0..5 {
        assert_eq!(server.client(&value).get(&format!("/v1/projects/{org}")).await.status, 200);
    }
    let revoked_later = owner.create_token(&org, json!({ "name": "old", "environmentHint": "dev" })).await.0;
    assert_eq!(owner.delete(&format!("/v1/machine-tokens/{org}/{revoked_later}")).await.status, 200);
    let last = server.admin().checkpoint_covering(support::last_event_to_sign(&files.path().join("original"))).await;
    let before = checkpoints(&server, &admin_token).await;
    assert!(server.stop().unwrap().success());

    // To PostgreSQL: migrate first (as an operator may), then copy.
    let postgres = support::fresh_database();
    let migrated = run_cli(&["migrate", "--store", &postgres], &[]);
    assert_eq!(migrated.code, 0, "{migrated:?}");
    let copied = run_cli(&["copy", "--from", &original, "--to", &postgres], &[]);
    assert_eq!(copied.code, 0, "{copied:?}");
    assert!(copied.stdout.contains("verified"), "{copied:?}");
    assert!(copied.stdout.contains(last["rootHash"].as_str().unwrap()), "names the checkpoint it checked: {copied:?}");

    let on_postgres = start(&postgres, keys.path());
    ready(&on_postgres).await;
    assert_ends_with(&checkpoints(&on_postgres, &admin_token).await, &before);
    verify(&on_postgres, &admin_token, &files.path().join("state-postgres"));
    // The copied ledger is live: the token still works, the revoked one is still revoked.
    assert_eq!(on_postgres.client(&value).get(&format!("/v1/projects/{org}")).await.status, 200);
    let view = on_postgres.client(&owner_pat).get(&format!("/v1/machine-tokens/{org}/{revoked_later}")).await;
    assert_eq!(view.body["state"], "revoked", "{view:?}");
    on_postgres.client(&owner_pat).create_token(&org, json!({ "name": "pg", "environmentHint": "prod" })).await;
    // Everything recorded but the checkpoints themselves (a checkpoint signed meanwhile is not
    // signed over again while the ledger is idle).
    let last_to_sign = support::raw_log_of(&postgres)
        .iter()
        .rev()
        .find(|(_, envelope, _)| serde_json::from_slice::<Value>(envelope).unwrap()["type"] != "CheckpointSigned")
        .map(|(position, _, _)| *position)
        .unwrap();
    on_postgres.client(&admin_token).checkpoint_covering(last_to_sign).await;
    let on_postgres_checkpoints = checkpoints(&on_postgres, &admin_token).await;
    assert!(on_postgres.stop().unwrap().success());

    // And back to a new embedded store.
    let back = sqlite_url(&files.path().join("back"));
    let copied = run_cli(&["copy", "--from", &postgres, "--to", &back], &[]);
    assert_eq!(copied.code, 0, "{copied:?}");
    // Copying again resumes: nothing left to copy, and the copy still verifies.
    let again = run_cli(&["copy", "--from", &postgres, "--to", &back], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("copied 0 events") && again.stdout.contains("verified"), "{again:?}");
    let on_sqlite = start(&back, keys.path());
    ready(&on_sqlite).await;
    assert_ends_with(&checkpoints(&on_sqlite, &admin_token).await, &on_postgres_checkpoints);
    verify(&on_sqlite, &admin_token, &files.path().join("state-back"));
    let view = on_sqlite.client(&owner_pat).get(&format!("/v1/machine-tokens/{org}/{id}")).await;
    assert_eq!(view.body["state"], "active", "{view:?}");
    assert!(on_sqlite.stop().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_onto_another_ledger_or_from_nowhere_is_refused() {
    support::sqlite_only();
    let files = tempfile::tempdir().unwrap();
    let (one, two) = (files.path().join("one"), files.path().join("two"));
    for dir in [&one, &two] {
        let server = Server::start_with(&["--store", &sqlite_url(dir)]).unwrap();
        server.admin().create_org("acme", "ops@acme.example").await;
        assert!(server.stop().unwrap().success());
    }
    let (one, two) = (sqlite_url(&one), sqlite_url(&two));
    let before = support::raw_log(&files.path().join("two"));
    let refused = run_cli(&["copy", "--from", &one, "--to", &two], &[]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("another ledger"), "{refused:?}");
    assert_eq!(support::raw_log(&files.path().join("two")), before, "nothing written");

    let unsupported = run_cli(&["copy", "--from", "mysql://db/ledger", "--to", &two], &[]);
    assert_ne!(unsupported.code, 0, "{unsupported:?}");
    assert!(unsupported.stderr.contains("unsupported store URL scheme `mysql`"), "{unsupported:?}");
    let unreachable = run_cli(&["migrate", "--store", "postgres://credledger:hunter2@127.0.0.1:1/ledger"], &[]);
    assert_ne!(unreachable.code, 0, "{unreachable:?}");
    assert!(!unreachable.stderr.contains("hunter2"), "no password in messages: {unreachable:?}");
}
