//! End-to-end tests of service credentials (DESIGN.md §2, §5, §8) against the real binary:
//! owners only, the client secret shown once, usage shown in the view, rotation with and without
//! a grace period, transfer, revocation, and the brute-force protection of client secrets at the
//! token endpoint (lock after consecutive failures, throttling per source address).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{
    Client, ClientAuth, OAUTH_USER_AGENT, OAuthReply, Reply, Server, ServiceCredential, assert_oauth_error, eventually,
    log_events, stream_events,
};

const TOKEN: &str = "/oauth2/token";
const READ: &str = "credledger-api/read";
const WRITE: &str = "credledger-api/write";
const GRANT: [(&str, &str); 1] = [("grant_type", "client_credentials")];

/// An organization with its owner, who calls the API with the owner PAT.
struct Org {
    id: String,
    owner_id: String,
    owner: Client,
}

async fn new_org(server: &Server, name: &str) -> Org {
    let (id, owner_id, pat) = server.admin().create_org(name, &format!("ops@{name}.example")).await;
    Org { id, owner_id, owner: server.client(&pat) }
}

impl Org {
    async fn credential(&self) -> ServiceCredential {
        self.owner.create_service_credential(&self.id, json!({ "name": "release pipeline" })).await
    }

    fn list_path(&self) -> String {
        format!("/v1/service-credentials/{}", self.id)
    }

    fn path(&self, id: &str) -> String {
        format!("/v1/service-credentials/{}/{id}", self.id)
    }

    async fn view(&self, id: &str) -> Value {
        let reply = self.owner.get(&self.path(id)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    }
}

/// A token request by HTTP Basic with this secret.
async fn grant(server: &Server, client_id: &str, secret: &str) -> OAuthReply {
    server.oauth_form(TOKEN, ClientAuth::Basic { id: client_id, secret }, &GRANT).await
}

/// A well-formed client secret (valid checksum) that no server issued.
fn unissued_secret(n: u64) -> String {
    let head = format!("cl_cs_{n:064x}");
    format!("{head}{:08x}", crc32(head.as_bytes()))
}

/// CRC-32 (IEEE), as the token format's checksum.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{reply:?}");
    assert!(reply.content_type.starts_with("application/problem+json"), "{reply:?}");
}

/// Asserts a 429 with a `Retry-After` of at most `max_seconds`.
#[track_caller]
fn assert_throttled(reply: &OAuthReply, max_seconds: u64) {
    assert_eq!(reply.status, 429, "{reply:?}");
    let retry_after: u64 = reply.header("retry-after").parse().unwrap_or_else(|_| panic!("Retry-After: {reply:?}"));
    assert!((1..=max_seconds).contains(&retry_after), "Retry-After {retry_after}: {reply:?}");
    assert!(reply.body["error"].is_string() && reply.body["error_description"].is_string(), "{reply:?}");
    assert_eq!(reply.header("cache-control"), "no-store", "{reply:?}");
}

/// The denials of a credential's usage stream as (reason, count).
fn denials(server: &Server, credential: &str) -> Vec<(String, u64)> {
    stream_events(&server.data_dir, &format!("usage-{credential}"), "CredentialAccessDenied")
        .iter()
        .map(|e| {
            (
                e["payload"]["reason"].as_str().unwrap_or_default().to_owned(),
                e["payload"]["count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

// 1. Creation: owners only, the secret shown once.

#[tokio::test]
async fn only_owners_create_service_credentials_and_the_secret_is_shown_once() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let body = json!({ "name": "GitHub Actions — release", "scopes": [READ, WRITE] });
    let reply = org.owner.post(&org.list_path(), body.clone()).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let created = &reply.body;
    let client_id = created["clientId"].as_str().expect("clientId");
    let hex = client_id.strip_prefix("cl_ci_").expect("a cl_ci_ client id");
    assert!(hex.len() == 24 && is_lower_hex(hex), "{client_id}");
    let secret = created["clientSecret"].as_str().expect("clientSecret");
    let random = secret.strip_prefix("cl_cs_").expect("a cl_cs_ secret");
    assert!(random.len() == 72 && is_lower_hex(random), "{secret}");
    let (signed, checksum) = secret.split_at(secret.len() - 8);
    assert_eq!(format!("{:08x}", crc32(signed.as_bytes())), checksum, "the last 8 hex are the CRC32 of the rest");
    let prefix = created["secretPrefix"].as_str().expect("secretPrefix");
    assert!(secret.starts_with(prefix) && prefix.len() < secret.len() / 2, "prefix {prefix} of {secret}");
    assert_eq!(created["name"], "GitHub Actions — release");
    assert_eq!(created["owner"], org.owner_id.as_str());
    assert_eq!(created["state"], "active");
    assert_eq!(created["scopes"], json!([READ, WRITE]));
    assert_eq!((&created["useCount"], &created["lastUsedAt"]), (&json!(0), &Value::Null), "{created}");
    let id = created["id"].as_str().expect("id");

    let shown = org.view(id).await;
    let listed = org.owner.get(&org.list_path()).await;
    assert_eq!(listed.body["items"][0]["id"], id, "{listed:?}");
    for view in [&shown, &listed.body] {
        assert!(!view.to_string().contains(&random[..64]), "a view shows the secret: {view}");
        assert!(!view.to_string().contains("clientSecret"), "{view}");
    }
    assert_eq!((&shown["clientId"], &shown["secretPrefix"]), (&json!(client_id), &json!(prefix)));
    let log: String = log_events(&server.data_dir).iter().map(Value::to_string).collect();
    assert!(!log.contains(&random[..64]), "the log holds the secret");
    assert_eq!(stream_events(&server.data_dir, &format!("sc-{id}"), "ServiceCredentialCreated").len(), 1);

    let another = org.credential().await;
    assert!(another.client_id != client_id && another.secret != secret, "credentials share a value");

    let (_, admin_pat) = org.owner.add_member_with_token(&org.id, "admin@acme.example", "admin").await;
    let (_, member_pat) = org.owner.add_member_with_token(&org.id, "dev@acme.example", "member").await;
    let (_, machine_token) = org.owner.create_token(&org.id, json!({ "name": "ci", "environmentHint": "ci" })).await;
    let before = log_events(&server.data_dir).len();
    for (who, client, code) in [
        ("an admin", server.client(&admin_pat), "insufficient_role"),
        ("a member", server.client(&member_pat), "insufficient_role"),
        ("the server admin", server.admin(), "insufficient_role"),
        ("a machine token", server.client(&machine_token), "machine_credential_forbidden"),
    ] {
        let create = client.post(&org.list_path(), body.clone()).await;
        assert_eq!((create.status, create.code()), (403, code), "{who} creates: {create:?}");
        let list = client.get(&org.list_path()).await;
        assert_eq!((list.status, list.code()), (403, code), "{who} lists: {list:?}");
        let show = client.get(&org.path(id)).await;
        assert_eq!((show.status, show.code()), (403, code), "{who} reads: {show:?}");
    }
    let created_after: usize = log_events(&server.data_dir)[before..]
        .iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("ServiceCredential")))
        .count();
    assert_eq!(created_after, 0, "a refused request changed a service credential");
}

#[tokio::test]
async fn token_requests_and_access_token_use_show_in_the_view() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential().await;
    let before = org.view(&credential.id).await;
    assert_eq!((&before["useCount"], &before["lastUsedAt"]), (&json!(0), &Value::Null), "{before}");

    assert_eq!(grant(&server, &credential.client_id, &credential.secret).await.status, 200);
    let post = ClientAuth::Post { id: &credential.client_id, secret: &credential.secret };
    let reply = server.oauth_form(TOKEN, post, &GRANT).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let view = eventually("two uses in the view", Duration::from_secs(5), async || {
        Some(org.view(&credential.id).await).filter(|view| view["useCount"] == 2)
    })
    .await;
    assert_eq!(view["lastUsedIp"], "127.0.0.1", "{view}");
    assert_eq!(view["lastUsedUserAgent"], OAUTH_USER_AGENT, "{view}");
    assert!(view["lastUsedAt"].is_string(), "{view}");

    // A request with the access token is a use of the credential as well.
    let token = reply.body["access_token"].as_str().expect("access_token");
    let pipeline = server.client(token).with_user_agent("deployer/3");
    assert_eq!(pipeline.get(&format!("/v1/projects/{}", org.id)).await.status, 200);
    let view = eventually("the access token's use", Duration::from_secs(5), async || {
        Some(org.view(&credential.id).await).filter(|view| view["useCount"] == 3)
    })
    .await;
    assert_eq!(view["lastUsedUserAgent"], "deployer/3", "{view}");
    // Compared as instants: RFC 3339 text drops trailing zeros (".86Z" is before ".864Z").
    let instant = |value: &Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).map(|at| at.to_utc()).expect("RFC 3339")
    };
    assert!(instant(&view["lastUsedAt"]) >= instant(&before["createdAt"]), "{view}");
    let listed = org.owner.get(&org.list_path()).await;
    assert_eq!(listed.body["items"][0]["useCount"], 3, "{listed:?}");
}

// 2. Rotation, transfer, revocation.

#[tokio::test]
async fn rotation_without_a_grace_period_stops_the_old_secret_at_once() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential().await;
    let reply = org.owner.post_empty(&format!("{}/rotate", org.path(&credential.id))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let new_secret = reply.body["clientSecret"].as_str().expect("the new secret, shown once");
    assert_ne!(new_secret, credential.secret);
    assert_eq!(reply.body["clientId"], credential.client_id.as_str(), "rotation keeps the client id");
    assert!(new_secret.starts_with(reply.body["secretPrefix"].as_str().expect("secretPrefix")), "{reply:?}");

    assert_oauth_error(&grant(&server, &credential.client_id, &credential.secret).await, 401, "invalid_client");
    assert_eq!(grant(&server, &credential.client_id, new_secret).await.status, 200);
    assert!(!org.view(&credential.id).await.to_string().contains(&new_secret[6..70]), "the view shows the secret");
    let rotated = stream_events(&server.data_dir, &format!("sc-{}", credential.id), "ServiceCredentialSecretRotated");
    assert_eq!(rotated.len(), 1, "{rotated:?}");
}

#[tokio::test]
async fn rotation_with_a_grace_period_keeps_the_old_secret_until_it_ends() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential().await;
    let reply =
        org.owner.post(&format!("{}/rotate", org.path(&credential.id)), json!({ "gracePeriodSeconds": 60 })).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let new_secret = reply.body["clientSecret"].as_str().expect("clientSecret");
    assert_eq!(grant(&server, &credential.client_id, &credential.secret).await.status, 200, "within the grace period");
    assert_eq!(grant(&server, &credential.client_id, new_secret).await.status, 200);

    server.shift_clock(90);
    assert_oauth_error(&grant(&server, &credential.client_id, &credential.secret).await, 401, "invalid_client");
    assert_eq!(grant(&server, &credential.client_id, new_secret).await.status, 200);
}

#[tokio::test]
async fn transfer_gives_the_credential_to_another_member_and_it_keeps_working() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential().await;
    let (admin_id, admin_pat) = org.owner.add_member_with_token(&org.id, "admin@acme.example", "admin").await;
    let transfer = format!("{}/transfer", org.path(&credential.id));
    assert_problem(
        &server.client(&admin_pat).post(&transfer, json!({ "to": admin_id })).await,
        403,
        "insufficient_role",
    );
    let unknown = org.owner.post(&transfer, json!({ "to": "nobody@acme.example" })).await;
    assert!((400..500).contains(&unknown.status), "{unknown:?}");

    let reply = org.owner.post(&transfer, json!({ "to": "Admin@acme.example" })).await;
    assert_eq!((reply.status, reply.body["owner"].as_str()), (200, Some(admin_id.as_str())), "{reply:?}");
    assert_eq!(org.view(&credential.id).await["owner"], admin_id.as_str());
    let events = stream_events(&server.data_dir, &format!("sc-{}", credential.id), "ServiceCredentialTransferred");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((&events[0]["payload"]["from"], &events[0]["payload"]["to"]), (&json!(org.owner_id), &json!(admin_id)));
    assert_eq!(grant(&server, &credential.client_id, &credential.secret).await.status, 200);
}

#[tokio::test]
async fn a_revoked_service_credential_gets_invalid_client_and_stays_listed() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential().await;
    let reply = org.owner.post_empty(&format!("{}/revoke", org.path(&credential.id))).await;
    assert_eq!((reply.status, reply.body["state"].as_str()), (200, Some("revoked")), "{reply:?}");
    assert_oauth_error(&grant(&server, &credential.client_id, &credential.secret).await, 401, "invalid_client");
    let post = ClientAuth::Post { id: &credential.client_id, secret: &credential.secret };
    assert_oauth_error(&server.oauth_form(TOKEN, post, &GRANT).await, 401, "invalid_client");
    let listed = org.owner.get(&org.list_path()).await;
    assert_eq!(listed.body["items"][0]["state"], "revoked", "{listed:?}");
    let recorded = eventually("the revoked denials", Duration::from_secs(3), async || {
        let denials = denials(&server, &credential.id);
        (denials.iter().map(|(_, count)| count).sum::<u64>() == 2).then_some(denials)
    })
    .await;
    assert!(recorded.iter().all(|(reason, _)| reason == "revoked"), "{recorded:?}");
}

// 3. Brute force.

#[tokio::test]
async fn ten_wrong_secrets_in_a_row_lock_the_client_for_fifteen_minutes() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential().await;
    let bystander = org.credential().await;
    for n in 0..10 {
        let reply = grant(&server, &credential.client_id, &unissued_secret(n)).await;
        assert_oauth_error(&reply, 401, "invalid_client");
    }
    assert_throttled(&grant(&server, &credential.client_id, &credential.secret).await, 15 * 60);
    let post = ClientAuth::Post { id: &credential.client_id, secret: &credential.secret };
    assert_throttled(&server.oauth_form(TOKEN, post, &GRANT).await, 15 * 60);
    assert_eq!(grant(&server, &bystander.client_id, &bystander.secret).await.status, 200, "the lock is per client");

    let recorded = eventually("ten invalid_secret denials and a lock", Duration::from_secs(3), async || {
        let denials = denials(&server, &credential.id);
        let invalid: u64 = denials.iter().filter(|(reason, _)| reason == "invalid_secret").map(|(_, n)| n).sum();
        (invalid >= 10 && denials.iter().any(|(reason, _)| reason == "locked")).then_some(denials)
    })
    .await;
    let invalid: u64 = recorded.iter().filter(|(reason, _)| reason == "invalid_secret").map(|(_, n)| n).sum();
    assert_eq!(invalid, 10, "{recorded:?}");
    let locked: Vec<_> = recorded.iter().filter(|(reason, _)| reason == "locked").collect();
    assert_eq!(locked, [&("locked".to_owned(), 1)], "{recorded:?}");
    assert!(denials(&server, &bystander.id).is_empty());

    server.shift_clock(15 * 60 + 1);
    assert_eq!(grant(&server, &credential.client_id, &credential.secret).await.status, 200, "the lock ends");
}

#[tokio::test]
async fn twenty_failures_from_one_address_throttle_every_client_from_it() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let credential = org.credential().await;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() & ((1 << 80) - 1);
    for n in 0..20 {
        let client_id = format!("cl_ci_{:024x}", seed + n);
        let reply = grant(&server, &client_id, &unissued_secret(n as u64)).await;
        assert_oauth_error(&reply, 401, "invalid_client");
    }
    assert_throttled(&grant(&server, &credential.client_id, &credential.secret).await, 60);
    assert_throttled(&grant(&server, &format!("cl_ci_{:024x}", seed + 100), &credential.secret).await, 60);

    server.shift_clock(61);
    assert_eq!(grant(&server, &credential.client_id, &credential.secret).await.status, 200, "the window ends");
}
