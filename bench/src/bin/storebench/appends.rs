//! The `appends` scenario: durable appends from many concurrent appenders to many streams.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use credledger_domain::CredentialId;
use credledger_domain::usage;
use credledger_store::{EventStore, ExpectedVersion, PostgresStore, SqliteStore, StoreError};
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

/// Runs the single-event variant, then the multi-event one, each on a fresh store: a SQLite file
/// in `dir`, or a new database on the `postgres` server.
pub async fn run(dir: &Path, spec: Appends, postgres: Option<&str>) -> anyhow::Result<Value> {
    let metrics = BatchMetrics::install()?;
    let single = variant(&Target::new(dir, "appends-single", postgres).await?, spec, 1, &metrics).await?;
    let multi = if spec.events_per_append > 1 {
        let target = Target::new(dir, "appends-multi", postgres).await?;
        Some(variant(&target, spec, spec.events_per_append, &metrics).await?)
    } else {
        None
    };
    Ok(json!({
        "scenario": "appends",
        "backend": if postgres.is_some() { "postgres" } else { "sqlite" },
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

/// Where one variant appends.
enum Target {
    Sqlite(PathBuf),
    /// The server's URL and the fresh database's name.
    Postgres(String, String),
}

impl Target {
    async fn new(dir: &Path, name: &str, postgres: Option<&str>) -> anyhow::Result<Self> {
        let Some(server) = postgres else { return Ok(Self::Sqlite(dir.join(format!("{name}.db")))) };
        let server = server.trim_end_matches('/').to_owned();
        let database = format!("storebench_{}_{}", name.replace('-', "_"), Uuid::new_v4().simple());
        admin(&server, &format!("CREATE DATABASE {database}")).await?;
        Ok(Self::Postgres(server, database))
    }

    async fn open(&self) -> anyhow::Result<Store> {
        Ok(match self {
            Self::Sqlite(path) => Store::Sqlite(Arc::new(SqliteStore::open(path).await?)),
            Self::Postgres(server, database) => {
                Store::Postgres(Arc::new(PostgresStore::open(&format!("{server}/{database}")).await?))
            }
        })
    }

    /// The size of what the variant wrote, then the database is dropped.
    async fn finish(&self) -> anyhow::Result<u64> {
        match self {
            Self::Sqlite(path) => Ok(file_size(path)),
            Self::Postgres(server, database) => {
                let size = query_size(server, database).await?;
                // FORCE: the closed store's pool and listener may still hold connections.
                admin(server, &format!("DROP DATABASE {database} WITH (FORCE)")).await?;
                Ok(size)
            }
        }
    }
}

/// Runs one statement on the server's `postgres` database.
async fn admin(server: &str, sql: &str) -> anyhow::Result<()> {
    let client = connect(server).await?;
    client.batch_execute(sql).await.map_err(StoreError::from)?;
    Ok(())
}

async fn query_size(server: &str, database: &str) -> anyhow::Result<u64> {
    let client = connect(server).await?;
    let row = client.query_one("SELECT pg_database_size($1::text)", &[&database]).await.map_err(StoreError::from)?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// A connection to the server's `postgres` database (its driver ends with the client).
async fn connect(server: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
        .await
        .map_err(StoreError::from)?;
    tokio::spawn(connection);
    Ok(client)
}

/// The store under test, concrete so that its commit count can be read.
#[derive(Clone)]
enum Store {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Store {
    fn log(&self) -> &dyn EventStore {
        match self {
            Self::Sqlite(store) => &**store,
            Self::Postgres(store) => &**store,
        }
    }

    fn commits(&self) -> u64 {
        match self {
            Self::Sqlite(store) => store.commits(),
            Self::Postgres(store) => store.commits(),
        }
    }
}

async fn variant(target: &Target, spec: Appends, per_append: u64, metrics: &BatchMetrics) -> anyhow::Result<Outcome> {
    let store = target.open().await?;
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
                let now = chrono::Utc::now();
                let events = (0..count)
                    .map(|_| organization.usage(credential, index, DENIED_EVERY, &mut rng, now))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let stream = usage::stream(credential);
                let sent = Instant::now();
                store.log().append(&stream, ExpectedVersion::Any, events).await?;
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
    store.log().close().await;
    let file_bytes = target.finish().await?;

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
