//! `serve`'s settings, from a flag, else its `CREDLEDGER_*` variable, else the TOML file of
//! `--config`, else the default. `--print-config` shows the outcome without secrets.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use credledger_domain::values::Cidr;
use serde::Deserialize;

use super::tls::TlsFiles;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below, each named as its flag (`data-dir = "/var/lib/credledger"`,
    /// `trusted-proxies = ["10.0.0.0/8"]`); a flag or variable overrides the file. Relative paths
    /// in the file are relative to the file's directory.
    #[arg(long, env = "CREDLEDGER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective settings as TOML (a store URL's password redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Address to listen on (port 0 picks a free port and prints it) [default: 127.0.0.1:8080].
    #[arg(long, env = "CREDLEDGER_LISTEN", value_name = "ADDRESS:PORT")]
    listen: Option<SocketAddr>,
    /// Directory for the embedded store, the read models and the server's keys [default:
    /// ./credledger-data].
    #[arg(long, env = "CREDLEDGER_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Event store URL [default: sqlite://DATA_DIR/events.db]; or postgres://USER:PASSWORD@HOST/DB,
    /// esdb://HOST:2113. Prefer the variable or the file for a URL with a password: it stays out
    /// of `ps` and is never echoed by `--help`.
    #[arg(long, env = "CREDLEDGER_STORE", hide_env_values = true, value_name = "URL")]
    store: Option<String>,
    /// Log line format [default: text].
    #[arg(long, env = "CREDLEDGER_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Proxies whose `X-Forwarded-For` header is believed (CIDRs, comma-separated or repeated)
    /// [default: none].
    #[arg(long = "trusted-proxy", env = "CREDLEDGER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr, value_name = "CIDR")]
    trusted_proxies: Vec<Cidr>,
    /// Write the server-admin token created on first start to this file (mode 0600) instead of
    /// printing it.
    #[arg(long, env = "CREDLEDGER_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// How often the expiry sweeper records tokens whose expiry has passed, in seconds [default:
    /// 30].
    #[arg(long, env = "CREDLEDGER_EXPIRY_SWEEP_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    expiry_sweep_seconds: Option<u64>,
    /// The URL clients reach this server at (the OAuth2 issuer and the base of its endpoints)
    /// [default: http://LISTEN_ADDRESS, https:// with TLS].
    #[arg(long, env = "CREDLEDGER_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// The access-token signing keys (created 0600 on first start) [default:
    /// DATA_DIR/signing-keys.json]. Point several nodes at one file to share the keys.
    #[arg(long, env = "CREDLEDGER_SIGNING_KEY_FILE", value_name = "FILE")]
    signing_key_file: Option<PathBuf>,
    /// The ledger's Ed25519 checkpoint-signing key (`PRIVATE+KEY+…`, created 0600 on first start)
    /// [default: DATA_DIR/ledger-key]. Separate from the access-token keys; several nodes of one
    /// ledger share it.
    #[arg(long, env = "CREDLEDGER_LEDGER_KEY_FILE", value_name = "FILE")]
    ledger_key_file: Option<PathBuf>,
    /// The master key of secrets (created 0600 on first start) [default: DATA_DIR/secrets-key].
    /// It wraps every environment's data key; several nodes of one ledger share it, and a ledger
    /// copied to another store needs it to read its secrets.
    #[arg(long, env = "CREDLEDGER_SECRETS_KEY_FILE", value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// The ledger's name in its checkpoints, used when the ledger key is created [default: the
    /// public URL's host and port followed by `/credledger`].
    #[arg(long, env = "CREDLEDGER_LEDGER_ORIGIN", value_name = "NAME")]
    ledger_origin: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first); needs
    /// `--tls-key`. Both files are read again on SIGHUP and when they change.
    #[arg(long, env = "CREDLEDGER_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS #8, PKCS #1 or SEC1).
    #[arg(long, env = "CREDLEDGER_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often a checkpoint is signed when new events exist, in milliseconds [default: 1000].
    #[arg(long, env = "CREDLEDGER_CHECKPOINT_INTERVAL_MS", hide = true,
        value_parser = clap::value_parser!(u64).range(100..))]
    checkpoint_interval_ms: Option<u64>,
    /// Seconds a client has to send a request's headers; an idle kept-alive connection is
    /// closed after as long [default: 15].
    #[arg(long, env = "CREDLEDGER_HEADER_READ_TIMEOUT_SECONDS", value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_seconds: Option<u64>,
    /// Most client connections served at once; further clients wait until one ends [default:
    /// what the limit on open files allows, at most 10000].
    #[arg(long, env = "CREDLEDGER_MAX_CONNECTIONS", value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// How long a node on a shared store (PostgreSQL) may go without confirming that its view
    /// has caught up with the shared log, in seconds. Past it, `/readyz` answers 503 and requests
    /// wait for the view to catch up (at most this long, then 503 `stale_view`) instead of being
    /// judged on a view that may miss a revocation [default: 2].
    #[arg(long, env = "CREDLEDGER_FRESHNESS_SECONDS", value_name = "SECONDS", value_parser = parse_freshness)]
    freshness_seconds: Option<f64>,
    /// Tests only: shift the clock by the number of seconds this file holds.
    #[arg(long, env = "CREDLEDGER_CLOCK_SHIFT_FILE", hide = true)]
    clock_shift_file: Option<PathBuf>,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event.
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// The configuration file: every setting of `serve`, named as its flag. Unknown keys are refused,
/// so a misspelt setting is never silently ignored.
// The keys are named as the flags are (`signing-key-file`), so some end with the struct's name.
#[allow(clippy::struct_field_names)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    log_format: Option<LogFormat>,
    trusted_proxies: Option<Vec<String>>,
    admin_token_file: Option<PathBuf>,
    expiry_sweep_seconds: Option<u64>,
    public_url: Option<String>,
    signing_key_file: Option<PathBuf>,
    ledger_key_file: Option<PathBuf>,
    secrets_key_file: Option<PathBuf>,
    ledger_origin: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    checkpoint_interval_ms: Option<u64>,
    header_read_timeout_seconds: Option<u64>,
    max_connections: Option<u64>,
    freshness_seconds: Option<f64>,
}

/// A setting that cannot be used as given: a usage error (exit 2), reported before anything
/// starts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// What `serve` runs with.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: String,
    pub log_format: LogFormat,
    pub trusted_proxies: Vec<Cidr>,
    pub admin_token_file: Option<PathBuf>,
    pub expiry_sweep: Duration,
    /// `None`: derived from the address listened on, once bound.
    pub public_url: Option<String>,
    pub signing_key_file: PathBuf,
    pub ledger_key_file: PathBuf,
    pub secrets_key_file: PathBuf,
    /// `None`: derived from the public URL.
    pub ledger_origin: Option<String>,
    pub tls: Option<TlsFiles>,
    pub checkpoint_interval: Duration,
    pub header_read_timeout: Duration,
    /// `None`: what the limit on open files allows.
    pub max_connections: Option<u64>,
    pub freshness: Duration,
    pub clock_shift_file: Option<PathBuf>,
    /// `--print-config`: show these settings and exit.
    pub print_only: bool,
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> Result<Self, SettingsError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let base = args.config.as_deref().and_then(Path::parent).unwrap_or(Path::new("")).to_owned();
        let in_file = |path: Option<PathBuf>| path.map(|path| base.join(path));

        let data_dir = args.data_dir.or(in_file(file.data_dir)).unwrap_or_else(|| PathBuf::from("./credledger-data"));
        let store =
            args.store.or(file.store).unwrap_or_else(|| format!("sqlite://{}", data_dir.join("events.db").display()));
        let trusted_proxies = if args.trusted_proxies.is_empty() {
            file.trusted_proxies
                .unwrap_or_default()
                .iter()
                .map(|cidr| parse_cidr(cidr).map_err(|error| invalid("trusted-proxies", &error)))
                .collect::<Result<_, _>>()?
        } else {
            args.trusted_proxies
        };
        let expiry_sweep_seconds = args.expiry_sweep_seconds.or(file.expiry_sweep_seconds).unwrap_or(30);
        if expiry_sweep_seconds == 0 {
            return Err(invalid("expiry-sweep-seconds", "must be at least 1"));
        }
        let checkpoint_interval_ms = args.checkpoint_interval_ms.or(file.checkpoint_interval_ms).unwrap_or(1000);
        if checkpoint_interval_ms < 100 {
            return Err(invalid("checkpoint-interval-ms", "must be at least 100"));
        }
        let header_read_timeout_seconds =
            args.header_read_timeout_seconds.or(file.header_read_timeout_seconds).unwrap_or(15);
        if !(1..=3600).contains(&header_read_timeout_seconds) {
            return Err(invalid("header-read-timeout-seconds", "must be between 1 and 3600"));
        }
        let max_connections = args.max_connections.or(file.max_connections);
        if max_connections == Some(0) {
            return Err(invalid("max-connections", "must be at least 1"));
        }
        let freshness_seconds = args.freshness_seconds.or(file.freshness_seconds).unwrap_or(2.0);
        parse_freshness(&freshness_seconds.to_string()).map_err(|error| invalid("freshness-seconds", &error))?;
        // The certificate and its key come from one place: a flag or variable for one of them
        // does not pair with the file's other.
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => match (in_file(file.tls_cert), in_file(file.tls_key)) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                (None, None) => None,
                _ => return Err(invalid("tls-cert", "tls-cert and tls-key go together")),
            },
            _ => return Err(invalid("tls-cert", "--tls-cert and --tls-key go together")),
        };
        Ok(Self {
            listen: args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            signing_key_file: args
                .signing_key_file
                .or(in_file(file.signing_key_file))
                .unwrap_or_else(|| data_dir.join("signing-keys.json")),
            ledger_key_file: args
                .ledger_key_file
                .or(in_file(file.ledger_key_file))
                .unwrap_or_else(|| data_dir.join("ledger-key")),
            secrets_key_file: args
                .secrets_key_file
                .or(in_file(file.secrets_key_file))
                .unwrap_or_else(|| data_dir.join("secrets-key")),
            data_dir,
            store,
            log_format: args.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
            trusted_proxies,
            admin_token_file: args.admin_token_file.or(in_file(file.admin_token_file)),
            expiry_sweep: Duration::from_secs(expiry_sweep_seconds),
            public_url: args.public_url.or(file.public_url),
            ledger_origin: args.ledger_origin.or(file.ledger_origin),
            tls,
            checkpoint_interval: Duration::from_millis(checkpoint_interval_ms),
            header_read_timeout: Duration::from_secs(header_read_timeout_seconds),
            max_connections,
            freshness: Duration::from_secs_f64(freshness_seconds),
            clock_shift_file: args.clock_shift_file,
            print_only: args.print_config,
        })
    }

    /// The settings as a configuration file would hold them, without secrets: a store URL's
    /// password is redacted. What depends on the address bound is said in a comment.
    pub fn to_toml(&self) -> String {
        let mut table = toml::Table::new();
        let mut set = |key: &str, value: toml::Value| {
            table.insert(key.to_owned(), value);
        };
        let path = |path: &Path| toml::Value::String(path.display().to_string());
        set("listen", toml::Value::String(self.listen.to_string()));
        set("data-dir", path(&self.data_dir));
        set("store", toml::Value::String(redact_password(&self.store)));
        set("log-format", toml::Value::String(self.log_format.as_str().to_owned()));
        set(
            "trusted-proxies",
            toml::Value::Array(self.trusted_proxies.iter().map(|cidr| toml::Value::String(cidr.to_string())).collect()),
        );
        if let Some(file) = &self.admin_token_file {
            set("admin-token-file", path(file));
        }
        set("expiry-sweep-seconds", toml::Value::Integer(self.expiry_sweep.as_secs() as i64));
        if let Some(url) = &self.public_url {
            set("public-url", toml::Value::String(url.clone()));
        }
        set("signing-key-file", path(&self.signing_key_file));
        set("ledger-key-file", path(&self.ledger_key_file));
        set("secrets-key-file", path(&self.secrets_key_file));
        if let Some(origin) = &self.ledger_origin {
            set("ledger-origin", toml::Value::String(origin.clone()));
        }
        if let Some(tls) = &self.tls {
            set("tls-cert", path(&tls.cert));
            set("tls-key", path(&tls.key));
        }
        set("checkpoint-interval-ms", toml::Value::Integer(self.checkpoint_interval.as_millis() as i64));
        set("header-read-timeout-seconds", toml::Value::Integer(self.header_read_timeout.as_secs() as i64));
        if let Some(count) = self.max_connections {
            set("max-connections", toml::Value::Integer(count as i64));
        }
        set("freshness-seconds", toml::Value::Float(self.freshness.as_secs_f64()));
        let mut text =
            String::from("# credledger serve: effective settings (flags > CREDLEDGER_* variables > file > defaults)\n");
        if self.public_url.is_none() {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            let _ = writeln!(text, "# public-url: {scheme}://ADDRESS, the address listened on");
        }
        if self.ledger_origin.is_none() {
            text.push_str("# ledger-origin: the public URL's host and port followed by /credledger\n");
        }
        text.push_str(&toml::to_string(&table).unwrap_or_default());
        text
    }
}

fn invalid(key: &str, reason: &str) -> SettingsError {
    SettingsError(format!("the setting `{key}`: {reason}"))
}

fn read_file(path: &Path) -> Result<FileSettings, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| SettingsError(format!("cannot read the configuration file {}: {error}", path.display())))?;
    toml::from_str(&text).map_err(|error| SettingsError(format!("the configuration file {}: {error}", path.display())))
}

/// `postgres://credledger:s3cret@db/credledger` → `postgres://credledger:REDACTED@db/credledger`,
/// and a `password=` parameter likewise.
pub fn redact_password(url: &str) -> String {
    let mut url = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            url = format!("{scheme}://{user}:REDACTED@{host}{tail}");
        }
    }
    let mut redacted = String::with_capacity(url.len());
    let mut rest = url.as_str();
    while let Some(start) = rest.find("password=") {
        let (before, after) = rest.split_at(start + "password=".len());
        redacted.push_str(before);
        redacted.push_str("REDACTED");
        rest = &after[after.find(['&', ' ']).unwrap_or(after.len())..];
    }
    redacted.push_str(rest);
    redacted
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn a_store_url_password_is_redacted_wherever_it_is() {
        assert_eq!(
            redact_password("postgres://credledger:s3cret@db.internal:5432/credledger?sslmode=require"),
            "postgres://credledger:REDACTED@db.internal:5432/credledger?sslmode=require"
        );
        assert_eq!(
            redact_password("postgres://db/credledger?user=c&password=s3cret&sslmode=require"),
            "postgres://db/credledger?user=c&password=REDACTED&sslmode=require"
        );
        assert_eq!(redact_password("sqlite://./credledger-data/events.db"), "sqlite://./credledger-data/events.db");
        assert_eq!(redact_password("postgres://credledger@db/credledger"), "postgres://credledger@db/credledger");
    }
}
