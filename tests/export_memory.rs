//! Exports stream: exporting 100 000 events (an organization's export with an inclusion proof per
//! event, and the whole ledger) must not grow the server's memory with the export's size.
//!
//! The server's resident set is sampled from /proc while the export is read; the figures are
//! printed (run with `--nocapture`) and the growth is bounded far below the export's size.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use credledger_store::{ExpectedVersion, NewEvent, RecordedEvent};
use serde_json::json;
use support::Server;

const EVENTS: u64 = 100_000;

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples the process's resident set every 10 ms until stopped; returns the peak.
fn sample_peak(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = AtomicU64::new(0);
    let stopping = stop.clone();
    let handle = std::thread::spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            peak.fetch_max(resident_kib(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
        peak.load(Ordering::Relaxed)
    });
    (stop, handle)
}

/// Reads a whole response, keeping only its length and line count.
async fn drain(url: &str, token: &str) -> (u64, u64) {
    let mut response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
        lines += chunk.split(|b| *b == b'\n').count() as u64 - 1;
    }
    (bytes, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_100k_events_keeps_the_server_memory_flat() {
    // The events are appended straight into the log's file while the server is stopped.
    support::sqlite_only();
    let data = tempfile::tempdir().unwrap();
    let kept = data.path().to_owned();
    let server = Server::start_in(&kept).unwrap();
    let admin_token = server.admin_token.clone().unwrap();
    let (org, _, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (_, token) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    assert_eq!(server.client(&token).get(&format!("/v1/projects/{org}")).await.status, 200);
    assert!(server.stop().unwrap().success());

    // 100 000 uses of the token, appended as the server records them.
    let store = credledger_store::open(&format!("sqlite://{}", kept.join("events.db").display())).await.unwrap();
    let all: Vec<RecordedEvent> = store.read_all(1, 10_000).await.unwrap();
    let used = all.iter().rev().find(|event| event.event_type == "CredentialUsed").expect("the token was used");
    let mut appended = 0;
    while appended < EVENTS {
        let batch: Vec<NewEvent> = (0..1000)
            .map(|_| NewEvent {
                event_id: credledger_domain::EventId::from_uuid(uuid::Uuid::now_v7()),
                event_type: used.event_type.clone(),
                schema_version: used.schema_version,
                org_id: used.org_id,
                occurred_at: used.occurred_at,
                actor: used.actor.clone(),
                request: used.request.clone(),
                payload: used.payload.clone(),
            })
            .collect();
        store.append(&used.stream, ExpectedVersion::Any, batch).await.unwrap();
        appended += 1000;
    }
    let head = store.head().await.unwrap();
    store.close().await;
    drop(store);

    let server = Server::start_in(&kept).unwrap();
    let admin = server.client(&admin_token);
    // Wait until the projections and a checkpoint cover the appended log.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let checkpoint = admin.get("/v1/ledger/checkpoint").await;
        if checkpoint.status == 200 && checkpoint.body["treeSize"].as_u64().unwrap() >= head {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no checkpoint covers the log: {checkpoint:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = server.pid();
    // Warm up both export paths on a small scale, so the baseline holds the buffers any request uses.
    let _ = drain(&server.url("/v1/ledger/checkpoints?limit=1"), &admin_token).await;
    let baseline = resident_kib(pid);

    let (stop, peak) = sample_peak(pid);
    let (org_bytes, org_lines) = drain(&server.url(&format!("/v1/audit/{org}/export")), &owner_token).await;
    let (ledger_bytes, ledger_lines) = drain(&server.url("/v1/ledger/export"), &admin_token).await;
    stop.store(true, Ordering::Relaxed);
    let peak = peak.join().unwrap();
    let growth_kib = peak.saturating_sub(baseline);
    eprintln!(
        "export of {org_lines} organization lines ({:.1} MiB) and {ledger_lines} ledger lines ({:.1} MiB): \
         server RSS {:.1} MiB before, peak {:.1} MiB, growth {:.1} MiB",
        org_bytes as f64 / 1_048_576.0,
        ledger_bytes as f64 / 1_048_576.0,
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        growth_kib as f64 / 1024.0,
    );
    assert!(org_lines > EVENTS && ledger_lines > EVENTS, "{org_lines} / {ledger_lines} lines");
    assert!(org_bytes > 100 << 20, "the organization export is large: {org_bytes} bytes");
    // Constant memory: the growth is a small fraction of what was streamed, and bounded.
    assert!(growth_kib * 1024 < org_bytes / 4, "RSS grew {growth_kib} KiB for a {org_bytes}-byte export");
    assert!(growth_kib < 64 * 1024, "RSS grew {growth_kib} KiB");
    assert!(server.stop().unwrap().success());
}
