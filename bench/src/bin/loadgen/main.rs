//! The HTTP load generator of the benchmark harness (see bench/run.sh): a fixed number of
//! HTTP/1.1 keep-alive connections, each sending its next request as soon as the previous one is
//! answered (a closed loop), for a warm-up and then a measured window. It prints ONE JSON line:
//!
//! `{"scenario", "connections", "durationSeconds", "requests", "errors", "rps", "p50Ms", "p99Ms",
//! "p999Ms", "outcomes", "detail"}`
//!
//! Only requests answered within the measured window count. An error is a non-2xx answer, a 2xx
//! introspection answering `active: false`, or a transport failure (the connection is then
//! reopened); errors are counted, never fatal. `rps` counts successful requests.

mod http;
mod tally;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::time::Instant;

use crate::http::{Connection, Target};
use crate::tally::ConnectionTally;
use crate::workload::{ConnectionState, Kind, Scenario, Setup, Workload};

/// A request unanswered for this long is an error, and its connection is reopened.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait after a refused connection before trying again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, Parser)]
#[command(about = "Closed-loop HTTP/1.1 load against credledger (or the oidc-provider peer); prints one JSON line")]
struct Args {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// The setup file: the server's URL and credentials (run.sh writes it); with `--peer`, the
    /// JSON line the peer printed.
    #[arg(long)]
    setup: PathBuf,
    /// Target the oidc-provider peer (client-credentials and introspect-opaque only).
    #[arg(long)]
    peer: bool,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// When the measured window opens and closes.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn contains(self, instant: Instant) -> bool {
        instant >= self.from && instant <= self.to
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match start(&args) {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            // One line, for run.sh's table.
            eprintln!("loadgen: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start(args: &Args) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(args.duration > 0.0 && args.warmup >= 0.0, "--duration must be positive, --warmup not negative");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: &Args) -> anyhow::Result<serde_json::Value> {
    let setup = Setup::read(&args.setup)?;
    let target = Arc::new(Target::parse(&setup.url).await?);
    let workload = Workload::prepare(args.scenario, &setup, args.peer, &target)
        .await
        .with_context(|| format!("preparing {}", args.scenario.name()))?;
    let workload = Arc::new(workload);
    let duration = Duration::from_secs_f64(args.duration);
    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    let from = started + Duration::from_secs_f64(args.warmup);
    let window = Window { from, to: from + duration };
    let connections: Vec<_> = (0..args.connections)
        .map(|index| tokio::spawn(drive(index, Arc::clone(&target), Arc::clone(&workload), window)))
        .collect();
    let mut total = ConnectionTally::default();
    for connection in connections {
        total.merge(&connection.await.context("a connection task failed")?);
    }
    let name = if args.peer { format!("peer-{}", args.scenario.name()) } else { args.scenario.name().to_owned() };
    let mut detail = serde_json::Value::Object(workload.notes.clone());
    // On a machine it shares with the server, the load generator's own CPU use says how much of
    // the machine was left to the server.
    if let (Some(before), Some(after)) = (cpu_before, cpu_seconds()) {
        let cores = (after - before) / started.elapsed().as_secs_f64();
        detail["loadgenCpuCores"] = serde_json::json!((cores * 100.0).round() / 100.0);
    }
    Ok(total.report(&name, args.connections, duration, detail))
}

/// The CPU time this process has used (user + system), from /proc/self/stat; `None` off Linux.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: state is
    // the first of them, utime and stime (in clock ticks, 100 a second on Linux) the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// One connection's closed loop until the window closes.
async fn drive(index: usize, target: Arc<Target>, workload: Arc<Workload>, window: Window) -> ConnectionTally {
    let mut tally = ConnectionTally::default();
    let mut state = ConnectionState::new(index);
    let mut connection: Option<Connection> = None;
    while Instant::now() < window.to {
        let open = match connection.take() {
            Some(open) => Ok(open),
            None => Connection::open(&target).await,
        };
        let Ok(mut open) = open else {
            if window.contains(Instant::now()) {
                tally.all.failed();
                tally.outcome("transport");
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        let (kind, request) = workload.request(&target.host, &mut state);
        let started = Instant::now();
        // Past the window's end an answer no longer counts: do not wait long for it.
        let deadline = (started + REQUEST_TIMEOUT).min(window.to + Duration::from_secs(1));
        let answer = tokio::time::timeout_at(deadline, open.send(request)).await;
        let finished = Instant::now();
        let measured = window.contains(finished);
        match answer {
            Ok(Ok((status, body))) => {
                let success = workload.judge(kind, status, &body, &mut state);
                connection = Some(open);
                if measured {
                    let latency = finished - started;
                    tally.all.answered(success, latency);
                    if kind != Kind::Read {
                        tally.lifecycle.answered(success, latency);
                    }
                    let inactive = status.is_success() && !success && kind == Kind::Read;
                    tally.outcome(if inactive { "inactive".to_owned() } else { status.as_u16().to_string() });
                }
            }
            // A transport error or a timeout: the connection is dropped and reopened.
            Ok(Err(_)) | Err(_) => {
                if measured {
                    tally.all.failed();
                    if kind != Kind::Read {
                        tally.lifecycle.failed();
                    }
                    tally.outcome("transport");
                }
            }
        }
    }
    tally
}
