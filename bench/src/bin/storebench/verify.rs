//! The `verify` scenario: offline verification of a whole-ledger export, as `credledger audit
//! verify --export` runs it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use credledger_store::checkpoint::{CheckpointVerifier, LedgerKey};
use credledger_store::verify::{CompactRange, verify_export};
use credledger_store::{EventStore, RawEvent};
use serde_json::{Value, json};

use crate::log::{self, LogSpec};
use crate::measure::{cpu_seconds, round3};
use crate::rebuild::generated_store;

/// Rows read from the log per page, as the export route reads them.
const EXPORT_PAGE: usize = 1024;

pub async fn run(dir: &Path, spec: LogSpec, cli: Option<PathBuf>) -> anyhow::Result<Value> {
    let (store, log) = generated_store(dir, spec).await?;
    let key = log::ledger_key()?;
    let export = dir.join("ledger.ndjson");
    let started = Instant::now();
    let tree_size = write_export(&store, &key, &export).await?;
    let export_seconds = started.elapsed().as_secs_f64();
    store.close().await;
    let bytes = std::fs::metadata(&export)?.len();
    eprintln!("storebench: verify: export of {tree_size} events, {bytes} bytes, written in {export_seconds:.1} s");

    let verifier = CheckpointVerifier::new(key.verifier_key())?;
    let reader = BufReader::with_capacity(1 << 20, File::open(&export)?);
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let verified = verify_export(reader, &verifier, None, |_| {})?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    anyhow::ensure!(verified.events == tree_size, "verified {} of {tree_size} events", verified.events);
    let events_per_second = tree_size as f64 / seconds;
    eprintln!("storebench: verify: {events_per_second:.0} events/s");

    let cli = cli_timing(cli, dir, &key, &export, tree_size)?;
    Ok(json!({
        "scenario": "verify",
        "value": round3(events_per_second),
        "unit": "events/s",
        "detail": {
            "target_events_per_second": 1_000_000,
            "events": tree_size,
            "seconds": round3(seconds),
            // Single-threaded: up to 1 core's worth of `seconds`.
            "process_cpu_seconds": round3(cpu),
            "export_bytes": bytes,
            "export_bytes_per_event": round3(bytes as f64 / tree_size as f64),
            "megabytes_per_second": round3(bytes as f64 / seconds / 1e6),
            "streams": verified.streams,
            "checkpoints_checked": verified.checkpoints_checked,
            "checkpoints_unchecked": verified.checkpoints_unchecked,
            "generate_seconds": round3(log.seconds),
            "export_seconds": round3(export_seconds),
            "cli": cli,
        },
    }))
}

/// Writes a whole-ledger export of the log as `GET /v1/ledger/export` does (its
/// `export_header` and `write_entry`), under a checkpoint signed here over the whole log.
/// Returns the tree size.
async fn write_export(store: &Arc<dyn EventStore>, key: &LedgerKey, path: &Path) -> anyhow::Result<u64> {
    let tree_size = store.head().await?;
    let mut tree = CompactRange::default();
    while tree.size() < tree_size {
        let want = usize::try_from(tree_size - tree.size()).unwrap_or(usize::MAX).min(65_536);
        let leaves = store.read_leaf_hashes(tree.size() + 1, want).await?;
        anyhow::ensure!(!leaves.is_empty(), "the log ends before its head");
        for leaf in leaves {
            tree.push(leaf);
        }
    }
    let root = tree.root();
    let note = key.sign(tree_size, root, Utc::now())?;
    let header = json!({
        "format": "credledger-export",
        "version": 1,
        "scope": "ledger",
        "treeSize": tree_size,
        "rootHash": hex::encode(root),
        "checkpoint": note,
    });
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    writeln!(out, "{header}")?;
    let mut next = 1;
    while next <= tree_size {
        let want = EXPORT_PAGE.min(usize::try_from(tree_size - next + 1).unwrap_or(usize::MAX));
        let rows = store.read_raw(next, want).await?;
        let Some(last) = rows.last() else { break };
        next = last.position + 1;
        for row in rows.iter().filter(|row| row.position <= tree_size) {
            write_entry(&mut out, row)?;
        }
    }
    out.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
    Ok(tree_size)
}

/// One line of a ledger export: the envelope last and verbatim (see the API's `write_entry`).
fn write_entry(out: &mut impl std::io::Write, row: &RawEvent) -> std::io::Result<()> {
    write!(out, "{{\"position\":{},\"leafHash\":\"{}\",\"envelope\":", row.position, hex::encode(&row.leaf_hash))?;
    out.write_all(&row.envelope)?;
    out.write_all(b"}\n")
}

/// Times the real CLI on the export, if its binary is given or sits beside this one.
fn cli_timing(cli: Option<PathBuf>, dir: &Path, key: &LedgerKey, export: &Path, events: u64) -> anyhow::Result<Value> {
    let beside = std::env::current_exe()?.with_file_name("credledger");
    let Some(binary) = cli.or_else(|| beside.exists().then_some(beside)) else {
        eprintln!("storebench: verify: no credledger binary beside storebench; pass --cli PATH to time the CLI");
        return Ok(Value::Null);
    };
    let key_file = dir.join("ledger.pub");
    std::fs::write(&key_file, format!("{}\n", key.verifier_key()))?;
    let started = Instant::now();
    let output = std::process::Command::new(&binary)
        .args(["-q", "audit", "verify", "--export"])
        .arg(export)
        .arg("--key")
        .arg(&key_file)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "{} audit verify failed: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("storebench: verify: the CLI took {seconds:.2} s");
    Ok(json!({
        "binary": binary.display().to_string(),
        "seconds": round3(seconds),
        "events_per_second": round3(events as f64 / seconds),
    }))
}
