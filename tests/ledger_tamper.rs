//! The verifiable ledger against an adversary with the database (DESIGN.md §7). A real server
//! records a ledger; while it is stopped its SQLite log is rewritten — one flipped byte, a
//! recomputed leaf hash, a deleted, swapped, forged or truncated event — and after a restart its
//! export must be refused by `credledger audit verify`, which names the tampered position. An
//! organization's export verifies offline, and an omitted entry or an altered proof is named.
//! (Monitor mode and the `/v1/ledger` routes are tested in `ledger.rs`.)

mod support;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, Transaction};
use serde_json::{Value, json};
use support::{CliRun, Server};

/// Checkpoints every 100 ms instead of every second, so waiting for one is short.
const FAST: [&str; 2] = ["--checkpoint-interval-ms", "100"];

/// The user agent of the machine-token use every tamper case aims at.
const TARGET_AGENT: &str = "tamper-target/1.0";

/// The log's append-only triggers, as the migration creates them: recreated after each tamper.
const TAMPERED: bool = true;

fn append_only_triggers() -> &'static str {
    let migration = include_str!("../migrations/sqlite/log/0001_events.sql");
    &migration[migration.find("CREATE TRIGGER").expect("the migration creates the triggers")..]
}

/// The positions a failure names: `position`, through the end of the `a..=b` range its reason
/// states when it states one.
fn named_range(failure: &Value) -> RangeInclusive<u64> {
    let start = failure["position"].as_u64().unwrap_or_else(|| panic!("no position: {failure}"));
    let reason = failure["reason"].as_str().unwrap_or_default();
    let end = reason.split("..=").nth(1).and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    start..=end.unwrap_or(start)
}

/// Every event of the log as (position, envelope JSON).
fn events(data_dir: &Path) -> Vec<(u64, Value)> {
    support::log_events(data_dir).into_iter().map(|event| (event["position"].as_u64().unwrap(), event)).collect()
}

/// A machine token's use of a route the token may read, sent with `user_agent`.
async fn use_token(server: &Server, token: &str, org: &str, user_agent: &str) {
    let reply = server.client(token).with_user_agent(user_agent).get(&format!("/v1/projects/{org}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// A ledger a real server recorded, then stopped: its data directory, and what a verifier saved
/// while it ran (the key, and a checkpoint covering every event of the activity).
struct Recorded {
    data: tempfile::TempDir,
    admin_token: String,
    org: String,
    owner_token: String,
    machine_token: String,
    /// The position of the use sent with [`TARGET_AGENT`].
    target: u64,
    /// An earlier event of the target's stream.
    earlier_in_stream: u64,
    /// A later machine-token use of the organization, before the trusted checkpoint.
    later: u64,
    /// The tree size of the trusted checkpoint.
    trusted_size: u64,
    key_file: PathBuf,
    checkpoint_file: PathBuf,
}

impl Recorded {
    /// Starts a server, records an organization's activity with checkpoints between its parts,
    /// saves the key and a checkpoint covering it all, and stops the server.
    async fn new() -> Self {
        // These tests edit the log's file around its triggers.
        support::sqlite_only();
        let data = tempfile::tempdir().unwrap();
        let server = Server::start_in_with(data.path(), &FAST).unwrap();
        let admin_token = server.admin_token.clone().expect("the first start prints the admin token");
        let admin = server.admin();
        let (org, _, owner_token) = admin.create_org("acme", "ops@acme.example").await;
        let owner = server.client(&owner_token);
        let (_, ci) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
        let (_, deploy) = owner.create_token(&org, json!({ "name": "deploy", "environmentHint": "prod" })).await;
        for _ in 0..2 {
            use_token(&server, &ci, &org, "ci-runner/2.1").await;
        }
        // A checkpoint before the target and one after it, so that a recomputed leaf hash is
        // narrowed to the events between two signatures.
        admin.checkpoint_covering(support::last_event_to_sign(data.path())).await;
        use_token(&server, &ci, &org, TARGET_AGENT).await;
        admin.checkpoint_covering(support::last_event_to_sign(data.path())).await;
        for _ in 0..2 {
            use_token(&server, &deploy, &org, "deploy-bot/0.9").await;
        }
        let (_, nightly) = owner.create_token(&org, json!({ "name": "nightly", "environmentHint": "prod" })).await;
        use_token(&server, &nightly, &org, "nightly/1.0").await;

        let head = support::last_event_to_sign(data.path());
        let trusted = admin.checkpoint_covering(head).await;
        let key = support::Client::anonymous(&server).get("/v1/ledger/key").await;
        assert_eq!(key.status, 200, "{key:?}");
        let key_file = data.path().join("ledger.vkey");
        let checkpoint_file = data.path().join("trusted-checkpoint.txt");
        std::fs::write(&key_file, key.body["verifierKey"].as_str().unwrap()).unwrap();
        std::fs::write(&checkpoint_file, trusted["note"].as_str().unwrap()).unwrap();
        assert!(server.stop().unwrap().success());

        let log = events(data.path());
        let (target, target_event) = log
            .iter()
            .find(|(_, event)| event["payload"]["userAgent"] == TARGET_AGENT)
            .cloned()
            .expect("the target use is recorded");
        let earlier_in_stream = log
            .iter()
            .find(|(_, event)| {
                event["stream"] == target_event["stream"]
                    && event["version"].as_u64() == Some(target_event["version"].as_u64().unwrap() - 1)
            })
            .map(|(position, _)| *position)
            .expect("the token was used before the target");
        let later = log
            .iter()
            .rev()
            .find(|(_, event)| event["type"] == "CredentialUsed" && event["payload"]["userAgent"] == "deploy-bot/0.9")
            .map(|(position, _)| *position)
            .unwrap();
        let trusted_size = trusted["treeSize"].as_u64().unwrap();
        assert!(earlier_in_stream < target && target < later && later <= trusted_size, "{log:?}");
        Self {
            data,
            admin_token,
            org,
            owner_token,
            machine_token: ci,
            target,
            earlier_in_stream,
            later,
            trusted_size,
            key_file,
            checkpoint_file,
        }
    }

    fn dir(&self) -> &Path {
        self.data.path()
    }

    /// Rewrites the stopped server's log as someone with the file would: the append-only
    /// triggers dropped, `change` applied, the triggers recreated, in one transaction.
    fn tamper(&self, change: impl FnOnce(&Transaction<'_>)) {
        let mut connection = Connection::open(self.dir().join("events.db")).unwrap();
        let transaction = connection.transaction().unwrap();
        transaction.execute_batch("DROP TRIGGER events_refuse_update; DROP TRIGGER events_refuse_delete;").unwrap();
        change(&transaction);
        transaction.execute_batch(append_only_triggers()).unwrap();
        transaction.commit().unwrap();
        let triggers: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'events_refuse_%'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(triggers, 2, "the tampered log looks append-only again");
    }

    /// Restarts the server on the data directory and records a use. An untouched log gets a new
    /// checkpoint; a tampered one must be caught by the server's own check at start: it signs
    /// nothing more (so the rewritten history never gets a genuine checkpoint) and `/readyz`
    /// reports the integrity failure. Then downloads `/v1/ledger/export`, stops the server, and
    /// runs the offline verifier with the key and the checkpoint saved before the tamper.
    async fn export_and_verify(&self, tampered: bool) -> CliRun {
        let server = Server::start_in_with(self.dir(), &FAST).expect("the server starts on a tampered log");
        let admin = server.client(&self.admin_token);
        if tampered {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let ready = support::Client::anonymous(&server).get("/readyz").await;
                if ready.status == 503 && ready.body["status"] == "ledger integrity failure" {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the tamper went unnoticed by the server: {ready:?}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            // Read-only: a use is refused rather than written on top of the altered log, and
            // nothing new is signed over it.
            let length = support::log_len(self.dir());
            let refused = server.client(&self.machine_token).get(&format!("/v1/projects/{}", self.org)).await;
            assert_eq!((refused.status, refused.code()), (503, "ledger_integrity"), "{refused:?}");
            assert_eq!(support::log_len(self.dir()), length, "nothing is appended to a tampered log");
            let latest = admin.get("/v1/ledger/checkpoint").await;
            assert!(
                latest.body["treeSize"].as_u64().unwrap() <= self.trusted_size,
                "no checkpoint is signed over a tampered log: {latest:?}"
            );
        } else {
            use_token(&server, &self.machine_token, &self.org, "after-restart/1.0").await;
            admin.checkpoint_covering(self.trusted_size + 2).await;
        }
        let response = reqwest::Client::new()
            .get(server.url("/v1/ledger/export"))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the tampered log still exports");
        let export = response.bytes().await.expect("the export is sent whole");
        assert!(server.stop().unwrap().success(), "the server stops cleanly after the export");
        let file = self.dir().join("ledger.ndjson");
        std::fs::write(&file, &export).unwrap();
        self.verify(&file, true)
    }

    /// `credledger audit verify --export FILE --key KEY [--checkpoint TRUSTED] -o json`.
    fn verify(&self, export: &Path, with_trusted: bool) -> CliRun {
        let mut args = vec!["audit", "verify", "-o", "json", "--export", export.to_str().unwrap()];
        args.extend(["--key", self.key_file.to_str().unwrap()]);
        if with_trusted {
            args.extend(["--checkpoint", self.checkpoint_file.to_str().unwrap()]);
        }
        support::run_cli(&args, &[])
    }
}

/// A position as SQLite stores it.
fn sql(position: u64) -> i64 {
    i64::try_from(position).expect("a position SQLite can hold")
}

/// (envelope, leaf hash) of the row at `position`.
fn row(transaction: &Transaction<'_>, position: u64) -> (Vec<u8>, Vec<u8>) {
    transaction
        .query_row("SELECT envelope, leaf_hash FROM events WHERE position = ?1", [sql(position)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap()
}

/// The target's envelope with one byte of its payload's user agent flipped ('t' becomes 'u'):
/// still valid JSON, still the same length.
fn flip_target_byte(envelope: &[u8]) -> Vec<u8> {
    let needle = format!("\"userAgent\":\"{TARGET_AGENT}\"");
    let at = envelope
        .windows(needle.len())
        .rposition(|window| window == needle.as_bytes())
        .expect("the payload names the user agent");
    let mut altered = envelope.to_vec();
    altered[at + "\"userAgent\":\"".len()] ^= 0x01;
    assert!(serde_json::from_slice::<Value>(&altered).is_ok(), "the altered envelope is still JSON");
    altered
}

#[tokio::test]
async fn the_untampered_ledger_verifies_and_reports_its_counts() {
    let recorded = Recorded::new().await;
    recorded.tamper(|_| {});
    let outcome = recorded.export_and_verify(!TAMPERED).await;
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let report = outcome.document();
    assert_eq!((report["status"].as_str(), report["scope"].as_str()), (Some("verified"), Some("ledger")), "{report}");
    let export = std::fs::read_to_string(recorded.dir().join("ledger.ndjson")).unwrap();
    let lines: Vec<&str> = export.lines().skip(1).collect();
    let events = report["events"].as_u64().unwrap();
    assert_eq!(events, lines.len() as u64, "one event per line: {report}");
    assert_eq!(report["treeSize"].as_u64(), Some(events), "{report}");
    assert!(events > recorded.trusted_size, "the export's checkpoint was signed after the restart: {report}");
    assert_eq!(report["madeUnder"]["treeSize"].as_u64(), Some(events), "{report}");
    assert_eq!(report["trustedCheckpoint"]["treeSize"].as_u64(), Some(recorded.trusted_size), "{report}");
    assert_eq!(report["organizations"], 1, "{report}");
    assert!(report["streams"].as_u64().unwrap() >= 6, "organization, member, PAT, tokens, usage, ledger: {report}");
    let recorded_checkpoints = lines.iter().filter(|line| line.contains("\"type\":\"CheckpointSigned\"")).count();
    assert!(recorded_checkpoints >= 3, "{export}");
    assert_eq!(report["checkpointsChecked"].as_u64(), Some(recorded_checkpoints as u64), "every one checked: {report}");
}

#[tokio::test]
async fn a_flipped_payload_byte_is_named_by_its_leaf_hash() {
    let recorded = Recorded::new().await;
    recorded.tamper(|transaction| {
        let (envelope, _) = row(transaction, recorded.target);
        let update = "UPDATE events SET envelope = ?1 WHERE position = ?2";
        transaction.execute(update, (flip_target_byte(&envelope), sql(recorded.target))).unwrap();
    });
    let failure = recorded.export_and_verify(TAMPERED).await.failure("leaf_hash_mismatch");
    assert_eq!(failure["position"].as_u64(), Some(recorded.target), "{failure}");
    assert!(failure["reason"].as_str().unwrap().contains(&format!("position {}", recorded.target)), "{failure}");
}

#[tokio::test]
async fn a_flipped_byte_with_its_leaf_hash_recomputed_is_caught_by_the_checkpoints_signed_before() {
    let recorded = Recorded::new().await;
    recorded.tamper(|transaction| {
        let (envelope, _) = row(transaction, recorded.target);
        let altered = flip_target_byte(&envelope);
        let leaf_hash = credledger_store::leaf_hash(&altered).to_vec();
        let update = "UPDATE events SET envelope = ?1, leaf_hash = ?2 WHERE position = ?3";
        transaction.execute(update, (altered, leaf_hash, sql(recorded.target))).unwrap();
    });
    // Every line hashes to its leaf hash: only the checkpoints signed before the tamper reveal it.
    let outcome = recorded.export_and_verify(TAMPERED).await;
    assert_eq!(outcome.code, 1, "{outcome:?}");
    let failure = outcome.document();
    let code = failure["code"].as_str().unwrap_or_default();
    assert!(["recorded_checkpoint_mismatch", "trusted_checkpoint_mismatch"].contains(&code), "{failure}");
    let range = named_range(&failure);
    assert!(range.contains(&recorded.target), "{range:?} must hold position {}: {failure}", recorded.target);
    assert!(*range.start() > recorded.earlier_in_stream, "narrowed by the checkpoint signed before: {failure}");
}

#[tokio::test]
async fn a_deleted_event_is_named() {
    let recorded = Recorded::new().await;
    recorded.tamper(|transaction| {
        transaction.execute("DELETE FROM events WHERE position = ?1", [sql(recorded.target)]).unwrap();
    });
    let failure = recorded.export_and_verify(TAMPERED).await.failure("unexpected_position");
    assert_eq!(failure["position"].as_u64(), Some(recorded.target), "{failure}");
    let reason = failure["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("position {} is missing", recorded.target)), "{failure}");
}

#[tokio::test]
async fn two_swapped_events_are_named() {
    let recorded = Recorded::new().await;
    recorded.tamper(|transaction| {
        let (first, later) = (recorded.target, recorded.later);
        let (first_envelope, first_hash) = row(transaction, first);
        let (later_envelope, later_hash) = row(transaction, later);
        let swap = "UPDATE events SET envelope = ?1, leaf_hash = ?2 WHERE position = ?3";
        transaction.execute(swap, (later_envelope, later_hash, sql(first))).unwrap();
        transaction.execute(swap, (first_envelope, first_hash, sql(later))).unwrap();
    });
    let failure = recorded.export_and_verify(TAMPERED).await.failure("envelope_position_mismatch");
    assert_eq!(failure["position"].as_u64(), Some(recorded.target), "{failure}");
    assert!(failure["reason"].as_str().unwrap().contains(&format!("position {}", recorded.later)), "{failure}");
}

/// The forgery: an event inserted in the middle of the log. The rows from the target on move up
/// by one, and at the target's position goes a copy of the event before it in the same stream
/// (the token's previous use) with its own position, a new event id, another user agent and a
/// leaf hash that matches, so that every line hashes right and states its place. The table's
/// UNIQUE columns get values of their own (a verifier reads only envelopes). The verifier must
/// stop at the forgery itself: its stream version repeats one already seen.
#[tokio::test]
async fn an_inserted_forged_event_is_named() {
    let recorded = Recorded::new().await;
    let position = recorded.target;
    recorded.tamper(|transaction| {
        // Two steps, so that no row collides with another's primary key on the way.
        let shift = "UPDATE events SET position = position + ?1 WHERE position >= ?2";
        transaction.execute(shift, (1_000_000, sql(position))).unwrap();
        transaction.execute(shift, (-999_999, sql(position) + 1_000_000)).unwrap();
        let (copied, _) = row(transaction, recorded.earlier_in_stream);
        let mut forged: Value = serde_json::from_slice(&copied).unwrap();
        forged["position"] = json!(position);
        forged["eventId"] = json!(uuid::Uuid::now_v7().to_string());
        forged["payload"]["userAgent"] = json!("forged/6.6");
        let forged = serde_json::to_vec(&forged).unwrap();
        let leaf_hash = credledger_store::leaf_hash(&forged).to_vec();
        let insert = "INSERT INTO events (position, stream, version, org_id, org_sequence, event_id, event_type, \
                      envelope, leaf_hash) VALUES (?1, 'forged', 0, NULL, NULL, ?2, 'CredentialUsed', ?3, ?4)";
        transaction.execute(insert, (sql(position), uuid::Uuid::now_v7().to_string(), forged, leaf_hash)).unwrap();
    });
    let failure = recorded.export_and_verify(TAMPERED).await.failure("stream_version_gap");
    assert_eq!(failure["position"].as_u64(), Some(position), "{failure}");
}

#[tokio::test]
async fn a_truncated_tail_covered_by_the_trusted_checkpoint_is_named() {
    let recorded = Recorded::new().await;
    let first_removed = recorded.trusted_size - 2;
    recorded.tamper(|transaction| {
        transaction.execute("DELETE FROM events WHERE position >= ?1", [sql(first_removed)]).unwrap();
    });
    let failure = recorded.export_and_verify(TAMPERED).await.failure("truncated");
    assert_eq!(failure["position"].as_u64(), Some(first_removed), "{failure}");
    let range = named_range(&failure);
    assert!(range.contains(&recorded.trusted_size), "{range:?}: {failure}");
}

/// An organization's export: the header, then `(position, orgSequence, line)` of each entry.
fn entries(export: &str) -> (&str, Vec<(u64, u64, &str)>) {
    let mut lines = export.lines();
    let header = lines.next().expect("a header line");
    let entries = lines
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            (entry["position"].as_u64().unwrap(), entry["envelope"]["orgSequence"].as_u64().unwrap(), line)
        })
        .collect();
    (header, entries)
}

#[tokio::test]
async fn an_organizations_export_verifies_offline_and_an_omitted_entry_or_altered_proof_is_named() {
    let recorded = Recorded::new().await;
    let server = Server::start_in_with(recorded.dir(), &FAST).unwrap();
    let response = reqwest::Client::new()
        .get(server.url(&format!("/v1/audit/{}/export?format=ndjson", recorded.org)))
        .bearer_auth(&recorded.owner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let export = response.text().await.unwrap();
    let latest = server.client(&recorded.admin_token).get("/v1/ledger/checkpoint").await;
    assert!(server.stop().unwrap().success());
    let latest_file = recorded.dir().join("latest-checkpoint.txt");
    std::fs::write(&latest_file, latest.body["note"].as_str().unwrap()).unwrap();
    let verify = |name: &str, text: &str| {
        let file = recorded.dir().join(name);
        std::fs::write(&file, text).unwrap();
        let (file, key, checkpoint) =
            (file.to_str().unwrap(), recorded.key_file.to_str().unwrap(), latest_file.to_str().unwrap());
        support::run_cli(
            &["audit", "verify", "-o", "json", "--export", file, "--key", key, "--checkpoint", checkpoint],
            &[],
        )
    };

    let (header, entries) = entries(&export);
    let verified = verify("acme.ndjson", &export);
    assert_eq!(verified.code, 0, "{verified:?}");
    let report = verified.document();
    assert_eq!(
        (report["scope"].as_str(), report["orgId"].as_str()),
        (Some("organization"), Some(recorded.org.as_str()))
    );
    assert_eq!(report["events"].as_u64(), Some(entries.len() as u64), "{report}");
    assert_eq!(report["treeSize"], latest.body["treeSize"], "{report}");
    assert!(entries.iter().any(|(position, _, _)| *position == recorded.target), "{export}");

    // The target's entry left out: the next entry's orgSequence skips it.
    let omitted = entries.iter().position(|(position, _, _)| *position == recorded.target).unwrap();
    let (_, sequence, _) = entries[omitted];
    let (next_position, _, _) = entries[omitted + 1];
    let rest: Vec<&str> =
        entries.iter().enumerate().filter(|(i, _)| *i != omitted).map(|(_, (_, _, line))| *line).collect();
    let failure = verify("omitted.ndjson", &format!("{header}\n{}\n", rest.join("\n"))).failure("org_sequence_gap");
    assert_eq!(failure["position"].as_u64(), Some(next_position), "{failure}");
    assert!(failure["reason"].as_str().unwrap().contains(&format!("entry {sequence} is missing")), "{failure}");

    // One hex digit of the first hash of the target's inclusion proof changed.
    let (_, _, line) = entries[omitted];
    let at = line.find("\"inclusionProof\":[\"").expect("a proof") + "\"inclusionProof\":[\"".len();
    let digit = if line.as_bytes()[at] == b'0' { "1" } else { "0" };
    let altered_line = format!("{}{digit}{}", &line[..at], &line[at + 1..]);
    let altered = export.replacen(line, &altered_line, 1);
    let failure = verify("altered-proof.ndjson", &altered).failure("inclusion_proof_failed");
    assert_eq!(failure["position"].as_u64(), Some(recorded.target), "{failure}");
}

/// A use of the machine token recorded after its revocation, appended to the stopped server's log
/// as a writer that did not keep the invariant would have: a pure extension of the log, with the
/// next position, stream version and organization sequence and a matching leaf hash, so that the
/// server signs over it when it restarts. Every hash and signature of the export checks out; the
/// verifier must still name the use, from the export alone.
#[tokio::test]
async fn a_use_recorded_after_the_revocation_is_named_though_every_hash_checks_out() {
    let recorded = Recorded::new().await;
    let server = Server::start_in_with(recorded.dir(), &FAST).unwrap();
    let log = events(recorded.dir());
    let (_, target) = log.iter().find(|(position, _)| *position == recorded.target).cloned().unwrap();
    let token_id = target["payload"]["credentialId"].as_str().unwrap().to_owned();
    let owner = server.client(&recorded.owner_token);
    let revoked = owner.delete(&format!("/v1/machine-tokens/{}/{token_id}", recorded.org)).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert!(server.stop().unwrap().success());

    let log = events(recorded.dir());
    let revoked_at = log
        .iter()
        .find(|(_, event)| event["type"] == "MachineTokenRevoked" && event["stream"] == format!("mt-{token_id}"))
        .map(|(position, _)| *position)
        .unwrap();
    let position = log.last().unwrap().0 + 1;
    let version = log.iter().filter(|(_, event)| event["stream"] == target["stream"]).count();
    let org_sequence = log.iter().filter(|(_, event)| event["orgId"] == target["orgId"]).count() + 1;
    let mut late = target.clone();
    late["position"] = json!(position);
    late["version"] = json!(version);
    late["orgSequence"] = json!(org_sequence);
    late["eventId"] = json!(uuid::Uuid::now_v7().to_string());
    late["payload"]["userAgent"] = json!("after-revocation/1.0");
    let envelope = serde_json::to_vec(&late).unwrap();
    let connection = Connection::open(recorded.dir().join("events.db")).unwrap();
    connection
        .execute(
            "INSERT INTO events (position, stream, version, org_id, org_sequence, event_id, event_type, envelope, \
             leaf_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'CredentialUsed', ?7, ?8)",
            (
                sql(position),
                late["stream"].as_str().unwrap(),
                version as i64,
                late["orgId"].as_str().unwrap(),
                org_sequence as i64,
                late["eventId"].as_str().unwrap(),
                &envelope,
                credledger_store::leaf_hash(&envelope).to_vec(),
            ),
        )
        .unwrap();
    drop(connection);

    // The server takes the extended log as its own and signs over it.
    let server = Server::start_in_with(recorded.dir(), &FAST).unwrap();
    let signed = server.client(&recorded.admin_token).checkpoint_covering(position).await;
    let response = reqwest::Client::new()
        .get(server.url("/v1/ledger/export"))
        .bearer_auth(&recorded.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let export = response.bytes().await.unwrap();
    assert!(server.stop().unwrap().success());
    let file = recorded.dir().join("ledger.ndjson");
    std::fs::write(&file, &export).unwrap();
    std::fs::write(&recorded.checkpoint_file, signed["note"].as_str().unwrap()).unwrap();

    let failure = recorded.verify(&file, true).failure("use_after_stop");
    assert_eq!(failure["position"].as_u64(), Some(position), "{failure}");
    let reason = failure["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("position {revoked_at}")) && reason.contains(&token_id), "{failure}");
}
