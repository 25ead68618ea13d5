//! The scenarios: which request each connection sends next, and whether an answer counts as a
//! success. Everything a scenario needs from the server (an access token to introspect, the
//! token endpoint an assertion is addressed to) is fetched once in `Workload::prepare`, before the
//! load starts, and a first request proves the setup works.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use clap::ValueEnum;
use credledger_domain::machine_key::MachineKey;
use ed25519_dalek::{Signer as _, SigningKey};
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;

use crate::http::{self, Target};

/// What the load consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `GET /healthz`: no authentication, nothing recorded; the ceiling of HTTP on this machine
    /// (server and load generator included), against which the other figures read.
    Healthz,
    /// `GET /v1/projects/{orgId}` with a machine token, the next of the setup's `machineTokens` on
    /// each request: each request records a durable CredentialUsed.
    MachineTokenGet,
    /// `POST /oauth2/token`, grant_type=client_credentials, HTTP Basic client authentication.
    ClientCredentials,
    /// `POST /oauth2/token`, the jwt-bearer grant with a fresh EdDSA assertion per request.
    JwtBearer,
    /// `POST /oauth2/introspect` of a machine token, authenticated as a service credential.
    IntrospectMachineToken,
    /// `POST /oauth2/introspect` of an access token (a JWT), authenticated as a service credential.
    IntrospectJwt,
    /// `--peer` only: introspection of an opaque access token (oidc-provider refuses to introspect
    /// its JWT access tokens).
    IntrospectOpaque,
    /// 99 % `machine-token-get` (the same rotation), 1 % lifecycle commands with an owner PAT
    /// (create a machine token, then revoke it).
    Mixed,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::MachineTokenGet => "machine-token-get",
            Self::ClientCredentials => "client-credentials",
            Self::JwtBearer => "jwt-bearer",
            Self::IntrospectMachineToken => "introspect-machine-token",
            Self::IntrospectJwt => "introspect-jwt",
            Self::IntrospectOpaque => "introspect-opaque",
            Self::Mixed => "mixed",
        }
    }
}

/// The setup file run.sh writes: the server's URL and the credentials it created. For `--peer`,
/// the JSON line the peer prints when it starts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setup {
    pub url: String,
    org_id: Option<String>,
    machine_token: Option<String>,
    /// The machine tokens `machine-token-get` and `mixed` rotate through, one per request; without
    /// them, `machineToken` alone.
    #[serde(default)]
    machine_tokens: Vec<String>,
    owner_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    machine_key: Option<String>,
    /// The scope requested with client_credentials.
    scope: Option<String>,
    token_path: Option<String>,
    introspect_path: Option<String>,
    /// The peer's resource indicator whose access tokens are opaque.
    opaque_resource: Option<String>,
}

impl Setup {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let setup: Self = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        // Every request's target is built from these: check them once, here.
        for endpoint in [setup.token_path(), setup.introspect_path()] {
            ensure!(
                endpoint.starts_with('/') && endpoint.parse::<hyper::Uri>().is_ok(),
                "{endpoint} is not an absolute path"
            );
        }
        if let Some(org) = &setup.org_id {
            uuid::Uuid::parse_str(org).with_context(|| format!("orgId {org} is not a uuid"))?;
        }
        Ok(setup)
    }

    fn field<'a>(value: Option<&'a String>, name: &str) -> anyhow::Result<&'a str> {
        value.map(String::as_str).with_context(|| format!("the setup file has no `{name}`, which this scenario needs"))
    }

    /// The `Authorization` values of the machine tokens to rotate through: `machineTokens`, or
    /// `machineToken` when the setup has no list.
    fn machine_token_bearers(&self) -> anyhow::Result<Vec<HeaderValue>> {
        if self.machine_tokens.is_empty() {
            return Ok(vec![bearer(Self::field(self.machine_token.as_ref(), "machineToken")?)?]);
        }
        self.machine_tokens.iter().map(|token| bearer(token)).collect()
    }

    fn token_path(&self) -> &str {
        self.token_path.as_deref().unwrap_or("/oauth2/token")
    }

    fn introspect_path(&self) -> &str {
        self.introspect_path.as_deref().unwrap_or("/oauth2/introspect")
    }

    fn client_basic(&self) -> anyhow::Result<HeaderValue> {
        let id = Self::field(self.client_id.as_ref(), "clientId")?;
        let secret = Self::field(self.client_secret.as_ref(), "clientSecret")?;
        // RFC 6749 §2.3.1: each part is form-urlencoded before they are joined.
        let encode = |part: &str| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
        let credentials = STANDARD.encode(format!("{}:{}", encode(id), encode(secret)));
        Ok(HeaderValue::from_str(&format!("Basic {credentials}"))?)
    }

    fn client_credentials_body(&self, resource: Option<&str>) -> Bytes {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        if let Some(resource) = resource {
            form.append_pair("resource", resource);
        }
        Bytes::from(form.finish())
    }
}

/// Which class of request a connection sent, so that `mixed` can tell the lifecycle commands apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    CreateToken,
    RevokeToken,
}

/// What one connection remembers between its requests.
#[derive(Debug)]
pub struct ConnectionState {
    index: u64,
    sent: u64,
    /// `mixed`: the token this connection created and will revoke next.
    pending_token: Option<uuid::Uuid>,
}

impl ConnectionState {
    pub fn new(index: usize) -> Self {
        Self { index: index as u64, sent: 0, pending_token: None }
    }

    /// The item of a rotation this request uses: each connection walks the whole list, one item
    /// per request, from an offset of its own (so that connections do not move in step), with no
    /// state shared between them.
    fn next_of<'a, T>(&self, items: &'a [T]) -> Option<&'a T> {
        let len = (items.len() as u64).max(1);
        // A multiplicative hash scatters the connections' starting points over the list.
        let offset = self.index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        items.get(((offset + self.sent) % len) as usize)
    }
}

/// Whether a 2xx answer is a success: an introspection that says `active: false` means the
/// benchmark measured a refusal, not the work it claims to measure.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Success,
    ActiveToken,
}

/// What a scenario sends. A list of `Authorization` values (`authorizations`, `read_bearers`) is
/// rotated through, one per request; an empty one sends no `Authorization` header.
#[derive(Debug)]
enum Plan {
    Get { path: String, authorizations: Vec<HeaderValue> },
    Form { path: String, authorization: Option<HeaderValue>, body: Bytes, expect: Expect },
    JwtBearer { path: String, key: SigningKey, machine_id: String, audience: String },
    Mixed { read_path: String, read_bearers: Vec<HeaderValue>, tokens_path: String, owner_authorization: HeaderValue },
}

/// A scenario ready to run: everything its requests need, prepared once.
#[derive(Debug)]
pub struct Workload {
    plan: Plan,
    /// What the preparation learnt that the report should say (e.g. the access token's `alg`).
    pub notes: serde_json::Map<String, serde_json::Value>,
}

impl Workload {
    /// Builds the scenario's requests from the setup, fetches what they need from the server, and
    /// sends one request to prove the setup works before any load.
    pub async fn prepare(scenario: Scenario, setup: &Setup, peer: bool, target: &Target) -> anyhow::Result<Self> {
        let peer_scenarios = [Scenario::ClientCredentials, Scenario::IntrospectOpaque];
        if peer {
            ensure!(peer_scenarios.contains(&scenario), "--peer runs only client-credentials and introspect-opaque");
        } else {
            ensure!(scenario != Scenario::IntrospectOpaque, "introspect-opaque is a --peer scenario");
        }
        let mut notes = serde_json::Map::new();
        let plan = match scenario {
            Scenario::Healthz => Plan::Get { path: "/healthz".to_owned(), authorizations: Vec::new() },
            Scenario::MachineTokenGet => {
                let authorizations = setup.machine_token_bearers()?;
                notes.insert("machineTokens".into(), authorizations.len().into());
                Plan::Get { path: projects_path(setup)?, authorizations }
            }
            Scenario::ClientCredentials => Plan::Form {
                path: setup.token_path().to_owned(),
                authorization: Some(setup.client_basic()?),
                body: setup.client_credentials_body(None),
                expect: Expect::Success,
            },
            Scenario::JwtBearer => {
                let key = MachineKey::parse(Setup::field(setup.machine_key.as_ref(), "machineKey")?)
                    .map_err(|error| anyhow::anyhow!("machineKey: {error}"))?;
                Plan::JwtBearer {
                    path: setup.token_path().to_owned(),
                    key: SigningKey::from_bytes(key.seed()),
                    machine_id: key.machine_id.to_string(),
                    audience: token_endpoint(target).await?,
                }
            }
            Scenario::IntrospectMachineToken => Plan::Form {
                path: setup.introspect_path().to_owned(),
                authorization: Some(setup.client_basic()?),
                body: token_form(Setup::field(setup.machine_token.as_ref(), "machineToken")?),
                expect: Expect::ActiveToken,
            },
            Scenario::IntrospectJwt | Scenario::IntrospectOpaque => {
                let resource = if scenario == Scenario::IntrospectOpaque {
                    Some(Setup::field(setup.opaque_resource.as_ref(), "opaqueResource")?)
                } else {
                    None
                };
                let token = fetch_access_token(setup, target, resource).await?;
                notes.insert("accessTokenFormat".into(), access_token_format(&token).into());
                Plan::Form {
                    path: setup.introspect_path().to_owned(),
                    authorization: Some(setup.client_basic()?),
                    body: token_form(&token),
                    expect: Expect::ActiveToken,
                }
            }
            Scenario::Mixed => {
                let org = Setup::field(setup.org_id.as_ref(), "orgId")?;
                let read_bearers = setup.machine_token_bearers()?;
                notes.insert("machineTokens".into(), read_bearers.len().into());
                Plan::Mixed {
                    read_path: projects_path(setup)?,
                    read_bearers,
                    tokens_path: format!("/v1/machine-tokens/{org}"),
                    owner_authorization: bearer(Setup::field(setup.owner_token.as_ref(), "ownerToken")?)?,
                }
            }
        };
        if scenario == Scenario::ClientCredentials {
            let token = fetch_access_token(setup, target, None).await?;
            notes.insert("accessTokenFormat".into(), access_token_format(&token).into());
        }
        let workload = Self { plan, notes };
        workload.probe(target).await?;
        Ok(workload)
    }

    /// One request before the load: a setup mistake fails here, loudly, instead of being measured.
    async fn probe(&self, target: &Target) -> anyhow::Result<()> {
        let mut state = ConnectionState::new(0);
        let (kind, request) = self.request(&target.host, &mut state);
        let (status, body) = http::once(target, request).await?;
        if !self.judge(kind, status, &body, &mut state) {
            bail!("the first request failed ({status}): {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }

    /// The next request of a connection.
    pub fn request(&self, host: &HeaderValue, state: &mut ConnectionState) -> (Kind, Request<Full<Bytes>>) {
        state.sent += 1;
        let builder = Request::builder().header(HOST, host.clone());
        let (kind, request) = match &self.plan {
            Plan::Get { path, authorizations } => {
                let mut builder = builder.uri(path.as_str());
                if let Some(authorization) = state.next_of(authorizations) {
                    builder = builder.header(AUTHORIZATION, authorization.clone());
                }
                (Kind::Read, builder.body(empty()))
            }
            Plan::Form { path, authorization, body, .. } => {
                let mut builder = builder.method(Method::POST).uri(path.as_str()).header(CONTENT_TYPE, FORM);
                if let Some(authorization) = authorization {
                    builder = builder.header(AUTHORIZATION, authorization.clone());
                }
                (Kind::Read, builder.body(Full::new(body.clone())))
            }
            Plan::JwtBearer { path, key, machine_id, audience } => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
                form.append_pair("assertion", &assertion(key, machine_id, audience));
                let request = builder.method(Method::POST).uri(path.as_str()).header(CONTENT_TYPE, FORM);
                (Kind::Read, request.body(Full::new(Bytes::from(form.finish()))))
            }
            Plan::Mixed { read_path, read_bearers, tokens_path, owner_authorization } => {
                // One request in a hundred is a lifecycle command; connections are offset so that
                // they do not all send theirs at the same moment.
                if (state.sent + state.index).is_multiple_of(100) {
                    lifecycle_request(builder.header(AUTHORIZATION, owner_authorization.clone()), tokens_path, state)
                } else {
                    let mut request = builder.uri(read_path.as_str());
                    if let Some(authorization) = state.next_of(read_bearers) {
                        request = request.header(AUTHORIZATION, authorization.clone());
                    }
                    (Kind::Read, request.body(empty()))
                }
            }
        };
        // Every part was checked before: the paths and the organization id when the setup was read,
        // the header values when the workload was prepared, a token id when its answer was judged.
        (kind, request.expect("the request is built from validated parts"))
    }

    /// Whether an answer is a success; `mixed` also learns which token to revoke next.
    pub fn judge(&self, kind: Kind, status: StatusCode, body: &Bytes, state: &mut ConnectionState) -> bool {
        match kind {
            Kind::CreateToken => {
                state.pending_token = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|view| view["id"].as_str().and_then(|id| uuid::Uuid::parse_str(id).ok()));
                return status.is_success() && state.pending_token.is_some();
            }
            // A failed revocation is not retried: the next lifecycle command creates a token again.
            Kind::RevokeToken => state.pending_token = None,
            Kind::Read => {}
        }
        if !status.is_success() {
            return false;
        }
        match &self.plan {
            Plan::Form { expect: Expect::ActiveToken, .. } => {
                serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|answer| answer["active"] == true)
            }
            _ => true,
        }
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// `mixed`'s lifecycle command: revoke the token this connection created last, or create one.
fn lifecycle_request(
    builder: hyper::http::request::Builder,
    tokens_path: &str,
    state: &ConnectionState,
) -> (Kind, hyper::http::Result<Request<Full<Bytes>>>) {
    if let Some(id) = &state.pending_token {
        return (Kind::RevokeToken, builder.method(Method::DELETE).uri(format!("{tokens_path}/{id}")).body(empty()));
    }
    let name = format!("bench-mixed-{}-{}", state.index, state.sent);
    let body = serde_json::json!({ "name": name, "environmentHint": "bench" }).to_string();
    let request = builder.method(Method::POST).uri(tokens_path).header(CONTENT_TYPE, "application/json");
    (Kind::CreateToken, request.body(Full::new(Bytes::from(body))))
}

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("the token is not a valid header value")
}

fn token_form(token: &str) -> Bytes {
    Bytes::from(form_urlencoded::Serializer::new(String::new()).append_pair("token", token).finish())
}

fn projects_path(setup: &Setup) -> anyhow::Result<String> {
    Ok(format!("/v1/projects/{}", Setup::field(setup.org_id.as_ref(), "orgId")?))
}

/// The token endpoint the server announces (RFC 8414), which an assertion's `aud` must name.
async fn token_endpoint(target: &Target) -> anyhow::Result<String> {
    let request =
        Request::get("/.well-known/oauth-authorization-server").header(HOST, target.host.clone()).body(empty())?;
    let (status, body) = http::once(target, request).await?;
    ensure!(status.is_success(), "the server metadata answered {status}");
    let metadata: serde_json::Value = serde_json::from_slice(&body).context("the server metadata is not JSON")?;
    metadata["token_endpoint"].as_str().map(str::to_owned).context("the server metadata has no token_endpoint")
}

/// An access token from the client_credentials grant, to introspect.
async fn fetch_access_token(setup: &Setup, target: &Target, resource: Option<&str>) -> anyhow::Result<String> {
    let request = Request::post(setup.token_path())
        .header(HOST, target.host.clone())
        .header(CONTENT_TYPE, FORM)
        .header(AUTHORIZATION, setup.client_basic()?)
        .body(Full::new(setup.client_credentials_body(resource)))?;
    let (status, body) = http::once(target, request).await?;
    ensure!(status.is_success(), "the token endpoint answered {status}: {}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).context("the token answer is not JSON")?;
    answer["access_token"].as_str().map(str::to_owned).context("the token answer has no access_token")
}

/// `JWT (alg)` for a JWT access token, `opaque` otherwise: the report says what was measured.
fn access_token_format(token: &str) -> String {
    let alg = token
        .split('.')
        .next()
        .filter(|_| token.split('.').count() == 3)
        .and_then(|header| URL_SAFE_NO_PAD.decode(header).ok())
        .and_then(|header| serde_json::from_slice::<serde_json::Value>(&header).ok())
        .and_then(|header| header["alg"].as_str().map(str::to_owned));
    alg.map_or_else(|| "opaque".to_owned(), |alg| format!("JWT ({alg})"))
}

/// A fresh RFC 7523 assertion: EdDSA, `iss` = `sub` = the machine id, `aud` = the token
/// endpoint, valid for one minute, with a `jti` never used before (the server refuses replays).
fn assertion(key: &SigningKey, machine_id: &str, audience: &str) -> String {
    const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    let claims = serde_json::json!({
        "iss": machine_id,
        "sub": machine_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": uuid::Uuid::now_v7().to_string(),
    });
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}
