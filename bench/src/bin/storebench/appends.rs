//! The `appends` scenario: durable appends from many concurrent appenders to many streams.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use credledger_domain::CredentialId;
use credledger_domain::usage;
use credledger_store::{EventStore, ExpectedVersion, SqliteStore};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::measure::{BatchMetrics, Percentiles, cpu_seconds, distribution, round3};
use crate::workload::{Organization, Rng};

/// One usage event in this many is a coalesced denial, as in the generated logs.
const DENIED_EVERY: u64 = 50;

#[derive(Debug, Clone, Copy)]
pub struct Appends {
    /// Events appended per variant.
    pub events: u64,
    /// Usage streams (one per credential) the appends spread over.
    pub streams: u64,
    /// Concurrent appenders.
    pub tasks: u64,
    /// Events per append in the multi-event variant.
    pub events_per_append: u64,
}

/// Runs the single-event variant, then the multi-event one, each on a fresh store.
pub async fn run(dir: &Path, spec: Appends) -> anyhow::Result<Value> {
    let metrics = BatchMetrics::install()?;
    let single = variant(&dir.join("appends-single.db"), spec, 1, &metrics).await?;
    let multi = if spec.events_per_append > 1 {
        Some(variant(&dir.join("appends-multi.db"), spec, spec.events_per_append, &metrics).await?)
    } else {
        None
    };
    Ok(json!({
        "scenario": "appends",
        "value": single.events_per_second,
        "unit": "events/s",
        "detail": {
            "target_events_per_second": 200_000,
            "streams": spec.streams,
            "tasks": spec.tasks,
            "single_event_appends": single.detail,
            "multi_event_appends": multi.map(|multi| multi.detail),
        },
    }))
}

struct Outcome {
    events_per_second: f64,
    detail: Value,
}

async fn variant(path: &Path, spec: Appends, per_append: u64, metrics: &BatchMetrics) -> anyhow::Result<Outcome> {
    let store = Arc::new(SqliteStore::open(path).await?);
    let organization = Organization::generate();
    let credentials: Arc<Vec<CredentialId>> =
        Arc::new((0..spec.streams.max(1)).map(|_| CredentialId::from_uuid(Uuid::now_v7())).collect());
    // Whatever an earlier variant left in the histograms is not this variant's.
    metrics.appends.take();
    metrics.seconds.take();
    eprintln!(
        "storebench: appends: {} events, {per_append} per append, {} tasks, {} streams",
        spec.events, spec.tasks, spec.streams
    );

    let claimed = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let mut appenders = Vec::new();
    for task in 0..spec.tasks.max(1) {
        let (store, credentials, claimed) = (store.clone(), credentials.clone(), claimed.clone());
        appenders.push(tokio::spawn(async move {
            let mut rng = Rng::new(0xA99E_0000 + task);
            let mut latencies = Vec::new();
            loop {
                let first = claimed.fetch_add(per_append, Ordering::Relaxed);
                if first >= spec.events {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let count = per_append.min(spec.events - first);
                let index = rng.below(credentials.len() as u64);
                let credential = credentials[index as usize];
                // Built per append, as the usage recorder builds it per request.
                let now = time::OffsetDateTime::now_utc();
                let events = (0..count)
                    .map(|_| organization.usage(credential, index, DENIED_EVERY, &mut rng, now))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let stream = usage::stream(credential);
                let sent = Instant::now();
                store.append(&stream, ExpectedVersion::Any, events).await?;
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for appender in appenders {
        latencies.extend(appender.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    let commits = store.commits();
    let mut appends_per_batch = metrics.appends.take();
    let batch_seconds = metrics.seconds.take();
    let writer_busy: f64 = batch_seconds.iter().sum();
    store.close().await;
    let file_bytes = file_size(path);

    let events_per_second = spec.events as f64 / elapsed;
    let mut events_per_batch: Vec<f64> = appends_per_batch.iter().map(|appends| appends * per_append as f64).collect();
    eprintln!(
        "storebench: appends: {:.0} events/s, {commits} commits, mean {:.1} events per batch",
        events_per_second,
        spec.events as f64 / commits.max(1) as f64
    );
    Ok(Outcome {
        events_per_second: round3(events_per_second),
        detail: json!({
            "events": spec.events,
            "events_per_append": per_append,
            "appends": latencies.len(),
            "seconds": round3(elapsed),
            "events_per_second": round3(events_per_second),
            "commits": commits,
            "events_per_commit": round3(spec.events as f64 / commits.max(1) as f64),
            "append_latency": Percentiles::of(&mut latencies).to_json(),
            "appends_per_batch": distribution(&mut appends_per_batch),
            "events_per_batch": distribution(&mut events_per_batch),
            "batch_ms": distribution(&mut batch_seconds.iter().map(|s| s * 1e3).collect::<Vec<_>>()),
            // Share of the wall time the writer thread spent inside batches (judging, encoding,
            // hashing, inserting, committing): near 1 means the writer is the bottleneck.
            "writer_busy_fraction": round3(writer_busy / elapsed),
            // Of the 2 cores' 2 × `seconds`: well below means the run shared the machine.
            "process_cpu_seconds": round3(cpu),
            "file_bytes": file_bytes,
            "file_bytes_per_event": round3(file_bytes as f64 / spec.events as f64),
        }),
    })
}

/// The database file and its WAL, in bytes.
pub fn file_size(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()].iter().filter_map(|path| std::fs::metadata(path).ok()).map(|meta| meta.len()).sum()
}
