//! `/v1/ledger` (DESIGN.md §7) against a real server: checkpoints signed within a second or two of
//! new events and never while idle, each verifying with the public key; inclusion and
//! consistency proofs that verify against them and fail for anything else; refusals of bad
//! queries and of callers who may not export; and `credledger audit verify` in monitor mode,
//! which follows the checkpoints and refuses a state the ledger does not extend.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use credledger_store::checkpoint::{CheckpointVerifier, LedgerKey};
use credledger_store::merkle::{verify_consistency, verify_inclusion};
use serde_json::{Value, json};
use support::{Client, Server, eventually};

/// Checkpoints every 100 ms instead of every second, so waiting for one is short.
const FAST: [&str; 2] = ["--checkpoint-interval-ms", "100"];

/// A server with an organization and a machine token, whose uses record events.
struct Ledger {
    server: Server,
    admin: Client,
    org: String,
    owner_token: String,
    machine_token: String,
}

impl Ledger {
    async fn start(args: &[&str]) -> Self {
        let server = Server::start_with(args).unwrap();
        let admin = server.admin();
        let (org, _, owner_token) = admin.create_org("acme", "ops@acme.example").await;
        let owner = server.client(&owner_token);
        let (_, machine_token) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
        Self { server, admin, org, owner_token, machine_token }
    }

    fn dir(&self) -> &Path {
        &self.server.data_dir
    }

    /// Uses the machine token `times` times: each use records a CredentialUsed event.
    async fn use_token(&self, times: usize) {
        for _ in 0..times {
            let reply = self.server.client(&self.machine_token).get(&format!("/v1/projects/{}", self.org)).await;
            assert_eq!(reply.status, 200, "{reply:?}");
        }
    }

    /// How many events the log holds (read from its file: no request, so no event).
    fn head(&self) -> u64 {
        support::log_len(self.dir()) as u64
    }

    /// The latest checkpoint once it covers every event recorded so far.
    async fn settled_checkpoint(&self) -> Value {
        self.admin.checkpoint_covering(support::last_event_to_sign(self.dir())).await
    }

    async fn verifier(&self) -> CheckpointVerifier {
        let key = Client::anonymous(&self.server).get("/v1/ledger/key").await;
        assert_eq!(key.status, 200, "{key:?}");
        CheckpointVerifier::new(key.body["verifierKey"].as_str().unwrap()).unwrap()
    }
}

/// The CheckpointSigned events of the log, read from its file.
fn recorded_checkpoints(dir: &Path) -> Vec<Value> {
    support::stream_events(dir, "ledger", "CheckpointSigned")
}

/// Every leaf hash of the log, in position order, read beside the server.
fn leaf_hashes(dir: &Path) -> Vec<[u8; 32]> {
    support::raw_log(dir).into_iter().map(|(_, _, hash)| hash.try_into().expect("32 bytes")).collect()
}

fn hash(value: &Value) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(value.as_str().unwrap_or_else(|| panic!("not a hash: {value}")), &mut hash).unwrap();
    hash
}

fn hashes(value: &Value) -> Vec<[u8; 32]> {
    value.as_array().unwrap_or_else(|| panic!("not a list of hashes: {value}")).iter().map(hash).collect()
}

#[tokio::test]
async fn checkpoints_follow_new_events_within_two_seconds_at_most_once_a_second_and_not_while_idle() {
    // The default interval: the one DESIGN.md promises.
    let ledger = Ledger::start(&[]).await;
    ledger.use_token(1).await;
    let head = support::last_event_to_sign(ledger.dir());
    let since = Instant::now();
    eventually("a checkpoint of the new events", Duration::from_secs(4), async || {
        recorded_checkpoints(ledger.dir()).iter().any(|c| c["payload"]["treeSize"].as_u64() >= Some(head)).then_some(())
    })
    .await;
    assert!(since.elapsed() <= Duration::from_secs(2), "signed {:?} after the events", since.elapsed());

    // Idle: no request, no event, no checkpoint (the last one covers everything but itself).
    let (signed, length) = (recorded_checkpoints(ledger.dir()).len(), ledger.head());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        (recorded_checkpoints(ledger.dir()).len(), ledger.head()),
        (signed, length),
        "nothing signed while idle"
    );
    let listed = ledger.admin.get("/v1/ledger/checkpoints?limit=1000").await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(signed), "{listed:?}");

    // A steady stream of events: still at most one checkpoint a second.
    let burst = Instant::now();
    while burst.elapsed() < Duration::from_millis(2500) {
        ledger.use_token(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ledger.settled_checkpoint().await;
    let times: Vec<DateTime<Utc>> = recorded_checkpoints(ledger.dir())
        .iter()
        .map(|c| chrono::DateTime::parse_from_rfc3339(c["occurredAt"].as_str().unwrap()).map(|at| at.to_utc()).unwrap())
        .collect();
    assert!(times.len() >= signed + 2, "the burst was checkpointed as it went: {times:?}");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::TimeDelta::milliseconds(900),
            "two checkpoints within a second: {times:?}"
        );
    }
}

#[tokio::test]
async fn inclusion_and_consistency_proofs_verify_against_signed_checkpoints_and_fail_otherwise() {
    let ledger = Ledger::start(&FAST).await;
    ledger.use_token(2).await;
    let first = ledger.settled_checkpoint().await;
    ledger.use_token(3).await;
    let second = ledger.settled_checkpoint().await;
    let verifier = ledger.verifier().await;
    let [old, new] = [&first, &second].map(|view| {
        let checkpoint = verifier.verify(view["note"].as_str().unwrap()).unwrap();
        assert_eq!(Some(checkpoint.tree_size), view["treeSize"].as_u64(), "{view}");
        assert_eq!(checkpoint.root_hash, hash(&view["rootHash"]), "{view}");
        checkpoint
    });
    assert!(old.tree_size < new.tree_size);

    let leaves = leaf_hashes(ledger.dir());
    let size = new.tree_size;
    for position in 1..=size {
        let index = position - 1;
        let reply = ledger.admin.get(&format!("/v1/ledger/proofs/inclusion?position={position}&treeSize={size}")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let leaf = leaves[index as usize];
        assert_eq!(hash(&reply.body["leafHash"]), leaf, "position {position}: the recorded leaf hash");
        assert_eq!((reply.body["leafIndex"].as_u64(), reply.body["treeSize"].as_u64()), (Some(index), Some(size)));
        let proof = hashes(&reply.body["proof"]);
        verify_inclusion(&leaf, index, size, &proof, &new.root_hash)
            .unwrap_or_else(|error| panic!("position {position}: {error}"));
        let neighbour = if index + 1 < size { index + 1 } else { index - 1 };
        assert!(verify_inclusion(&leaf, neighbour, size, &proof, &new.root_hash).is_err(), "position {position}");
        let other_leaf = leaves[neighbour as usize];
        assert!(verify_inclusion(&other_leaf, index, size, &proof, &new.root_hash).is_err(), "position {position}");
        assert!(verify_inclusion(&leaf, index, size, &proof, &old.root_hash).is_err(), "position {position}");
    }

    let (from, to) = (old.tree_size, new.tree_size);
    let reply = ledger.admin.get(&format!("/v1/ledger/proofs/consistency?from={from}&to={to}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!((reply.body["from"].as_u64(), reply.body["to"].as_u64()), (Some(from), Some(to)));
    let proof = hashes(&reply.body["proof"]);
    verify_consistency(from, to, &old.root_hash, &new.root_hash, &proof).unwrap();
    assert!(verify_consistency(from, to, &new.root_hash, &old.root_hash, &proof).is_err());
    for altered in 0..proof.len() {
        let mut bad = proof.clone();
        bad[altered][0] ^= 1;
        assert!(verify_consistency(from, to, &old.root_hash, &new.root_hash, &bad).is_err(), "hash {altered}");
    }
}

#[tokio::test]
async fn every_checkpoint_verifies_with_the_public_key_and_is_the_one_recorded_in_the_log() {
    let ledger = Ledger::start(&FAST).await;
    for _ in 0..3 {
        ledger.use_token(1).await;
        ledger.settled_checkpoint().await;
    }
    let verifier = ledger.verifier().await;
    let mut listed: Vec<Value> = Vec::new();
    let mut query = "/v1/ledger/checkpoints?limit=2".to_owned();
    loop {
        let page = ledger.admin.get(&query).await;
        assert_eq!(page.status, 200, "{page:?}");
        listed.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["nextCursor"].as_str() {
            Some(cursor) => query = format!("/v1/ledger/checkpoints?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let recorded = recorded_checkpoints(ledger.dir());
    assert!(recorded.len() >= 3, "{recorded:?}");
    assert_eq!(listed.len(), recorded.len(), "{listed:?}");
    let positions: Vec<u64> = listed.iter().map(|view| view["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|pair| pair[0] > pair[1]), "newest first: {positions:?}");
    for view in &listed {
        let checkpoint =
            verifier.verify(view["note"].as_str().unwrap()).unwrap_or_else(|error| panic!("{error}: {view}"));
        assert_eq!(Some(checkpoint.tree_size), view["treeSize"].as_u64(), "{view}");
        assert_eq!(checkpoint.root_hash, hash(&view["rootHash"]), "{view}");
        assert_eq!(checkpoint.origin, view["origin"].as_str().unwrap(), "{view}");
        let event = recorded.iter().find(|event| event["position"] == view["position"]).expect("recorded in the log");
        assert_eq!(event["payload"]["note"], view["note"], "{view}");
        let exact = ledger.admin.get(&format!("/v1/ledger/checkpoints?treeSize={}", checkpoint.tree_size)).await;
        assert_eq!(exact.body["items"][0]["note"], view["note"], "{exact:?}");
    }
}

#[tokio::test]
async fn bad_proof_and_listing_queries_answer_400_problem_json() {
    let ledger = Ledger::start(&FAST).await;
    ledger.use_token(1).await;
    let size = ledger.settled_checkpoint().await["treeSize"].as_u64().unwrap();
    let beyond = ledger.head() + 1000;
    for query in [
        format!("/v1/ledger/proofs/inclusion?position=0&treeSize={size}"),
        format!("/v1/ledger/proofs/inclusion?position={}&treeSize={size}", size + 1),
        format!("/v1/ledger/proofs/inclusion?position=1&treeSize={beyond}"),
        "/v1/ledger/proofs/inclusion?position=1&treeSize=0".to_owned(),
        format!("/v1/ledger/proofs/inclusion?position=one&treeSize={size}"),
        "/v1/ledger/proofs/inclusion?position=1&treeSize=-1".to_owned(),
        "/v1/ledger/proofs/inclusion?position=1".to_owned(),
        format!("/v1/ledger/proofs/consistency?from=0&to={size}"),
        format!("/v1/ledger/proofs/consistency?from={size}&to={}", size - 1),
        format!("/v1/ledger/proofs/consistency?from=1&to={beyond}"),
        format!("/v1/ledger/proofs/consistency?from=x&to={size}"),
        "/v1/ledger/proofs/consistency?from=1&to=2.5".to_owned(),
        "/v1/ledger/checkpoints?limit=0".to_owned(),
        "/v1/ledger/checkpoints?limit=many".to_owned(),
        "/v1/ledger/checkpoints?cursor=abc".to_owned(),
        "/v1/ledger/checkpoints?treeSize=big".to_owned(),
        "/v1/ledger/export?treeSize=-3".to_owned(),
    ] {
        let reply = ledger.admin.get(&query).await;
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
        assert_eq!(reply.content_type, "application/problem+json", "{query}");
        assert_eq!(reply.code(), "invalid_query", "{query}: {reply:?}");
    }
}

#[tokio::test]
async fn the_key_is_public_checkpoints_are_for_people_and_the_whole_export_is_the_server_admins() {
    let ledger = Ledger::start(&FAST).await;
    ledger.use_token(1).await;
    ledger.settled_checkpoint().await;
    let anonymous = Client::anonymous(&ledger.server);
    let key = anonymous.get("/v1/ledger/key").await;
    assert_eq!(key.status, 200, "no token needed: {key:?}");
    let (origin, key_id) = (key.body["origin"].as_str().unwrap(), key.body["keyId"].as_str().unwrap());
    assert_eq!(key_id.len(), 8, "{key:?}");
    let verifier_key = key.body["verifierKey"].as_str().unwrap();
    assert!(verifier_key.starts_with(&format!("{origin}+{key_id}+")), "{key:?}");
    let secret = std::fs::read_to_string(ledger.dir().join("ledger-key")).unwrap();
    assert_eq!(LedgerKey::from_secret(&secret).unwrap().verifier_key(), verifier_key, "the key of DATA_DIR/ledger-key");

    let owner = ledger.server.client(&ledger.owner_token);
    let (_, member_token) = owner.add_member_with_token(&ledger.org, "dev@acme.example", "member").await;
    let member = ledger.server.client(&member_token);
    let machine = ledger.server.client(&ledger.machine_token);
    for (who, client, status) in
        [("anonymous", &anonymous, 401), ("member", &member, 403), ("owner", &owner, 403), ("machine", &machine, 403)]
    {
        let reply = client.get("/v1/ledger/export").await;
        assert_eq!(reply.status, status, "{who}: {reply:?}");
        assert_eq!(reply.content_type, "application/problem+json", "{who}");
    }
    let export = reqwest::Client::new()
        .get(ledger.server.url("/v1/ledger/export"))
        .bearer_auth(ledger.server.admin_token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");

    assert_eq!(member.get("/v1/ledger/checkpoint").await.status, 200, "any person reads checkpoints");
    assert_eq!(anonymous.get("/v1/ledger/checkpoint").await.status, 401);
    assert_eq!(machine.get("/v1/ledger/checkpoint").await.status, 403, "not a machine credential");
}

/// `credledger audit verify --url … --state STATE -o json` with the server admin's token.
fn monitor(ledger: &Ledger, state: &Path, extra: &[&str]) -> support::CliRun {
    let mut args = vec!["audit", "verify", "-o", "json", "--url", &ledger.server.base_url];
    args.extend(["--state", state.to_str().unwrap()]);
    args.extend(extra);
    support::run_cli(&args, &[("CREDLEDGER_TOKEN", ledger.server.admin_token.as_deref().unwrap())])
}

fn read_state(state: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap()
}

#[tokio::test]
async fn monitor_mode_checks_that_each_new_checkpoint_extends_the_last_and_saves_it() {
    let ledger = Ledger::start(&FAST).await;
    ledger.use_token(1).await;
    let first = ledger.settled_checkpoint().await;
    let files = tempfile::tempdir().unwrap();
    let state = files.path().join("monitor.json");

    let run = monitor(&ledger, &state, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.document();
    assert_eq!(report["status"], "consistent", "{report}");
    assert_eq!((report["treeSize"].as_u64(), report["previousTreeSize"].as_u64()), (first["treeSize"].as_u64(), None));
    assert_eq!(report["trustedOnFirstUse"], true, "{report}");
    assert!(run.stderr.contains("trusting the ledger key"), "{run:?}");
    let saved = read_state(&state);
    assert_eq!((&saved["checkpoint"], &saved["treeSize"]), (&first["note"], &first["treeSize"]), "{saved}");
    let key = Client::anonymous(&ledger.server).get("/v1/ledger/key").await;
    assert_eq!(saved["verifierKey"], key.body["verifierKey"], "the key is pinned");

    ledger.use_token(3).await;
    let second = ledger.settled_checkpoint().await;
    let run = monitor(&ledger, &state, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.document();
    assert_eq!(
        (report["treeSize"].as_u64(), report["previousTreeSize"].as_u64()),
        (second["treeSize"].as_u64(), first["treeSize"].as_u64()),
        "{report}"
    );
    assert_eq!(report["trustedOnFirstUse"], false, "{report}");
    let saved = read_state(&state);
    assert_eq!((&saved["checkpoint"], &saved["treeSize"]), (&second["note"], &second["treeSize"]), "{saved}");

    let run = monitor(&ledger, &state, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.document()["previousTreeSize"], second["treeSize"], "nothing new: {run:?}");
}

#[tokio::test]
async fn monitor_mode_refuses_a_state_the_ledger_does_not_extend_or_another_key() {
    let ledger = Ledger::start(&FAST).await;
    ledger.use_token(2).await;
    let latest = ledger.settled_checkpoint().await;
    let size = latest["treeSize"].as_u64().unwrap();
    let files = tempfile::tempdir().unwrap();
    let genuine = files.path().join("genuine.json");
    assert_eq!(monitor(&ledger, &genuine, &[]).code, 0);
    let genuine = read_state(&genuine);

    let secret = std::fs::read_to_string(ledger.dir().join("ledger-key")).unwrap();
    let ledger_key = LedgerKey::from_secret(&secret).unwrap();
    let other_key = LedgerKey::generate(ledger_key.origin()).unwrap();
    let now = Utc::now();
    let note = genuine["checkpoint"].as_str().unwrap();
    let edited = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 100), 1);
    assert_ne!(edited, note);

    // (the case, what the state holds instead, whether `--key` gives the other key, the refusal)
    let cases: Vec<(&str, Value, bool, &str)> = vec![
        (
            "a larger tree signed by another key",
            json!({ "checkpoint": other_key.sign(size + 100, [7; 32], now).unwrap() }),
            false,
            "state_checkpoint_invalid",
        ),
        ("a larger tree edited into the note", json!({ "checkpoint": edited }), false, "state_checkpoint_invalid"),
        (
            "a larger tree signed by the ledger's own key: the ledger was rolled back",
            json!({ "checkpoint": ledger_key.sign(size + 100, [7; 32], now).unwrap() }),
            false,
            "rolled_back",
        ),
        (
            "another root for the same size",
            json!({ "checkpoint": ledger_key.sign(size, [7; 32], now).unwrap() }),
            false,
            "split_view",
        ),
        (
            "a smaller tree the ledger's does not extend",
            json!({ "checkpoint": ledger_key.sign(size - 1, [7; 32], now).unwrap() }),
            false,
            "inconsistent",
        ),
        (
            "pinned to another key",
            json!({
                "verifierKey": other_key.verifier_key(),
                "checkpoint": other_key.sign(size - 1, [7; 32], now).unwrap(),
            }),
            false,
            "checkpoint_invalid",
        ),
        ("another key given than the one pinned", json!({}), true, "key_changed"),
    ];
    let other_key_file = files.path().join("other.vkey");
    std::fs::write(&other_key_file, other_key.verifier_key()).unwrap();
    for (case, changes, give_other_key, code) in cases {
        let mut state = genuine.clone();
        for (field, value) in changes.as_object().unwrap() {
            state[field] = value.clone();
        }
        let file = files.path().join("crafted.json");
        let text = serde_json::to_string_pretty(&state).unwrap();
        std::fs::write(&file, &text).unwrap();
        let extra = if give_other_key { vec!["--key", other_key_file.to_str().unwrap()] } else { vec![] };
        let run = monitor(&ledger, &file, &extra);
        let failure = run.failure(code);
        if code == "rolled_back" {
            assert_eq!(failure["position"].as_u64(), Some(size + 1), "{case}: {failure}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "{case}: a refused state is left as it was");
    }
}

/// On an idle ledger the newest checkpoint is the head event itself; an export under it starts
/// at once instead of waiting for a checkpoint that never comes.
#[tokio::test]
async fn an_idle_ledger_exports_without_waiting() {
    let ledger = Ledger::start(&FAST).await;
    let admin_token = ledger.server.admin_token.as_deref().unwrap();
    let dir = ledger.dir();
    ledger.admin.checkpoint_covering(support::last_event_to_sign(dir)).await;
    eventually("an idle log whose head is a checkpoint", Duration::from_secs(10), async || {
        let log = support::log_events(dir);
        (log.last().is_some_and(|event| event["type"] == "CheckpointSigned")).then_some(())
    })
    .await;
    let started = Instant::now();
    let export = reqwest::Client::new()
        .get(ledger.server.url("/v1/ledger/export"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let body = export.text().await.unwrap();
    // The wait it replaces was 5 s; anything near it means the export waited.
    assert!(started.elapsed() < Duration::from_secs(3), "the export waited {:?}", started.elapsed());
    let lines = body.lines().count() as u64;
    assert!(lines > support::last_event_to_sign(dir), "the header and every event the checkpoint covers: {lines}");
}
