//! End-to-end tests of machine identities (DESIGN.md §2, §8; the envsh reference) against the
//! real binary. A CI system generates an Ed25519 key pair, the server stores only the public
//! half, and the machine exchanges short signed assertions (RFC 7523 jwt-bearer grant) for
//! 15-minute, read-only access tokens scoped to one project and one environment.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credledger_domain::machine_key::{MachineKey, MachineKeyError};
use credledger_domain::{CredentialId, OrgId};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};
use support::{Client, OAuthReply, Reply, Server, assert_oauth_error, eventually, jwt_claims, jwt_header, log_events};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const READ: &str = "credledger-api/read";
/// The User-Agent of the CI job that exchanges assertions.
const CI_AGENT: &str = "ci-runner/3.1 (credledger machines test)";
/// A fixed public URL keeps the token endpoint, and so the assertions' `aud`, across restarts.
const PUBLIC_URL: [&str; 2] = ["--public-url", "https://credledger.test"];

// Keys and assertions, made here as a CI job would make them.

fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970")
}

fn now() -> i64 {
    since_epoch().as_secs() as i64
}

/// A fresh Ed25519 key pair; only its public half ever reaches the server.
fn fresh_key() -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&unique().to_le_bytes());
    seed[8..24].copy_from_slice(&since_epoch().as_nanos().to_le_bytes());
    seed[24..28].copy_from_slice(&std::process::id().to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// The public key as the API takes it: base64url of its 32 bytes.
fn public_b64(key: &SigningKey) -> String {
    URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes())
}

/// An id no machine has.
fn unknown_id() -> String {
    format!("0190b2c4-5d6e-7f00-8a00-{:012x}", unique())
}

/// Assertion claims: `iss` = `sub` = the machine, valid for two minutes, a jti never used.
fn claims(aud: &str, machine: &str) -> Value {
    let now = now();
    let jti = format!("ci-run-{}-{}", since_epoch().as_nanos(), unique());
    json!({ "iss": machine, "sub": machine, "aud": aud, "iat": now, "exp": now + 120, "jti": jti })
}

/// `claims` with some fields replaced (or removed, for `null`).
fn changed(mut claims: Value, changes: Value) -> Value {
    let (Value::Object(fields), Value::Object(changes)) = (&mut claims, changes) else { panic!("two objects") };
    for (field, value) in changes {
        if value.is_null() {
            fields.remove(&field);
        } else {
            fields.insert(field, value);
        }
    }
    claims
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A compact JWS: Ed25519 over `base64url(header).base64url(claims)`.
fn sign(key: &SigningKey, claims: &Value) -> String {
    let input = format!("{}.{}", b64_json(&json!({ "alg": "EdDSA", "typ": "JWT" })), b64_json(claims));
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes()))
}

/// The body that registers a machine.
fn registration(name: &str, project: &str, environment: &str, public_key: &str) -> Value {
    json!({ "name": name, "project": project, "environment": environment, "publicKey": public_key })
}

// The token endpoint, called with a plain form as any CI tool would.

async fn post_token(server: &Server, fields: &[(&str, &str)], user_agent: &str, forwarded: Option<&str>) -> OAuthReply {
    let mut request = reqwest::Client::new().post(server.url("/oauth2/token")).header("user-agent", user_agent);
    if let Some(ip) = forwarded {
        request = request.header("x-forwarded-for", ip);
    }
    let response = request.form(fields).send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = serde_json::from_slice(&response.bytes().await.expect("body read")).unwrap_or(Value::Null);
    OAuthReply { status, headers, body }
}

async fn exchange(server: &Server, assertion: &str) -> OAuthReply {
    post_token(server, &[("grant_type", JWT_BEARER), ("assertion", assertion)], CI_AGENT, None).await
}

/// Asserts an RFC 6749 refusal (400 `error`) whose description says `because`.
#[track_caller]
fn assert_refused(reply: &OAuthReply, error: &str, because: &str, what: &str) {
    assert_eq!((reply.status, reply.error()), (400, error), "{what}: {reply:?}");
    assert_oauth_error(reply, 400, error);
    let description = reply.body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains(because), "{what}: expected `{because}` in {description:?}");
}

#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{reply:?}");
    assert!(reply.content_type.starts_with("application/problem+json"), "{reply:?}");
}

fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

fn ids_of(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{reply:?}");
    let mut ids: Vec<String> =
        reply.body["items"].as_array().expect("items").iter().map(|i| str_of(&i["id"])).collect();
    ids.sort();
    ids
}

/// The named fields of an object, as an array, to compare several at once.
fn fields(value: &Value, names: &[&str]) -> Value {
    names.iter().map(|name| value[*name].clone()).collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn rfc3339(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(&str_of(value)).map(|at| at.to_utc()).expect("RFC 3339")
}

/// The AccessTokenIssued events of the log that record an exchanged assertion of `machine`.
fn exchanges_of(server: &Server, machine: &str) -> Vec<Value> {
    let prefix = format!("assertion-{machine}-");
    log_events(&server.data_dir)
        .into_iter()
        .filter(|e| e["type"] == "AccessTokenIssued" && e["stream"].as_str().is_some_and(|s| s.starts_with(&prefix)))
        .collect()
}

/// A registered machine and the private key only the CI system holds.
struct Machine {
    id: String,
    key: SigningKey,
}

/// A server with one organization whose owner made two projects: `api` (production, staging)
/// and `web` (production).
struct Env {
    server: Server,
    org: String,
    owner_id: String,
    owner: Client,
    api: String,
    web: String,
    /// The token endpoint as assertions must name it (`aud`).
    aud: String,
}

impl Env {
    async fn start() -> Self {
        let server = Server::start().expect("server");
        Self::on(server.url("/oauth2/token"), server).await
    }

    async fn on(aud: String, server: Server) -> Self {
        let (org, owner_id, pat) = server.admin().create_org("acme", "ops@acme.example").await;
        let owner = server.client(&pat);
        let mut projects = Vec::new();
        for (name, environments) in [("api", json!(["production", "staging"])), ("web", json!(["production"]))] {
            let body = json!({ "name": name, "environments": environments });
            let reply = owner.post(&format!("/v1/projects/{org}"), body).await;
            assert_eq!(reply.status, 201, "{reply:?}");
            projects.push(str_of(&reply.body["id"]));
        }
        let [api, web] = <[String; 2]>::try_from(projects).expect("two projects");
        Self { server, org, owner_id, owner, api, web, aud }
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/machines/{}{rest}", self.org)
    }

    fn projects(&self) -> String {
        format!("/v1/projects/{}", self.org)
    }

    fn tokens(&self, rest: &str) -> String {
        format!("/v1/machine-tokens/{}{rest}", self.org)
    }

    async fn create(&self, body: Value) -> Reply {
        self.owner.post(&self.path(""), body).await
    }

    /// Registers a machine of the `api` project for a fresh key.
    async fn machine(&self, name: &str, environment: &str) -> Machine {
        let key = fresh_key();
        let reply = self.create(registration(name, "api", environment, &public_b64(&key))).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        Machine { id: str_of(&reply.body["id"]), key }
    }

    async fn view(&self, machine: &str) -> Value {
        let reply = self.owner.get(&self.path(&format!("/{machine}"))).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    }

    fn assertion(&self, machine: &Machine) -> String {
        sign(&machine.key, &claims(&self.aud, &machine.id))
    }

    /// Exchanges a fresh assertion and returns the access token.
    async fn token(&self, machine: &Machine) -> String {
        let reply = exchange(&self.server, &self.assertion(machine)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        str_of(&reply.body["access_token"])
    }

    /// Creates a machine token (as the owner) and returns its id.
    async fn machine_token(&self, name: &str, environment_hint: &str, project: Option<&str>) -> String {
        let body = json!({ "name": name, "environmentHint": environment_hint, "projectId": project });
        self.owner.create_token(&self.org, body).await.0
    }
}

// 1. Registration.

#[tokio::test]
async fn a_machine_is_registered_from_a_local_public_key_and_managed_by_admins() {
    let env = Env::start().await;
    let key = fresh_key();
    let seed = URL_SAFE_NO_PAD.encode(key.to_bytes());
    let body = registration("deploy-prod", "api", "production", &public_b64(&key));
    assert!(!body.to_string().contains(&seed), "the request carries the public half only");
    let created = env.create(body).await;
    assert_eq!(created.status, 201, "{created:?}");
    let view = &created.body;
    let id = str_of(&view["id"]);
    assert!(CredentialId::parse(&id).is_ok(), "{view}");
    let shown = ["name", "projectId", "environment", "state", "publicKey", "owner", "useCount", "lastUsedAt"];
    let expected = json!(["deploy-prod", env.api, "production", "active", public_b64(&key), env.owner_id, 0, null]);
    assert_eq!(fields(view, &shown), expected, "{view}");

    // The project may be named by id as well as by name.
    let staging = env.create(registration("deploy-staging", &env.api, "staging", &public_b64(&fresh_key()))).await;
    assert_eq!((staging.status, &staging.body["projectId"]), (201, &json!(env.api)), "{staging:?}");
    let staging_id = str_of(&staging.body["id"]);
    assert_eq!(ids_of(&env.owner.get(&env.path("")).await), sorted(vec![id.clone(), staging_id.clone()]));
    assert_eq!(&env.view(&id).await, view, "get shows what create answered");
    let log = serde_json::to_string(&log_events(&env.server.data_dir)).expect("JSON");
    assert!(log.contains(&public_b64(&key)) && !log.contains(&seed), "the log holds the public key only");

    // Names are unique among machines that are not revoked.
    let duplicate = env.create(registration("deploy-prod", "web", "production", &public_b64(&fresh_key()))).await;
    assert_problem(&duplicate, 409, "machine_exists");
    assert_eq!(duplicate.body["field"], "name", "{duplicate:?}");
    let revoked = env.owner.post_empty(&env.path(&format!("/{staging_id}/revoke"))).await;
    assert_eq!((revoked.status, &revoked.body["state"]), (200, &json!("revoked")), "{revoked:?}");
    let reuse = env.create(registration("deploy-staging", "api", "staging", &public_b64(&fresh_key()))).await;
    assert_eq!(reuse.status, 201, "a revoked machine's name is free again: {reuse:?}");

    let good_key = public_b64(&fresh_key());
    for project in ["payments", &unknown_id()] {
        let reply = env.create(registration("ci", project, "production", &good_key)).await;
        assert_problem(&reply, 422, "project_not_found");
    }
    let missing_environment = env.create(registration("ci", "web", "staging", &good_key)).await;
    assert_problem(&missing_environment, 422, "environment_not_found");
    assert_eq!(missing_environment.body["field"], "environment");
    // 33 bytes; the identity point (a weak key that "verifies" forged signatures); a PEM of junk.
    let (long, weak) = (URL_SAFE_NO_PAD.encode([9u8; 33]), URL_SAFE_NO_PAD.encode([&[1u8][..], &[0u8; 31]].concat()));
    let junk_pem = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";
    for bad in ["AAAA", "not base64!", &long, &weak, junk_pem] {
        let reply = env.create(registration("ci", "api", "production", bad)).await;
        assert_problem(&reply, 422, "invalid_public_key");
        assert_eq!(reply.body["field"], "publicKey", "{bad}: {reply:?}");
    }

    // Owners and admins manage machines; members and machine credentials do not.
    let (admin_id, admin_pat) = env.owner.add_member_with_token(&env.org, "lead@acme.example", "admin").await;
    let admin = env.server.client(&admin_pat);
    let by_admin = admin.post(&env.path(""), registration("ci", "api", "production", &good_key)).await;
    assert_eq!((by_admin.status, &by_admin.body["owner"]), (201, &json!(admin_id)), "{by_admin:?}");
    let (_, member_pat) = env.owner.add_member_with_token(&env.org, "dev@acme.example", "member").await;
    let member = env.server.client(&member_pat);
    let other = registration("ci-2", "api", "production", &public_b64(&fresh_key()));
    assert_problem(&member.post(&env.path(""), other.clone()).await, 403, "insufficient_role");
    assert_problem(&member.get(&env.path("")).await, 403, "insufficient_role");
    assert_problem(&member.get(&env.path(&format!("/{id}"))).await, 403, "insufficient_role");
    let (_, token) = env.owner.create_token(&env.org, json!({ "name": "ci", "environmentHint": "production" })).await;
    let by_token = env.server.client(&token).post(&env.path(""), other).await;
    assert_problem(&by_token, 403, "machine_credential_forbidden");
    assert_eq!(ids_of(&env.owner.get(&env.path("")).await).len(), 4, "no refused request wrote a machine");

    // Nothing crosses organizations: another org's owner sees none of it, by either path.
    let (globex, _, globex_pat) = env.server.admin().create_org("globex", "ops@globex.example").await;
    let outsider = env.server.client(&globex_pat);
    for path in [env.path(&format!("/{id}")), format!("/v1/machines/{globex}/{id}")] {
        assert_problem(&outsider.get(&path).await, 404, "not_found");
        assert_problem(&outsider.post_empty(&format!("{path}/revoke")).await, 404, "not_found");
    }
    let foreign_project = registration("ci", &env.api, "production", &public_b64(&fresh_key()));
    assert_problem(&outsider.post(&format!("/v1/machines/{globex}"), foreign_project).await, 422, "project_not_found");
    assert_eq!(env.view(&id).await["state"], "active");

    let moved = env.owner.post(&env.path(&format!("/{id}/transfer")), json!({ "to": "lead@acme.example" })).await;
    assert_eq!((moved.status, &moved.body["owner"]), (200, &json!(admin_id)), "{moved:?}");
    assert_eq!(exchange(&env.server, &sign(&key, &claims(&env.aud, &id))).await.status, 200, "it still works");
}

/// The name check and the creation must be one step: registrations racing for a name leave one.
#[tokio::test]
async fn concurrent_registrations_of_one_name_create_one_machine() {
    let env = Env::start().await;
    let create = || env.create(registration("deploy-prod", "api", "production", &public_b64(&fresh_key())));
    let replies = <[Reply; 6]>::from(tokio::join!(create(), create(), create(), create(), create(), create()));
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    for reply in replies.iter().filter(|reply| reply.status != 201) {
        assert_problem(reply, 409, "machine_exists");
    }
    assert_eq!(ids_of(&env.owner.get(&env.path("")).await).len(), 1, "one live machine per name");
}

#[tokio::test]
async fn a_machine_registered_with_an_spki_pem_signs_with_a_standard_jwt_library() {
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    let env = Env::start().await;
    let key = fresh_key();
    let pem = key.verifying_key().to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let created = env.create(registration("deploy-prod", "api", "production", &pem)).await;
    assert_eq!((created.status, &created.body["publicKey"]), (201, &json!(public_b64(&key))), "{created:?}");
    let id = str_of(&created.body["id"]);

    // jsonwebtoken, given the PKCS#8 DER of the private key, signs an assertion the server takes.
    let der = key.to_pkcs8_der().expect("PKCS#8");
    let encoding = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    let assertion = jsonwebtoken::encode(&header, &claims(&env.aud, &id), &encoding).expect("signed");
    let reply = exchange(&env.server, &assertion).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(jwt_claims(&str_of(&reply.body["access_token"]))["sub"], json!(id));
}

// 2. The exchange.

#[tokio::test]
async fn an_assertion_is_exchanged_for_a_read_only_token_scoped_to_the_machine() {
    let env = Env::start().await;
    let machine = env.machine("deploy-prod", "production").await;
    let reply = exchange(&env.server, &env.assertion(&machine)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("cache-control"), "no-store");
    let token = str_of(&reply.body["access_token"]);
    assert_eq!(
        reply.body,
        json!({ "access_token": token, "token_type": "Bearer", "expires_in": 900, "scope": READ }),
        "exactly the RFC 6749 §5.1 fields"
    );
    assert_eq!(jwt_header(&token)["alg"], "EdDSA");
    let claims = jwt_claims(&token);
    let names = ["sub", "kind", "project", "environment", "machine", "org", "scope", "aud", "iss"];
    let expected = [&machine.id, "machine", &env.api, "production", "deploy-prod", &env.org, READ, "credledger-api"];
    let mut expected = json!(expected);
    expected.as_array_mut().expect("an array").push(json!(env.server.base_url));
    assert_eq!(fields(&claims, &names), expected, "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900, "{claims}");
    assert!(claims.get("client_id").is_none(), "{claims}");
}

// 3. What the token may read.

#[tokio::test]
async fn a_machine_token_reads_only_its_own_project_and_environment() {
    let env = Env::start().await;
    let machine = env.machine("deploy-prod", "production").await;
    let own = env.machine_token("api-prod", "production", Some(&env.api)).await;
    let staging = env.machine_token("api-staging", "staging", Some(&env.api)).await;
    let web = env.machine_token("web-prod", "production", Some(&env.web)).await;
    let unscoped = env.machine_token("no-project", "production", None).await;
    let reader = env.server.client(&env.token(&machine).await);

    let own_list = env.tokens(&format!("?projectId={}&environmentHint=production", env.api));
    assert_eq!(ids_of(&reader.get(&own_list).await), vec![own.clone()], "only its project and environment");
    let shown = reader.get(&env.tokens(&format!("/{own}"))).await;
    assert_eq!((shown.status, &shown.body["id"]), (200, &json!(own)), "{shown:?}");
    for other in [&staging, &web, &unscoped] {
        assert_problem(&reader.get(&env.tokens(&format!("/{other}"))).await, 403, "wrong_scope");
    }
    let outside = [
        String::new(),
        format!("?projectId={}", env.api),
        "?environmentHint=production".to_owned(),
        format!("?projectId={}&environmentHint=staging", env.api),
        format!("?projectId={}&environmentHint=production", env.web),
    ];
    for query in outside {
        assert_problem(&reader.get(&env.tokens(&query)).await, 403, "wrong_scope");
    }

    // Read-only: every mutation is refused before it does anything.
    let create = json!({ "name": "sneaky", "environmentHint": "production", "projectId": env.api });
    assert_problem(&reader.post(&env.tokens(""), create).await, 403, "insufficient_scope");
    assert_problem(&reader.post_empty(&env.tokens(&format!("/{own}/disable"))).await, 403, "insufficient_scope");
    assert_problem(&reader.post_empty(&env.tokens(&format!("/{own}/roll"))).await, 403, "insufficient_scope");
    let renamed = reader.patch(&env.tokens(&format!("/{own}")), json!({ "name": "x" })).await;
    assert_problem(&renamed, 403, "insufficient_scope");
    assert_problem(&reader.delete(&env.tokens(&format!("/{own}"))).await, 403, "insufficient_scope");
    let rotate = json!({ "publicKey": public_b64(&fresh_key()) });
    let rotated = reader.post(&env.path(&format!("/{}/rotate-key", machine.id)), rotate).await;
    assert_problem(&rotated, 403, "insufficient_scope");
    assert_problem(&reader.post(&env.projects(), json!({ "name": "x" })).await, 403, "insufficient_scope");
    let own_view = env.owner.get(&env.tokens(&format!("/{own}"))).await;
    assert_eq!(fields(&own_view.body, &["state", "name"]), json!(["active", "api-prod"]), "{own_view:?}");
    assert_eq!(env.view(&machine.id).await["publicKey"], json!(public_b64(&machine.key)));

    // Blocked routes, and the machine API itself, are for humans.
    let human_only =
        [format!("/v1/orgs/{}/members", env.org), format!("/v1/service-credentials/{}", env.org), env.path("")];
    for path in &human_only {
        assert_problem(&reader.get(path).await, 403, "machine_credential_forbidden");
    }

    assert_eq!(ids_of(&reader.get(&env.projects()).await), vec![env.api.clone()], "its own project only");
    assert_eq!(ids_of(&env.owner.get(&env.projects()).await), sorted(vec![env.api.clone(), env.web.clone()]));

    // Another organization's resources do not exist for it.
    let (other_org, _, _) = env.server.admin().create_org("globex", "ops@globex.example").await;
    let elsewhere = format!("/v1/machine-tokens/{other_org}?projectId={}&environmentHint=production", env.api);
    assert_problem(&reader.get(&elsewhere).await, 404, "not_found");
}

// 4. Replays.

#[tokio::test]
async fn an_assertion_is_used_once_even_concurrently_and_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in_with(data.path(), &PUBLIC_URL).unwrap();
    let aud = format!("{}/oauth2/token", PUBLIC_URL[1]);
    let env = Env::on(aud.clone(), server).await;
    let machine = env.machine("deploy-prod", "production").await;

    let used = env.assertion(&machine);
    assert_eq!(exchange(&env.server, &used).await.status, 200);
    assert_refused(&exchange(&env.server, &used).await, "invalid_grant", "already used", "an immediate replay");

    // Of the same assertion sent six times at once, exactly one is exchanged.
    let raced = env.assertion(&machine);
    let send = || exchange(&env.server, &raced);
    let replies = <[OAuthReply; 6]>::from(tokio::join!(send(), send(), send(), send(), send(), send()));
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1, "{replies:?}");
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_refused(reply, "invalid_grant", "already used", "a concurrent replay");
    }
    let spare = env.assertion(&machine);
    assert_eq!(exchanges_of(&env.server, &machine.id).len(), 2);

    let data_dir = env.server.data_dir.clone();
    assert!(env.server.stop().unwrap().success());
    let server = Server::start_in_with(&data_dir, &PUBLIC_URL).unwrap();
    // The restarted server takes fresh assertions once it knows the machine again.
    eventually("a fresh assertion after the restart", Duration::from_secs(10), async || {
        let reply = exchange(&server, &sign(&machine.key, &claims(&aud, &machine.id))).await;
        (reply.status == 200).then_some(())
    })
    .await;
    for (what, assertion) in [("a replay after the restart", &used), ("a raced one after the restart", &raced)] {
        assert_refused(&exchange(&server, assertion).await, "invalid_grant", "already used", what);
    }
    assert_eq!(exchange(&server, &spare).await.status, 200, "an assertion never used is still good");
    assert_refused(&exchange(&server, &spare).await, "invalid_grant", "already used", "and then it is spent");
    let wrong_audience = sign(&machine.key, &claims(&server.url("/oauth2/token"), &machine.id));
    assert_refused(&exchange(&server, &wrong_audience).await, "invalid_grant", "aud", "the listening address");
    assert_eq!(exchanges_of(&server, &machine.id).len(), 4, "one event per accepted assertion");
}

// 5. Assertions that break a rule.

#[tokio::test]
async fn assertions_that_break_a_rule_are_refused_and_leave_no_trace() {
    let env = Env::start().await;
    let machine = env.machine("deploy-prod", "production").await;
    let other = env.machine("deploy-staging", "staging").await;
    let base = || claims(&env.aud, &machine.id);
    let signed = |changes: Value| sign(&machine.key, &changed(base(), changes));
    let now = now();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &base(),
        // The classic confusion: an HMAC keyed with the machine's public key.
        &jsonwebtoken::EncodingKey::from_secret(machine.key.verifying_key().as_bytes()),
    )
    .unwrap();
    let unsigned = format!("{}.{}.", b64_json(&json!({ "alg": "none" })), b64_json(&base()));
    let tampered = {
        let genuine = env.assertion(&machine);
        let parts: Vec<&str> = genuine.split('.').collect();
        let longer = changed(jwt_claims(&genuine), json!({ "exp": now + 300 }));
        format!("{}.{}.{}", parts[0], b64_json(&longer), parts[2])
    };
    let unknown = unknown_id();
    let cases = [
        ("expired beyond the skew", signed(json!({ "iat": now - 400, "exp": now - 100 })), "expired"),
        ("issued in the future", signed(json!({ "iat": now + 3600, "exp": now + 3660 })), "future"),
        ("valid for more than five minutes", signed(json!({ "iat": now, "exp": now + 301 })), "5 minutes"),
        ("valid for an hour", signed(json!({ "iat": now, "exp": now + 3600 })), "5 minutes"),
        ("the audience is the API", signed(json!({ "aud": "credledger-api" })), "aud"),
        ("the audience is the bare server URL", signed(json!({ "aud": env.server.base_url })), "aud"),
        ("the issuer is another machine", signed(json!({ "iss": other.id })), "iss"),
        ("sub names another machine", sign(&other.key, &changed(base(), json!({ "sub": other.id }))), "iss"),
        ("sub is the id in capitals", signed(json!({ "sub": machine.id.to_uppercase() })), "sub"),
        ("signed by another key", sign(&fresh_key(), &base()), "signature"),
        ("signed by the other machine's key", sign(&other.key, &base()), "signature"),
        ("a payload changed after signing", tampered, "signature"),
        ("HS256 keyed with the public key", hs256, "EdDSA"),
        ("alg none", unsigned, "not a JWT"),
        ("an unknown machine", sign(&fresh_key(), &claims(&env.aud, &unknown)), "not a known machine"),
        ("a subject that is not an id", signed(json!({ "iss": "deploy-prod", "sub": "deploy-prod" })), "not a known"),
        ("no jti", signed(json!({ "jti": null })), "lacks"),
        ("an empty jti", signed(json!({ "jti": "" })), "jti"),
        ("no exp", signed(json!({ "exp": null })), "lacks"),
        ("not a JWT", "not-a-jwt".to_owned(), "not a JWT"),
    ];
    for (what, assertion, because) in &cases {
        assert_refused(&exchange(&env.server, assertion).await, "invalid_grant", because, what);
    }
    let missing = post_token(&env.server, &[("grant_type", JWT_BEARER)], CI_AGENT, None).await;
    assert_refused(&missing, "invalid_request", "assertion", "no assertion parameter");
    let genuine = env.assertion(&machine);
    let twice = [("grant_type", JWT_BEARER), ("assertion", &genuine), ("assertion", &genuine)];
    let repeated = post_token(&env.server, &twice, CI_AGENT, None).await;
    assert_refused(&repeated, "invalid_request", "repeated", "the assertion parameter twice");
    assert!(exchanges_of(&env.server, &machine.id).is_empty(), "a refusal issues nothing");
    assert!(exchanges_of(&env.server, &other.id).is_empty(), "a refusal issues nothing");

    // The limits themselves are allowed: 5 minutes exactly, and 30 s of skew either way.
    let limits = [
        ("valid for exactly five minutes", signed(json!({ "iat": now, "exp": now + 300 }))),
        ("expired ten seconds ago", signed(json!({ "iat": now - 70, "exp": now - 10 }))),
        ("issued ten seconds ahead", signed(json!({ "iat": now + 10, "exp": now + 70 }))),
        ("the refused but unspent assertion", genuine),
    ];
    for (what, assertion) in &limits {
        let reply = exchange(&env.server, assertion).await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
    }
    assert_eq!(exchanges_of(&env.server, &machine.id).len(), limits.len());
}

/// RFC 7523 §3 (5): a JWT with an `nbf` "MUST NOT be accepted for processing" before that time.
#[tokio::test]
async fn an_assertion_is_refused_before_its_nbf() {
    let env = Env::start().await;
    let machine = env.machine("deploy-prod", "production").await;
    let early = sign(&machine.key, &changed(claims(&env.aud, &machine.id), json!({ "nbf": now() + 3600 })));
    assert_refused(&exchange(&env.server, &early).await, "invalid_grant", "", "nbf an hour from now");
    assert!(exchanges_of(&env.server, &machine.id).is_empty(), "no token was issued");
}

#[tokio::test]
async fn assertion_times_are_judged_by_the_servers_clock() {
    let env = Env::start().await;
    let machine = env.machine("deploy-prod", "production").await;
    let assertion = env.assertion(&machine); // valid for two minutes from now
    env.server.shift_clock(120 + 31);
    assert_refused(&exchange(&env.server, &assertion).await, "invalid_grant", "expired", "the clock moved past exp");
    env.server.shift_clock(-120);
    assert_refused(&exchange(&env.server, &assertion).await, "invalid_grant", "future", "the clock is behind iat");
    env.server.shift_clock(0);
    assert_eq!(exchange(&env.server, &assertion).await.status, 200, "a refusal did not spend the assertion");
}

// 6. and 7. Rotation and revocation.

#[tokio::test]
async fn after_rotate_key_only_the_new_key_signs() {
    let env = Env::start().await;
    let machine = env.machine("deploy-prod", "production").await;
    env.token(&machine).await;
    let signed_before = env.assertion(&machine);
    let new_key = fresh_key();
    let path = env.path(&format!("/{}/rotate-key", machine.id));

    let (_, member_pat) = env.owner.add_member_with_token(&env.org, "dev@acme.example", "member").await;
    let by_member = env.server.client(&member_pat).post(&path, json!({ "publicKey": public_b64(&new_key) })).await;
    assert_problem(&by_member, 403, "insufficient_role");
    assert_problem(&env.owner.post(&path, json!({ "publicKey": "AAAA" })).await, 422, "invalid_public_key");
    let unknown = env.path(&format!("/{}/rotate-key", unknown_id()));
    assert_problem(&env.owner.post(&unknown, json!({ "publicKey": public_b64(&new_key) })).await, 404, "not_found");
    assert_eq!(env.view(&machine.id).await["publicKey"], json!(public_b64(&machine.key)), "nothing changed yet");

    let rotated = env.owner.post(&path, json!({ "publicKey": public_b64(&new_key) })).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    assert_eq!(
        (&rotated.body["id"], &rotated.body["state"], &rotated.body["publicKey"]),
        (&json!(machine.id), &json!("active"), &json!(public_b64(&new_key))),
        "{rotated:?}"
    );
    assert!(rotated.body["keyRotatedAt"].is_string(), "{rotated:?}");
    let event = log_events(&env.server.data_dir).into_iter().find(|e| e["type"] == "MachineKeyRotated").expect("event");
    assert_eq!(event["payload"]["previousPublicKey"], json!(public_b64(&machine.key)), "{event}");

    for (what, assertion) in [("signed before the rotation", signed_before), ("signed after", env.assertion(&machine))]
    {
        assert_refused(&exchange(&env.server, &assertion).await, "invalid_grant", "signature", what);
    }
    let rotated_machine = Machine { id: machine.id.clone(), key: new_key };
    let token = env.token(&rotated_machine).await;
    assert_eq!(env.server.client(&token).get(&env.projects()).await.status, 200);
}

#[tokio::test]
async fn revoking_a_machine_stops_its_tokens_at_once_and_its_exchanges() {
    let env = Env::start().await;
    let machine = env.machine("deploy-prod", "production").await;
    let reader = env.server.client(&env.token(&machine).await);
    let (projects, own_tokens) =
        (env.projects(), env.tokens(&format!("?projectId={}&environmentHint=production", env.api)));
    assert_eq!(reader.get(&projects).await.status, 200);
    let signed_before = env.assertion(&machine);

    let revoked = env.owner.post_empty(&env.path(&format!("/{}/revoke", machine.id))).await;
    assert_eq!((revoked.status, &revoked.body["state"]), (200, &json!("revoked")), "{revoked:?}");
    assert_problem(&reader.get(&projects).await, 401, "revoked");
    assert_problem(&reader.get(&own_tokens).await, 401, "revoked");
    for (what, assertion) in
        [("signed before the revocation", signed_before), ("signed after", env.assertion(&machine))]
    {
        assert_refused(&exchange(&env.server, &assertion).await, "invalid_grant", "revoked", what);
    }
    assert_eq!(exchanges_of(&env.server, &machine.id).len(), 1, "only the first exchange was recorded");

    assert_eq!(env.view(&machine.id).await["state"], "revoked");
    let again = env.owner.post_empty(&env.path(&format!("/{}/revoke", machine.id))).await;
    assert_problem(&again, 409, "invalid_transition");
    let rotate = json!({ "publicKey": public_b64(&fresh_key()) });
    let rotated = env.owner.post(&env.path(&format!("/{}/rotate-key", machine.id)), rotate).await;
    assert_problem(&rotated, 409, "invalid_transition");
}

#[tokio::test]
async fn a_machines_conditions_apply_to_the_exchange_and_to_its_token() {
    let env = Env::start().await;
    let key = fresh_key();
    let mut body = registration("deploy-prod", "api", "production", &public_b64(&key));
    body["conditions"] = json!({ "userAgentPattern": "ci-runner/*" });
    let created = env.create(body).await;
    assert_eq!(created.status, 201, "{created:?}");
    let machine = Machine { id: str_of(&created.body["id"]), key };
    let assertion = env.assertion(&machine);
    let curl =
        post_token(&env.server, &[("grant_type", JWT_BEARER), ("assertion", &assertion)], "curl/8.5", None).await;
    assert_refused(&curl, "invalid_grant", "user_agent_mismatch", "a user agent the machine may not use");
    let token = env.token(&machine).await;
    let as_curl = env.server.client(&token).with_user_agent("curl/8.5").get(&env.projects()).await;
    assert_problem(&as_curl, 403, "user_agent_mismatch");
    assert_eq!(env.server.client(&token).with_user_agent(CI_AGENT).get(&env.projects()).await.status, 200);
}

// 8. The audit record.

#[tokio::test]
async fn each_exchange_is_recorded_in_a_stream_of_its_own_and_moves_last_use() {
    let server = Server::start_with(&["--trusted-proxy", "127.0.0.1/32"]).unwrap();
    let env = Env::on(server.url("/oauth2/token"), server).await;
    let machine = env.machine("deploy-prod", "production").await;

    let first = env.assertion(&machine);
    let reply = exchange(&env.server, &first).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let jti = str_of(&jwt_claims(&first)["jti"]);
    let issued = exchanges_of(&env.server, &machine.id);
    assert_eq!(issued.len(), 1, "{issued:?}");
    let event = &issued[0];
    let stream = str_of(&event["stream"]);
    let suffix = stream.strip_prefix(&format!("assertion-{}-", machine.id)).expect("the machine's assertion stream");
    assert!(suffix.len() == 32 && suffix.bytes().all(|b| b.is_ascii_hexdigit()), "{stream}");
    assert!(!stream.contains(&jti), "the client-chosen jti is not used raw: {stream}");
    let access_jti = jwt_claims(&str_of(&reply.body["access_token"]))["jti"].clone();
    let names = ["credentialId", "kind", "orgId", "assertionJti", "jti", "scopes", "ip", "userAgent"];
    let expected = json!([machine.id, "machine", env.org, jti, access_jti, [READ], "127.0.0.1", CI_AGENT]);
    assert_eq!(fields(&event["payload"], &names), expected, "{event}");
    assert_eq!(fields(&event["request"], &["ip", "userAgent"]), json!(["127.0.0.1", CI_AGENT]), "{event}");
    assert_eq!(event["actor"], json!({ "kind": "machine", "id": machine.id }), "{event}");
    assert_eq!(event["orgId"], json!(env.org), "{event}");

    let view = eventually("the first use in the machine's view", Duration::from_secs(5), async || {
        Some(env.view(&machine.id).await).filter(|view| view["useCount"] == 1)
    })
    .await;
    assert_eq!(fields(&view, &["lastUsedIp", "lastUsedUserAgent"]), json!(["127.0.0.1", CI_AGENT]), "{view}");
    let first_at = rfc3339(&view["lastUsedAt"]);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let form = [("grant_type", JWT_BEARER), ("assertion", &env.assertion(&machine))];
    let second = post_token(&env.server, &form, "ci-runner/3.2", Some("198.51.100.7")).await;
    assert_eq!(second.status, 200, "{second:?}");
    let view = eventually("the second use in the machine's view", Duration::from_secs(5), async || {
        Some(env.view(&machine.id).await).filter(|view| view["useCount"] == 2)
    })
    .await;
    assert_eq!(fields(&view, &["lastUsedIp", "lastUsedUserAgent"]), json!(["198.51.100.7", "ci-runner/3.2"]));
    assert!(rfc3339(&view["lastUsedAt"]) > first_at, "{view}");
    let issued = exchanges_of(&env.server, &machine.id);
    assert_eq!(issued.len(), 2);
    assert_eq!([&issued[1]["payload"]["ip"], &issued[1]["request"]["ip"]], [&json!("198.51.100.7"); 2]);
    let lag = rfc3339(&view["lastUsedAt"]) - rfc3339(&issued[1]["payload"]["at"]);
    assert!(lag.abs() <= chrono::TimeDelta::milliseconds(1), "the read model keeps milliseconds: {view}");

    assert_refused(&exchange(&env.server, &first).await, "invalid_grant", "already used", "a replay");
    assert_eq!(exchanges_of(&env.server, &machine.id).len(), 2, "a replay records no issuance");
}

// 9. The machine key string.

#[tokio::test]
async fn a_ci_job_with_only_the_machine_key_string_gets_a_token() {
    let env = Env::start().await;
    // The admin's side: generate the pair, register the public half, hand the key string to CI.
    let key = fresh_key();
    let created = env.create(registration("deploy-prod", "api", "production", &public_b64(&key))).await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = str_of(&created.body["id"]);
    let original = MachineKey::new(OrgId::parse(&env.org).unwrap(), CredentialId::parse(&id).unwrap(), key.to_bytes());
    let key_string = original.encode();
    assert!(key_string.starts_with("credledger-machine-v1:"), "{key_string}");
    assert!(!format!("{original:?}").contains(&URL_SAFE_NO_PAD.encode(key.to_bytes())), "Debug hides the seed");

    // The CI job's side: the key string from a secret variable, and nothing else.
    let parsed = MachineKey::parse(&format!("{key_string}\n")).expect("the key string parses");
    assert_eq!(parsed, original);
    assert_eq!((parsed.org_id.to_string(), parsed.machine_id.to_string()), (env.org.clone(), id.clone()));
    let signer = SigningKey::from_bytes(parsed.seed());
    assert_eq!(json!(public_b64(&signer)), created.body["publicKey"]);
    let machine_id = parsed.machine_id.to_string();
    let reply = exchange(&env.server, &sign(&signer, &claims(&env.aud, &machine_id))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let token = str_of(&reply.body["access_token"]);
    assert_eq!(fields(&jwt_claims(&token), &["org", "sub"]), json!([parsed.org_id.to_string(), machine_id]));
    let own = env.machine_token("api-prod", "production", Some(&env.api)).await;
    let list = env.tokens(&format!("?projectId={}&environmentHint=production", env.api));
    assert_eq!(ids_of(&env.server.client(&token).get(&list).await), vec![own]);

    // A mistyped or truncated key string fails on the CI side, before any request.
    let mut typo = key_string.clone();
    let at = typo.len() - 12;
    let replacement = if &typo[at..=at] == "A" { "B" } else { "A" };
    typo.replace_range(at..=at, replacement);
    assert_eq!(MachineKey::parse(&typo), Err(MachineKeyError::Checksum));
    assert!(MachineKey::parse(&key_string[..key_string.len() - 4]).is_err());
    assert_eq!(MachineKey::parse(&key_string.replace("-v1:", "-v2:")), Err(MachineKeyError::Prefix));
}
