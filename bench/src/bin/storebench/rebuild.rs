//! The `rebuild` scenario: every read model rebuilt from position 0 of a generated log.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credledger_domain::DomainEvent;
use credledger_domain::event::DecodeError;
use credledger_projections::Projections;
use credledger_store::EventStore;
use serde_json::{Value, json};

use crate::appends::file_size;
use crate::log::{self, Log, LogSpec};
use crate::measure::{cpu_seconds, round3};

/// Events per read in the breakdown's read pass: the page size of the store's subscription,
/// which is how the projection runner reads the log.
const READ_PAGE: usize = 512;

pub async fn run(dir: &Path, spec: LogSpec) -> anyhow::Result<Value> {
    let (store, log) = generated_store(dir, spec).await?;
    let (projections, rebuild) = rebuild(&store, &dir.join("read.db"), &log).await?;
    eprintln!("storebench: rebuild: {:.0} events/s", rebuild.events_per_second);

    // Where the time goes: the same log read (and its envelopes decoded) by the store alone, and
    // its payloads decoded into domain events, each pass timed on its own. The runner does these
    // one after the other with the SQL writes, so what remains is the writes.
    let breakdown = read_and_decode(&store, log.events).await?;
    let read_and_decode_seconds = breakdown.read.as_secs_f64() + breakdown.decode.as_secs_f64();
    Ok(json!({
        "scenario": "rebuild",
        "value": round3(rebuild.events_per_second),
        "unit": "events/s",
        "detail": {
            "target_events_per_second": 300_000,
            "events": log.events,
            "credentials": log.credentials.len(),
            "checkpoints_in_log": log.checkpoints,
            "generate_seconds": round3(log.seconds),
            "open_seconds": round3(rebuild.open_seconds),
            "catch_up_seconds": round3(rebuild.catch_up_seconds),
            "seconds": round3(rebuild.open_seconds + rebuild.catch_up_seconds),
            // The runner applies batches one after the other: up to 1 core's worth of `seconds`.
            "process_cpu_seconds": round3(rebuild.cpu_seconds),
            "hot_index_credentials": projections.hot_index().len(),
            "read_db_bytes": file_size(&dir.join("read.db")),
            "events_db_bytes": file_size(&dir.join("events.db")),
            "breakdown": {
                "read_all_seconds": round3(breakdown.read.as_secs_f64()),
                "read_all_events_per_second": round3(log.events as f64 / breakdown.read.as_secs_f64()),
                "domain_decode_seconds": round3(breakdown.decode.as_secs_f64()),
                "domain_decode_events_per_second": round3(log.events as f64 / breakdown.decode.as_secs_f64()),
                "remaining_seconds_estimate": round3(rebuild.catch_up_seconds - read_and_decode_seconds),
            },
        },
    }))
}

/// A fresh store at `dir/events.db` holding a generated log, closed and opened again as a server
/// finds it at start-up.
pub async fn generated_store(dir: &Path, spec: LogSpec) -> anyhow::Result<(Arc<dyn EventStore>, Log)> {
    let url = format!("sqlite://{}", dir.join("events.db").display());
    let store = credledger_store::open(&url).await?;
    eprintln!("storebench: generating a log of {} events ({} machine tokens)", spec.events, spec.credentials);
    let log = log::generate(&store, spec).await?;
    eprintln!(
        "storebench: generated {} events in {:.1} s ({:.0} events/s)",
        log.events,
        log.seconds,
        log.events as f64 / log.seconds
    );
    store.close().await;
    drop(store);
    Ok((credledger_store::open(&url).await?, log))
}

pub struct Rebuild {
    pub open_seconds: f64,
    pub catch_up_seconds: f64,
    /// CPU time of the whole process over the rebuild.
    pub cpu_seconds: f64,
    pub events_per_second: f64,
}

/// Opens a fresh read-model file and catches it up with the whole log, timed.
pub async fn rebuild(store: &Arc<dyn EventStore>, read_db: &Path, log: &Log) -> anyhow::Result<(Projections, Rebuild)> {
    eprintln!("storebench: rebuilding the read models from position 0");
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let projections = Projections::open(read_db)?;
    let open_seconds = started.elapsed().as_secs_f64();
    let position = projections.catch_up(store.clone()).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_spent = cpu_seconds()? - cpu_before;
    anyhow::ensure!(position == log.events, "the rebuild stopped at {position} of {} events", log.events);
    let rebuild = Rebuild {
        open_seconds,
        catch_up_seconds: seconds - open_seconds,
        cpu_seconds: cpu_spent,
        events_per_second: log.events as f64 / seconds,
    };
    Ok((projections, rebuild))
}

struct Breakdown {
    read: Duration,
    decode: Duration,
}

async fn read_and_decode(store: &Arc<dyn EventStore>, events: u64) -> anyhow::Result<Breakdown> {
    let mut breakdown = Breakdown { read: Duration::ZERO, decode: Duration::ZERO };
    let mut next = 1;
    while next <= events {
        let started = Instant::now();
        let page = store.read_all(next, READ_PAGE).await?;
        breakdown.read += started.elapsed();
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        let started = Instant::now();
        for event in &page {
            match DomainEvent::decode(&event.event_type, &event.payload) {
                Ok(_) | Err(DecodeError::UnknownType(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        breakdown.decode += started.elapsed();
    }
    Ok(breakdown)
}
