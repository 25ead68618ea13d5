//! What every client subcommand shares: the global flags, the credential in use, the HTTP calls
//! to the API, errors with exit codes pipelines can branch on, and output as a table, JSON or ids.

pub mod credentials;
pub mod output;

use std::time::Duration;

use clap::{Args, ValueEnum};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use credentials::Credentials;

/// Flags every client subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The server's URL (`http://` or `https://`) [default: the one `login` saved, else
    /// http://127.0.0.1:8080].
    #[arg(long, global = true, env = "CREDLEDGER_URL", value_parser = parse_url, value_name = "URL")]
    pub url: Option<String>,
    /// The organization (id); defaults to the organization of the credential in use.
    #[arg(long, global = true, env = "CREDLEDGER_ORG", value_name = "ORG_ID")]
    pub org: Option<String>,
    /// Output format [default: table on a terminal, json otherwise].
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Format>,
    /// Print only ids, one per line.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say on standard error which credential is in use, the OAuth2 exchange, and each request
    /// made (never a secret).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// Where the CLI talks to when neither `--url`, `CREDLEDGER_URL` nor a saved login says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// A server URL: `http://` or `https://` and a host, nothing after the path. `http//oops` is a
/// usage error before any request.
fn parse_url(input: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(input.trim())
        .map_err(|error| format!("not a URL ({error}): write it as https://HOST[:PORT]"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the scheme must be http or https, not `{}`", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a server URL has no query or fragment".to_owned());
    }
    Ok(input.trim().trim_end_matches('/').to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for lists, `key  value` rows for one object.
    Table,
    /// The API's JSON documents.
    Json,
}

/// Exit codes (pipelines branch on them).
pub mod exit {
    pub const SERVER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AUTH: u8 = 3;
}

/// A failure of a client command: one readable line, an exit code, and for server refusals the
/// problem document (printed whole with `-o json`).
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    pub document: Option<Value>,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: exit::USAGE, message: message.into(), document: None }
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self { code: exit::SERVER, message: message.into(), document: None }
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self { code: exit::AUTH, message: message.into(), document: None }
    }

    /// A problem+json (or OAuth2 error) answer as a CLI error.
    fn from_response(status: StatusCode, body: Value) -> Self {
        let code = body["code"].as_str().or_else(|| body["error"].as_str()).unwrap_or("error").to_owned();
        let detail =
            body["detail"].as_str().or_else(|| body["error_description"].as_str()).unwrap_or_default().to_owned();
        let field = body["field"].as_str().map(|field| format!(" (field `{field}`)")).unwrap_or_default();
        let exit = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => exit::AUTH,
            status if status.is_client_error() => exit::USAGE,
            _ => exit::SERVER,
        };
        Self { code: exit, message: format!("{code}: {detail}{field} [{}]", status.as_u16()), document: Some(body) }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        Self::server(format!("{error:#}"))
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// A connection to the API with a resolved credential.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    bearer: String,
    /// The credential's organization when known without asking the server.
    org: Option<String>,
    pub global: Global,
}

/// How many times an idempotent call is retried after a network failure.
const RETRIES: u32 = 3;

impl Api {
    /// Resolves the credential (in the order of `credentials`) and connects.
    pub async fn connect(global: &Global) -> CliResult<Self> {
        let mut api = Self::with_token(global, "")?;
        let credentials = Credentials::from_environment()?;
        if global.verbose {
            eprintln!("credledger: using {}", credentials.describe());
        }
        api.bearer = credentials.bearer(&api.http, &api.base, global.verbose).await?;
        api.org = credentials.org(&api.base).or_else(|| match credentials {
            Credentials::Client { .. } => credentials::access_token_org(&api.bearer),
            _ => None,
        });
        Ok(api)
    }

    /// A client with an explicit bearer value (login checks the token it is given).
    pub fn with_token(global: &Global, token: &str) -> CliResult<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("credledger-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::server(e.to_string()))?;
        Ok(Self { http, base: base_url(global), bearer: token.to_owned(), org: None, global: global.clone() })
    }

    /// The server's URL in use, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> CliResult<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> CliResult<Value> {
        self.call(Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> CliResult<Value> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// The bearer value in use: in a machine mode, the access token it obtained.
    pub fn bearer(&self) -> &str {
        &self.bearer
    }

    pub async fn patch(&self, path: &str, body: Value) -> CliResult<Value> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> CliResult<Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// Sends a request. Reads are retried with backoff on network failures; a mutation never is,
    /// since it may have been applied before the connection broke.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> CliResult<Value> {
        let idempotent = method == Method::GET;
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.global.verbose {
                eprintln!("credledger: {method} {url}");
            }
            let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.bearer);
            if let Some(body) = &body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(response) => return read(response).await,
                Err(error) if idempotent && attempt <= RETRIES && (error.is_connect() || error.is_timeout()) => {
                    tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
                }
                Err(error) => return Err(CliError::server(format!("cannot reach {}: {}", self.base, causes(&error)))),
            }
        }
    }

    /// Streams the answer of a GET into `out` (an export may take minutes: no overall timeout,
    /// only for connecting). Returns the number of bytes written.
    pub async fn download(&self, path: &str, out: &mut dyn std::io::Write) -> CliResult<u64> {
        let url = format!("{}{path}", self.base);
        if self.global.verbose {
            eprintln!("credledger: GET {url}");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("credledger-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::server(e.to_string()))?;
        let mut response = http
            .get(&url)
            .bearer_auth(&self.bearer)
            .send()
            .await
            .map_err(|error| CliError::server(format!("cannot reach {}: {}", self.base, causes(&error))))?;
        if !response.status().is_success() {
            return read(response).await.map(|_| 0);
        }
        let mut written = 0;
        while let Some(chunk) =
            response.chunk().await.map_err(|e| CliError::server(format!("the download broke off: {e}")))?
        {
            out.write_all(&chunk).map_err(|e| CliError::server(format!("writing the download: {e}")))?;
            written += chunk.len() as u64;
        }
        out.flush().map_err(|e| CliError::server(format!("writing the download: {e}")))?;
        Ok(written)
    }

    /// An id as given, or the id of the one item of `collection` (a list route) whose `field` is
    /// `given` and that is neither revoked nor removed: a credential by its name, a member by its
    /// email. Several such items are a usage error naming how many.
    pub async fn resolve(&self, collection: &str, field: &str, given: &str, what: &str) -> CliResult<String> {
        if uuid::Uuid::parse_str(given).is_ok() {
            return Ok(given.to_owned());
        }
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => collection.to_owned(),
                Some(cursor) => format!("{collection}?cursor={cursor}"),
            };
            let page = self.get(&path).await?;
            for item in page["items"].as_array().into_iter().flatten() {
                let current = item["state"].as_str() != Some("revoked") && item["removed"].as_bool() != Some(true);
                if current && item[field].as_str() == Some(given) {
                    found.extend(item["id"].as_str().map(str::to_owned));
                }
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        match found.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(CliError::usage(format!("no {what} named `{given}` that is not revoked: pass its id"))),
            _ => Err(CliError::usage(format!("{} {what}s are named `{given}`: pass the id of one", found.len()))),
        }
    }

    /// The organization to act in: `--org`, else the credential's own.
    pub async fn org(&self) -> CliResult<String> {
        if let Some(org) = self.global.org.as_ref().or(self.org.as_ref()) {
            return Ok(org.clone());
        }
        let me = self.get("/v1/whoami").await?;
        me["orgId"].as_str().map(str::to_owned).ok_or_else(|| {
            CliError::usage("the credential in use belongs to no organization: pass --org or set CREDLEDGER_ORG")
        })
    }
}

/// An error with its causes, `outer: inner: innermost`: reqwest's own message alone ("error
/// sending request") hides the reason, such as a certificate nobody vouches for.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// The server to talk to: `--url` or `CREDLEDGER_URL`, else the saved login's, else the default.
/// The machine modes read no file, the saved login included.
pub fn base_url(global: &Global) -> String {
    global
        .url
        .clone()
        .or_else(|| {
            if credentials::machine_mode() { None } else { credentials::saved_login().and_then(|login| login.url) }
        })
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
        .trim_end_matches('/')
        .to_owned()
}

pub(crate) async fn read(response: reqwest::Response) -> CliResult<Value> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| CliError::server(format!("reading the answer: {e}")))?;
    let body: Value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    if status.is_success() { Ok(body) } else { Err(CliError::from_response(status, body)) }
}

/// Runs an async client command on a fresh runtime and turns its outcome into an exit code.
pub fn run<F>(global: &Global, command: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = CliResult<()>>,
{
    run_for_code(global, async { command.await.map(|()| 0) })
}

/// Runs a command whose success has an exit code of its own (`run` passes on its child's).
pub fn run_for_code<F>(global: &Global, command: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = CliResult<i32>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(exit::SERVER);
        }
    };
    match runtime.block_on(command) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            match (&error.document, global.output) {
                (Some(document), Some(Format::Json)) => {
                    eprintln!("{}", serde_json::to_string_pretty(document).unwrap_or_default());
                }
                _ => eprintln!("error: {}", error.message),
            }
            std::process::ExitCode::from(error.code)
        }
    }
}
