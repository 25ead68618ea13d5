//! End-to-end tests of incident response across credentials against the real binary:
//! `POST /v1/incidents/:orgId/trace` (a leaked value, current or rolled away, by plaintext or by
//! SHA-256, with the credential's timeline) and `GET /v1/incidents/:orgId/activity` (every
//! credential used or denied from a network), who may ask, and bad input.

mod support;

use std::time::Duration;

use credledger_domain::token::{SecretToken, TokenDigest};
use credledger_domain::values::EnvHint;
use serde_json::{Value, json};
use support::{Client, Reply, Server, eventually};

/// Believes `X-Forwarded-For` from the test client, so each request may come from any address.
const PROXIED: &[&str] = &["--trusted-proxy", "127.0.0.1/32"];

struct Org {
    id: String,
    owner_id: String,
    owner: Client,
}

async fn new_org(server: &Server, name: &str) -> Org {
    let (id, owner_id, pat) = server.admin().create_org(name, &format!("ops@{name}.example")).await;
    Org { id, owner_id, owner: server.client(&pat) }
}

/// A machine token of the organization: (id, plaintext).
async fn machine_token(org: &Org, name: &str, conditions: Value) -> (String, String) {
    org.owner.create_token(&org.id, json!({ "name": name, "environmentHint": "prod", "conditions": conditions })).await
}

/// One accepted request of a machine token, from `ip`: a CredentialUsed event.
async fn use_token(server: &Server, org: &str, token: &str, ip: &str, user_agent: &str) {
    let client = server.client(token).with_forwarded_for(ip).with_user_agent(user_agent);
    let reply = client.get(&format!("/v1/machine-tokens/{org}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// One refused request of a machine token from `ip`, outside its allowlist.
async fn deny_token(server: &Server, org: &str, token: &str, ip: &str, user_agent: &str) {
    let client = server.client(token).with_forwarded_for(ip).with_user_agent(user_agent);
    assert_problem(&client.get(&format!("/v1/machine-tokens/{org}")).await, 403, "ip_not_allowed");
}

async fn trace(client: &Client, org: &str, body: Value) -> Reply {
    client.post(&format!("/v1/incidents/{org}/trace"), body).await
}

fn sha256(plaintext: &str) -> String {
    TokenDigest::of(plaintext).to_hex()
}

fn types(reply: &Reply) -> Vec<String> {
    reply.body["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline: {reply:?}"))
        .iter()
        .map(|entry| entry["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Traces `body` until its timeline holds `uses` CredentialUsed entries (uses are projected
/// asynchronously).
async fn trace_with_uses(client: &Client, org: &str, body: Value, uses: usize) -> Reply {
    eventually("the uses in the timeline", Duration::from_secs(10), async || {
        let reply = trace(client, org, body.clone()).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let used = types(&reply).iter().filter(|t| *t == "CredentialUsed").count();
        (used == uses).then_some(reply)
    })
    .await
}

#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{reply:?}");
    assert!(reply.content_type.starts_with("application/problem+json"), "{reply:?}");
}

#[track_caller]
fn assert_oldest_first(reply: &Reply) {
    let positions: Vec<u64> = reply.body["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|entry| entry["position"].as_u64().expect("position"))
        .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "not oldest first: {positions:?}");
}

#[tokio::test]
async fn a_token_is_traced_by_its_plaintext_and_by_its_hash() {
    let server = Server::start_with(PROXIED).unwrap();
    let org = new_org(&server, "acme").await;
    let (id, secret) = machine_token(&org, "deploy", json!({})).await;
    use_token(&server, &org.id, &secret, "203.0.113.9", "deploy-bot/2").await;

    let by_plaintext = trace_with_uses(&org.owner, &org.id, json!({ "token": secret }), 1).await;
    let credential = &by_plaintext.body["credential"];
    assert_eq!(credential["id"], id);
    assert_eq!(credential["kind"], "machine_token");
    assert_eq!(credential["name"], "deploy");
    assert_eq!(credential["state"], "active");
    assert_eq!(credential["ownerId"], org.owner_id);
    assert!(secret.starts_with(credential["tokenPrefix"].as_str().expect("prefix")), "{credential}");
    assert_eq!(by_plaintext.body["matched"], "current");
    assert_eq!(types(&by_plaintext), ["MachineTokenCreated", "CredentialUsed"]);
    let used = &by_plaintext.body["timeline"][1];
    assert_eq!((&used["ip"], &used["userAgent"]), (&json!("203.0.113.9"), &json!("deploy-bot/2")));
    assert_eq!((&used["method"], &used["route"]), (&json!("GET"), &json!("/v1/machine-tokens/{orgId}")));
    assert_eq!((&used["outcome"], &used["count"], &used["credentialId"]), (&json!("success"), &json!(1), &json!(id)));
    assert!(used["leafHash"].as_str().is_some_and(|hash| hash.len() == 64), "{used}");
    assert_eq!(by_plaintext.body["timeline"][0]["actor"], json!({ "kind": "member", "id": org.owner_id }));

    let by_hash = trace(&org.owner, &org.id, json!({ "sha256": sha256(&secret) })).await;
    assert_eq!(by_hash.status, 200, "{by_hash:?}");
    assert_eq!(by_hash.body, by_plaintext.body);
    let upper = trace(&org.owner, &org.id, json!({ "sha256": sha256(&secret).to_uppercase() })).await;
    assert_eq!(upper.body["credential"]["id"], id, "{upper:?}");
}

#[tokio::test]
async fn a_rolled_away_value_is_traced_to_its_credential_with_the_full_timeline() {
    let server = Server::start_with(PROXIED).unwrap();
    let org = new_org(&server, "acme").await;
    let (id, old) = machine_token(&org, "deploy", json!({})).await;
    use_token(&server, &org.id, &old, "203.0.113.9", "old/1").await;
    let rolled = org
        .owner
        .post(&format!("/v1/machine-tokens/{}/{id}/roll", org.id), json!({ "gracePeriodSeconds": 3600 }))
        .await;
    assert_eq!(rolled.status, 200, "{rolled:?}");
    let new = rolled.body["token"].as_str().expect("the new value").to_owned();
    use_token(&server, &org.id, &old, "203.0.113.9", "old/1").await;
    use_token(&server, &org.id, &new, "198.51.100.7", "new/1").await;

    let traced = trace_with_uses(&org.owner, &org.id, json!({ "token": old }), 3).await;
    assert_eq!(traced.body["matched"], "previous");
    assert_eq!(traced.body["credential"]["id"], id);
    assert!(new.starts_with(traced.body["credential"]["tokenPrefix"].as_str().expect("prefix")), "the current prefix");
    assert_eq!(
        types(&traced),
        ["MachineTokenCreated", "CredentialUsed", "MachineTokenRolled", "CredentialUsed", "CredentialUsed"]
    );
    assert_oldest_first(&traced);
    let agents: Vec<&Value> =
        traced.body["timeline"].as_array().expect("timeline").iter().map(|entry| &entry["userAgent"]).collect();
    assert_eq!(&agents[3..], [&json!("old/1"), &json!("new/1")], "the uses of both values");

    let current = trace(&org.owner, &org.id, json!({ "sha256": sha256(&new) })).await;
    assert_eq!(current.status, 200, "{current:?}");
    assert_eq!(current.body["matched"], "current");
    assert_eq!(current.body["timeline"], traced.body["timeline"]);
}

#[tokio::test]
async fn unknown_values_and_other_organizations_credentials_are_not_found() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let other = new_org(&server, "globex").await;
    let (_, elsewhere) = machine_token(&other, "theirs", json!({})).await;
    let env = EnvHint::parse("prod").expect("an environment hint");
    let never_issued = SecretToken::machine_token(&env, [7; 32]);

    for body in [
        json!({ "token": never_issued.expose() }),
        json!({ "sha256": "0".repeat(64) }),
        json!({ "token": elsewhere }),
        json!({ "sha256": sha256(&elsewhere) }),
    ] {
        assert_problem(&trace(&org.owner, &org.id, body.clone()).await, 404, "not_found");
    }
    // The other organization's owner finds it.
    assert_eq!(trace(&other.owner, &other.id, json!({ "token": elsewhere })).await.status, 200);
}

fn altered_last_character(secret: &str) -> String {
    let (head, last) = secret.split_at(secret.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

#[tokio::test]
async fn a_trace_takes_exactly_one_well_formed_value() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (_, secret) = machine_token(&org, "deploy", json!({})).await;
    let cases = [
        (json!({ "token": secret, "sha256": sha256(&secret) }), "sha256"),
        (json!({}), "token"),
        (json!({ "token": null }), "token"),
        (json!({ "sha256": "not hex" }), "sha256"),
        (json!({ "sha256": "ab" }), "sha256"),
        (json!({ "token": "cl_mt_prod_nope" }), "token"),
        // One character changed (never to itself): the checksum refuses it.
        (json!({ "token": altered_last_character(&secret) }), "token"),
    ];
    for (body, field) in cases {
        let reply = trace(&org.owner, &org.id, body.clone()).await;
        assert_eq!((reply.status, reply.body["field"].as_str()), (422, Some(field)), "{body}: {reply:?}");
    }
}

#[tokio::test]
async fn only_owners_and_admins_respond_to_incidents() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (_, secret) = machine_token(&org, "deploy", json!({})).await;
    let (_, member_pat) = org.owner.add_member_with_token(&org.id, "dev@acme.example", "member").await;
    let (_, admin_pat) = org.owner.add_member_with_token(&org.id, "root@acme.example", "admin").await;
    let activity = format!("/v1/incidents/{}/activity?ip=10.0.0.0/8", org.id);

    let member = server.client(&member_pat);
    assert_problem(&trace(&member, &org.id, json!({ "token": secret })).await, 403, "insufficient_role");
    assert_problem(&member.get(&activity).await, 403, "insufficient_role");
    let machine = server.client(&secret);
    assert_problem(&trace(&machine, &org.id, json!({ "token": secret })).await, 403, "machine_credential_forbidden");
    assert_problem(&machine.get(&activity).await, 403, "machine_credential_forbidden");
    let admin = server.client(&admin_pat);
    assert_eq!(trace(&admin, &org.id, json!({ "token": secret })).await.status, 200);
    assert_eq!(admin.get(&activity).await.status, 200);
    let anonymous = Client::anonymous(&server);
    assert_eq!(trace(&anonymous, &org.id, json!({ "token": secret })).await.status, 401);
}

#[tokio::test]
async fn activity_lists_exactly_the_credentials_used_or_denied_from_a_network() {
    let server = Server::start_with(PROXIED).unwrap();
    let org = new_org(&server, "acme").await;
    let (used, used_secret) = machine_token(&org, "used", json!({})).await;
    let (denied, denied_secret) = machine_token(&org, "denied", json!({ "ipAllowlist": ["192.0.2.0/24"] })).await;
    let (_, outside_secret) = machine_token(&org, "outside", json!({})).await;
    let other = new_org(&server, "globex").await;
    let (_, their_secret) = machine_token(&other, "theirs", json!({})).await;

    use_token(&server, &org.id, &used_secret, "203.0.113.9", "bot/1").await;
    use_token(&server, &org.id, &used_secret, "203.0.113.10", "bot/2").await;
    use_token(&server, &org.id, &used_secret, "198.51.100.7", "elsewhere/1").await;
    for _ in 0..2 {
        deny_token(&server, &org.id, &denied_secret, "203.0.113.20", "scanner/9").await;
    }
    use_token(&server, &org.id, &outside_secret, "198.51.100.8", "elsewhere/1").await;
    use_token(&server, &other.id, &their_secret, "203.0.113.9", "bot/1").await;

    let path = format!("/v1/incidents/{}/activity?ip=203.0.113.0/24", org.id);
    let items = eventually("the uses and denials from the network", Duration::from_secs(10), async || {
        let reply = org.owner.get(&path).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let items = reply.body["items"].as_array().cloned().expect("items");
        let denials: u64 = items.iter().map(|item| item["denials"].as_u64().unwrap_or(0)).sum();
        let uses: u64 = items.iter().map(|item| item["uses"].as_u64().unwrap_or(0)).sum();
        (uses == 2 && denials == 2).then_some(items)
    })
    .await;
    assert_eq!(items.len(), 2, "only this organization's credentials seen from the network: {items:?}");
    let item = |id: &str| items.iter().find(|item| item["credentialId"] == id).unwrap_or_else(|| panic!("{id}"));
    let first = item(&used);
    assert_eq!((&first["kind"], &first["name"]), (&json!("machine_token"), &json!("used")));
    assert_eq!((&first["uses"], &first["denials"]), (&json!(2), &json!(0)));
    assert_eq!(first["userAgents"], json!(["bot/1", "bot/2"]));
    // Compared as instants: RFC 3339 text drops trailing zeros (".86Z" is before ".864Z").
    let instant = |value: &Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).map(|at| at.to_utc()).expect("RFC 3339")
    };
    assert!(instant(&first["firstSeen"]) <= instant(&first["lastSeen"]), "{first}");
    let second = item(&denied);
    assert_eq!((&second["name"], &second["uses"], &second["denials"]), (&json!("denied"), &json!(0), &json!(2)));
    assert_eq!(second["userAgents"], json!(["scanner/9"]));

    // A single address, and a window.
    let one = org.owner.get(&format!("/v1/incidents/{}/activity?ip=203.0.113.10", org.id)).await;
    let one_items = one.body["items"].as_array().expect("items");
    assert_eq!(one_items.len(), 1, "{one:?}");
    assert_eq!((&one_items[0]["credentialId"], &one_items[0]["uses"]), (&json!(used), &json!(1)));
    let later = org.owner.get(&format!("{path}&since=2999-01-01T00:00:00Z")).await;
    assert_eq!(later.body["items"], json!([]), "{later:?}");
    let earlier = org.owner.get(&format!("{path}&until=2000-01-01T00:00:00Z")).await;
    assert_eq!(earlier.body["items"], json!([]), "{earlier:?}");
}

#[tokio::test]
async fn activity_requires_a_network() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    for (query, field) in [
        ("", "ip"),
        ("?ip=", "ip"),
        ("?ip=not-a-network", "ip"),
        ("?ip=10.0.0.0/33", "ip"),
        ("?ip=10.0.0.0/8&since=yesterday", "since"),
    ] {
        let reply = org.owner.get(&format!("/v1/incidents/{}/activity{query}", org.id)).await;
        assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some(field)), "{query}: {reply:?}");
    }
}
