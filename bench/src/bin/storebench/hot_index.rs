//! The `hot-index` scenario: resident memory per credential of the authentication hot index.
//!
//! The read models are built here; the index is then loaded by `Projections::open`, as at server
//! start-up, in a fresh child process (`storebench hot-index-load`), so that memory this process
//! freed while building (and that the allocator would hand out again without growing the
//! resident set) cannot hide any of the index's cost.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use credledger_projections::Projections;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::log::LogSpec;
use crate::measure::{resident_memory, round3};
use crate::rebuild::{generated_store, rebuild};

/// What the child reports: resident memory before and after opening the read models.
#[derive(Debug, Deserialize)]
struct Loaded {
    credentials: u64,
    rss_before: u64,
    rss_after: u64,
    peak_after: u64,
    load_seconds: f64,
}

pub async fn run(dir: &Path, credentials: u64, conditions_every: u64) -> anyhow::Result<Value> {
    // The organization's three events, then one MachineTokenCreated per credential.
    let spec = LogSpec { events: credentials + 3, credentials, checkpoint_every: 0, conditions_every };
    let (store, log) = generated_store(dir, spec).await?;
    let read_db = dir.join("read.db");
    let (projections, rebuilt) = rebuild(&store, &read_db, &log).await?;
    anyhow::ensure!(projections.hot_index().len() as u64 == credentials, "the index lacks credentials");
    drop(projections);
    store.close().await;
    drop(store);
    // The same read models without a credential: what opening them costs besides the index.
    let empty_db = dir.join("empty.db");
    drop(Projections::open(&empty_db)?);

    let empty = load_in_child(&empty_db)?;
    let full = load_in_child(&read_db)?;
    anyhow::ensure!(full.credentials == credentials, "the child loaded {} credentials", full.credentials);
    let overhead = empty.rss_after.saturating_sub(empty.rss_before);
    let grown = full.rss_after.saturating_sub(full.rss_before);
    let per_credential = grown.saturating_sub(overhead) as f64 / credentials.max(1) as f64;
    eprintln!("storebench: hot-index: {per_credential:.0} bytes per credential ({credentials} credentials)");
    Ok(json!({
        "scenario": "hot-index",
        "value": round3(per_credential),
        "unit": "bytes/credential",
        "detail": {
            "target_bytes_per_credential": 1024,
            "credentials": credentials,
            "with_conditions_every": conditions_every,
            "rss_before_bytes": full.rss_before,
            "rss_after_bytes": full.rss_after,
            "rss_peak_bytes": full.peak_after,
            "open_overhead_bytes": overhead,
            "load_seconds": round3(full.load_seconds),
            "projection_seconds": round3(rebuilt.open_seconds + rebuilt.catch_up_seconds),
            "generate_seconds": round3(log.seconds),
        },
    }))
}

fn load_in_child(read_db: &Path) -> anyhow::Result<Loaded> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .arg("hot-index-load")
        .arg("--read-db")
        .arg(read_db)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "storebench hot-index-load failed");
    serde_json::from_slice(&output.stdout).context("the child's report")
}

/// The child's side: opens the read models at `read_db` (loading the hot index from them) and
/// reports the resident memory before and after.
pub fn load(read_db: &Path) -> anyhow::Result<Value> {
    let (rss_before, _) = resident_memory()?;
    let started = Instant::now();
    let projections = Projections::open(read_db)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let (rss_after, peak_after) = resident_memory()?;
    let credentials = projections.hot_index().len();
    // Never freed: the process exits next, and a heap profiler run on it (`heaptrack storebench
    // hot-index-load --read-db …`) then reports exactly what the loaded read models hold.
    std::mem::forget(projections);
    Ok(json!({
        "credentials": credentials,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "peak_after": peak_after,
        "load_seconds": load_seconds,
    }))
}
