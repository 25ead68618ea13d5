//! `credledger serve`: opens the store and the read models, starts the projection runner and the
//! HTTP API, and shuts down gracefully on SIGTERM or SIGINT.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use credledger_api::{AppState, Clock, Config, SigningKeys, background};
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
    /// Event store URL; defaults to `sqlite://DATA_DIR/events.db`. Prefer the variable for a URL
    /// with a password: it stays out of `ps` and is never echoed by `--help`.
    #[arg(long, env = "CREDLEDGER_STORE", hide_env_values = true)]
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
    /// The URL clients reach this server at (the OAuth2 issuer and the base of its endpoints);
    /// defaults to `http://LISTEN_ADDRESS`.
    #[arg(long, env = "CREDLEDGER_PUBLIC_URL")]
    public_url: Option<String>,
    /// The access-token signing keys (created 0600 on first start); defaults to
    /// `DATA_DIR/signing-keys.json`. Point several nodes at one file to share the keys.
    #[arg(long, env = "CREDLEDGER_SIGNING_KEY_FILE")]
    signing_key_file: Option<PathBuf>,
    /// The ledger's Ed25519 checkpoint-signing key (`PRIVATE+KEY+…`, created 0600 on first start);
    /// defaults to `DATA_DIR/ledger-key`. Separate from the access-token keys; several nodes of
    /// one ledger share it.
    #[arg(long, env = "CREDLEDGER_LEDGER_KEY_FILE")]
    ledger_key_file: Option<PathBuf>,
    /// The ledger's name in its checkpoints, used when the ledger key is created; defaults to the
    /// public URL's host and port followed by `/credledger`.
    #[arg(long, env = "CREDLEDGER_LEDGER_ORIGIN")]
    ledger_origin: Option<String>,
    /// How often a checkpoint is signed when new events exist, in milliseconds.
    #[arg(long, env = "CREDLEDGER_CHECKPOINT_INTERVAL_MS", default_value_t = 1000, hide = true,
        value_parser = clap::value_parser!(u64).range(100..))]
    checkpoint_interval_ms: u64,
    /// How long a node on a shared store (PostgreSQL) may go without confirming that its view
    /// has caught up with the shared log, in seconds. Past it, `/readyz` answers 503 and requests
    /// wait for the view to catch up (at most this long, then 503 `stale_view`) instead of being
    /// judged on a view that may miss a revocation.
    #[arg(long, env = "CREDLEDGER_FRESHNESS_SECONDS", default_value_t = 2.0, value_parser = parse_freshness)]
    freshness_seconds: f64,
    /// Tests only: shift the clock by the number of seconds this file holds.
    #[arg(long, env = "CREDLEDGER_CLOCK_SHIFT_FILE", hide = true)]
    clock_shift_file: Option<PathBuf>,
}

/// At least one head poll (a second) must fit in the bound, or a healthy node would never be fresh.
fn parse_freshness(input: &str) -> Result<f64, String> {
    match input.parse::<f64>() {
        Ok(seconds) if (1.5..=3600.0).contains(&seconds) => Ok(seconds),
        Ok(_) => Err("the freshness bound must be between 1.5 and 3600 seconds".to_owned()),
        Err(error) => Err(error.to_string()),
    }
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

    let shutdown = shutdown_signal()?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
    let keys_path = args.signing_key_file.clone().unwrap_or_else(|| args.data_dir.join("signing-keys.json"));
    let keys = SigningKeys::load_or_create(&keys_path, &public_url, clock.now()).context("loading the signing keys")?;
    let ledger_origin = args.ledger_origin.clone().unwrap_or_else(|| default_origin(&public_url));
    let ledger_key_path = args.ledger_key_file.clone().unwrap_or_else(|| args.data_dir.join("ledger-key"));
    let ledger_key = credledger_api::ledger::load_or_create_key(&ledger_key_path, &ledger_origin)
        .context("loading the ledger key")?;
    let ledger = credledger_api::ledger::Ledger::new(ledger_key, store.clone(), projections.clone())
        .map_err(|problem| anyhow::anyhow!("opening the ledger: {}", problem.detail))?;
    // A log altered while the server was down makes the ledger read-only before anything is
    // written on top of it (the reason shows in /readyz and the log).
    ledger.check_at_start().await.map_err(|problem| anyhow::anyhow!("checking the log: {}", problem.detail))?;
    let config = Config {
        trusted_proxies: args.trusted_proxies.clone(),
        public_url,
        freshness: Duration::from_secs_f64(args.freshness_seconds),
    };
    let guarded = ledger.guard();
    let app = AppState::new(guarded, projections, clock, config, keys, Arc::new(ledger));
    credledger_api::metrics_handle();

    let admin_token_file = match args.admin_token_file.as_deref() {
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
        let (app, sweep, sign) = (
            app.clone(),
            Duration::from_secs(args.expiry_sweep_seconds),
            Duration::from_millis(args.checkpoint_interval_ms),
        );
        tokio::spawn(lead(store.leadership(), move || {
            vec![
                tokio::spawn(background::run_member_removals(app.clone())),
                tokio::spawn(background::run_expiry_sweeper(app.clone(), sweep)),
                tokio::spawn(credledger_api::ledger::run_checkpoint_signer(app.clone(), sign)),
            ]
        }))
    };

    // Scripts and tests read this line to find the port.
    println!("credledger listening on http://{address}");
    tracing::info!(%address, "credledger listening");

    let service = credledger_api::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await?;
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
