//! The ledger under faults (storage and hostile connections): an event altered after the last
//! checkpoint, a log that lost acknowledged events, a full disk, connections that never finish
//! their request. Each test runs the real server on a loopback port and its real files.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, eventually};

/// No checkpoint after the one signed at start: the tail stays unsigned while the test runs.
const NO_CHECKPOINTS: [&str; 2] = ["--checkpoint-interval-ms", "3600000"];

/// Checkpoints every 100 ms.
const FAST: [&str; 2] = ["--checkpoint-interval-ms", "100"];

/// Rewrites one byte of the envelope at `position` in a stopped server's SQLite log, around the
/// append-only triggers (recreated afterwards), leaving its recorded leaf hash as it was.
fn flip_envelope_byte(data_dir: &Path, position: u64) {
    let connection = rusqlite::Connection::open(data_dir.join("events.db")).unwrap();
    let migration = include_str!("../migrations/sqlite/log/0001_events.sql");
    let triggers = &migration[migration.find("CREATE TRIGGER").expect("the migration creates the triggers")..];
    let names: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for name in names {
        connection.execute_batch(&format!("DROP TRIGGER {name}")).unwrap();
    }
    let mut envelope: Vec<u8> = connection
        .query_row("SELECT envelope FROM events WHERE position = ?1", [position as i64], |row| row.get(0))
        .unwrap();
    // A digit of the recorded time: the envelope still parses, only its bytes changed.
    let at = envelope.iter().rposition(u8::is_ascii_digit).expect("the envelope holds a digit");
    envelope[at] = if envelope[at] == b'9' { b'8' } else { envelope[at] + 1 };
    connection
        .execute("UPDATE events SET envelope = ?1 WHERE position = ?2", rusqlite::params![envelope, position as i64])
        .unwrap();
    connection.execute_batch(triggers).unwrap();
}

/// The position of the last event of `event_type` in the server's log.
fn position_of(data_dir: &Path, event_type: &str) -> u64 {
    support::log_events(data_dir)
        .iter()
        .rev()
        .find(|event| event["type"] == event_type)
        .and_then(|event| event["position"].as_u64())
        .unwrap_or_else(|| panic!("no {event_type} in the log"))
}

async fn readyz(server: &Server) -> (u16, Value) {
    let reply = support::Client::anonymous(server).get("/readyz").await;
    (reply.status, reply.body)
}

/// An event altered after the last checkpoint, while the server was down, is found before the
/// first write: the ledger is read-only, says which position, and signs nothing over it.
#[tokio::test]
async fn an_event_altered_after_the_last_checkpoint_stops_writes_at_start() {
    support::sqlite_only();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in_with(data.path(), &NO_CHECKPOINTS).unwrap();
    let admin_token = server.admin_token.clone().unwrap();
    let (org, _, owner) = server.admin().create_org("acme", "ops@acme.example").await;
    server.client(&owner).create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let checkpoints_before = support::stream_events(data.path(), "ledger", "CheckpointSigned").len();
    drop(server); // kill -9: the token's creation is in no checkpoint
    let altered = position_of(data.path(), "MachineTokenCreated");
    flip_envelope_byte(data.path(), altered);

    let server = Server::start_in_with(data.path(), &FAST).unwrap();
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("position {altered}")), "the reason names the position: {body}");
    let write =
        server.client(&admin_token).post("/v1/orgs", json!({ "name": "other", "ownerEmail": "a@b.example" })).await;
    assert_eq!((write.status, write.code()), (503, "ledger_integrity"), "{write:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let checkpoints = support::stream_events(data.path(), "ledger", "CheckpointSigned");
    assert_eq!(checkpoints.len(), checkpoints_before, "nothing is signed over an altered event");
}

/// A log put back to an older copy (acknowledged events lost) is an integrity failure through
/// write attempts and restarts, never papered over; `credledger accept-rollback` goes on from
/// the shorter log, recorded in the ledger, with read models rebuilt from the log.
#[tokio::test]
async fn a_log_behind_its_read_models_refuses_writes_until_the_loss_is_accepted() {
    support::sqlite_only();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in_with(data.path(), &NO_CHECKPOINTS).unwrap();
    let admin_token = server.admin_token.clone().unwrap();
    let (org, _, owner) = server.admin().create_org("acme", "ops@acme.example").await;
    assert!(server.stop().unwrap().success());
    let backup = data.path().join("events.db.backup");
    std::fs::copy(data.path().join("events.db"), &backup).unwrap();
    let old_head = support::log_len(data.path()) as u64;

    let server = Server::start_in_with(data.path(), &NO_CHECKPOINTS).unwrap();
    let (token_a, _) =
        server.client(&owner).create_token(&org, json!({ "name": "a", "environmentHint": "prod" })).await;
    let lost_head = support::log_len(data.path()) as u64;
    assert!(server.stop().unwrap().success());
    std::fs::copy(&backup, data.path().join("events.db")).unwrap();
    for stale in ["events.db-wal", "events.db-shm"] {
        let _ = std::fs::remove_file(data.path().join(stale));
    }

    for _restart in 0..2 {
        let server = Server::start_in_with(data.path(), &NO_CHECKPOINTS).unwrap();
        let (status, body) = readyz(&server).await;
        assert_eq!(status, 503, "{body}");
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("positions {}..={lost_head}", old_head + 1)),
            "the reason names the lost positions: {body}"
        );
        let owner_client = server.client(&owner);
        let write = owner_client
            .post(&format!("/v1/machine-tokens/{org}"), json!({ "name": "b", "environmentHint": "prod" }))
            .await;
        assert_eq!((write.status, write.code()), (503, "ledger_integrity"), "{write:?}");
        assert_eq!(readyz(&server).await.0, 503, "a refused write does not make the server ready");
        assert!(server.stop().unwrap().success());
        assert_eq!(support::log_len(data.path()) as u64, old_head, "nothing was written on the shorter log");
    }

    let run = support::run_cli(
        &["accept-rollback", "--data-dir", data.path().to_str().unwrap(), "--reason", "restored from backup"],
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&format!("positions {}..={lost_head} are lost", old_head + 1)), "{run:?}");
    let again =
        support::run_cli(&["accept-rollback", "--data-dir", data.path().to_str().unwrap(), "--reason", "twice"], &[]);
    assert_eq!(again.code, 1, "nothing more to accept: {again:?}");
    assert!(again.stderr.contains("nothing to accept"), "{again:?}");
    let accepted = support::stream_events(data.path(), "ledger", "LogRollbackAccepted");
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["payload"]["logHead"], json!(old_head));
    assert_eq!(accepted[0]["payload"]["lostThrough"], json!(lost_head));
    assert_eq!(accepted[0]["payload"]["reason"], "restored from backup");

    let server = Server::start_in_with(data.path(), &FAST).unwrap();
    eventually("the rebuilt read models", Duration::from_secs(20), async || {
        (readyz(&server).await.0 == 200).then_some(())
    })
    .await;
    let owner_client = server.client(&owner);
    let a = owner_client.get(&format!("/v1/machine-tokens/{org}/{token_a}")).await;
    assert_eq!(a.status, 404, "the lost token is not served: {a:?}");
    let (token_b, _) = owner_client.create_token(&org, json!({ "name": "b", "environmentHint": "prod" })).await;
    let b = owner_client.get(&format!("/v1/machine-tokens/{org}/{token_b}")).await;
    assert_eq!(b.status, 200, "{b:?}");
    let head = support::last_event_to_sign(data.path());
    server.client(&admin_token).checkpoint_covering(head).await;
}

/// A node whose read models applied events of a log that was then rolled back and written
/// again by another server (positions reused for other events) does not continue its read
/// models on it, even though the log is now longer than what they applied.
#[tokio::test]
async fn a_log_rolled_back_and_written_again_is_not_continued() {
    support::sqlite_only();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in_with(data.path(), &NO_CHECKPOINTS).unwrap();
    let (org, _, owner) = server.admin().create_org("acme", "ops@acme.example").await;
    assert!(server.stop().unwrap().success());
    let backup = data.path().join("events.db.backup");
    std::fs::copy(data.path().join("events.db"), &backup).unwrap();
    let server = Server::start_in_with(data.path(), &NO_CHECKPOINTS).unwrap();
    server.client(&owner).create_token(&org, json!({ "name": "a", "environmentHint": "prod" })).await;
    assert!(server.stop().unwrap().success());
    let applied = support::log_len(data.path());

    // Another server, with read models of its own, writes more than was lost on the old copy.
    let other = tempfile::tempdir().unwrap();
    let log = other.path().join("events.db");
    std::fs::copy(&backup, &log).unwrap();
    let store = format!("sqlite://{}", log.display());
    let writer =
        Server::start_in_with(other.path(), &["--store", &store, NO_CHECKPOINTS[0], NO_CHECKPOINTS[1]]).unwrap();
    eventually("the writer's read models", Duration::from_secs(20), async || {
        (readyz(&writer).await.0 == 200).then_some(())
    })
    .await;
    for name in ["b", "c", "d"] {
        writer.client(&owner).create_token(&org, json!({ "name": name, "environmentHint": "prod" })).await;
    }
    assert!(writer.stop().unwrap().success());
    assert!(support::log_len(other.path()) > applied, "the rewritten log is longer than what the node applied");
    std::fs::copy(&log, data.path().join("events.db")).unwrap();
    for stale in ["events.db-wal", "events.db-shm"] {
        let _ = std::fs::remove_file(data.path().join(stale));
    }

    let server = Server::start_in_with(data.path(), &NO_CHECKPOINTS).unwrap();
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap_or_default().contains(&format!("position {applied} is not the one")),
        "{body}"
    );
    let write = server
        .client(&owner)
        .post(&format!("/v1/machine-tokens/{org}"), json!({ "name": "e", "environmentHint": "prod" }))
        .await;
    assert_eq!((write.status, write.code()), (503, "ledger_integrity"), "{write:?}");
    assert!(server.stop().unwrap().success());
    let run = support::run_cli(
        &["accept-rollback", "--data-dir", data.path().to_str().unwrap(), "--reason", "rewritten"],
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let server = Server::start_in_with(data.path(), &NO_CHECKPOINTS).unwrap();
    eventually("the rebuilt read models", Duration::from_secs(20), async || {
        (readyz(&server).await.0 == 200).then_some(())
    })
    .await;
    let tokens = server.client(&owner).get(&format!("/v1/machine-tokens/{org}")).await;
    let names: Vec<&str> =
        tokens.body["items"].as_array().unwrap().iter().filter_map(|item| item["name"].as_str()).collect();
    assert_eq!(names.len(), 3, "the tokens of the log as it is: {names:?}");
    assert!(!names.contains(&"a"), "{names:?}");
}

/// Reads a raw HTTP answer: its status line's code and whether the connection was closed.
fn status_of(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// A connection that sends half a request is closed once the header-read timeout passes, and so
/// is one that sends nothing; headers over 32 KiB are refused with 431.
#[tokio::test]
async fn slow_and_oversized_requests_are_cut_off() {
    let server = Server::start_with(&["--header-read-timeout-seconds", "1"]).unwrap();
    let address = server.base_url.trim_start_matches("http://").to_owned();
    for first_bytes in [&b"GET /healthz HTTP/1.1\r\nHost: x\r\n"[..], &b""[..]] {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.write_all(first_bytes).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        assert!(read.is_ok(), "the server closes the connection instead of waiting forever: {read:?}");
        assert!(started.elapsed() < Duration::from_secs(8), "closed after the timeout, not later");
    }
    let mut stream = TcpStream::connect(&address).unwrap();
    let big = "a".repeat(40 * 1024);
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = vec![0; 1024];
    let read = stream.read(&mut answer).unwrap();
    assert_eq!(status_of(&answer[..read]), 431, "{}", String::from_utf8_lossy(&answer[..read]));

    // A 10 MB form: the answer comes once the declared length is seen to be over the limit.
    let mut stream = TcpStream::connect(&address).unwrap();
    let length = 10 * 1024 * 1024;
    write!(
        stream,
        "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
    )
    .unwrap();
    let _ = stream.write_all(&vec![b'a'; 256 * 1024]);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(answer.as_bytes()), 413, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-type: application/json"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
}

/// With few file descriptors, thousands of connections that never finish a request do not keep
/// the server from answering: connections beyond what the descriptors allow wait for one to end.
#[tokio::test]
async fn idle_connections_cannot_exhaust_the_servers_descriptors() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_wrapped(
        data.path(),
        &["prlimit", "--nofile=160:160", "--"],
        &["--header-read-timeout-seconds", "1"],
    )
    .unwrap();
    let address = server.base_url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..600 {
        if let Ok(mut stream) = TcpStream::connect(&address) {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n");
            idle.push(stream);
        }
    }
    let started = Instant::now();
    let reply = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(server.url("/healthz"))
        .send()
        .await;
    let reply = reply.unwrap_or_else(|error| panic!("/healthz failed after {:?}: {error}", started.elapsed()));
    assert_eq!(reply.status(), 200);
    drop(idle);
}

/// Unmounts a test's file system when the test ends, passed or failed.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// A full disk: requests get 503 with `Retry-After` (never 500), within 10 s, `/readyz` says why,
/// and the server recovers without a restart once space is freed.
#[tokio::test]
async fn a_full_disk_answers_503_and_recovers_when_space_is_freed() {
    support::sqlite_only();
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    assert!(is_root, "this test mounts a small tmpfs as the data directory: run the suite as root");
    let mount = tempfile::tempdir().unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"]).arg(mount.path()).status().unwrap();
    assert!(mounted.success(), "mounting a tmpfs");
    let _unmount = Unmount(mount.path());
    let data = mount.path().join("data");
    let server = Server::start_in_with(&data, &[]).unwrap();
    let (org, _, owner) = server.admin().create_org("acme", "ops@acme.example").await;
    let (_, token) = server.client(&owner).create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let use_token = async || {
        let started = Instant::now();
        let reply = reqwest::Client::new()
            .get(server.url(&format!("/v1/projects/{org}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (
            reply.status().as_u16(),
            reply.headers().get("retry-after").is_some(),
            started.elapsed(),
            reply.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    assert_eq!(use_token().await.0, 200);

    let filler = mount.path().join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 1 << 16];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }
    // Enough uses to need new pages of the log.
    let mut refused = None;
    for _ in 0..200 {
        let (status, retry_after, took, body) = use_token().await;
        assert!(took < Duration::from_secs(10), "answered within 10 s, took {took:?}");
        assert_ne!(status, 500, "{body}");
        if status == 503 {
            refused = Some((retry_after, body));
            break;
        }
    }
    let (retry_after, body) = refused.expect("a use that cannot be recorded is refused");
    assert!(retry_after, "503 carries Retry-After");
    assert_eq!(body["code"], "storage_unavailable", "{body}");
    let (status, ready) = readyz(&server).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "storage failure", "{ready}");
    let started = Instant::now();
    let create = server
        .client(&owner)
        .post(&format!("/v1/machine-tokens/{org}"), json!({ "name": "full", "environmentHint": "prod" }))
        .await;
    assert!(started.elapsed() < Duration::from_secs(11), "a command answers within 10 s");
    assert_eq!(create.status, 503, "{create:?}");
    assert!(["storage_unavailable", "recorded_not_applied"].contains(&create.code()), "{create:?}");

    std::fs::remove_file(&filler).unwrap();
    eventually("a recorded use after the disk has room again", Duration::from_secs(10), async || {
        (use_token().await.0 == 200).then_some(())
    })
    .await;
    eventually("/readyz ready again", Duration::from_secs(15), async || (readyz(&server).await.0 == 200).then_some(()))
        .await;
    drop(server);
}
