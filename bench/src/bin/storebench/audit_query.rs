//! The `audit-query` scenario: pages of the audit trail, as `GET /v1/audit/{orgId}` asks for
//! them, over a projected log.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use credledger_projections::Projections;
use credledger_projections::queries::AuditFilter;
use serde_json::{Map, Value, json};

use crate::log::{Log, LogSpec};
use crate::measure::{Percentiles, round3};
use crate::rebuild::{generated_store, rebuild};
use crate::workload::Rng;

/// The route's default page (100) plus the one row it reads to know whether there is a next page.
const PAGE: usize = 101;

/// Time windows asked for, as a share of the span of the log's `recordedAt`.
const WINDOW_SHARE: f64 = 0.01;

pub async fn run(dir: &Path, spec: LogSpec, queries: u64) -> anyhow::Result<Value> {
    let (store, log) = generated_store(dir, spec).await?;
    let (projections, rebuilt) = rebuild(&store, &dir.join("read.db"), &log).await?;
    store.close().await;
    eprintln!("storebench: audit-query: {queries} queries of each kind");

    let mut results = Map::new();
    let mut worst_p99: f64 = 0.0;
    let mut rng = Rng::new(0xA0D1_7000);
    for kind in Kind::ALL {
        let name = kind.name();
        let mut latencies = Vec::new();
        let mut rows = 0;
        for _ in 0..queries {
            let filter = kind.filter(&log, &mut rng);
            let (took, found) = query(&projections, &log, &filter)?;
            latencies.push(took);
            rows += found;
        }
        let percentiles = Percentiles::of(&mut latencies);
        worst_p99 = worst_p99.max(percentiles.p99_ms);
        eprintln!(
            "storebench: audit-query: {name}: p50 {:.3} ms, p99 {:.3} ms",
            percentiles.p50_ms, percentiles.p99_ms
        );
        let mut entry = percentiles.to_json();
        entry["mean_rows"] = json!(round3(rows as f64 / queries.max(1) as f64));
        results.insert(name.to_owned(), entry);
    }
    Ok(json!({
        "scenario": "audit-query",
        "value": round3(worst_p99),
        "unit": "ms (p99 of the slowest query kind)",
        "detail": {
            "events": log.events,
            "credentials": log.credentials.len(),
            "page": PAGE,
            "window_share_of_log": WINDOW_SHARE,
            "generate_seconds": round3(log.seconds),
            "rebuild_seconds": round3(rebuilt.open_seconds + rebuilt.catch_up_seconds),
            "queries": Value::Object(results),
        },
    }))
}

/// The questions an auditor asks of the trail.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The newest page, unfiltered.
    NewestPage,
    /// A random credential's entries.
    ByCredential,
    /// CredentialAccessDenied: 2% of the usage events.
    ByTypeCommon,
    /// MachineTokenRolled: one event in 2000.
    ByTypeRare,
    /// A window of `WINDOW_SHARE` of the log's recorded span, placed at random.
    TimeWindow,
}

impl Kind {
    const ALL: [Self; 5] =
        [Self::NewestPage, Self::ByCredential, Self::ByTypeCommon, Self::ByTypeRare, Self::TimeWindow];

    fn name(self) -> &'static str {
        match self {
            Self::NewestPage => "newest_page",
            Self::ByCredential => "by_credential",
            Self::ByTypeCommon => "by_type_common",
            Self::ByTypeRare => "by_type_rare",
            Self::TimeWindow => "time_window",
        }
    }

    fn filter(self, log: &Log, rng: &mut Rng) -> AuditFilter {
        match self {
            Self::NewestPage => AuditFilter::default(),
            Self::ByCredential => by_credential(log, rng),
            Self::ByTypeCommon => by_type("CredentialAccessDenied"),
            Self::ByTypeRare => by_type("MachineTokenRolled"),
            Self::TimeWindow => time_window(log, rng),
        }
    }
}

fn query(projections: &Projections, log: &Log, filter: &AuditFilter) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let entries = projections.audit_filtered(log.organization.id, filter, None, PAGE)?;
    Ok((started.elapsed(), entries.len()))
}

fn by_credential(log: &Log, rng: &mut Rng) -> AuditFilter {
    let credential = log.credentials.get(rng.below(log.credentials.len().max(1) as u64) as usize).copied();
    AuditFilter { credential_id: credential, ..AuditFilter::default() }
}

fn by_type(event_type: &str) -> AuditFilter {
    AuditFilter { event_type: Some(event_type.to_owned()), ..AuditFilter::default() }
}

/// A window of `WINDOW_SHARE` of the log's time span, placed at random within it.
fn time_window(log: &Log, rng: &mut Rng) -> AuditFilter {
    let span = (log.ended - log.started).as_seconds_f64();
    let width = span * WINDOW_SHARE;
    let offset = (span - width) * (rng.below(1_000_000) as f64 / 1e6);
    let since = log.started + chrono::TimeDelta::nanoseconds((offset * 1e9) as i64);
    let until: DateTime<Utc> = since + chrono::TimeDelta::nanoseconds((width * 1e9) as i64);
    AuditFilter { since: Some(since), until: Some(until), ..AuditFilter::default() }
}
