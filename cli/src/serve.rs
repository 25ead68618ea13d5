//! `credledger serve`: opens the store and the read models, starts the projection runner and the
//! HTTP API (HTTPS with `--tls-cert`/`--tls-key`), and shuts down gracefully on SIGTERM or SIGINT.
//! Its settings come from flags, variables and a configuration file (`settings`).

mod settings;
mod tls;

pub use settings::{ServeArgs, SettingsError};

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use credledger_api::{AppState, Clock, Config, SigningKeys, background};
use credledger_projections::Projections;
use settings::{LogFormat, Settings};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    if settings.print_only {
        print!("{}", settings.to_toml());
        return Ok(());
    }
    init_tracing(settings.log_format);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CREDLEDGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: a log file, a pipe or journald gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating the data directory {}", settings.data_dir.display()))?;
    let store = credledger_store::open(&settings.store).await.context("opening the event store")?;
    let projections = Projections::open(&settings.data_dir.join("read.db")).context("opening the read models")?;
    let runner = projections.start(store.clone());
    let clock = settings.clock_shift_file.clone().map_or(Clock::System, |path| Clock::ShiftedByFile(Arc::new(path)));

    let shutdown = shutdown_signal()?;
    let tcp = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let address = tcp.local_addr()?;
    let listener = if let Some(files) = &settings.tls {
        Listener::Https(tls::TlsListener::start(tcp, files.clone())?)
    } else {
        // `systemctl reload` sends SIGHUP: without a certificate to read again it must not stop
        // the server (the signal's default action).
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("listening for SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: nothing to reload (no TLS certificate)");
            }
        });
        Listener::Http(tcp)
    };
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("{scheme}://{address}"));
    let keys = SigningKeys::load_or_create(&settings.signing_key_file, &public_url, clock.now())
        .context("loading the signing keys")?;
    let ledger_origin = settings.ledger_origin.clone().unwrap_or_else(|| default_origin(&public_url));
    let ledger_key = credledger_api::ledger::load_or_create_key(&settings.ledger_key_file, &ledger_origin)
        .context("loading the ledger key")?;
    let ledger = credledger_api::ledger::Ledger::new(ledger_key, store.clone(), projections.clone())
        .map_err(|problem| anyhow::anyhow!("opening the ledger: {}", problem.detail))?;
    // A log altered while the server was down makes the ledger read-only before anything is
    // written on top of it (the reason shows in /readyz and the log).
    ledger.check_at_start().await.map_err(|problem| anyhow::anyhow!("checking the log: {}", problem.detail))?;
    let config = Config { trusted_proxies: settings.trusted_proxies.clone(), public_url };
    let guarded = ledger.guard();
    let app = AppState::new(guarded, projections, clock, config, keys, Arc::new(ledger));
    credledger_api::metrics_handle();

    // Open the admin token's file before the token exists, so that a file that cannot be
    // created never leaves a token nobody has seen.
    let mut admin_token_file = settings.admin_token_file.as_deref().map(create_secret_file).transpose()?;
    if let Some(secret) = background::bootstrap_server_admin(&app)
        .await
        .map_err(|problem| anyhow::anyhow!("creating the server-admin token: {}", problem.detail))?
    {
        match (&mut admin_token_file, settings.admin_token_file.as_deref()) {
            (Some(file), Some(path)) => {
                writeln!(file, "{}", secret.expose())?;
                file.sync_all()?;
                println!("server-admin token written to {} (shown nowhere else)", path.display());
            }
            _ => println!("server-admin token (shown once, store it now): {}", secret.expose()),
        }
    } else if let Some(path) = settings.admin_token_file.as_deref() {
        // The ledger already had its admin token: the empty file would only mislead.
        drop(admin_token_file.take());
        let _ = std::fs::remove_file(path);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let denial_writer = tokio::spawn(background::run_denial_writer(app.clone(), stopped));
    let background_work = {
        let (app, sweep, sign) = (app.clone(), settings.expiry_sweep, settings.checkpoint_interval);
        tokio::spawn(lead(store.leadership(), move || {
            vec![
                tokio::spawn(background::run_member_removals(app.clone())),
                tokio::spawn(background::run_expiry_sweeper(app.clone(), sweep)),
                tokio::spawn(credledger_api::ledger::run_checkpoint_signer(app.clone(), sign)),
            ]
        }))
    };

    // Scripts and tests read this line to find the port.
    println!("credledger listening on {scheme}://{address}");

    let service = credledger_api::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    match listener {
        Listener::Http(tcp) => axum::serve(tcp, service).with_graceful_shutdown(shutdown).await?,
        // `tap_io` only makes the peer's address available as `ConnectInfo`, as for plain TCP.
        Listener::Https(tls) => axum::serve(tls.tap_io(|_| {}), service).with_graceful_shutdown(shutdown).await?,
    }
    // In-flight requests are done. Background commands are idempotent and may stop anywhere;
    // pending denials are written; then the store commits what is queued and stops.
    background_work.abort();
    let _ = stop.send(true);
    if let Err(error) = denial_writer.await {
        tracing::warn!(%error, "the denial writer did not finish");
    }
    store.close().await;
    runner.abort();
    tracing::info!("credledger stopped");
    Ok(())
}

/// Where connections come from: plain TCP, or TCP with a TLS handshake done first.
enum Listener {
    Http(tokio::net::TcpListener),
    Https(tls::TlsListener),
}

/// Runs the background work that must run once per ledger (started by `start`) while this
/// process leads, and stops it as soon as it does not: with the embedded store always, with a
/// shared one while this process holds the leader's lock. The jobs stop with this task.
async fn lead(
    mut leadership: tokio::sync::watch::Receiver<bool>,
    start: impl Fn() -> Vec<tokio::task::JoinHandle<()>>,
) {
    struct Jobs(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for Jobs {
        fn drop(&mut self) {
            self.0.iter().for_each(tokio::task::JoinHandle::abort);
        }
    }
    loop {
        // A closed channel keeps its last value for good: lead on, or never.
        if leadership.wait_for(|leading| *leading).await.is_err() {
            return;
        }
        tracing::info!("leading: this server runs the expiry sweeper, checkpoint signing and process managers");
        let jobs = Jobs(start());
        if leadership.wait_for(|leading| !*leading).await.is_err() {
            std::future::pending::<()>().await;
        }
        drop(jobs);
        tracing::info!("no longer leading: background work stopped here");
    }
}

/// `https://ledger.example.com:8443/` names its ledger `ledger.example.com:8443/credledger`.
fn default_origin(public_url: &str) -> String {
    let host = public_url.split_once("://").map_or(public_url, |(_, rest)| rest);
    let host = host.split(['/', '?', '#']).next().unwrap_or_default();
    let host: String = host.chars().filter(|c| !c.is_whitespace() && *c != '+').collect();
    if host.is_empty() { "credledger".to_owned() } else { format!("{host}/credledger") }
}

/// Creates a file only its owner can read (0600), refusing to overwrite one.
fn create_secret_file(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).with_context(|| format!("creating the admin token file {} (it must not exist)", path.display()))
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
