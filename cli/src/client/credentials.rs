//! Which credential the CLI uses, in this order (DESIGN.md §9):
//!
//! 1. `CREDLEDGER_CLIENT_ID` + `CREDLEDGER_CLIENT_SECRET`: machine mode, a client_credentials grant
//!    on each invocation (`CREDLEDGER_CLIENT_SCOPES` narrows the scopes);
//! 2. `CREDLEDGER_MACHINE_KEY`: machine mode, a freshly signed assertion exchanged for a token;
//! 3. `CREDLEDGER_TOKEN`: a PAT or machine token;
//! 4. the human's saved login (`credledger login`).
//!
//! Machine modes never read or write a file: a CI job needs nothing but its environment.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credledger_domain::machine_key::MachineKey;
use ed25519_dalek::Signer as _;

use super::{CliError, CliResult, read};

pub enum Credentials {
    /// An OAuth2 client (`client_id` + secret): the client_credentials grant.
    Client {
        client_id: String,
        client_secret: String,
        scopes: Option<String>,
    },
    MachineKey(MachineKey),
    Token(String),
    SavedLogin(SavedLogin),
}

/// What `credledger login` remembers: the token, the server it was checked with, and the
/// organization it belongs to (so that commands need not ask the server each time).
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedLogin {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

impl std::fmt::Debug for SavedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedLogin").field("url", &self.url).field("org_id", &self.org_id).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
}

impl Credentials {
    pub fn from_environment() -> CliResult<Self> {
        match (variable("CREDLEDGER_CLIENT_ID"), variable("CREDLEDGER_CLIENT_SECRET")) {
            (Some(client_id), Some(client_secret)) => {
                return Ok(Self::Client { client_id, client_secret, scopes: variable("CREDLEDGER_CLIENT_SCOPES") });
            }
            // Half a machine mode is a broken CI secret, not a reason to act as someone else.
            (Some(_), None) | (None, Some(_)) => {
                return Err(CliError::usage("CREDLEDGER_CLIENT_ID and CREDLEDGER_CLIENT_SECRET must be set together"));
            }
            (None, None) => {}
        }
        if let Some(key) = variable("CREDLEDGER_MACHINE_KEY") {
            let key =
                MachineKey::parse(&key).map_err(|error| CliError::usage(format!("CREDLEDGER_MACHINE_KEY: {error}")))?;
            return Ok(Self::MachineKey(key));
        }
        if let Some(token) = variable("CREDLEDGER_TOKEN") {
            return Ok(Self::Token(token));
        }
        match saved_login() {
            Some(login) => Ok(Self::SavedLogin(login)),
            None => Err(CliError::auth(
                "no credential: run `credledger login`, or set CREDLEDGER_TOKEN, CREDLEDGER_MACHINE_KEY, \
                 or CREDLEDGER_CLIENT_ID and CREDLEDGER_CLIENT_SECRET",
            )),
        }
    }

    /// Which mode is in use, for `-v` (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Self::Client { client_id, .. } => format!("machine mode: client credentials of {client_id}"),
            Self::MachineKey(key) => format!("machine mode: machine key of machine {}", key.machine_id),
            Self::Token(_) => "CREDLEDGER_TOKEN".to_owned(),
            Self::SavedLogin(_) => "the saved login".to_owned(),
        }
    }

    /// The organization the credential belongs to, when it says so without a request: a machine
    /// key carries it; a saved login remembers it for the server it was checked with.
    pub fn org(&self, base: &str) -> Option<String> {
        match self {
            Self::MachineKey(key) => Some(key.org_id.to_string()),
            Self::SavedLogin(login) if login.url.as_deref().map(|url| url.trim_end_matches('/')) == Some(base) => {
                login.org_id.clone()
            }
            _ => None,
        }
    }

    /// The bearer value for the API: fetched from the token endpoint in machine modes. With
    /// `verbose`, the exchange is told on standard error (never a secret).
    pub async fn bearer(&self, http: &reqwest::Client, base: &str, verbose: bool) -> CliResult<String> {
        let mut token_endpoint = format!("{base}/oauth2/token");
        if let Self::MachineKey(_) = self {
            // The assertion's audience is the token endpoint as the server names it, which may
            // differ from CREDLEDGER_URL (localhost against 127.0.0.1, a proxy in front).
            let metadata_url = format!("{base}/.well-known/oauth-authorization-server");
            if verbose {
                eprintln!("credledger: GET {metadata_url} (the token endpoint, the assertion's audience)");
            }
            let metadata = http.get(metadata_url).send().await;
            if let Ok(response) = metadata
                && let Ok(metadata) = read(response).await
                && let Some(endpoint) = metadata["token_endpoint"].as_str()
            {
                endpoint.clone_into(&mut token_endpoint);
            }
        }
        let form: Vec<(&str, String)> = match self {
            Self::Token(token) => return Ok(token.clone()),
            Self::SavedLogin(login) => return Ok(login.token.clone()),
            Self::Client { scopes, .. } => {
                let mut form = vec![("grant_type", "client_credentials".to_owned())];
                if let Some(scopes) = scopes {
                    form.push(("scope", scopes.clone()));
                }
                form
            }
            Self::MachineKey(key) => vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()),
                ("assertion", assertion(key, &token_endpoint)),
            ],
        };
        if verbose {
            match self {
                Self::Client { client_id, scopes, .. } => eprintln!(
                    "credledger: POST {base}/oauth2/token grant_type=client_credentials client_id={client_id} (HTTP Basic) scope={}",
                    scopes.as_deref().unwrap_or("(the credential's)")
                ),
                _ => eprintln!(
                    "credledger: POST {base}/oauth2/token grant_type=jwt-bearer, an assertion signed by the machine key (audience {token_endpoint}, valid 60 s)"
                ),
            }
        }
        let mut request = http.post(format!("{base}/oauth2/token")).form(&form);
        if let Self::Client { client_id, client_secret, .. } = self {
            request = request.basic_auth(client_id, Some(client_secret));
        }
        let response = request
            .send()
            .await
            .map_err(|e| CliError::server(format!("cannot reach {base}: {}", super::causes(&e))))?;
        let body = read(response).await.map_err(|mut error| {
            // A refused token request (4xx) is an authentication failure, whatever its status; a
            // server failure stays one, so pipelines retry it.
            if error.code == super::exit::USAGE {
                error.code = super::exit::AUTH;
            }
            error
        })?;
        let token = body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::server("the token endpoint answered without an access_token"))?;
        if verbose {
            eprintln!(
                "credledger: got an access token ({}, scope {}, expires in {} s)",
                body["token_type"].as_str().unwrap_or("Bearer"),
                body["scope"].as_str().unwrap_or("-"),
                body["expires_in"].as_u64().map_or_else(|| "?".to_owned(), |s| s.to_string()),
            );
        }
        Ok(token)
    }
}

/// The `org` claim of an access token the server just issued (read, not verified: the server is
/// the one that will verify it).
pub fn access_token_org(token: &str) -> Option<String> {
    let claims = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    claims["org"].as_str().filter(|org| !org.is_empty()).map(str::to_owned)
}

/// A one-minute RFC 7523 assertion signed with the machine's key.
fn assertion(key: &MachineKey, audience: &str) -> String {
    let signing = ed25519_dalek::SigningKey::from_bytes(key.seed());
    let now = chrono::Utc::now().timestamp();
    let machine = key.machine_id.to_string();
    let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT" });
    let claims = serde_json::json!({
        "iss": machine, "sub": machine, "aud": audience,
        "iat": now, "exp": now + 60, "jti": uuid::Uuid::now_v7().to_string(),
    });
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = signing.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    token
}

/// Whether a machine credential is in the environment: then no file is read or written.
pub fn machine_mode() -> bool {
    ["CREDLEDGER_CLIENT_ID", "CREDLEDGER_CLIENT_SECRET", "CREDLEDGER_MACHINE_KEY"]
        .iter()
        .any(|name| variable(name).is_some())
}

/// The user's credledger configuration directory (`CREDLEDGER_CONFIG_DIR` overrides it).
pub fn config_dir() -> Option<PathBuf> {
    variable("CREDLEDGER_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::config_dir().map(|dir| dir.join("credledger")))
}

fn login_file() -> Option<PathBuf> {
    config_dir().map(|dir| dir.join("login"))
}

/// The saved login: a JSON document, or (as older versions wrote it) the bare token.
pub fn saved_login() -> Option<SavedLogin> {
    let text = std::fs::read_to_string(login_file()?).ok()?;
    let text = text.trim();
    let login = if text.starts_with('{') {
        serde_json::from_str(text).ok()?
    } else {
        SavedLogin { token: text.to_owned(), ..SavedLogin::default() }
    };
    Some(login).filter(|login| !login.token.is_empty())
}

/// Stores a PAT, its server and its organization for later invocations, readable only by the
/// user (0600).
pub fn save_login(login: &SavedLogin) -> CliResult<PathBuf> {
    let path = login_file().ok_or_else(|| CliError::usage("no configuration directory: set CREDLEDGER_CONFIG_DIR"))?;
    let text = serde_json::to_string_pretty(login).map_err(|e| CliError::server(e.to_string()))?;
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

pub fn remove_login() -> CliResult<bool> {
    let Some(path) = login_file() else { return Ok(false) };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(CliError::server(format!("removing {}: {error}", path.display()))),
    }
}

/// Writes a file only its owner can read, replacing an existing one only when `path` is the
/// login file (keys are never overwritten: see `create_private`).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> CliResult<()> {
    let io = |error: std::io::Error| CliError::server(format!("writing {}: {error}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, bytes).map_err(io)?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(io)?;
    Ok(())
}

/// Creates a new file only its owner can read, refusing to overwrite one.
pub fn create_private(path: &std::path::Path, bytes: &[u8]) -> CliResult<()> {
    let io = |error: std::io::Error| CliError::usage(format!("writing {}: {error}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, bytes).map_err(io)
}
