//! End-to-end tests of the OAuth2 authorization server (DESIGN.md §2, §5, §8) against the real
//! binary: the client_credentials grant by HTTP Basic and by form fields and its record, every
//! RFC 6749 §5.2 error, scope narrowing, access JWTs checked against their credential's current
//! state, forged and foreign tokens, blocked routes, signing-key rotation across a restart,
//! verification from the JWKS alone by other JWT libraries, and the server metadata.
//! Introspection is in `introspection.rs`; service credentials and the brute-force protection
//! of their secrets in `service_credentials.rs`.

mod support;

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use support::{
    Client, ClientAuth, OAUTH_USER_AGENT, Reply, Server, ServiceCredential, assert_oauth_error, jwt_claims, jwt_header,
    oauth_error_mismatch, stream_events,
};

const TOKEN: &str = "/oauth2/token";
const READ: &str = "credledger-api/read";
const WRITE: &str = "credledger-api/write";
const GRANT: [(&str, &str); 1] = [("grant_type", "client_credentials")];

/// An organization with its owner, who calls the API with the owner PAT.
struct Org {
    id: String,
    owner: Client,
}

async fn new_org(server: &Server, name: &str) -> Org {
    let (id, _, pat) = server.admin().create_org(name, &format!("ops@{name}.example")).await;
    Org { id, owner: server.client(&pat) }
}

impl Org {
    /// A service credential with these scopes (read and write when empty).
    async fn credential(&self, scopes: &[&str]) -> ServiceCredential {
        let mut body = json!({ "name": "release pipeline" });
        if !scopes.is_empty() {
            body["scopes"] = json!(scopes);
        }
        self.owner.create_service_credential(&self.id, body).await
    }

    fn projects(&self) -> String {
        format!("/v1/projects/{}", self.id)
    }

    fn machine_tokens(&self) -> String {
        format!("/v1/machine-tokens/{}", self.id)
    }
}

fn basic(credential: &ServiceCredential) -> ClientAuth<'_> {
    ClientAuth::Basic { id: &credential.client_id, secret: &credential.secret }
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

fn unix_of(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}")).timestamp()
}

/// Asserts a problem+json refusal with this status and code.
#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{reply:?}");
    assert!(reply.content_type.starts_with("application/problem+json"), "{reply:?}");
}

/// The published keys.
async fn jwks(server: &Server) -> Vec<Value> {
    let reply = Client::anonymous(server).get("/.well-known/jwks.json").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["keys"].as_array().expect("keys").clone()
}

fn kids(keys: &[Value]) -> HashSet<String> {
    keys.iter().map(|key| str_of(&key["kid"]).to_owned()).collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT of `header` and `claims` signed with an Ed25519 key.
fn signed_jwt(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let signed = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    format!("{signed}.{}", b64(&key.sign(signed.as_bytes()).to_bytes()))
}

/// The server's current signing key (kid, key), read from its data directory: what an attacker
/// who stole the key file holds, and the only way to sign claims the server never would.
fn stolen_signing_key(server: &Server) -> (String, SigningKey) {
    let file = std::fs::read(server.data_dir.join("signing-keys.json")).expect("the signing-key file");
    let keys: Vec<Value> = serde_json::from_slice(&file).expect("a JSON array");
    let current = keys.iter().find(|key| key["retiredAt"].is_null()).expect("a current key");
    let seed = str_of(&current["seed"]);
    let bytes: Vec<u8> = (0..seed.len()).step_by(2).map(|i| u8::from_str_radix(&seed[i..i + 2], 16).unwrap()).collect();
    (str_of(&current["kid"]).to_owned(), SigningKey::from_bytes(&bytes.try_into().expect("a 32-byte seed")))
}

// 1. The grant.

#[tokio::test]
async fn the_grant_by_basic_or_form_fields_issues_a_recorded_fifteen_minute_token() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential(&[]).await;
    let keys = jwks(&server).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stream = format!("usage-{}", credential.id);
    let post = ClientAuth::Post { id: &credential.client_id, secret: &credential.secret };
    let mut jtis = HashSet::new();
    for (method, auth) in [("client_secret_basic", basic(&credential)), ("client_secret_post", post)] {
        let before = now_unix();
        let reply = server.oauth_form(TOKEN, auth, &GRANT).await;
        assert_eq!(reply.status, 200, "{method}: {reply:?}");
        assert_eq!(reply.header("cache-control"), "no-store", "{method}: {reply:?}");
        let fields: HashSet<&str> = reply.body.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(fields, HashSet::from(["access_token", "token_type", "expires_in", "scope"]), "{reply:?}");
        assert_eq!(reply.body["token_type"], "Bearer");
        assert_eq!(reply.body["expires_in"], 900);
        assert_eq!(reply.body["scope"], format!("{READ} {WRITE}"), "all the credential's scopes by default");
        let token = str_of(&reply.body["access_token"]);

        let header = jwt_header(token);
        assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("EdDSA"), keys[0]["kid"].as_str()));
        let claims = jwt_claims(token);
        assert_eq!(claims["iss"], server.base_url.as_str(), "{claims}");
        assert_eq!(claims["aud"], "credledger-api", "{claims}");
        assert_eq!(claims["sub"], credential.id.as_str(), "{claims}");
        assert_eq!(claims["org"], org.id.as_str(), "{claims}");
        assert_eq!(claims["client_id"], credential.client_id.as_str(), "{claims}");
        assert_eq!(claims["kind"], "service_credential", "{claims}");
        assert_eq!(claims["scope"], reply.body["scope"], "{claims}");
        let (iat, exp) = (claims["iat"].as_i64().expect("iat"), claims["exp"].as_i64().expect("exp"));
        assert!((before - 1..=now_unix() + 1).contains(&iat), "iat {iat} is not now");
        assert_eq!((exp - iat, claims["nbf"].as_i64()), (900, Some(iat)), "{claims}");
        let jti = str_of(&claims["jti"]).to_owned();

        // Recorded before the answer: no polling.
        let issued = stream_events(&server.data_dir, &stream, "AccessTokenIssued");
        let event = issued.iter().find(|e| e["payload"]["jti"] == jti.as_str());
        let event = event.unwrap_or_else(|| panic!("{method}: no AccessTokenIssued with jti {jti}: {issued:?}"));
        let payload = &event["payload"];
        assert_eq!(payload["credentialId"], credential.id.as_str(), "{event}");
        assert_eq!(payload["scopes"], json!([READ, WRITE]), "{event}");
        assert_eq!(unix_of(str_of(&payload["expiresAt"])), exp, "{event}");
        assert_eq!(payload["ip"], "127.0.0.1", "{event}");
        assert_eq!(payload["userAgent"], OAUTH_USER_AGENT, "{event}");
        assert_eq!(event["actor"]["id"], credential.id.as_str(), "{event}");

        assert_eq!(server.client(token).get(&org.projects()).await.status, 200, "{method}: the token works");
        jtis.insert(jti);
    }
    assert_eq!(jtis.len(), 2, "every token has its own jti");
    assert_eq!(stream_events(&server.data_dir, &stream, "AccessTokenIssued").len(), 2);
}

/// A refused token request: what it shows, its client authentication and form, the answer.
type Row<'a> = (&'a str, ClientAuth<'a>, &'a [(&'a str, &'a str)], u16, &'a str);

#[tokio::test]
async fn every_token_endpoint_error_is_an_rfc_6749_document() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let full = org.credential(&[]).await;
    let read_only = org.credential(&[READ]).await;
    let other = org.credential(&[]).await;
    let (id, secret, grant) = (full.client_id.as_str(), full.secret.as_str(), GRANT[0]);
    let (auth, narrow, none) = (basic(&full), basic(&read_only), ClientAuth::None);
    let wrong_secret = format!("cl_cs_{}", "ab".repeat(36));
    let wrong = ClientAuth::Basic { id, secret: &wrong_secret };
    let malformed = ClientAuth::Post { id, secret: "hunter2" };
    let borrowed = ClientAuth::Basic { id, secret: &other.secret };
    let unknown = ClientAuth::Basic { id: "cl_ci_000000000000000000000000", secret };
    let (both, half_known) = (format!("{READ} {WRITE}"), format!("{READ} credledger-api/admin"));

    let rows: [Row; 18] = [
        ("no grant_type", auth, &[("scope", READ)], 400, "invalid_request"),
        // RFC 6749 §3.2: a parameter sent without a value is as if it were omitted.
        ("empty grant_type", auth, &[("grant_type", ""), ("scope", READ)], 400, "invalid_request"),
        ("empty client_secret", none, &[grant, ("client_id", id), ("client_secret", "")], 401, "invalid_client"),
        ("password grant", auth, &[("grant_type", "password")], 400, "unsupported_grant_type"),
        ("no client authentication", none, &GRANT, 401, "invalid_client"),
        ("client_id without a secret", none, &[grant, ("client_id", id)], 401, "invalid_client"),
        ("wrong secret", wrong, &GRANT, 401, "invalid_client"),
        ("malformed secret", malformed, &GRANT, 401, "invalid_client"),
        ("another client's secret", borrowed, &GRANT, 401, "invalid_client"),
        ("unknown client id", unknown, &GRANT, 401, "invalid_client"),
        (
            "Basic and form credentials",
            auth,
            &[grant, ("client_id", id), ("client_secret", secret)],
            400,
            "invalid_request",
        ),
        ("Basic and a form client_id", auth, &[grant, ("client_id", id)], 400, "invalid_request"),
        ("repeated grant_type", auth, &[grant, grant], 400, "invalid_request"),
        ("repeated scope", auth, &[grant, ("scope", READ), ("scope", READ)], 400, "invalid_request"),
        ("write for a read-only client", narrow, &[grant, ("scope", WRITE)], 400, "invalid_scope"),
        ("read and write for a read-only client", narrow, &[grant, ("scope", &both)], 400, "invalid_scope"),
        ("unknown scope", auth, &[grant, ("scope", "admin")], 400, "invalid_scope"),
        ("a known and an unknown scope", auth, &[grant, ("scope", &half_known)], 400, "invalid_scope"),
    ];
    let mut failures = Vec::new();
    for (what, auth, parameters, status, error) in rows {
        let reply = server.oauth_form(TOKEN, auth, parameters).await;
        failures.extend(oauth_error_mismatch(&reply, status, error).map(|mismatch| format!("{what}: {mismatch}")));
    }
    let json_body = br#"{"grant_type":"client_credentials"}"#.to_vec();
    let reply = server.oauth_raw(TOKEN, "application/json", json_body, Some((id, secret))).await;
    failures.extend(oauth_error_mismatch(&reply, 400, "invalid_request").map(|mismatch| format!("JSON: {mismatch}")));
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
    let issued = support::log_events(&server.data_dir).iter().filter(|e| e["type"] == "AccessTokenIssued").count();
    assert_eq!(issued, 0, "a refused request issued a token");
}

// 2. What an access token may do.

#[tokio::test]
async fn a_read_only_token_reads_but_cannot_change_anything() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential(&[]).await;
    let reply = server.oauth_form(TOKEN, basic(&credential), &[GRANT[0], ("scope", READ)]).await;
    assert_eq!((reply.status, reply.body["scope"].as_str()), (200, Some(READ)), "{reply:?}");
    let read = server.client(str_of(&reply.body["access_token"]));
    assert_eq!(jwt_claims(str_of(&reply.body["access_token"]))["scope"], READ);
    assert_eq!(read.get(&org.projects()).await.status, 200);
    assert_eq!(read.get(&org.machine_tokens()).await.status, 200);
    let mint = json!({ "name": "x", "environmentHint": "ci" });
    assert_problem(&read.post(&org.machine_tokens(), mint.clone()).await, 403, "insufficient_scope");
    // With the write scope the same request passes the scope check (and meets the next rule).
    let write = server.client(&server.access_token(&credential.client_id, &credential.secret, None).await);
    assert_problem(&write.post(&org.machine_tokens(), mint).await, 403, "machine_credential_forbidden");

    let read_only = org.credential(&[READ]).await;
    let token = server.access_token(&read_only.client_id, &read_only.secret, None).await;
    assert_eq!(jwt_claims(&token)["scope"], READ, "a read-only client gets read by default");
    let reply = server.oauth_form(TOKEN, basic(&read_only), &[GRANT[0], ("scope", WRITE)]).await;
    assert_oauth_error(&reply, 400, "invalid_scope");
}

#[tokio::test]
async fn revoking_a_service_credential_kills_its_access_tokens_at_once() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential(&[]).await;
    let pipeline = server.client(&server.access_token(&credential.client_id, &credential.secret, None).await);
    assert_eq!(pipeline.get(&org.projects()).await.status, 200);
    let revoked = org.owner.post_empty(&format!("/v1/service-credentials/{}/{}/revoke", org.id, credential.id)).await;
    assert_eq!((revoked.status, revoked.body["state"].as_str()), (200, Some("revoked")), "{revoked:?}");
    assert_problem(&pipeline.get(&org.projects()).await, 401, "revoked");
    assert_oauth_error(&server.oauth_form(TOKEN, basic(&credential), &GRANT).await, 401, "invalid_client");
}

#[tokio::test]
async fn access_tokens_cannot_reach_routes_that_manage_humans() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential(&[]).await;
    let pipeline = server.client(&server.access_token(&credential.client_id, &credential.secret, None).await);
    let credentials = format!("/v1/service-credentials/{}", org.id);
    for reply in [
        pipeline.get(&format!("/v1/orgs/{}/members", org.id)).await,
        pipeline
            .post(&format!("/v1/orgs/{}/members", org.id), json!({ "email": "x@acme.example", "role": "owner" }))
            .await,
        pipeline.get(&credentials).await,
        pipeline.get(&format!("{credentials}/{}", credential.id)).await,
        pipeline.post(&credentials, json!({ "name": "escalation" })).await,
        pipeline.post_empty(&format!("{credentials}/{}/rotate", credential.id)).await,
    ] {
        assert_problem(&reply, 403, "machine_credential_forbidden");
    }
    let listed = org.owner.get(&credentials).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1), "{listed:?}");
}

// 3. Forged and foreign tokens.

#[tokio::test]
async fn forged_expired_and_foreign_access_tokens_are_refused() {
    let (server, foreign) = (Server::start().unwrap(), Server::start().unwrap());
    let org = new_org(&server, "acme").await;
    let credential = org.credential(&[]).await;
    let token = server.access_token(&credential.client_id, &credential.secret, None).await;
    let path = org.projects();
    assert_eq!(server.client(&token).get(&path).await.status, 200);
    let (header, claims) = (jwt_header(&token), jwt_claims(&token));
    let parts: Vec<&str> = token.split('.').collect();
    let keys = jwks(&server).await;
    let public = URL_SAFE_NO_PAD.decode(str_of(&keys[0]["x"])).expect("x");

    let unsigned = format!("{}.{}.", b64(json!({ "alg": "none", "typ": "JWT" }).to_string().as_bytes()), parts[1]);
    let reply = server.client(&unsigned).get(&path).await;
    assert!(reply.status == 401 && ["malformed_token", "unsupported_algorithm"].contains(&reply.code()), "{reply:?}");

    for secret in [public.as_slice(), keys[0]["x"].as_str().unwrap_or_default().as_bytes()] {
        let hs256 = jsonwebtoken::Header {
            kid: header["kid"].as_str().map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        };
        let forged = jsonwebtoken::encode(&hs256, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap();
        assert_problem(&server.client(&forged).get(&path).await, 401, "unsupported_algorithm");
    }

    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = json!("not-a-published-key");
    let relabelled = format!("{}.{}.{}", b64(unknown_kid.to_string().as_bytes()), parts[1], parts[2]);
    assert_problem(&server.client(&relabelled).get(&path).await, 401, "unknown_key");

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
    signature[10] ^= 0x01;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&signature));
    assert_problem(&server.client(&flipped).get(&path).await, 401, "bad_signature");

    let mut widened = claims.clone();
    widened["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    let altered = format!("{}.{}.{}", parts[0], b64(widened.to_string().as_bytes()), parts[2]);
    assert_problem(&server.client(&altered).get(&path).await, 401, "bad_signature");

    let impostor = signed_jwt(&SigningKey::from_bytes(&[7; 32]), &header, &claims);
    assert_problem(&server.client(&impostor).get(&path).await, 401, "bad_signature");

    // Another server's token: its key is not published here, and claiming our kid fails the signature.
    let foreign_org = new_org(&foreign, "globex").await;
    let foreign_credential = foreign_org.credential(&[]).await;
    let foreign_token = foreign.access_token(&foreign_credential.client_id, &foreign_credential.secret, None).await;
    assert_eq!(foreign.client(&foreign_token).get(&foreign_org.projects()).await.status, 200);
    assert_problem(&server.client(&foreign_token).get(&path).await, 401, "unknown_key");
    assert_problem(&server.client(&foreign_token).get(&foreign_org.projects()).await, 401, "unknown_key");
    let foreign_parts: Vec<&str> = foreign_token.split('.').collect();
    let claimed = format!("{}.{}.{}", parts[0], foreign_parts[1], foreign_parts[2]);
    assert_problem(&server.client(&claimed).get(&path).await, 401, "bad_signature");

    // Claims only the server's own key could sign: the stolen key proves the checks themselves.
    let (kid, key) = stolen_signing_key(&server);
    let resign = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        change(&mut claims);
        signed_jwt(&key, &json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid }), &claims)
    };
    let genuine = resign(&|_| {});
    assert_eq!(server.client(&genuine).get(&path).await.status, 200, "the re-signing itself is sound");
    let wrong_audience = resign(&|claims| claims["aud"] = json!("another-api"));
    assert_problem(&server.client(&wrong_audience).get(&path).await, 401, "wrong_audience");
    let wrong_issuer = resign(&|claims| claims["iss"] = json!("https://evil.example"));
    assert_problem(&server.client(&wrong_issuer).get(&path).await, 401, "wrong_audience");
    let later = resign(&|claims| claims["nbf"] = json!(now_unix() + 600));
    assert_problem(&server.client(&later).get(&path).await, 401, "token_expired");
    let past = resign(&|claims| claims["exp"] = json!(now_unix() - 31 - 5));
    assert_problem(&server.client(&past).get(&path).await, 401, "token_expired");
    let no_kid = signed_jwt(&key, &json!({ "alg": "EdDSA" }), &claims);
    assert_problem(&server.client(&no_kid).get(&path).await, 401, "unknown_key");

    // 15 minutes and the 30 s leeway later, the genuine token has expired.
    server.shift_clock(15 * 60 + 31 + 5);
    assert_problem(&server.client(&token).get(&path).await, 401, "token_expired");
    let fresh = server.access_token(&credential.client_id, &credential.secret, None).await;
    assert_eq!(server.client(&fresh).get(&path).await.status, 200, "the credential itself still works");
}

// 4. Signing keys.

#[tokio::test]
async fn rotating_the_signing_key_keeps_earlier_tokens_valid_across_a_restart() {
    // A fixed public URL keeps the issuer, and so the earlier tokens' `iss`, across the restart
    // (by default the issuer is the listening address, a new port each start here).
    let public_url = ["--public-url", "https://credledger.test"];
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in_with(data.path(), &public_url).unwrap();
    let admin_pat = server.admin_token.clone().expect("the admin token");
    let (org_id, _, pat) = server.admin().create_org("acme", "ops@acme.example").await;
    let org = Org { id: org_id, owner: server.client(&pat) };
    let credential = org.credential(&[]).await;
    let old_token = server.access_token(&credential.client_id, &credential.secret, None).await;
    assert_eq!(jwt_claims(&old_token)["iss"], "https://credledger.test");
    let old_kid = str_of(&jwt_header(&old_token)["kid"]).to_owned();
    assert_eq!(kids(&jwks(&server).await), HashSet::from([old_kid.clone()]));

    let rotate = "/v1/signing-keys/rotate";
    assert_problem(&org.owner.post_empty(rotate).await, 403, "server_admin_only");
    assert_problem(&server.client(&old_token).post_empty(rotate).await, 403, "server_admin_only");
    let rotated = server.admin().post_empty(rotate).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let new_kid = str_of(&rotated.body["kid"]).to_owned();
    assert_ne!(new_kid, old_kid);
    let both = HashSet::from([old_kid.clone(), new_kid.clone()]);
    assert_eq!(kids(rotated.body["jwks"]["keys"].as_array().expect("keys")), both, "{rotated:?}");
    assert_eq!(kids(&jwks(&server).await), both);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.path().join("signing-keys.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is readable by others: {mode:o}");
    }

    assert_eq!(server.client(&old_token).get(&org.projects()).await.status, 200, "the old key still verifies");
    let new_token = server.access_token(&credential.client_id, &credential.secret, None).await;
    assert_eq!(jwt_header(&new_token)["kid"], new_kid.as_str());
    assert_eq!(server.client(&new_token).get(&org.projects()).await.status, 200);

    server.stop().unwrap();
    let server = Server::start_in_with(data.path(), &public_url).unwrap();
    assert_eq!(kids(&jwks(&server).await), both, "the restart lost a key");
    for token in [&old_token, &new_token] {
        assert_eq!(server.client(token).get(&org.projects()).await.status, 200, "after the restart");
    }
    let later = server.access_token(&credential.client_id, &credential.secret, None).await;
    assert_eq!(jwt_header(&later)["kid"], new_kid.as_str(), "the rotated key stays current");
    assert_eq!(server.client(&admin_pat).post_empty(rotate).await.status, 200, "the admin still rotates");
}

#[tokio::test]
async fn an_access_token_verifies_with_the_jwks_alone_outside_the_server() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential(&[READ]).await;
    let token = server.access_token(&credential.client_id, &credential.secret, None).await;
    let keys = jwks(&server).await;
    let kid = jwt_header(&token)["kid"].clone();
    let jwk = keys.iter().find(|key| key["kid"] == kid).expect("the token's key is published");
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"], &jwk["use"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"), &json!("sig"))
    );
    let x = str_of(&jwk["x"]);

    // ed25519-dalek, by hand: the signature over `header.payload`.
    let public: [u8; 32] = URL_SAFE_NO_PAD.decode(x).unwrap().try_into().expect("32 bytes");
    let verifying = VerifyingKey::from_bytes(&public).expect("a valid Ed25519 point");
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).expect("64 bytes");
    verifying.verify_strict(signed.as_bytes(), &signature).expect("the signature verifies");
    assert!(verifying.verify_strict(format!("{signed}x").as_bytes(), &signature).is_err());

    // jsonwebtoken, with the audience and issuer checked.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["credledger-api"]);
    validation.set_issuer(&[&server.base_url]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let decoding = jsonwebtoken::DecodingKey::from_ed_components(x).unwrap();
    let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).expect("jsonwebtoken verifies");
    assert_eq!(
        (data.claims["sub"].as_str(), data.claims["scope"].as_str()),
        (Some(credential.id.as_str()), Some(READ))
    );
    validation.set_audience(&["another-api"]);
    assert!(jsonwebtoken::decode::<Value>(&token, &decoding, &validation).is_err(), "the audience check is live");

    // PyJWT, when the machine has it.
    let has_pyjwt = std::process::Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !has_pyjwt {
        eprintln!("note: python3 with PyJWT and cryptography is missing; verified with Rust libraries only");
        return;
    }
    let script = "import json, sys, jwt\n\
        jwks, token, issuer = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]\n\
        kid = jwt.get_unverified_header(token)['kid']\n\
        key = jwt.PyJWK(next(k for k in jwks['keys'] if k['kid'] == kid))\n\
        claims = jwt.decode(token, key.key, algorithms=['EdDSA'], audience='credledger-api', issuer=issuer)\n\
        print('OK', claims['sub'])\n";
    let jwks_text = json!({ "keys": keys }).to_string();
    let output = std::process::Command::new("python3")
        .args(["-c", script, &jwks_text, &token, &server.base_url])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "PyJWT refused the token: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.trim(), format!("OK {}", credential.id));
}

#[tokio::test]
async fn the_metadata_names_the_endpoints_and_the_grant() {
    let server = Server::start().unwrap();
    let reply = Client::anonymous(&server).get("/.well-known/oauth-authorization-server").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let metadata = &reply.body;
    let base = &server.base_url;
    assert_eq!(metadata["issuer"], base.as_str(), "{metadata}");
    assert_eq!(metadata["token_endpoint"], format!("{base}/oauth2/token"), "{metadata}");
    assert_eq!(metadata["introspection_endpoint"], format!("{base}/oauth2/introspect"), "{metadata}");
    assert_eq!(metadata["jwks_uri"], format!("{base}/.well-known/jwks.json"), "{metadata}");
    let grants = metadata["grant_types_supported"].as_array().expect("grant_types_supported");
    assert!(grants.contains(&json!("client_credentials")), "{metadata}");

    // The advertised endpoints are the ones that work.
    let org = new_org(&server, "acme").await;
    let credential = org.credential(&[]).await;
    let reply = reqwest::Client::new()
        .post(str_of(&metadata["token_endpoint"]))
        .basic_auth(&credential.client_id, Some(&credential.secret))
        .form(&GRANT)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let token: Value = reply.json().await.unwrap();
    let jwks: Value = reqwest::get(str_of(&metadata["jwks_uri"])).await.unwrap().json().await.unwrap();
    let kid = jwt_header(str_of(&token["access_token"]))["kid"].clone();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|key| key["kid"] == kid), "{jwks}");
}
