//! End-to-end tests of the machine-token API (DESIGN.md §2, §3, §5, §8) against the real
//! binary: the plaintext shown once, every lifecycle transition and every forbidden one, roll,
//! the 401/403 reasons of the authentication hot path, conditional access, scopes, blocked
//! routes, organization isolation, the usage record, restarts, the expiry sweeper, transfer,
//! the list filters and cursor pagination.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{Client, Reply, Server, log_events};

const DAY: i64 = 86_400;

/// An organization with its owner, who calls the API with the owner PAT.
struct Org {
    id: String,
    owner_id: String,
    owner_email: String,
    /// The owner's PAT, kept to build a client for a restarted server.
    pat: String,
    owner: Client,
}

async fn new_org(server: &Server, name: &str) -> Org {
    let owner_email = format!("ops@{name}.example");
    let (id, owner_id, pat) = server.admin().create_org(name, &owner_email).await;
    Org { id, owner_id, owner_email, owner: server.client(&pat), pat }
}

impl Org {
    /// Creates a token with the given extra fields and returns (id, plaintext).
    async fn token(&self, name: &str, extra: Value) -> (String, String) {
        let mut body = json!({ "name": name, "environmentHint": "prod" });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.owner.create_token(&self.id, body).await
    }

    fn path(&self, token: &str) -> String {
        format!("/v1/machine-tokens/{}/{token}", self.id)
    }

    fn list_path(&self, query: &str) -> String {
        format!("/v1/machine-tokens/{}{query}", self.id)
    }

    async fn view(&self, token: &str) -> Value {
        let reply = self.owner.get(&self.path(token)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    }

    /// The ids a list query returns (one page).
    async fn listed(&self, query: &str) -> Vec<String> {
        let reply = self.owner.get(&self.list_path(query)).await;
        assert_eq!(reply.status, 200, "{query}: {reply:?}");
        reply.body["items"].as_array().expect("items").iter().map(|item| str_of(&item["id"])).collect()
    }
}

fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn ids(tokens: &[&String]) -> Vec<String> {
    sorted(tokens.iter().map(|&t| t.clone()).collect())
}

/// Polls `check` until it returns `Some`, or fails the test after `within`.
async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The log's events of one stream and type.
fn events_of(server: &Server, stream: &str, event_type: &str) -> Vec<Value> {
    log_events(&server.data_dir).into_iter().filter(|e| e["stream"] == stream && e["type"] == event_type).collect()
}

fn stream_len(server: &Server, stream: &str) -> usize {
    log_events(&server.data_dir).iter().filter(|e| e["stream"] == stream).count()
}

/// Asserts a refusal's status and problem code.
#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{reply:?}");
    assert!(reply.content_type.starts_with("application/problem+json"), "{reply:?}");
}

/// A GET with an optional raw `Authorization: Bearer` value, keeping the headers.
async fn raw_get(server: &Server, path: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(server.url(path));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.expect("request sent")
}

/// Asserts a 401 with the code, a Bearer challenge and a problem+json body.
async fn assert_unauthorized(server: &Server, path: &str, bearer: Option<&str>, code: &str) {
    let response = raw_get(server, path, bearer).await;
    let headers = response.headers().clone();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!((status, body["code"].as_str()), (401, Some(code)), "{body}");
    let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{code}: WWW-Authenticate is {challenge:?}");
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/problem+json"), "{code}: content-type is {content_type:?}");
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

/// A value in the machine-token format, with a valid checksum, that no server issued.
fn well_formed_unknown_token() -> String {
    let head = format!("cl_mt_prod_{}", "5a".repeat(32));
    format!("{head}{:08x}", crc32(head.as_bytes()))
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp (`2025-01-01T10:00:00.123Z`).
fn unix_millis(rfc3339: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| -> i64 { rfc3339[range].parse().expect(rfc3339) };
    let (year, month, day) = (field(0..4), field(5..7), field(8..10));
    let seconds = field(11..13) * 3600 + field(14..16) * 60 + field(17..19);
    let fraction: String =
        rfc3339[19..].strip_prefix('.').unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
    let millis = format!("{fraction:0<3}")[..3].parse::<i64>().expect(rfc3339);
    assert!(rfc3339.ends_with('Z') || rfc3339.ends_with("+00:00"), "not UTC: {rfc3339}");
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * DAY + seconds) * 1000 + millis
}

// 1. Creation shows the plaintext once.

#[tokio::test]
async fn create_shows_the_plaintext_once_and_never_again() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let reply = org
        .owner
        .post(&org.list_path(""), json!({ "name": "ci", "environmentHint": "prod", "expiresInDays": 90 }))
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let token = str_of(&reply.body["token"]);
    let body = token.strip_prefix("cl_mt_prod_").expect("a cl_mt_prod_ token");
    assert!(body.len() == 72 && body.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{token}");
    let (signed, checksum) = token.split_at(token.len() - 8);
    assert_eq!(format!("{:08x}", crc32(signed.as_bytes())), checksum, "the last 8 hex are the CRC32 of the rest");
    for field in [
        "id",
        "name",
        "environmentHint",
        "projectId",
        "owner",
        "state",
        "scopes",
        "conditions",
        "tokenPrefix",
        "createdAt",
        "expiresAt",
        "lastUsedAt",
        "lastUsedIp",
        "lastUsedUserAgent",
        "useCount",
        "flagged",
    ] {
        assert!(reply.body.get(field).is_some(), "the view lacks {field}: {}", reply.body);
    }
    assert_eq!(reply.body["name"], "ci");
    assert_eq!(reply.body["environmentHint"], "prod");
    assert_eq!(reply.body["owner"], org.owner_id.as_str());
    assert_eq!(reply.body["state"], "active");
    assert_eq!(reply.body["useCount"], 0);
    assert!(reply.body["lastUsedAt"].is_null() && reply.body["flagged"].is_null(), "{}", reply.body);
    let prefix = str_of(&reply.body["tokenPrefix"]);
    assert!(token.starts_with(&prefix) && prefix.len() < token.len() / 2, "prefix {prefix} of {token}");
    let expires = unix_millis(&str_of(&reply.body["expiresAt"]));
    let created = unix_millis(&str_of(&reply.body["createdAt"]));
    assert_eq!(expires - created, 90 * DAY * 1000, "expiresAt is createdAt + 90 days");

    let id = str_of(&reply.body["id"]);
    let shown = org.owner.get(&org.path(&id)).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert!(shown.body.get("token").is_none(), "{shown:?}");
    assert!(!shown.body.to_string().contains(&token), "GET shows the plaintext: {}", shown.body);
    let list = org.owner.get(&org.list_path("")).await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.body["items"][0]["id"], id.as_str());
    assert!(!list.body.to_string().contains(&token), "the list shows the plaintext: {}", list.body);
    // Nor does the log: payloads carry hashes and prefixes only.
    let log: String = log_events(&server.data_dir).iter().map(Value::to_string).collect();
    assert!(!log.contains(&token[prefix.len()..]), "the log holds the plaintext");
}

// 2. Lifecycle transitions.

#[tokio::test]
async fn disable_and_enable_switch_authentication_off_and_on() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, value) = org.token("ci", json!({})).await;
    let machine = server.client(&value);
    assert_eq!(machine.get(&org.path(&id)).await.status, 200);

    let disabled = org.owner.post_empty(&format!("{}/disable", org.path(&id))).await;
    assert_eq!((disabled.status, &disabled.body["state"]), (200, &json!("disabled")), "{disabled:?}");
    assert_problem(&machine.get(&org.path(&id)).await, 401, "disabled");

    let enabled = org.owner.post_empty(&format!("{}/enable", org.path(&id))).await;
    assert_eq!((enabled.status, &enabled.body["state"]), (200, &json!("active")), "{enabled:?}");
    assert_eq!(machine.get(&org.path(&id)).await.status, 200, "enabled again, the same value works");
    let types: Vec<Value> = log_events(&server.data_dir)
        .into_iter()
        .filter(|e| e["stream"] == format!("mt-{id}"))
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(types, [json!("MachineTokenCreated"), json!("MachineTokenDisabled"), json!("MachineTokenEnabled")]);
}

#[tokio::test]
async fn disabling_twice_or_enabling_an_active_token_is_409_and_records_nothing() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, _) = org.token("ci", json!({})).await;
    let stream = format!("mt-{id}");

    assert_problem(&org.owner.post_empty(&format!("{}/enable", org.path(&id))).await, 409, "invalid_transition");
    assert_eq!(stream_len(&server, &stream), 1);
    assert_eq!(org.owner.post_empty(&format!("{}/disable", org.path(&id))).await.status, 200);
    assert_problem(&org.owner.post_empty(&format!("{}/disable", org.path(&id))).await, 409, "invalid_transition");
    assert_eq!(stream_len(&server, &stream), 2, "a refused command appends nothing");
    assert_eq!(org.view(&id).await["state"], "disabled");
}

#[tokio::test]
async fn roll_keeps_a_disabled_token_disabled() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, _) = org.token("ci", json!({})).await;
    assert_eq!(org.owner.post_empty(&format!("{}/disable", org.path(&id))).await.status, 200);
    let rolled = org.owner.post_empty(&format!("{}/roll", org.path(&id))).await;
    assert_eq!((rolled.status, &rolled.body["state"]), (200, &json!("disabled")), "{rolled:?}");
    assert_problem(&server.client(&str_of(&rolled.body["token"])).get(&org.path(&id)).await, 401, "disabled");
}

#[tokio::test]
async fn a_revoked_token_refuses_every_command() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, value) = org.token("ci", json!({})).await;
    let revoked = org.owner.delete(&org.path(&id)).await;
    assert_eq!((revoked.status, &revoked.body["state"]), (200, &json!("revoked")), "{revoked:?}");
    let stream = format!("mt-{id}");
    let recorded = stream_len(&server, &stream);

    let path = org.path(&id);
    for (what, reply) in [
        ("disable", org.owner.post_empty(&format!("{path}/disable")).await),
        ("enable", org.owner.post_empty(&format!("{path}/enable")).await),
        ("roll", org.owner.post_empty(&format!("{path}/roll")).await),
        ("transfer", org.owner.post(&format!("{path}/transfer"), json!({ "to": org.owner_email })).await),
        ("patch", org.owner.patch(&path, json!({ "name": "renamed" })).await),
        ("delete", org.owner.delete(&path).await),
    ] {
        assert_eq!((reply.status, reply.code()), (409, "invalid_transition"), "{what}: {reply:?}");
    }
    assert_eq!(stream_len(&server, &stream), recorded, "refused commands append nothing");
    let view = org.view(&id).await;
    assert_eq!((&view["state"], &view["name"]), (&json!("revoked"), &json!("ci")), "{view}");
    assert_problem(&server.client(&value).get(&path).await, 401, "revoked");
}

#[tokio::test]
async fn an_expired_token_is_refused_and_only_roll_brings_it_back() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, value) = org.token("ci", json!({ "expiresInDays": 1 })).await;
    server.shift_clock(2 * DAY);

    assert_unauthorized(&server, &org.path(&id), Some(&value), "expired").await;
    let list = org.owner.get(&org.list_path("")).await;
    assert_eq!(list.body["items"][0]["state"], "expired", "{list:?}");
    assert_eq!(org.listed("?state=expired").await, ids(&[&id]));
    assert!(org.listed("?state=active").await.is_empty());
    let path = org.path(&id);
    assert_problem(&org.owner.post_empty(&format!("{path}/enable")).await, 409, "invalid_transition");
    assert_problem(&org.owner.post_empty(&format!("{path}/disable")).await, 409, "invalid_transition");
    // A new expiry without a new value would revive the old value: only roll may.
    assert_problem(&org.owner.patch(&path, json!({ "expiresInDays": 30 })).await, 409, "invalid_transition");
    assert_problem(&server.client(&value).get(&path).await, 401, "expired");

    let rolled = org.owner.post_empty(&format!("{path}/roll")).await;
    assert_eq!((rolled.status, &rolled.body["state"]), (200, &json!("active")), "{rolled:?}");
    let server_now_ms = (now_unix() + 2 * DAY) * 1000;
    let new_expiry = unix_millis(&str_of(&rolled.body["expiresAt"]));
    assert!((new_expiry - (server_now_ms + DAY * 1000)).abs() < 60_000, "the new expiry is now + 1 day: {rolled:?}");
    let fresh = server.client(&str_of(&rolled.body["token"]));
    assert_eq!(fresh.get(&path).await.status, 200, "the rolled value works");
    assert_problem(&server.client(&value).get(&path).await, 401, "revoked");
    assert_eq!(org.listed("?state=active").await, [id]);
}

// 3. Roll.

#[tokio::test]
async fn roll_makes_the_old_value_fail_on_the_very_next_request() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let conditions = json!({ "ipAllowlist": ["127.0.0.0/8"], "userAgentPattern": "ci/*" });
    let (id, old) = org
        .token("deploy", json!({ "scopes": ["credledger-api/read"], "conditions": conditions, "expiresInDays": 30 }))
        .await;
    let path = org.path(&id);
    assert_eq!(server.client(&old).with_user_agent("ci/1").get(&path).await.status, 200);
    let before = org.view(&id).await;

    let rolled = org.owner.post_empty(&format!("{path}/roll")).await;
    assert_eq!(rolled.status, 200, "{rolled:?}");
    let new = str_of(&rolled.body["token"]);
    assert_ne!(new, old);
    assert!(new.starts_with("cl_mt_prod_"), "{new}");
    assert_problem(&server.client(&old).with_user_agent("ci/1").get(&path).await, 401, "revoked");
    assert_eq!(server.client(&new).with_user_agent("ci/1").get(&path).await.status, 200);

    let after = org.view(&id).await;
    for field in ["id", "name", "owner", "conditions", "scopes", "environmentHint", "state", "createdAt"] {
        assert_eq!(after[field], before[field], "roll changed {field}");
    }
    assert_ne!(after["tokenPrefix"], before["tokenPrefix"]);
    assert!(new.starts_with(&str_of(&after["tokenPrefix"])));
    assert_eq!(events_of(&server, &format!("mt-{id}"), "MachineTokenRolled").len(), 1);
}

#[tokio::test]
async fn roll_with_a_grace_period_keeps_the_old_value_until_it_ends() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, old) = org.token("deploy", json!({})).await;
    let path = org.path(&id);
    let rolled = org.owner.post(&format!("{path}/roll"), json!({ "gracePeriodSeconds": 60 })).await;
    assert_eq!(rolled.status, 200, "{rolled:?}");
    let new = str_of(&rolled.body["token"]);
    assert_eq!(server.client(&old).get(&path).await.status, 200, "the old value works during the grace period");
    assert_eq!(server.client(&new).get(&path).await.status, 200);
    let in_grace = unix_millis(&str_of(&org.view(&id).await["previousValueValidUntil"]));
    assert!((in_grace - (now_unix() + 60) * 1000).abs() < 5000, "the view says until when the old value works");
    let event = &events_of(&server, &format!("mt-{id}"), "MachineTokenRolled")[0];
    assert!(event["payload"]["previousValidUntil"].is_string(), "the grace period is recorded: {event}");

    server.shift_clock(120);
    assert_problem(&server.client(&old).get(&path).await, 401, "revoked");
    assert_eq!(server.client(&new).get(&path).await.status, 200);
    assert!(org.view(&id).await.get("previousValueValidUntil").is_none());
}

#[tokio::test]
async fn a_later_roll_or_a_revoke_ends_a_grace_period_at_once() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, first) = org.token("deploy", json!({})).await;
    let path = org.path(&id);
    let roll = org.owner.post(&format!("{path}/roll"), json!({ "gracePeriodSeconds": 600 })).await;
    let second = str_of(&roll.body["token"]);
    let roll = org.owner.post(&format!("{path}/roll"), json!({ "gracePeriodSeconds": 600 })).await;
    assert_eq!(roll.status, 200, "{roll:?}");
    let third = str_of(&roll.body["token"]);
    assert_problem(&server.client(&first).get(&path).await, 401, "revoked");
    assert_eq!(server.client(&second).get(&path).await.status, 200, "only the value just replaced is in grace");
    assert_eq!(server.client(&third).get(&path).await.status, 200);

    assert_eq!(org.owner.delete(&path).await.status, 200);
    for value in [&first, &second, &third] {
        assert_problem(&server.client(value).get(&path).await, 401, "revoked");
    }
}

// 4. Authentication refusals.

#[tokio::test]
async fn unknown_mistyped_and_missing_tokens_get_401_with_a_bearer_challenge() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, value) = org.token("ci", json!({})).await;
    let path = org.path(&id);

    assert_unauthorized(&server, &path, None, "missing_credentials").await;
    assert_unauthorized(&server, &path, Some(&well_formed_unknown_token()), "invalid_token").await;
    let mut mistyped = value.clone().into_bytes();
    let last = mistyped.len() - 1;
    mistyped[last] = if mistyped[last] == b'0' { b'1' } else { b'0' };
    let mistyped = String::from_utf8(mistyped).unwrap();
    assert_unauthorized(&server, &path, Some(&mistyped), "bad_checksum").await;
    let mut swapped = value.clone().into_bytes();
    swapped[20] = if swapped[20] == b'a' { b'b' } else { b'a' };
    assert_unauthorized(&server, &path, Some(&String::from_utf8(swapped).unwrap()), "bad_checksum").await;
    assert_unauthorized(&server, &path, Some("not-a-token"), "malformed_token").await;
    assert_eq!(raw_get(&server, &path, Some(&value)).await.status(), 200);
}

#[tokio::test]
async fn disabled_and_revoked_tokens_get_401_naming_their_state() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (disabled, disabled_value) = org.token("disabled", json!({})).await;
    let (revoked, revoked_value) = org.token("revoked", json!({})).await;
    assert_eq!(org.owner.post_empty(&format!("{}/disable", org.path(&disabled))).await.status, 200);
    assert_eq!(org.owner.delete(&org.path(&revoked)).await.status, 200);

    assert_unauthorized(&server, &org.path(&disabled), Some(&disabled_value), "disabled").await;
    assert_unauthorized(&server, &org.list_path(""), Some(&revoked_value), "revoked").await;
    // Known credentials' refusals are recorded (coalesced, by the denial writer).
    for (id, reason) in [(&disabled, "disabled"), (&revoked, "revoked")] {
        let stream = format!("usage-{id}");
        let denial = eventually("the denial event", Duration::from_secs(5), async || {
            events_of(&server, &stream, "CredentialAccessDenied").pop()
        })
        .await;
        assert_eq!(denial["payload"]["reason"], reason, "{denial}");
    }
}

// 5. Conditional access.

#[tokio::test]
async fn ip_allowlist_believes_forwarded_for_from_a_trusted_proxy() {
    let server = Server::start_with(&["--trusted-proxy", "127.0.0.1/32"]).unwrap();
    let org = new_org(&server, "acme").await;
    let (id, value) =
        org.token("office", json!({ "conditions": { "ipAllowlist": ["203.0.113.0/24", "2001:db8::/32"] } })).await;
    let path = org.path(&id);
    let from = |ip: &str| server.client(&value).with_forwarded_for(ip);

    assert_eq!(from("203.0.113.7").get(&path).await.status, 200);
    assert_eq!(from("2001:db8::1").get(&path).await.status, 200);
    assert_problem(&from("198.51.100.1").get(&path).await, 403, "ip_not_allowed");
    // A forged left-most entry does not help: the right-most untrusted one counts.
    assert_problem(&from("203.0.113.7, 198.51.100.1").get(&path).await, 403, "ip_not_allowed");
    // The proxy itself (no header) is not in the allowlist.
    assert_problem(&server.client(&value).get(&path).await, 403, "ip_not_allowed");
    let used = events_of(&server, &format!("usage-{id}"), "CredentialUsed");
    let ips: Vec<&Value> = used.iter().map(|e| &e["payload"]["ip"]).collect();
    assert_eq!(ips, [&json!("203.0.113.7"), &json!("2001:db8::1")], "the forwarded client IP is recorded");
}

#[tokio::test]
async fn forwarded_for_is_ignored_without_a_trusted_proxy() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (office, office_value) =
        org.token("office", json!({ "conditions": { "ipAllowlist": ["203.0.113.0/24"] } })).await;
    let (local, local_value) = org.token("local", json!({ "conditions": { "ipAllowlist": ["127.0.0.1/32"] } })).await;

    let forged = server.client(&office_value).with_forwarded_for("203.0.113.7");
    assert_problem(&forged.get(&org.path(&office)).await, 403, "ip_not_allowed");
    let local_client = server.client(&local_value).with_forwarded_for("203.0.113.7");
    assert_eq!(local_client.get(&org.path(&local)).await.status, 200, "the request IP is the socket peer");
    let used = events_of(&server, &format!("usage-{local}"), "CredentialUsed");
    assert_eq!(used[0]["payload"]["ip"], "127.0.0.1", "{used:?}");
}

/// The clock shift that puts the server at the next Wednesday, `hour`:00 UTC, or `days_after`
/// days later.
fn shift_to_wednesday(hour: i64, days_after: i64) -> i64 {
    let now = now_unix();
    let today = now.div_euclid(DAY);
    let weekday = (today + 3).rem_euclid(7); // 1970-01-01 was a Thursday; Monday is 0.
    let ahead = match (2 - weekday).rem_euclid(7) {
        0 => 7,
        days => days,
    };
    (today + ahead + days_after) * DAY + hour * 3600 - now
}

#[tokio::test]
async fn time_windows_follow_the_server_clock() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let office_hours = json!({ "timeWindows": [{ "days": ["mon", "tue", "wed", "thu", "fri"], "startUtc": "06:00", "endUtc": "22:00" }] });
    let (office, office_value) = org.token("office", json!({ "conditions": office_hours })).await;
    let friday_night = json!({ "timeWindows": [{ "days": ["fri"], "startUtc": "22:00", "endUtc": "02:00" }] });
    let (night, night_value) = org.token("night", json!({ "conditions": friday_night })).await;
    let office_client = server.client(&office_value);
    let night_client = server.client(&night_value);

    server.shift_clock(shift_to_wednesday(10, 0));
    assert_eq!(office_client.get(&org.path(&office)).await.status, 200, "Wednesday 10:00 is inside mon-fri 06-22");
    assert_problem(&night_client.get(&org.path(&night)).await, 403, "outside_time_window");
    server.shift_clock(shift_to_wednesday(23, 0));
    assert_problem(&office_client.get(&org.path(&office)).await, 403, "outside_time_window");
    server.shift_clock(shift_to_wednesday(1, 3)); // Saturday 01:00: Friday's window runs past midnight.
    assert_eq!(night_client.get(&org.path(&night)).await.status, 200);
    assert_problem(&office_client.get(&org.path(&office)).await, 403, "outside_time_window");
    server.shift_clock(shift_to_wednesday(10, 3)); // Saturday 10:00.
    assert_problem(&office_client.get(&org.path(&office)).await, 403, "outside_time_window");
    assert_problem(&night_client.get(&org.path(&night)).await, 403, "outside_time_window");
}

#[tokio::test]
async fn user_agent_pattern_is_a_glob_that_a_missing_agent_fails() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, value) = org.token("actions", json!({ "conditions": { "userAgentPattern": "github-actions/*" } })).await;
    let path = org.path(&id);

    assert_eq!(server.client(&value).with_user_agent("github-actions/2.3").get(&path).await.status, 200);
    assert_problem(&server.client(&value).with_user_agent("curl/8").get(&path).await, 403, "user_agent_mismatch");
    assert_problem(&server.client(&value).get(&path).await, 403, "user_agent_mismatch");
}

// Who may manage which token.

#[tokio::test]
async fn a_member_and_its_tokens_manage_only_the_tokens_it_owns() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (bob, bob_pat) = org.owner.add_member_with_token(&org.id, "bob@acme.example", "member").await;
    let bob_client = server.client(&bob_pat);
    let (owners, _) = org.token("owners", json!({})).await;
    let (bobs, bobs_value) = bob_client.create_token(&org.id, json!({ "name": "bobs", "environmentHint": "ci" })).await;
    assert_eq!(org.view(&bobs).await["owner"], bob.as_str());

    let bobs_machine = server.client(&bobs_value);
    for (client, refusal) in [(&bob_client, "insufficient_role"), (&bobs_machine, "machine_credential_forbidden")] {
        assert_eq!(client.get(&org.path(&owners)).await.status, 200, "every member reads");
        let reply = client.post_empty(&format!("{}/disable", org.path(&owners))).await;
        assert_problem(&reply, 403, refusal);
    }
    // A machine token cannot lift its own limits, nor act on the tokens of its owner.
    for (method, path, body) in [
        ("PATCH", org.path(&bobs), Some(json!({ "conditions": {} }))),
        ("POST", format!("{}/enable", org.path(&bobs)), None),
        ("POST", org.list_path(""), Some(json!({ "name": "escape", "environmentHint": "ci" }))),
        ("POST", format!("{}/transfer", org.path(&bobs)), Some(json!({ "to": org.owner_id }))),
    ] {
        assert_problem(&bobs_machine.send(method, &path, body).await, 403, "machine_credential_forbidden");
    }
    assert_eq!(org.view(&owners).await["state"], "active");
    let disabled = bob_client.post_empty(&format!("{}/disable", org.path(&bobs))).await;
    assert_eq!((disabled.status, &disabled.body["state"]), (200, &json!("disabled")), "{disabled:?}");
    // Owners manage every token of the organization.
    assert_eq!(org.owner.post_empty(&format!("{}/enable", org.path(&bobs))).await.status, 200);
}

// 6. Scopes.

#[tokio::test]
async fn a_read_scoped_token_can_get_but_not_change_anything() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (reader, reader_value) = org.token("reader", json!({ "scopes": ["credledger-api/read"] })).await;
    let (other, _) = org.token("other", json!({})).await;
    let machine = server.client(&reader_value);

    assert_eq!(machine.get(&org.list_path("")).await.status, 200);
    assert_eq!(machine.get(&org.path(&other)).await.status, 200);
    let other_path = org.path(&other);
    assert_problem(&machine.post_empty(&format!("{other_path}/disable")).await, 403, "insufficient_scope");
    assert_problem(&machine.patch(&other_path, json!({ "name": "renamed" })).await, 403, "insufficient_scope");
    assert_problem(&machine.delete(&other_path).await, 403, "insufficient_scope");
    let create = machine.post(&org.list_path(""), json!({ "name": "x", "environmentHint": "prod" })).await;
    assert_problem(&create, 403, "insufficient_scope");
    let view = org.view(&other).await;
    assert_eq!((&view["state"], &view["name"]), (&json!("active"), &json!("other")), "{view}");
    assert_eq!(org.listed("").await.len(), 2);
    assert_eq!(stream_len(&server, &format!("mt-{other}")), 1, "nothing was recorded against the other token");
    assert_eq!(org.view(&reader).await["scopes"], json!(["credledger-api/read"]));
}

// 7. Blocked routes.

#[tokio::test]
async fn machine_tokens_cannot_reach_routes_that_manage_humans() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (_, full) = org.token("full", json!({})).await;
    let (_, read_only) = org.token("reader", json!({ "scopes": ["credledger-api/read"] })).await;
    let events_before = log_events(&server.data_dir).len();
    let (o, m) = (&org.id, &org.owner_id);

    for value in [&full, &read_only] {
        let machine = server.client(value);
        for (what, reply) in [
            ("list members", machine.get(&format!("/v1/orgs/{o}/members")).await),
            (
                "add member",
                machine
                    .post(&format!("/v1/orgs/{o}/members"), json!({ "email": "x@acme.example", "role": "owner" }))
                    .await,
            ),
            ("create org", machine.post("/v1/orgs", json!({ "name": "evil", "ownerEmail": "x@evil.example" })).await),
            (
                "create PAT",
                machine.post(&format!("/v1/orgs/{o}/members/{m}/tokens"), json!({ "name": "stolen" })).await,
            ),
            ("list PATs", machine.get(&format!("/v1/orgs/{o}/members/{m}/tokens")).await),
        ] {
            assert_eq!((reply.status, reply.code()), (403, "machine_credential_forbidden"), "{what}: {reply:?}");
        }
    }
    let written: Vec<Value> = log_events(&server.data_dir)
        .into_iter()
        .skip(events_before)
        .filter(|e| !e["stream"].as_str().unwrap_or_default().starts_with("usage-") && e["stream"] != "ledger")
        .collect();
    assert!(written.is_empty(), "refused requests changed something: {written:?}");
    let members = org.owner.get(&format!("/v1/orgs/{o}/members")).await;
    assert_eq!(members.body["items"].as_array().map(Vec::len), Some(1), "{members:?}");
}

// 8. Organization isolation.

#[tokio::test]
async fn a_credential_of_one_organization_sees_nothing_of_another() {
    let server = Server::start().unwrap();
    let a = new_org(&server, "alpha").await;
    let b = new_org(&server, "beta").await;
    let (_, a_value) = a.token("a", json!({})).await;
    let (b_token, _) = b.token("b", json!({})).await;
    let a_machine = server.client(&a_value);

    for (who, client) in [("A's owner", &a.owner), ("A's machine token", &a_machine)] {
        assert_problem(&client.get(&b.path(&b_token)).await, 404, "not_found");
        assert_problem(&client.get(&b.list_path("")).await, 404, "not_found");
        assert_problem(&client.post_empty(&format!("{}/disable", b.path(&b_token))).await, 404, "not_found");
        assert_problem(&client.delete(&b.path(&b_token)).await, 404, "not_found");
        // B's token under A's organization does not exist either.
        let reply = client.get(&a.path(&b_token)).await;
        assert_eq!((reply.status, reply.code()), (404, "not_found"), "{who}: {reply:?}");
    }
    assert_eq!(b.view(&b_token).await["state"], "active");
    assert_eq!(stream_len(&server, &format!("mt-{b_token}")), 1);
}

// 9. The usage record.

#[tokio::test]
async fn every_accepted_request_records_exactly_one_credential_used() {
    let server = Server::start_with(&["--trusted-proxy", "127.0.0.1/32"]).unwrap();
    let org = new_org(&server, "acme").await;
    let (id, value) = org.token("ci", json!({})).await;
    let path = org.path(&id);
    let machine = server.client(&value).with_user_agent("runner/1");

    assert_eq!(machine.get(&path).await.status, 200);
    assert_eq!(machine.get(&org.list_path("?state=active")).await.status, 200);
    let last = server.client(&value).with_user_agent("runner/2").with_forwarded_for("198.51.100.20");
    // A machine token may disable itself (and nothing else but roll or revoke itself).
    assert_eq!(last.post_empty(&format!("{path}/disable")).await.status, 200);

    // Answered only once durable: the events are in the log as soon as the replies are.
    let used = events_of(&server, &format!("usage-{id}"), "CredentialUsed");
    let seen: Vec<(&Value, &Value, &Value, &Value)> = used
        .iter()
        .map(|e| (&e["payload"]["method"], &e["payload"]["route"], &e["payload"]["ip"], &e["payload"]["userAgent"]))
        .collect();
    assert_eq!(
        seen,
        [
            (&json!("GET"), &json!("/v1/machine-tokens/{orgId}/{tokenId}"), &json!("127.0.0.1"), &json!("runner/1")),
            (&json!("GET"), &json!("/v1/machine-tokens/{orgId}"), &json!("127.0.0.1"), &json!("runner/1")),
            (
                &json!("POST"),
                &json!("/v1/machine-tokens/{orgId}/{tokenId}/disable"),
                &json!("198.51.100.20"),
                &json!("runner/2")
            ),
        ]
    );
    for event in &used {
        assert_eq!(event["actor"], json!({ "kind": "machine_token", "id": id }), "{event}");
        assert_eq!(event["request"]["ip"], event["payload"]["ip"], "{event}");
    }
    // The command the token made is recorded as caused by it.
    let disabled = &events_of(&server, &format!("mt-{id}"), "MachineTokenDisabled")[0];
    assert_eq!(disabled["actor"]["kind"], "machine_token", "{disabled}");

    let view = eventually("the usage projection", Duration::from_secs(5), async || {
        Some(org.view(&id).await).filter(|view| view["useCount"] == 3)
    })
    .await;
    assert_eq!(view["lastUsedIp"], "198.51.100.20", "{view}");
    assert_eq!(view["lastUsedUserAgent"], "runner/2", "{view}");
    let last_at = unix_millis(&str_of(&used[2]["payload"]["at"]));
    assert!((unix_millis(&str_of(&view["lastUsedAt"])) - last_at).abs() <= 1, "{view} vs {}", used[2]);
    assert_eq!(events_of(&server, &format!("usage-{id}"), "CredentialUsed").len(), 3, "reading the view used nothing");
}

#[tokio::test]
async fn denials_of_a_known_token_are_recorded_and_coalesced() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (id, value) = org.token("actions", json!({ "conditions": { "userAgentPattern": "github-actions/*" } })).await;
    let path = org.path(&id);
    let wrong_agent = server.client(&value).with_user_agent("curl/8");
    let unknown = server.client(&well_formed_unknown_token());
    assert_problem(&unknown.get(&path).await, 401, "invalid_token");

    // Start at the beginning of a second, so that the burst most likely stays within one.
    let since_second = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - since_second) + 10)).await;
    let started = now_unix();
    for _ in 0..5 {
        assert_problem(&wrong_agent.get(&path).await, 403, "user_agent_mismatch");
    }
    let one_second = now_unix() == started;

    let stream = format!("usage-{id}");
    let denials = eventually("five coalesced denials", Duration::from_secs(5), async || {
        let denials = events_of(&server, &stream, "CredentialAccessDenied");
        let count: u64 = denials.iter().map(|e| e["payload"]["count"].as_u64().unwrap_or(0)).sum();
        (count >= 5).then_some(denials)
    })
    .await;
    let counts: Vec<u64> = denials.iter().map(|e| e["payload"]["count"].as_u64().unwrap_or(0)).collect();
    assert_eq!(counts.iter().sum::<u64>(), 5, "{denials:?}");
    if one_second {
        assert_eq!(counts, [5], "denials within one second make one event");
    } else {
        assert!(counts.len() <= 2, "{denials:?}");
    }
    for denial in &denials {
        let payload = &denial["payload"];
        assert_eq!(payload["reason"], "user_agent_mismatch", "{denial}");
        assert_eq!(payload["userAgent"], "curl/8", "{denial}");
        assert_eq!(payload["route"], "/v1/machine-tokens/{orgId}/{tokenId}", "{denial}");
    }
    // Unknown tokens only count in metrics; refused requests are not uses.
    let all_denials: Vec<Value> =
        log_events(&server.data_dir).into_iter().filter(|e| e["type"] == "CredentialAccessDenied").collect();
    assert_eq!(all_denials.len(), denials.len(), "{all_denials:?}");
    assert!(events_of(&server, &stream, "CredentialUsed").is_empty());
    let view = eventually("the denied count", Duration::from_secs(5), async || {
        Some(org.view(&id).await).filter(|view| view["deniedCount"] == 5)
    })
    .await;
    assert_eq!(view["useCount"], 0, "{view}");
}

// 10. Restarts.

#[tokio::test]
async fn a_restart_loses_nothing_acknowledged() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data.path()).unwrap();
    let org = new_org(&server, "acme").await;
    let (used, used_value) = org.token("used", json!({ "expiresInDays": 30 })).await;
    let (disabled, disabled_value) = org.token("disabled", json!({})).await;
    let (revoked, revoked_value) = org.token("revoked", json!({})).await;
    let (rolled, rolled_old) = org.token("rolled", json!({})).await;
    for _ in 0..2 {
        assert_eq!(server.client(&used_value).get(&org.path(&used)).await.status, 200);
    }
    assert_eq!(org.owner.post_empty(&format!("{}/disable", org.path(&disabled))).await.status, 200);
    assert_eq!(org.owner.delete(&org.path(&revoked)).await.status, 200);
    let roll = org.owner.post_empty(&format!("{}/roll", org.path(&rolled))).await;
    let rolled_new = str_of(&roll.body["token"]);
    let (graced, graced_old) = org.token("graced", json!({})).await;
    let roll = org.owner.post(&format!("{}/roll", org.path(&graced)), json!({ "gracePeriodSeconds": 3600 })).await;
    let graced_new = str_of(&roll.body["token"]);
    // A denial still waiting in the coalescing buffer when the server is told to stop.
    assert_problem(&server.client(&disabled_value).get(&org.path(&disabled)).await, 401, "disabled");
    assert!(server.stop().unwrap().success(), "a clean exit on SIGTERM");
    let before: Vec<Value> = log_events(data.path());
    let flushed: Vec<&Value> = before
        .iter()
        .filter(|e| e["stream"] == format!("usage-{disabled}") && e["type"] == "CredentialAccessDenied")
        .collect();
    assert_eq!(flushed.len(), 1, "the pending denial is written before the server exits");
    assert_eq!(flushed[0]["payload"]["count"], 1, "{}", flushed[0]);

    let server = Server::start_in(data.path()).unwrap();
    assert!(server.admin_token.is_none(), "the admin token is shown only on the first start");
    let after = log_events(data.path());
    assert_eq!(after.get(..before.len()), Some(&before[..]), "the log kept every event, unchanged");
    assert_eq!(
        after.iter().filter(|e| e["stream"] == format!("usage-{used}") && e["type"] == "CredentialUsed").count(),
        2
    );
    let org = Org { owner: server.client(&org.pat), ..org };
    let states = eventually("the inventory after a restart", Duration::from_secs(5), async || {
        let reply = org.owner.get(&org.list_path("")).await;
        let items = reply.body["items"].as_array()?.clone();
        let used_count = items.iter().find(|item| item["id"] == used.as_str())?["useCount"].clone();
        (used_count == 2).then_some(items)
    })
    .await;
    let state_of = |id: &str| states.iter().find(|item| item["id"] == id).map(|item| item["state"].clone());
    assert_eq!(state_of(&used), Some(json!("active")));
    assert_eq!(state_of(&disabled), Some(json!("disabled")));
    assert_eq!(state_of(&revoked), Some(json!("revoked")));
    assert_eq!(state_of(&rolled), Some(json!("active")));

    let path = org.path(&used);
    assert_eq!(server.client(&used_value).get(&path).await.status, 200);
    assert_problem(&server.client(&disabled_value).get(&path).await, 401, "disabled");
    assert_problem(&server.client(&revoked_value).get(&path).await, 401, "revoked");
    assert_problem(&server.client(&rolled_old).get(&path).await, 401, "revoked");
    assert_eq!(server.client(&rolled_new).get(&path).await.status, 200);
    assert_eq!(server.client(&graced_old).get(&path).await.status, 200, "a grace period survives the restart");
    server.shift_clock(7200);
    assert_problem(&server.client(&graced_old).get(&path).await, 401, "revoked");
    assert_eq!(server.client(&graced_new).get(&path).await.status, 200);
}

// 11. The expiry sweeper.

#[tokio::test]
async fn the_expiry_sweeper_records_each_expiry_exactly_once() {
    let server = Server::start_with(&["--expiry-sweep-seconds", "1"]).unwrap();
    let org = new_org(&server, "acme").await;
    let (expiring, value) = org.token("expiring", json!({ "expiresInDays": 1 })).await;
    let expires_at = org.view(&expiring).await["expiresAt"].clone();
    let (lasting, _) = org.token("lasting", json!({ "expiresInDays": 30 })).await;
    let (revoked, _) = org.token("revoked", json!({ "expiresInDays": 1 })).await;
    assert_eq!(org.owner.delete(&org.path(&revoked)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(events_of(&server, &format!("mt-{expiring}"), "MachineTokenExpired").is_empty(), "expired too early");

    server.shift_clock(2 * DAY);
    let stream = format!("mt-{expiring}");
    eventually("MachineTokenExpired", Duration::from_secs(10), async || {
        events_of(&server, &stream, "MachineTokenExpired").pop()
    })
    .await;
    // Several more sweeps must not record it again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired = events_of(&server, &stream, "MachineTokenExpired");
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["actor"]["kind"], "system", "{}", expired[0]);
    assert_eq!(
        unix_millis(&str_of(&expired[0]["payload"]["expiresAt"])),
        unix_millis(&str_of(&expires_at)),
        "{}",
        expired[0]
    );
    assert!(events_of(&server, &format!("mt-{lasting}"), "MachineTokenExpired").is_empty());
    assert!(events_of(&server, &format!("mt-{revoked}"), "MachineTokenExpired").is_empty());
    assert_eq!(org.view(&expiring).await["state"], "expired");
    assert_problem(&server.client(&value).get(&org.path(&expiring)).await, 401, "expired");

    // Rolling a recorded expiry brings the token back, and the sweeper leaves it alone.
    let rolled = org.owner.post_empty(&format!("{}/roll", org.path(&expiring))).await;
    assert_eq!((rolled.status, &rolled.body["state"]), (200, &json!("active")), "{rolled:?}");
    let fresh = server.client(&str_of(&rolled.body["token"]));
    assert_eq!(fresh.get(&org.path(&expiring)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(events_of(&server, &stream, "MachineTokenExpired").len(), 1);
    assert_eq!(org.view(&expiring).await["state"], "active");
}

// 12. Transfer, filters and pagination.

#[tokio::test]
async fn transfer_by_email_or_member_id_changes_the_owner() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let bob = org.owner.add_member(&org.id, "bob@acme.example", "member").await;
    let (id, _) = org.token("ci", json!({})).await;
    let transfer = format!("{}/transfer", org.path(&id));

    let to_bob = org.owner.post(&transfer, json!({ "to": "bob@acme.example" })).await;
    assert_eq!((to_bob.status, &to_bob.body["owner"]), (200, &json!(bob)), "{to_bob:?}");
    assert_eq!(org.listed(&format!("?owner={bob}")).await, ids(&[&id]));
    assert!(org.listed(&format!("?owner={}", org.owner_id)).await.is_empty());
    let recorded = &events_of(&server, &format!("mt-{id}"), "MachineTokenTransferred")[0];
    assert_eq!(recorded["payload"], json!({ "from": org.owner_id, "to": bob }), "{recorded}");

    assert_problem(&org.owner.post(&transfer, json!({ "to": "nobody@acme.example" })).await, 422, "member_not_found");
    assert_eq!(org.view(&id).await["owner"], bob.as_str());

    let back = org.owner.post(&transfer, json!({ "to": org.owner_id })).await;
    assert_eq!((back.status, &back.body["owner"]), (200, &json!(org.owner_id)), "{back:?}");
    assert_eq!(org.listed(&format!("?owner={}", org.owner_id)).await, [id]);
    assert!(org.listed(&format!("?owner={bob}")).await.is_empty());
}

#[tokio::test]
async fn removing_a_member_flags_its_tokens_until_they_are_transferred() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let bob = org.owner.add_member(&org.id, "bob@acme.example", "member").await;
    let (bobs, bobs_value) = org.token("bobs", json!({ "owner": bob })).await;
    let (kept, _) = org.token("kept", json!({})).await;
    assert!(org.listed("?flagged=true").await.is_empty());

    let removed = org.owner.delete(&format!("/v1/orgs/{}/members/{bob}", org.id)).await;
    assert_eq!(removed.status, 200, "{removed:?}");
    let flagged = eventually("the flag", Duration::from_secs(5), async || {
        Some(org.listed("?flagged=true").await).filter(|ids| !ids.is_empty())
    })
    .await;
    assert_eq!(flagged, ids(&[&bobs]));
    assert_eq!(org.listed("?flagged=false").await, [kept]);
    assert_eq!(org.view(&bobs).await["flagged"]["reason"], "owner_removed");
    assert_eq!(server.client(&bobs_value).get(&org.path(&bobs)).await.status, 200, "a flagged token still works");

    let moved = org.owner.post(&format!("{}/transfer", org.path(&bobs)), json!({ "to": org.owner_email })).await;
    assert_eq!(moved.status, 200, "{moved:?}");
    assert!(moved.body["flagged"].is_null(), "transfer clears the flag: {moved:?}");
    assert!(org.listed("?flagged=true").await.is_empty());
}

#[tokio::test]
async fn list_filters_narrow_the_inventory() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (soon, soon_value) = org.token("soon", json!({ "expiresInDays": 3 })).await;
    let staging_body = json!({ "name": "staging", "environmentHint": "staging", "expiresInDays": 30 });
    let (staging, _) = org.owner.create_token(&org.id, staging_body).await;
    let ci_body = json!({ "name": "ci", "environmentHint": "ci" });
    let (disabled, _) = org.owner.create_token(&org.id, ci_body).await;
    assert_eq!(org.owner.post_empty(&format!("{}/disable", org.path(&disabled))).await.status, 200);
    let (later, later_value) = org.token("later", json!({})).await;

    assert_eq!(sorted(org.listed("").await), ids(&[&soon, &staging, &disabled, &later]));
    assert_eq!(org.listed("?state=disabled").await, ids(&[&disabled]));
    assert_eq!(sorted(org.listed("?state=active").await), ids(&[&soon, &staging, &later]));
    assert_eq!(sorted(org.listed("?environmentHint=prod").await), ids(&[&soon, &later]));
    assert_eq!(org.listed("?environmentHint=staging").await, ids(&[&staging]));
    assert_eq!(org.listed("?expiringWithin=7d").await, ids(&[&soon]));
    assert_eq!(sorted(org.listed("?expiringWithin=31d").await), ids(&[&soon, &staging]));
    assert_eq!(org.listed("?state=active&environmentHint=prod&expiringWithin=7d").await, ids(&[&soon]));

    // unusedFor: `soon` used now, `later` used two hours later, the others never.
    assert_eq!(server.client(&soon_value).get(&org.path(&soon)).await.status, 200);
    eventually("soon's use", Duration::from_secs(5), async || {
        org.view(&soon).await["lastUsedAt"].as_str().map(str::len)
    })
    .await;
    assert!(org.listed("?unusedFor=1h").await.is_empty(), "everything is younger than an hour");
    server.shift_clock(2 * 3600);
    assert_eq!(server.client(&later_value).get(&org.path(&later)).await.status, 200);
    eventually("later's use", Duration::from_secs(5), async || {
        org.view(&later).await["lastUsedAt"].as_str().map(str::len)
    })
    .await;
    assert_eq!(sorted(org.listed("?unusedFor=1h").await), ids(&[&soon, &staging, &disabled]));
    assert!(org.listed("?unusedFor=3h").await.is_empty());
}

#[tokio::test]
async fn cursor_pagination_returns_every_token_once() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(org.token(&format!("t{i}"), json!({})).await.0);
    }
    for limit in [1, 2, 5, 50] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &cursor {
                Some(cursor) => format!("?limit={limit}&cursor={cursor}"),
                None => format!("?limit={limit}"),
            };
            let reply = org.owner.get(&org.list_path(&query)).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            let items = reply.body["items"].as_array().expect("items");
            assert!(!items.is_empty() && items.len() <= limit, "limit {limit}: {reply:?}");
            seen.extend(items.iter().map(|item| str_of(&item["id"])));
            pages += 1;
            assert!(pages <= 5, "pagination does not end: {seen:?}");
            match reply.body["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let distinct: HashSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "limit {limit}: a token came twice: {seen:?}");
        assert_eq!(sorted(seen), sorted(created.clone()), "limit {limit}");
        assert_eq!(pages, created.len().div_ceil(limit), "limit {limit}");
    }
}

#[tokio::test]
async fn only_owners_and_admins_transfer_and_the_server_admin_sees_no_organization() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (bob, bob_pat) = org.owner.add_member_with_token(&org.id, "bob@acme.example", "member").await;
    let bob_client = server.client(&bob_pat);
    let (bobs, _) = bob_client.create_token(&org.id, json!({ "name": "bobs", "environmentHint": "ci" })).await;
    // Handing a token to an owner would let its holder act with the owner's reach.
    let handed = bob_client.post(&format!("{}/transfer", org.path(&bobs)), json!({ "to": org.owner_id })).await;
    assert_problem(&handed, 403, "insufficient_role");
    assert_eq!(org.view(&bobs).await["owner"], bob.as_str());
    // The server admin creates organizations and nothing else.
    assert_problem(&server.admin().get(&org.list_path("")).await, 404, "not_found");
    assert_problem(&server.admin().get(&org.path(&bobs)).await, 404, "not_found");
    // Durations too long to add to a time are refused, not a crash.
    for filter in ["expiringWithin=52560000d", "unusedFor=99999999h"] {
        assert_problem(&org.owner.get(&org.list_path(&format!("?{filter}"))).await, 400, "invalid_duration");
    }
}

/// The log keeps the order of what happened: however many requests are in flight when a token is
/// revoked, no use of it is recorded after its revocation, and every use that was answered 200 is
/// recorded before it. Each recorded use names the position of the view it was judged on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_use_is_recorded_after_the_revocation_however_many_requests_are_in_flight() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    for round in 0..3 {
        let (id, value) = org.token(&format!("busy-{round}"), json!({})).await;
        let probe = format!("/v1/projects/{}", org.id);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let users: Vec<_> = (0..16)
            .map(|_| {
                let (client, probe, stop) = (server.client(&value), probe.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut accepted = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match client.get(&probe).await.status {
                            200 => accepted += 1,
                            401 => break,
                            other => panic!("unexpected status {other}"),
                        }
                    }
                    accepted
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let revoked = org.owner.delete(&org.path(&id)).await;
        assert_eq!(revoked.status, 200, "{revoked:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut accepted = 0;
        for user in users {
            accepted += user.await.unwrap();
        }

        let events = log_events(&server.data_dir);
        let revoked_at = events
            .iter()
            .find(|event| event["stream"] == format!("mt-{id}") && event["type"] == "MachineTokenRevoked")
            .and_then(|event| event["position"].as_u64())
            .expect("the revocation is recorded");
        let uses: Vec<&Value> = events.iter().filter(|event| event["stream"] == format!("usage-{id}")).collect();
        let uses: Vec<&Value> = uses.into_iter().filter(|event| event["type"] == "CredentialUsed").collect();
        let late: Vec<&&Value> = uses.iter().filter(|event| event["position"].as_u64().unwrap() > revoked_at).collect();
        assert!(late.is_empty(), "round {round}: uses recorded after the revocation at {revoked_at}: {late:?}");
        assert_eq!(uses.len(), accepted, "round {round}: every accepted request is recorded, once");
        for used in &uses {
            let based_on = used["payload"]["basedOn"].as_u64().expect("a use names the view it was judged on");
            assert!(based_on < used["position"].as_u64().unwrap(), "{used}");
        }
    }
}
