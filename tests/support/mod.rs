//! End-to-end test harness: starts the real `credledger serve` binary on a free loopback port
//! with a fresh data directory, stops it when the test is done, and offers one helper per route.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A running server. Dropping it kills the process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub base_url: String,
    /// The server-admin PAT the first start printed (`None` on a restart).
    pub admin_token: Option<String>,
    /// Kept so the directory lives as long as the server.
    data: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
    /// Write a number of seconds here to shift the server's clock (see [`Server::shift_clock`]).
    pub clock_file: PathBuf,
    /// The server's standard error (its log), kept out of the test's output: expected errors
    /// (a tampered log, a refused request) are not noise in a passing run. A failing test shows
    /// it (see `Drop`).
    pub log_file: PathBuf,
    /// Holds the log file.
    _log_dir: tempfile::TempDir,
}

/// The `credledger` binary Cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_credledger"))
}

impl Server {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server on a fresh temporary data directory with extra `serve` arguments.
    pub fn start_with(args: &[&str]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let dir = data.path().to_owned();
        let mut server = Self::start_in_with(&dir, args)?;
        server.data = Some(data);
        Ok(server)
    }

    /// Starts a server on an existing data directory (to test restarts).
    pub fn start_in(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_in_with(data_dir, &[])
    }

    pub fn start_in_with(data_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_in_with_env(data_dir, args, &[])
    }

    /// Starts a server on a fresh temporary data directory with extra `serve` arguments and
    /// environment variables (which override the harness's `CREDLEDGER_LOG=warn`).
    pub fn start_with_env(args: &[&str], vars: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let dir = data.path().to_owned();
        let mut server = Self::start_in_with_env(&dir, args, vars)?;
        server.data = Some(data);
        Ok(server)
    }

    pub fn start_in_with_env(data_dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_wrapped_with_env(data_dir, &[], args, vars)
    }

    /// Starts the server through `wrapper` (a command that runs the rest of its arguments, such
    /// as `prlimit --nofile=…:… --`) on a data directory, with extra `serve` arguments.
    pub fn start_wrapped(data_dir: &Path, wrapper: &[&str], args: &[&str]) -> anyhow::Result<Self> {
        Self::start_wrapped_with_env(data_dir, wrapper, args, &[])
    }

    fn start_wrapped_with_env(
        data_dir: &Path,
        wrapper: &[&str],
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let binary = binary();
        if !binary.exists() {
            bail!("{} is missing", binary.display());
        }
        let clock_file = data_dir.join("clock-shift");
        let log_dir = tempfile::tempdir()?;
        let log_file = log_dir.path().join("server.log");
        let log = std::fs::File::create(&log_file).context("creating the server's log file")?;
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--clock-shift-file")
            .arg(&clock_file)
            .args(args);
        if !args.contains(&"--store")
            && let Some(url) = store_url(data_dir)
        {
            command.args(["--store", &url]);
        }
        let mut child = command
            .env("CREDLEDGER_LOG", "warn")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut admin_token = None;
        let base_url = loop {
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the server did not announce its address; its log:\n{}", read_log(&log_file));
            }
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("credledger listening on ") {
                        break url.trim().to_owned();
                    }
                    if let Some(start) = line.find("cl_pat_") {
                        admin_token = Some(line[start..].trim().to_owned());
                    }
                }
                Some(Err(error)) => bail!("reading the server's output: {error}"),
                None => bail!("the server exited before listening; its log:\n{}", read_log(&log_file)),
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child,
            base_url,
            admin_token,
            data: None,
            data_dir: data_dir.to_owned(),
            clock_file,
            log_file,
            _log_dir: log_dir,
        })
    }

    /// What the server has written to its standard error so far.
    pub fn log(&self) -> String {
        read_log(&self.log_file)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Moves the server's clock `seconds` ahead of real time (0 puts it back).
    pub fn shift_clock(&self, seconds: i64) {
        std::fs::write(&self.clock_file, seconds.to_string()).expect("writing the clock file");
    }

    /// A client authenticated as the server admin.
    pub fn admin(&self) -> Client {
        Client::new(self, self.admin_token.as_deref().expect("the first start printed an admin token"))
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(self, token)
    }

    /// Sends SIGTERM and waits for a clean exit.
    /// The server process's id (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the server did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The test failed: its output (captured by the test harness, shown for failures only)
        // gets the server's log.
        if std::thread::panicking() {
            eprintln!("--- log of the server at {} ---\n{}--- end of the log ---", self.base_url, self.log());
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| format!("(cannot read {}: {error})\n", path.display()))
}

/// An HTTP response reduced to what tests look at.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Reply {
    /// The problem+json `code` of an error reply.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// A client of one server with one bearer token (or none).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
    user_agent: Option<String>,
    forwarded_for: Option<String>,
}

impl Client {
    pub fn new(server: &Server, token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: server.base_url.clone(),
            token: Some(token.to_owned()),
            user_agent: None,
            forwarded_for: None,
        }
    }

    pub fn anonymous(server: &Server) -> Self {
        Self { token: None, ..Self::new(server, "") }
    }

    #[must_use]
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = Some(user_agent.to_owned());
        self
    }

    #[must_use]
    pub fn with_forwarded_for(mut self, ip: &str) -> Self {
        self.forwarded_for = Some(ip.to_owned());
        self
    }

    /// Sends a request; `body` is sent as JSON when present.
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(user_agent) = &self.user_agent {
            request = request.header("user-agent", user_agent);
        }
        if let Some(ip) = &self.forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("request sent")).await
    }

    /// Sends raw bytes with a content type, for malformed-input tests.
    pub async fn send_raw(&self, method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base_url)).body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        into_reply(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(body)).await
    }

    /// A POST without a body (disable, enable, roll without options).
    pub async fn post_empty(&self, path: &str) -> Reply {
        self.send("POST", path, None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None).await
    }

    /// Creates an organization (as the server admin) and returns (org id, owner member id, owner PAT).
    pub async fn create_org(&self, name: &str, owner_email: &str) -> (String, String, String) {
        let reply = self.post("/v1/orgs", json!({ "name": name, "ownerEmail": owner_email })).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        (
            reply.body["id"].as_str().expect("id").to_owned(),
            reply.body["owner"]["id"].as_str().expect("owner id").to_owned(),
            reply.body["ownerToken"].as_str().expect("owner token").to_owned(),
        )
    }

    /// Creates a machine token and returns (token id, plaintext).
    pub async fn create_token(&self, org: &str, body: Value) -> (String, String) {
        let reply = self.post(&format!("/v1/machine-tokens/{org}"), body).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        (reply.body["id"].as_str().expect("id").to_owned(), reply.body["token"].as_str().expect("token").to_owned())
    }

    /// Adds a member and returns its id.
    pub async fn add_member(&self, org: &str, email: &str, role: &str) -> String {
        let reply = self.post(&format!("/v1/orgs/{org}/members"), json!({ "email": email, "role": role })).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.body["id"].as_str().expect("id").to_owned()
    }

    /// Adds a member and returns its id and its initial PAT (shown once, in the answer).
    pub async fn add_member_with_token(&self, org: &str, email: &str, role: &str) -> (String, String) {
        let reply = self.post(&format!("/v1/orgs/{org}/members"), json!({ "email": email, "role": role })).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        (
            reply.body["id"].as_str().expect("id").to_owned(),
            reply.body["initialToken"].as_str().expect("initial token").to_owned(),
        )
    }

    /// Creates a PAT for the caller's own member and returns (token id, plaintext).
    pub async fn create_pat(&self, org: &str, member: &str) -> (String, String) {
        let reply = self.post(&format!("/v1/orgs/{org}/members/{member}/tokens"), json!({ "name": "laptop" })).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        (reply.body["id"].as_str().expect("id").to_owned(), reply.body["token"].as_str().expect("token").to_owned())
    }
}

async fn into_reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bytes = response.bytes().await.expect("body read");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    Reply { status, content_type, body }
}

/// Set by a test binary whose tests need the embedded store whatever the run's backend (they edit
/// the log's file behind the server's back).
static SQLITE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every server this test binary starts use the embedded SQLite store.
pub fn sqlite_only() {
    SQLITE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this run's servers use PostgreSQL (`CREDLEDGER_TEST_STORE=postgres`), each a fresh
/// database of the throwaway test cluster; otherwise the embedded store in the data directory.
pub fn on_postgres() -> bool {
    std::env::var("CREDLEDGER_TEST_STORE").is_ok_and(|store| store == "postgres")
        && !SQLITE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
}

/// The PostgreSQL URL of the data directory's ledger, created on first use and kept in the
/// directory (so a restart finds it); `None` for the embedded store.
pub fn store_url(data_dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let kept = data_dir.join("test-store-url");
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return Some(url);
    }
    let url = fresh_database();
    std::fs::create_dir_all(data_dir).expect("creating the data directory");
    std::fs::write(&kept, &url).expect("keeping the store URL");
    Some(url)
}

/// A new, empty database on the throwaway test cluster.
pub fn fresh_database() -> String {
    let server = credledger_store::testing::server_url();
    let name = format!("credledger_e2e_{}", uuid::Uuid::new_v4().simple());
    psql(&format!("{server}/postgres"), &format!("CREATE DATABASE {name}"));
    format!("{server}/{name}")
}

/// Runs one statement with `psql` and returns its unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> String {
    let output = Command::new(credledger_store::testing::client_binary())
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("running psql");
    assert!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("psql output is UTF-8")
}

/// (position, envelope bytes, leaf hash) of every event of the server's log, read beside the
/// server from its SQLite file or its PostgreSQL database.
pub fn raw_log(data_dir: &Path) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let url = store_url(data_dir).unwrap_or_else(|| format!("sqlite://{}", data_dir.join("events.db").display()));
    raw_log_of(&url)
}

/// (position, envelope bytes, leaf hash) of every event of the log a store URL names.
pub fn raw_log_of(url: &str) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let connection = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("opening the log");
        let mut statement =
            connection.prepare("SELECT position, envelope, leaf_hash FROM events ORDER BY position").expect("query");
        return statement
            .query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?, row.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows read");
    }
    let sql = "SELECT position, encode(envelope, 'hex'), encode(leaf_hash, 'hex') FROM events ORDER BY position";
    psql(url, sql)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = line.split('|');
            let mut next = || fields.next().expect("three columns");
            let position = next().parse().expect("a position");
            (position, hex::decode(next()).expect("hex"), hex::decode(next()).expect("hex"))
        })
        .collect()
}

/// Every event of the server's log, read beside the server.
pub fn log_events(data_dir: &Path) -> Vec<Value> {
    raw_log(data_dir)
        .into_iter()
        .map(|(_, envelope, _)| serde_json::from_slice(&envelope).expect("envelope JSON"))
        .collect()
}

/// How many events the server's log holds.
pub fn log_len(data_dir: &Path) -> usize {
    log_events(data_dir).len()
}

/// The number of events in the log other than the ledger's own checkpoints, which the server
/// appends by itself about once a second after any other event.
pub fn commands_len(data_dir: &Path) -> usize {
    log_events(data_dir).iter().filter(|event| event["type"] != "CheckpointSigned").count()
}

// OAuth2: the token and introspection endpoints take forms and answer RFC 6749 documents.

/// The User-Agent of every request to the OAuth2 endpoints made through [`Server::oauth_form`].
pub const OAUTH_USER_AGENT: &str = "release-pipeline/1.0 (credledger tests)";

/// An answer of an OAuth2 endpoint, headers kept: they say `no-store`, and a 401 or a 429 carries
/// a challenge or a `Retry-After`.
#[derive(Debug, Clone)]
pub struct OAuthReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl OAuthReply {
    /// A header's value, empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The RFC 6749 §5.2 `error` of a refusal.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

/// How a client authenticates at the token and introspection endpoints.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    /// `client_secret_basic`: HTTP Basic with the client id and secret.
    Basic { id: &'a str, secret: &'a str },
    /// `client_secret_post`: `client_id` and `client_secret` form fields.
    Post { id: &'a str, secret: &'a str },
    /// No client authentication.
    None,
}

impl Server {
    /// POSTs `parameters` as `application/x-www-form-urlencoded` to an OAuth2 endpoint.
    pub async fn oauth_form(&self, path: &str, auth: ClientAuth<'_>, parameters: &[(&str, &str)]) -> OAuthReply {
        let mut fields: Vec<(&str, &str)> = parameters.to_vec();
        let mut request = reqwest::Client::new().post(self.url(path)).header("user-agent", OAUTH_USER_AGENT);
        match auth {
            ClientAuth::Basic { id, secret } => request = request.basic_auth(id, Some(secret)),
            ClientAuth::Post { id, secret } => fields.extend([("client_id", id), ("client_secret", secret)]),
            ClientAuth::None => {}
        }
        into_oauth_reply(request.form(&fields).send().await.expect("request sent")).await
    }

    /// POSTs a raw body with a content type and, optionally, HTTP Basic client authentication.
    pub async fn oauth_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        basic: Option<(&str, &str)>,
    ) -> OAuthReply {
        let mut request = reqwest::Client::new()
            .post(self.url(path))
            .header("user-agent", OAUTH_USER_AGENT)
            .header("content-type", content_type)
            .body(body);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        into_oauth_reply(request.send().await.expect("request sent")).await
    }

    /// Runs the client_credentials grant (HTTP Basic) and returns the access token; any other
    /// answer fails the test.
    pub async fn access_token(&self, client_id: &str, secret: &str, scope: Option<&str>) -> String {
        let mut parameters = vec![("grant_type", "client_credentials")];
        parameters.extend(scope.map(|scope| ("scope", scope)));
        let reply = self.oauth_form("/oauth2/token", ClientAuth::Basic { id: client_id, secret }, &parameters).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body["access_token"].as_str().expect("access_token").to_owned()
    }
}

async fn into_oauth_reply(response: reqwest::Response) -> OAuthReply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body read");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    OAuthReply { status, headers, body }
}

/// A service credential as its creation showed it.
#[derive(Debug, Clone)]
pub struct ServiceCredential {
    pub id: String,
    pub client_id: String,
    /// Shown once, in the creation's answer.
    pub secret: String,
}

impl Client {
    /// Creates a service credential (`body` holds the name and any options).
    pub async fn create_service_credential(&self, org: &str, body: Value) -> ServiceCredential {
        let reply = self.post(&format!("/v1/service-credentials/{org}"), body).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let text =
            |field: &str| reply.body[field].as_str().unwrap_or_else(|| panic!("no {field}: {reply:?}")).to_owned();
        ServiceCredential { id: text("id"), client_id: text("clientId"), secret: text("clientSecret") }
    }
}

/// The events of one stream and type, in log order.
pub fn stream_events(data_dir: &Path, stream: &str, event_type: &str) -> Vec<Value> {
    log_events(data_dir).into_iter().filter(|e| e["stream"] == stream && e["type"] == event_type).collect()
}

/// The claims of a JWT, decoded without any verification.
pub fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

/// The header of a JWT, decoded without any verification.
pub fn jwt_header(token: &str) -> Value {
    jwt_part(token, 0)
}

fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(index).unwrap_or_else(|| panic!("not a JWT: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON object")
}

/// Polls `check` until it returns `Some`, or fails the test after `within`.
pub async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What keeps `reply` from being this RFC 6749 §5.2 refusal (status, `error`, a description and
/// nothing else, `no-store`, a Basic challenge on 401), if anything.
pub fn oauth_error_mismatch(reply: &OAuthReply, status: u16, error: &str) -> Option<String> {
    let fields: Option<Vec<&String>> = reply.body.as_object().map(|object| object.keys().collect());
    let described = reply.body["error_description"].as_str().is_some_and(|text| !text.is_empty());
    let problem = if (reply.status, reply.error()) != (status, error) {
        format!("expected {status} {error}")
    } else if fields.is_none_or(|fields| fields.len() != 2) || !described {
        "the body is not exactly {error, error_description}".to_owned()
    } else if reply.header("cache-control") != "no-store" {
        "no `Cache-Control: no-store`".to_owned()
    } else if status == 401 && !reply.header("www-authenticate").starts_with("Basic") {
        "a 401 without a Basic challenge".to_owned()
    } else {
        return None;
    };
    Some(format!("{problem}: {} {} {:?}", reply.status, reply.body, reply.headers))
}

#[track_caller]
pub fn assert_oauth_error(reply: &OAuthReply, status: u16, error: &str) {
    if let Some(mismatch) = oauth_error_mismatch(reply, status, error) {
        panic!("{mismatch}");
    }
}

// The verifiable ledger: checkpoints, and the offline and monitor verifier of the CLI.

impl Client {
    /// Polls `GET /v1/ledger/checkpoint` until the latest checkpoint covers at least `size`
    /// events, and returns it. Poll as a human: their requests record no event, so the wait does
    /// not feed itself.
    pub async fn checkpoint_covering(&self, size: u64) -> Value {
        eventually(&format!("a checkpoint of at least {size} events"), Duration::from_secs(10), async || {
            let reply = self.get("/v1/ledger/checkpoint").await;
            (reply.status == 200 && reply.body["treeSize"].as_u64() >= Some(size)).then_some(reply.body)
        })
        .await
    }
}

/// The tree size a checkpoint must cover to cover every event recorded so far: the position of
/// the last event that is not itself a checkpoint (read from the log's file, so no request).
pub fn last_event_to_sign(data_dir: &Path) -> u64 {
    log_events(data_dir)
        .iter()
        .rev()
        .find(|event| event["type"] != "CheckpointSigned")
        .and_then(|event| event["position"].as_u64())
        .unwrap_or(0)
}

/// One run of the `credledger` binary.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// The `-o json` document: the result on stdout, or the failure on stderr.
    pub fn document(&self) -> Value {
        let text = if self.code == 0 { &self.stdout } else { &self.stderr };
        serde_json::from_str(text).unwrap_or_else(|error| panic!("not a JSON document ({error}): {self:?}"))
    }

    /// The `-o json` failure document of a verification that must have failed (exit code 1)
    /// for the reason `code`.
    #[track_caller]
    pub fn failure(&self, code: &str) -> Value {
        assert_eq!(self.code, 1, "the verification must fail: {self:?}");
        let document = self.document();
        assert_eq!((document["status"].as_str(), document["code"].as_str()), (Some("failed"), Some(code)), "{self:?}");
        document
    }
}

/// Runs the `credledger` binary with nothing of the test's environment but `vars` (no saved
/// login, no configuration).
pub fn run_cli(args: &[&str], vars: &[(&str, &str)]) -> CliRun {
    let output = Command::new(binary())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CREDLEDGER_CONFIG_DIR", "/nonexistent/credledger-tests")
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("the credledger binary runs");
    CliRun {
        code: output.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

// Certificates for TLS tests, made with the openssl command as an operator would.

fn openssl(args: &[&str], dir: &Path) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A throwaway certificate authority (`{name}-ca.pem`) and a server certificate it issued for
/// 127.0.0.1 (`{name}-cert.pem`, `{name}-key.pem`), as an operator's CA or ACME would: the CA is
/// what clients trust. Returns the CA's path.
pub fn issue_certificate(dir: &Path, name: &str) -> PathBuf {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca-key.pem"));
    let (cert, key, request) = (format!("{name}-cert.pem"), format!("{name}-key.pem"), format!("{name}.csr"));
    let mut args = vec!["req", "-x509", "-days", "2", "-subj", "/CN=credledger test CA"];
    args.extend(ec);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    args.extend(["-keyout", &ca_key, "-out", &ca]);
    openssl(&args, dir);
    let mut args = vec!["req", "-subj", "/CN=127.0.0.1"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &request]);
    openssl(&args, dir);
    let extensions = format!("{name}.ext");
    std::fs::write(
        dir.join(&extensions),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &["x509", "-req", "-days", "2", "-in", &request, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial"]
            .into_iter()
            .chain(["-extfile", &extensions, "-out", &cert])
            .collect::<Vec<_>>(),
        dir,
    );
    dir.join(ca)
}
