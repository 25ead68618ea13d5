//! `credledger serve`: opens the store and the read models, starts the projection runner and the
//! HTTP API, and shuts down gracefully on SIGTERM or SIGINT.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use credledger_api::{AppState, Clock, Config, background};
use credledger_domain::values::Cidr;
use credledger_projections::Projections;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port and prints it).
    #[arg(long, env = "CREDLEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the embedded store, the read models and the server's keys.
    #[arg(long, env = "CREDLEDGER_DATA_DIR", default_value = "./credledger-data")]
    data_dir: PathBuf,
    /// Event store URL; defaults to `sqlite://DATA_DIR/events.db`.
    #[arg(long, env = "CREDLEDGER_STORE")]
    store: Option<String>,
    /// Log line format.
    #[arg(long, env = "CREDLEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Proxies whose `X-Forwarded-For` header is believed (CIDRs, comma-separated or repeated).
    #[arg(long = "trusted-proxy", env = "CREDLEDGER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    trusted_proxies: Vec<Cidr>,
    /// Write the server-admin token created on first start to this file (mode 0600) instead of
    /// printing it.
    #[arg(long, env = "CREDLEDGER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// How often the expiry sweeper records tokens whose expiry has passed, in seconds.
    #[arg(long, env = "CREDLEDGER_EXPIRY_SWEEP_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    expiry_sweep_seconds: u64,
    /// Tests only: shift the clock by the number of seconds this file holds.
    #[arg(long, env = "CREDLEDGER_CLOCK_SHIFT_FILE", hide = true)]
    clock_shift_file: Option<PathBuf>,
}

fn parse_cidr(input: &str) -> Result<Cidr, String> {
    Cidr::parse(input).map_err(|error| error.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CREDLEDGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let store_url =
        args.store.clone().unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("events.db").display()));
    let store = credledger_store::open(&store_url).await.context("opening the event store")?;
    let projections = Projections::open(&args.data_dir.join("read.db")).context("opening the read models")?;
    let runner = projections.start(store.clone());
    let clock = args.clock_shift_file.clone().map_or(Clock::System, |path| Clock::ShiftedByFile(Arc::new(path)));
    let config = Config { trusted_proxies: args.trusted_proxies.clone() };
    let app = AppState::new(store.clone(), projections, clock, config);
    credledger_api::metrics_handle();

    if let Some(secret) = background::bootstrap_server_admin(&app)
        .await
        .map_err(|problem| anyhow::anyhow!("creating the server-admin token: {}", problem.detail))?
    {
        show_admin_token(secret.expose(), args.admin_token_file.as_deref())?;
    }
    let jobs = [
        tokio::spawn(background::run_member_removals(app.clone())),
        tokio::spawn(background::run_expiry_sweeper(app.clone(), Duration::from_secs(args.expiry_sweep_seconds))),
        tokio::spawn(background::run_denial_writer(app.clone())),
    ];

    let shutdown = shutdown_signal()?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    // Scripts and tests read this line to find the port.
    println!("credledger listening on http://{address}");
    tracing::info!(%address, "credledger listening");

    let service = credledger_api::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await?;
    // In-flight requests are done; record what is still pending, then stop the writer.
    for job in jobs {
        job.abort();
    }
    app.usage.flush_denials(app.clock.now(), true).await;
    store.close().await;
    runner.abort();
    tracing::info!("credledger stopped");
    Ok(())
}

/// Shows the server-admin token once: in the file asked for, or on standard output. Never in a
/// log line.
fn show_admin_token(token: &str, file: Option<&Path>) -> anyhow::Result<()> {
    match file {
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("creating the admin token file {} (it must not exist)", path.display()))?;
            writeln!(file, "{token}")?;
            println!("server-admin token written to {} (shown nowhere else)", path.display());
        }
        None => {
            println!("server-admin token (shown once, store it now): {token}");
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives right after the "listening" line is not lost
/// to the default action (which would kill the process without a graceful stop).
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
