//! Store-level benchmarks of the harness (see bench/run.sh): the log, the projections, the
//! verifier and the hot index measured directly, without HTTP.
//!
//! ```text
//! storebench <scenario> [--events N] [--credentials N] [--data-dir DIR] [scenario flags]
//! ```
//!
//! Each run prints exactly one JSON line on standard output,
//! `{"scenario": "...", "value": <number>, "unit": "...", "detail": {...}}`; progress goes to
//! standard error. Files go to a fresh temporary directory (inside `--data-dir` when given),
//! removed at the end unless `--keep`. Timings include nothing outside the span described below.
//! The machine's 2 cores are shared with whatever else runs: every `detail` carries the load
//! average at start (`load_average_at_start`), and timed spans report the process's CPU time
//! (`process_cpu_seconds`), so a starved run shows itself.
//!
//! Logs that scenarios read are generated through the store's real append path (group commit,
//! WAL, `synchronous=FULL`), with events built by the domain's deciders and wrapped as the API
//! wraps them: one organization with a project; `--credentials` machine tokens (every
//! `--conditions-every`-th with an IP allowlist and a user-agent glob); then usage, 8 events per
//! append to a random token's `usage-{id}` stream (CredentialUsed, one in 50 a coalesced
//! CredentialAccessDenied), a lifecycle change every 1000 events (a roll, or a disable followed
//! by an enable), and a CheckpointSigned every `--checkpoint-every` events, signed over the
//! committed head while other appends are in flight, as the server's signer does. 1024 appends
//! are kept in flight. Generation is never part of a scenario's value; its time is in `detail`.
//!
//! # `appends` (target ≥ 200k events/s, durable)
//!
//! `--tasks` (256) tokio tasks append to one fresh SQLite store, opened with `SqliteStore::open`
//! (what `credledger_store::open("sqlite://…")` does; the concrete type gives the commit count);
//! each task claims the next append from a shared counter, builds a CredentialUsed (or denial)
//! for a random one of `--credentials` (10 000) usage streams exactly as the usage recorder does
//! (domain event, `event::encode`, v7 id), and appends it with `ExpectedVersion::Any`. **Timed**:
//! wall clock from the first task's start to the last append's durable answer, `--events`
//! events in all; value = events / that time. Per-append latency is the `append` call alone
//! (building the event excluded). The same is then run on a second fresh store with
//! `--events-per-append` (10) events per append; its figures are in `detail`. The store's own
//! metrics give every group-commit batch's size (`appends_per_batch`, `events_per_batch`) and
//! duration (`batch_ms`: judging, encoding, hashing, inserting and the fsynced commit);
//! `writer_busy_fraction` is their sum over the wall time (near 1: the single writer is the
//! bottleneck; well below: the appenders are). The appenders and the writer share the 2 cores.
//!
//! # `rebuild` (target ≥ 300k events/s)
//!
//! A log of `--events` events (1M) is generated, the store closed and opened again as at
//! start-up. **Timed**: `Projections::open` on a fresh read-model file plus
//! `Projections::catch_up(store)` up to the head: reading the log through the store's
//! subscription, decoding, every projector's SQL in one transaction per 2048 events, the hot
//! index. Value = events / that time. Untimed afterwards, for `detail.breakdown`: the same log
//! read alone with `read_all` in pages of 512 (the subscription's page; includes envelope
//! decoding), and its payloads decoded alone with `DomainEvent::decode`; since the runner does
//! these one after the other with its SQL, the rest of its time (`remaining_seconds_estimate`) is
//! the projectors' writes. The log's pages are in the OS page cache (just written).
//!
//! # `verify` (target ≥ 1M events/s)
//!
//! A log of `--events` events is generated (with its CheckpointSigned events, signed with a fixed
//! benchmark key). Untimed: a whole-ledger export is written from the store's raw rows
//! (`read_raw`) in exactly the format of `GET /v1/ledger/export` (the API's `export_header` and
//! `write_entry`), under a checkpoint signed over the whole log whose root comes from the stored
//! leaf hashes; the file is fsynced and its size reported. **Timed**:
//! `credledger_store::verify::verify_export` over the file through a 1 MiB `BufReader`, with the
//! verifier key and no trusted checkpoint: every line split, every leaf rehashed, every envelope's
//! position, stream version and organization sequence checked, every recorded checkpoint's
//! signature and root checked, the root compared. Value = events / that time. The file is in the
//! OS page cache, so this is the verifier's CPU cost, not the disk's. If a `credledger` binary
//! sits beside storebench (or `--cli PATH`), `credledger -q audit verify --export … --key …` is
//! also timed as a whole process (`detail.cli`).
//!
//! # `audit-query` (no target: p50/p99)
//!
//! A log of `--events` events is generated and projected (rebuild time in `detail`). **Timed**:
//! each call of `Projections::audit_filtered(org, filter, None, 101)`, the query behind
//! `GET /v1/audit/{orgId}` for its default page of 100, run one at a time, `--queries` (200) of
//! each kind: the newest page unfiltered; by a random credential; by a common type
//! (CredentialAccessDenied, 2% of usage); by a rare type (MachineTokenRolled, one event in 2000);
//! by a time window of 1% of the log's recorded span, placed at random. Value = the highest p99
//! among the kinds, in milliseconds; each kind's p50/p99/max is in `detail.queries`.
//!
//! # `hot-index` (target ≤ 1 KiB per credential)
//!
//! A log of one organization and `--credentials` (1M) machine tokens is generated and projected.
//! Then, in a fresh child process (`storebench hot-index-load`), the resident set (`VmRSS` of
//! /proc/self/status) is read before and after `Projections::open` on those read models, which
//! loads the hot index from the inventory as a starting server does; the same is done on read
//! models without credentials, and that growth (connection pool, schema) is subtracted. Value =
//! the remaining growth / credentials. It is what a server's resident set grows by, so it
//! includes what the allocator keeps of the load's temporary decoding (the peak is in `detail`).
//! The index's live heap alone: `storebench hot-index --keep`, then `heaptrack storebench
//! hot-index-load --read-db DIR/read.db`; the child never frees its read models, so the
//! profiler's "leaked" total is what they hold (compare with `DIR/empty.db`).

// The crate root lives beside its modules' directory, so each names its file.
#[path = "storebench/appends.rs"]
mod appends;
#[path = "storebench/audit_query.rs"]
mod audit_query;
#[path = "storebench/hot_index.rs"]
mod hot_index;
#[path = "storebench/log.rs"]
mod log;
#[path = "storebench/measure.rs"]
mod measure;
#[path = "storebench/rebuild.rs"]
mod rebuild;
#[path = "storebench/verify.rs"]
mod verify;
#[path = "storebench/workload.rs"]
mod workload;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::log::LogSpec;

/// The server's allocator (see the `credledger` binary), so that the figures are of the store and
/// the read models as the server runs them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Store-level benchmarks: one JSON line on standard output")]
struct Args {
    scenario: Scenario,
    /// Events: appended per variant (appends), or in the generated log.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Credentials: usage streams (appends, default 10000), machine tokens in the log (rebuild,
    /// verify, audit-query, default 10000), or in the hot index (hot-index, default 1000000).
    #[arg(long)]
    credentials: Option<u64>,
    /// Where the temporary directory goes (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the temporary directory (its path is printed on standard error).
    #[arg(long)]
    keep: bool,
    /// Concurrent appenders (appends).
    #[arg(long, default_value_t = 256)]
    tasks: u64,
    /// Events per append in the multi-event variant (appends; 1 skips the variant).
    #[arg(long, default_value_t = 10)]
    events_per_append: u64,
    /// Append to PostgreSQL instead of SQLite (appends): a URL of a server whose user may create
    /// databases, without a database name (`postgres://USER@HOST:PORT`); each variant gets a
    /// fresh database, dropped afterwards.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Queries of each kind (audit-query).
    #[arg(long, default_value_t = 200)]
    queries: u64,
    /// A checkpoint is signed each time the generated log passes a multiple of this (0: never).
    #[arg(long, default_value_t = 40_000)]
    checkpoint_every: u64,
    /// Every this-many-th generated machine token has conditions (0: none).
    #[arg(long, default_value_t = 4)]
    conditions_every: u64,
    /// The credledger binary to time on the export (verify; default: beside storebench).
    #[arg(long, value_name = "PATH")]
    cli: Option<PathBuf>,
    /// The read models to load (hot-index-load, run by hot-index).
    #[arg(long, value_name = "PATH", hide = true)]
    read_db: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Appends,
    Rebuild,
    Verify,
    AuditQuery,
    HotIndex,
    /// The child process of hot-index.
    #[value(hide = true)]
    HotIndexLoad,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.scenario == Scenario::HotIndexLoad {
        let read_db = args.read_db.ok_or_else(|| anyhow::anyhow!("hot-index-load needs --read-db"))?;
        println!("{}", hot_index::load(&read_db)?);
        return Ok(());
    }
    let dir = match &args.data_dir {
        Some(parent) => {
            std::fs::create_dir_all(parent)?;
            tempfile::Builder::new().prefix("storebench-").tempdir_in(parent)?
        }
        None => tempfile::Builder::new().prefix("storebench-").tempdir()?,
    };
    eprintln!("storebench: working in {}", dir.path().display());
    let load_average = measure::load_average();
    let log_spec = |default_credentials| LogSpec {
        events: args.events,
        credentials: args.credentials.unwrap_or(default_credentials),
        checkpoint_every: args.checkpoint_every,
        conditions_every: args.conditions_every,
    };
    let result = match args.scenario {
        Scenario::Appends => {
            let spec = appends::Appends {
                events: args.events,
                streams: args.credentials.unwrap_or(10_000),
                tasks: args.tasks,
                events_per_append: args.events_per_append,
            };
            appends::run(dir.path(), spec, args.postgres.as_deref()).await
        }
        Scenario::Rebuild => rebuild::run(dir.path(), log_spec(10_000)).await,
        Scenario::Verify => verify::run(dir.path(), log_spec(10_000), args.cli.clone()).await,
        Scenario::AuditQuery => audit_query::run(dir.path(), log_spec(10_000), args.queries).await,
        Scenario::HotIndex => {
            hot_index::run(dir.path(), args.credentials.unwrap_or(1_000_000), args.conditions_every).await
        }
        Scenario::HotIndexLoad => unreachable!("handled above"),
    };
    if args.keep {
        let kept = dir.keep();
        eprintln!("storebench: kept {}", kept.display());
    }
    let mut result = result?;
    result["detail"]["load_average_at_start"] = serde_json::json!(load_average);
    println!("{result}");
    Ok(())
}
