//! `credledger serve`: opens the store and the read models, starts the projection runner and the
//! HTTP API, and shuts down gracefully on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use credledger_api::AppState;
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

    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    // Scripts and tests read this line to find the port.
    println!("credledger listening on http://{address}");
    tracing::info!(%address, "credledger listening");

    let app = credledger_api::router(AppState { store: store.clone(), projections });
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    runner.abort();
    store.close().await;
    tracing::info!("credledger stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
