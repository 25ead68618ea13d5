//! `credledger serve`: opens the store and the read models, starts the projection runner and the
//! HTTP API (HTTPS with `--tls-cert`/`--tls-key`), and shuts down gracefully on SIGTERM or SIGINT.
//! Its settings come from flags, variables and a configuration file (`settings`).

mod http;
mod settings;
mod tls;

pub use settings::{ServeArgs, SettingsError};

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
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
    let clock = settings.clock_shift_file.clone().map_or(Clock::System, |path| Clock::ShiftedByFile(Arc::new(path)));

    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let tls = if let Some(files) = &settings.tls {
        Some(tls::Tls::start(files.clone())?)
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
        None
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
    // Read models are never continued on a log that failed the check: they stay as they were,
    // for the operator to compare, until the log is restored or the loss accepted.
    let runner = ledger.halted().is_none().then(|| projections.start(store.clone()));
    let config =
        Config { trusted_proxies: settings.trusted_proxies.clone(), public_url, freshness: settings.freshness };
    let guarded = ledger.guard();
    let secrets_key = credledger_api::secrets_key::SecretsKey::load_or_create(&settings.secrets_key_file)
        .context("loading the secrets key")?;
    let app = AppState::new(guarded, projections, clock, config, keys, Arc::new(ledger)).with_secrets_key(secrets_key);
    credledger_api::metrics_handle();

    let admin_token_file = match settings.admin_token_file.as_deref() {
        Some(path) => AdminTokenFile::prepare(&app, path).await?,
        None => None,
    };
    let created = background::bootstrap_server_admin(&app)
        .await
        .map_err(|problem| anyhow::anyhow!("creating the server-admin token: {}", problem.detail));
    match (created, admin_token_file) {
        (Ok(Some(secret)), Some(file)) => file.place(secret.expose())?,
        (Ok(Some(secret)), None) => println!("server-admin token (shown once, store it now): {}", secret.expose()),
        // The ledger already had its admin token (another node or an earlier start made it):
        // the file, if any, stays as it is (an unplaced pending file removes itself).
        (Ok(None), _) => {}
        (Err(error), _) => return Err(error),
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

    let limits = http::Limits::new(settings.header_read_timeout, settings.max_connections);
    http::serve(listener, tls, credledger_api::router(app.clone()), limits, shutdown).await?;
    // In-flight requests are done. Background commands are idempotent and may stop anywhere;
    // pending denials are written; then the store commits what is queued and stops.
    background_work.abort();
    let _ = stop.send(true);
    if let Err(error) = denial_writer.await {
        tracing::warn!(%error, "the denial writer did not finish");
    }
    store.close().await;
    if let Some(runner) = runner {
        runner.abort();
    }
    tracing::info!("credledger stopped");
    Ok(())
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

/// Where the server-admin token goes when this node creates it. The token is written to a file
/// of its own beside the target, opened before the token exists (so a file that cannot be created
/// never leaves a token nobody has seen), and linked into place only if this node creates the
/// token. Dropped unplaced, it removes its file.
struct AdminTokenFile {
    target: PathBuf,
    pending: PathBuf,
    file: std::fs::File,
    /// The token is in the pending file but not at the target: the file must stay.
    stranded: bool,
}

impl AdminTokenFile {
    /// `None` when the target exists and the ledger has its admin token: a second node of the
    /// ledger, or a restart, with the same settings. A target that exists while the ledger has
    /// no admin token belongs to something else, and is refused.
    async fn prepare(app: &AppState, target: &Path) -> anyhow::Result<Option<Self>> {
        if target.exists() {
            let exists = background::server_admin_exists(app)
                .await
                .map_err(|problem| anyhow::anyhow!("reading the server-admin token: {}", problem.detail))?;
            anyhow::ensure!(
                exists,
                "the admin token file {} exists but this ledger has no server-admin token yet: remove the file",
                target.display()
            );
            return Ok(None);
        }
        let name = target.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let pending = target.with_file_name(format!(".{name}.{}.pending", std::process::id()));
        let file = create_secret_file(&pending)?;
        Ok(Some(Self { target: target.to_owned(), pending, file, stranded: false }))
    }

    /// Writes the token and links the file into place, never over an existing file.
    fn place(mut self, token: &str) -> anyhow::Result<()> {
        self.stranded = true;
        writeln!(self.file, "{token}")?;
        self.file.sync_all()?;
        std::fs::hard_link(&self.pending, &self.target).with_context(|| {
            format!(
                "placing the admin token file {}; the token is in {}",
                self.target.display(),
                self.pending.display()
            )
        })?;
        self.stranded = false;
        println!("server-admin token written to {} (shown nowhere else)", self.target.display());
        Ok(())
    }
}

impl Drop for AdminTokenFile {
    fn drop(&mut self) {
        // Placed, the target holds the token; never written, there is nothing to keep. A token
        // that could not be placed stays where it is: the only copy.
        if !self.stranded {
            let _ = std::fs::remove_file(&self.pending);
        }
    }
}

/// Creates a file only its owner can read (0600), refusing to overwrite one.
fn create_secret_file(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).with_context(|| format!("creating the admin token file {}", path.display()))
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
