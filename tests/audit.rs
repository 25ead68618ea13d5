//! End-to-end tests of the audit trail (`GET /v1/audit/:orgId`) and of incident response
//! (`GET /v1/{machine-tokens|service-credentials|machines}/:orgId/:id/uses`) against the real
//! binary: every filter, newest-first order, cursors that stay stable while events are appended,
//! leaf hashes equal to the log's, coalesced denials, who may read, and bad query values.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::{Client, Reply, Server, eventually, log_events};

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

fn trail_path(org: &str, query: &str) -> String {
    if query.is_empty() { format!("/v1/audit/{org}") } else { format!("/v1/audit/{org}?{query}") }
}

async fn trail(client: &Client, org: &str, query: &str) -> Reply {
    let reply = client.get(&trail_path(org, query)).await;
    assert_eq!(reply.status, 200, "{query}: {reply:?}");
    reply
}

fn items(reply: &Reply) -> Vec<Value> {
    reply.body["items"].as_array().cloned().unwrap_or_else(|| panic!("no items: {reply:?}"))
}

fn positions(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(|entry| entry["position"].as_u64().expect("position")).collect()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

#[track_caller]
fn assert_newest_first(entries: &[Value]) {
    let positions = positions(entries);
    assert!(positions.windows(2).all(|pair| pair[0] > pair[1]), "not newest first: {positions:?}");
}

#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{reply:?}");
    assert!(reply.content_type.starts_with("application/problem+json"), "{reply:?}");
}

/// Walks every page of `path` (which already holds a query) with `limit` entries per page.
async fn all_pages(client: &Client, path: &str, limit: usize) -> Vec<Value> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(cursor) => format!("{path}{separator}limit={limit}&cursor={cursor}"),
            None => format!("{path}{separator}limit={limit}"),
        };
        let reply = client.get(&page_path).await;
        assert_eq!(reply.status, 200, "{page_path}: {reply:?}");
        let page = items(&reply);
        assert!(page.len() <= limit, "{page_path}: {} entries", page.len());
        entries.extend(page);
        match reply.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return entries,
        }
    }
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

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// Each event's position with the `envelope` and `leaf_hash` columns of the log, raw.
fn raw_log(server: &Server) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    support::raw_log(&server.data_dir)
}

/// The positions of the organization's events in the log recorded in `[since, until)`.
fn log_positions_between(server: &Server, org: &str, since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<u64> {
    let millis = |at: DateTime<Utc>| at.timestamp_millis();
    let mut positions: Vec<u64> = log_events(&server.data_dir)
        .iter()
        .filter(|event| event["orgId"] == org)
        .filter(|event| {
            let at = chrono::DateTime::parse_from_rfc3339(event["recordedAt"].as_str().expect("recordedAt"))
                .map(|at| at.to_utc())
                .expect("time");
            millis(since) <= millis(at) && millis(at) < millis(until)
        })
        .map(|event| event["position"].as_u64().expect("position"))
        .collect();
    positions.reverse();
    positions
}

fn rfc3339(value: &Value) -> DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).map(|at| at.to_utc()).expect("RFC 3339")
}

#[tokio::test]
async fn the_trail_lists_every_event_newest_first_with_the_logs_leaf_hashes() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let owner = org.owner.clone().with_user_agent("incident-console/1.0");
    let (token, _) = owner.create_token(&org.id, json!({ "name": "ci", "environmentHint": "prod" })).await;
    assert_eq!(owner.post_empty(&format!("/v1/machine-tokens/{}/{token}/disable", org.id)).await.status, 200);
    let other = new_org(&server, "globex").await;
    other.owner.create_token(&other.id, json!({ "name": "elsewhere", "environmentHint": "prod" })).await;

    let entries = items(&trail(&org.owner, &org.id, "").await);
    assert_newest_first(&entries);
    let org_events: Vec<Value> = log_events(&server.data_dir).into_iter().filter(|e| e["orgId"] == org.id).collect();
    assert_eq!(entries.len(), org_events.len(), "one entry per event of the organization, no other's: {entries:?}");

    let types: Vec<&str> = entries.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(&types[..2], ["MachineTokenDisabled", "MachineTokenCreated"]);
    let disabled = &entries[0];
    assert_eq!(disabled["actor"], json!({ "kind": "member", "id": org.owner_id }));
    assert_eq!(disabled["credentialId"], token);
    assert_eq!(disabled["ip"], "127.0.0.1");
    assert_eq!(disabled["userAgent"], "incident-console/1.0");
    assert_eq!(disabled["outcome"], "success");
    assert_eq!(disabled["summary"], "machine token disabled");
    assert!(text(&entries[1]["summary"]).starts_with("machine token ci ("), "{}", entries[1]);
    rfc3339(&disabled["at"]);

    // Each entry's leaf hash is the log's, and the log's is SHA-256(0x00 ‖ envelope bytes).
    let log = raw_log(&server);
    for entry in &entries {
        let position = entry["position"].as_u64().expect("position");
        let (_, envelope, leaf_hash) = log.iter().find(|(p, _, _)| *p == position).expect("the entry's event");
        assert_eq!(hex(&credledger_store::leaf_hash(envelope)), hex(leaf_hash), "position {position}");
        assert_eq!(entry["leafHash"], hex(leaf_hash), "position {position}");
        let event = org_events.iter().find(|e| e["position"] == position).expect("an event of the org");
        assert_eq!(entry["type"], event["type"]);
        assert_eq!(entry["actor"], event["actor"]);
    }
}

#[tokio::test]
async fn every_filter_narrows_the_trail() {
    let server = Server::start_with(PROXIED).unwrap();
    let org = new_org(&server, "acme").await;
    let (admin_id, admin_pat) = org.owner.add_member_with_token(&org.id, "root@acme.example", "admin").await;
    let from_office = org.owner.clone().with_forwarded_for("203.0.113.5");
    let (first, first_secret) = from_office
        .create_token(
            &org.id,
            json!({ "name": "first", "environmentHint": "prod", "conditions": {
            "ipAllowlist": ["203.0.113.0/24"] } }),
        )
        .await;
    let admin = server.client(&admin_pat).with_forwarded_for("198.51.100.7");
    let (second, _) = admin.create_token(&org.id, json!({ "name": "second", "environmentHint": "prod" })).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let midway = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    use_token(&server, &org.id, &first_secret, "203.0.113.9", "deploy-bot/2").await;
    let outsider = server.client(&first_secret).with_forwarded_for("192.0.2.1");
    assert_problem(&outsider.get(&format!("/v1/machine-tokens/{}", org.id)).await, 403, "ip_not_allowed");
    let denied = eventually("the coalesced denial", Duration::from_secs(10), async || {
        let entries = items(&trail(&org.owner, &org.id, "outcome=denied").await);
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    let every = items(&trail(&org.owner, &org.id, "").await);
    let matching =
        |keep: &dyn Fn(&Value) -> bool| positions(&every.iter().filter(|e| keep(e)).cloned().collect::<Vec<_>>());

    // outcome
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!((&denied[0]["type"], &denied[0]["credentialId"]), (&json!("CredentialAccessDenied"), &json!(first)));
    assert_eq!(denied[0]["ip"], "192.0.2.1");
    let succeeded = items(&trail(&org.owner, &org.id, "outcome=success").await);
    assert_eq!(positions(&succeeded), matching(&|e| e["outcome"] == "success"));
    assert_eq!(succeeded.len() + 1, every.len());

    // credentialId
    let of_first = items(&trail(&org.owner, &org.id, &format!("credentialId={first}")).await);
    let types: Vec<&str> = of_first.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(types, ["CredentialAccessDenied", "CredentialUsed", "MachineTokenCreated"]);
    assert_eq!(positions(&of_first), matching(&|e| e["credentialId"] == first));
    let of_second = items(&trail(&org.owner, &org.id, &format!("credentialId={second}")).await);
    assert_eq!(positions(&of_second), matching(&|e| e["credentialId"] == second));
    assert_eq!(of_second.len(), 1);

    // actor: a member, and a machine token (its use and its denial are its own)
    let by_admin = items(&trail(&org.owner, &org.id, &format!("actor={admin_id}")).await);
    assert_eq!(positions(&by_admin), matching(&|e| e["actor"]["id"] == admin_id));
    assert_eq!(by_admin.len(), 1);
    assert_eq!(by_admin[0]["credentialId"], second);
    let by_token = items(&trail(&org.owner, &org.id, &format!("actor={first}")).await);
    assert_eq!(by_token.len(), 2, "{by_token:?}");
    assert!(by_token.iter().all(|e| e["actor"] == json!({ "kind": "machine_token", "id": first })));

    // type
    let created = items(&trail(&org.owner, &org.id, "type=MachineTokenCreated").await);
    assert_eq!(positions(&created), matching(&|e| e["type"] == "MachineTokenCreated"));
    assert_eq!(created.len(), 2);
    assert!(items(&trail(&org.owner, &org.id, "type=MachineTokenRevoked").await).is_empty());

    // since / until: recorded at or after / before, to the millisecond of the log's recordedAt
    let stamp = midway.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let far = Utc::now() + chrono::TimeDelta::days(1);
    let epoch = DateTime::UNIX_EPOCH;
    let since = items(&trail(&org.owner, &org.id, &format!("since={stamp}")).await);
    assert_eq!(positions(&since), log_positions_between(&server, &org.id, midway, far));
    assert_eq!(since.len(), 2, "the use and the denial: {since:?}");
    let until = items(&trail(&org.owner, &org.id, &format!("until={stamp}")).await);
    assert_eq!(positions(&until), log_positions_between(&server, &org.id, epoch, midway));
    assert_eq!(since.len() + until.len(), every.len());
    let nothing = items(&trail(&org.owner, &org.id, &format!("since={stamp}&until={stamp}")).await);
    assert!(nothing.is_empty());

    // ip: a network or one address; IPv6 networks match nothing here
    let office = items(&trail(&org.owner, &org.id, "ip=203.0.113.0/24").await);
    let types: Vec<&str> = office.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(types, ["CredentialUsed", "MachineTokenCreated"], "{office:?}");
    assert_eq!(office[0]["ip"], "203.0.113.9");
    assert_eq!(office[0]["userAgent"], "deploy-bot/2");
    let single = items(&trail(&org.owner, &org.id, "ip=198.51.100.7").await);
    assert_eq!(positions(&single), positions(&by_admin));
    assert!(items(&trail(&org.owner, &org.id, "ip=2001:db8::/32").await).is_empty());

    // combined: every filter narrows
    let combined = items(
        &trail(&org.owner, &org.id, &format!("credentialId={first}&outcome=success&ip=203.0.113.0/24&since={stamp}"))
            .await,
    );
    assert_eq!(combined.len(), 1);
    assert_eq!(combined[0]["type"], "CredentialUsed");
}

/// The trail's positions once it holds every event the log has for the organization: uses are
/// durable before their requests are answered, but projected a moment later.
async fn settled_positions(server: &Server, org: &Org) -> Vec<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let logged = log_events(&server.data_dir).iter().filter(|e| e["orgId"] == org.id.as_str()).count();
        let listed = positions(&items(&trail(&org.owner, &org.id, "limit=500").await));
        if listed.len() >= logged || std::time::Instant::now() > deadline {
            return listed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cursor_pages_stay_stable_while_events_are_appended() {
    let server = Server::start_with(PROXIED).unwrap();
    let org = new_org(&server, "acme").await;
    let (_, secret) = machine_token(&org, "busy", json!({})).await;
    for i in 0..12 {
        let ip = if i % 2 == 0 { "10.1.0.1" } else { "10.2.0.1" };
        use_token(&server, &org.id, &secret, ip, "busy-bot/1").await;
    }
    let before = settled_positions(&server, &org).await;

    // Walk pages of 4 and append two events between pages: none of them shows up, nothing is
    // repeated or skipped.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("limit=4&cursor={cursor}"),
            None => "limit=4".to_owned(),
        };
        let reply = trail(&org.owner, &org.id, &query).await;
        pages += 1;
        let page = items(&reply);
        assert!(page.len() <= 4);
        seen.extend(positions(&page));
        use_token(&server, &org.id, &secret, "10.1.0.1", "busy-bot/1").await;
        machine_token(&org, &format!("appended-{pages}"), json!({})).await;
        match reply.body["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(next, page.last().expect("a full page")["position"].as_u64().expect("position").to_string());
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(seen, before, "the pages hold exactly the trail as it was when the walk began");
    assert_eq!(pages, before.len().div_ceil(4));
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len(), "no duplicates");
    let now = positions(&items(&trail(&org.owner, &org.id, "limit=500").await));
    assert!(now.len() > before.len() && now.ends_with(&before), "appends are newer than every page");

    // The CIDR filter is applied after reading; pages of it are complete and stable as well.
    let expected = items(&trail(&org.owner, &org.id, "ip=10.2.0.0/16&limit=500").await);
    assert_eq!(expected.len(), 6);
    let walked = all_pages(&org.owner, &trail_path(&org.id, "ip=10.2.0.0/16"), 4).await;
    assert_eq!(positions(&walked), positions(&expected));
    assert_newest_first(&walked);
}

#[tokio::test]
async fn only_owners_and_admins_read_the_trail() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (_, admin_pat) = org.owner.add_member_with_token(&org.id, "root@acme.example", "admin").await;
    let (_, member_pat) = org.owner.add_member_with_token(&org.id, "dev@acme.example", "member").await;
    let (_, token) = machine_token(&org, "ci", json!({})).await;
    let other = new_org(&server, "globex").await;
    let path = trail_path(&org.id, "");

    assert_eq!(org.owner.get(&path).await.status, 200);
    assert_eq!(server.client(&admin_pat).get(&path).await.status, 200);
    assert_problem(&server.client(&member_pat).get(&path).await, 403, "insufficient_role");
    assert_problem(&server.client(&token).get(&path).await, 403, "machine_credential_forbidden");
    assert_problem(&other.owner.get(&path).await, 404, "not_found");
    assert_problem(&server.admin().get(&path).await, 403, "insufficient_role");
    assert_problem(&Client::anonymous(&server).get(&path).await, 401, "missing_credentials");
}

#[tokio::test]
async fn bad_query_values_are_400_naming_the_field() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (token, _) = machine_token(&org, "ci", json!({})).await;
    let cases = [
        ("since=yesterday", "since"),
        ("until=2025-13-01T00:00:00Z", "until"),
        ("ip=10.0.0.0/33", "ip"),
        ("ip=not-an-address", "ip"),
        ("outcome=maybe", "outcome"),
        ("type=NoSuchEvent", "type"),
        ("credentialId=nope", "credentialId"), // `invalid_id`, as every malformed id
        ("cursor=abc", "cursor"),
        ("cursor=-1", "cursor"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
    ];
    for (query, field) in cases {
        let reply = org.owner.get(&trail_path(&org.id, query)).await;
        let code = if field == "credentialId" { "invalid_id" } else { "invalid_query" };
        assert_problem(&reply, 400, code);
        assert_eq!(reply.body["field"], field, "{query}: {reply:?}");
    }
    assert_problem(&org.owner.get(&trail_path(&org.id, "colour=red")).await, 400, "invalid_query");
    let uses = format!("/v1/machine-tokens/{}/{token}/uses", org.id);
    for (query, field) in
        [("outcome=maybe", "outcome"), ("ip=300.0.0.1", "ip"), ("since=now", "since"), ("limit=0", "limit")]
    {
        let reply = org.owner.get(&format!("{uses}?{query}")).await;
        assert_problem(&reply, 400, "invalid_query");
        assert_eq!(reply.body["field"], field, "{query}: {reply:?}");
    }
    assert_problem(&org.owner.get(&format!("{uses}?credentialId={token}")).await, 400, "invalid_query");
    let reply = org.owner.get("/v1/audit/not-a-uuid").await;
    assert_problem(&reply, 400, "invalid_id");
    assert_eq!(reply.body["field"], "orgId");
}

#[tokio::test]
async fn machine_token_uses_show_each_use_and_coalesced_denials() {
    let server = Server::start_with(PROXIED).unwrap();
    let org = new_org(&server, "acme").await;
    let (id, secret) = machine_token(&org, "deploy", json!({ "ipAllowlist": ["203.0.113.0/24"] })).await;
    let (_, unrelated) = machine_token(&org, "unrelated", json!({})).await;
    use_token(&server, &org.id, &unrelated, "203.0.113.50", "other/1").await;
    for _ in 0..2 {
        use_token(&server, &org.id, &secret, "203.0.113.9", "deploy-bot/2").await;
    }
    let outsider = server.client(&secret).with_forwarded_for("192.0.2.1").with_user_agent("curl/8");
    for _ in 0..3 {
        assert_problem(&outsider.get(&format!("/v1/machine-tokens/{}/{id}", org.id)).await, 403, "ip_not_allowed");
    }
    let path = format!("/v1/machine-tokens/{}/{id}/uses", org.id);
    let denials = eventually("the coalesced denials", Duration::from_secs(10), async || {
        let reply = org.owner.get(&format!("{path}?outcome=denied")).await;
        let denials = items(&reply);
        let total: u64 = denials.iter().map(|e| e["count"].as_u64().unwrap_or(0)).sum();
        (total == 3).then_some(denials)
    })
    .await;
    for denial in &denials {
        assert_eq!(denial["type"], "CredentialAccessDenied");
        assert_eq!(denial["outcome"], "denied");
        assert_eq!(denial["reason"], "ip_not_allowed");
        assert_eq!(denial["ip"], "192.0.2.1");
        assert_eq!(denial["userAgent"], "curl/8");
        assert_eq!(denial["method"], "GET");
        assert_eq!(denial["route"], "/v1/machine-tokens/{orgId}/{tokenId}");
        rfc3339(&denial["at"]);
    }
    assert!(denials.len() <= 2, "three denials within a second or two coalesce: {denials:?}");

    let every = items(&org.owner.get(&path).await);
    assert_newest_first(&every);
    assert_eq!(every.len(), denials.len() + 2, "uses and denials only, of this token only: {every:?}");
    let uses: Vec<&Value> = every.iter().filter(|e| e["outcome"] == "success").collect();
    assert_eq!(uses.len(), 2);
    for used in uses {
        assert_eq!(used["type"], "CredentialUsed");
        assert_eq!((&used["ip"], &used["userAgent"]), (&json!("203.0.113.9"), &json!("deploy-bot/2")));
        assert_eq!((&used["method"], &used["route"]), (&json!("GET"), &json!("/v1/machine-tokens/{orgId}")));
        assert_eq!((&used["count"], &used["reason"]), (&json!(1), &Value::Null));
    }
    // Each use is in the trail at the same position.
    let trail_of_token = positions(&items(
        &trail(&org.owner, &org.id, &format!("credentialId={id}&outcome=success&type=CredentialUsed")).await,
    ));
    assert_eq!(
        trail_of_token,
        positions(&every.iter().filter(|e| e["outcome"] == "success").cloned().collect::<Vec<_>>())
    );

    // Filters and pages.
    let from_office = items(&org.owner.get(&format!("{path}?ip=203.0.113.0/24")).await);
    assert_eq!(from_office.len(), 2);
    assert!(items(&org.owner.get(&format!("{path}?ip=198.51.100.0/24")).await).is_empty());
    let first = every.last().expect("the first use");
    let since = items(&org.owner.get(&format!("{path}?since={}", text(&first["at"]))).await);
    assert_eq!(since.len(), every.len());
    let until = items(&org.owner.get(&format!("{path}?until={}", text(&first["at"]))).await);
    assert!(until.is_empty(), "{until:?}");
    let walked = all_pages(&org.owner, &path, 1).await;
    assert_eq!(positions(&walked), positions(&every));
}

#[tokio::test]
async fn who_may_trace_a_credential() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let (_, admin_pat) = org.owner.add_member_with_token(&org.id, "root@acme.example", "admin").await;
    let (_, member_pat) = org.owner.add_member_with_token(&org.id, "dev@acme.example", "member").await;
    let (_, colleague_pat) = org.owner.add_member_with_token(&org.id, "pal@acme.example", "member").await;
    let member = server.client(&member_pat);
    let (token, secret) = member.create_token(&org.id, json!({ "name": "mine", "environmentHint": "dev" })).await;
    let service = org.owner.create_service_credential(&org.id, json!({ "name": "billing" })).await;
    let other = new_org(&server, "globex").await;
    let (foreign, _) = machine_token(&other, "theirs", json!({})).await;

    let token_uses = format!("/v1/machine-tokens/{}/{token}/uses", org.id);
    for (who, client) in [("owner", &org.owner), ("admin", &server.client(&admin_pat)), ("the token's owner", &member)]
    {
        let reply = client.get(&token_uses).await;
        assert_eq!(reply.status, 200, "{who}: {reply:?}");
        assert_eq!(reply.body["nextCursor"], Value::Null);
    }
    assert_problem(&server.client(&colleague_pat).get(&token_uses).await, 403, "insufficient_role");
    assert_problem(&server.client(&secret).get(&token_uses).await, 403, "machine_credential_forbidden");
    assert_problem(&other.owner.get(&token_uses).await, 404, "not_found");
    assert_problem(&Client::anonymous(&server).get(&token_uses).await, 401, "missing_credentials");
    // Another organization's credential, or a credential of another kind, is not found.
    assert_problem(&org.owner.get(&format!("/v1/machine-tokens/{}/{foreign}/uses", org.id)).await, 404, "not_found");
    let as_service = format!("/v1/service-credentials/{}/{token}/uses", org.id);
    assert_problem(&org.owner.get(&as_service).await, 404, "not_found");
    assert_problem(&org.owner.get(&format!("/v1/machines/{}/{token}/uses", org.id)).await, 404, "not_found");

    let service_uses = format!("/v1/service-credentials/{}/{}/uses", org.id, service.id);
    assert_eq!(org.owner.get(&service_uses).await.status, 200);
    assert_eq!(server.client(&admin_pat).get(&service_uses).await.status, 200);
    assert_problem(&member.get(&service_uses).await, 403, "insufficient_role");
    let foreign_service = format!("/v1/service-credentials/{}/{}/uses", other.id, service.id);
    assert_problem(&other.owner.get(&foreign_service).await, 404, "not_found");
    let unknown_machine = format!("/v1/machines/{}/0190b2c4-5d6e-7f00-8a00-000000000001/uses", org.id);
    assert_problem(&org.owner.get(&unknown_machine).await, 404, "not_found");
    assert_problem(&member.get(&unknown_machine).await, 403, "insufficient_role");
}

#[tokio::test]
async fn service_credential_uses_show_issued_tokens_and_refused_secrets() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let service = org.owner.create_service_credential(&org.id, json!({ "name": "billing" })).await;
    server.access_token(&service.client_id, &service.secret, None).await;
    let refused = server
        .oauth_form(
            "/oauth2/token",
            support::ClientAuth::Basic { id: &service.client_id, secret: "cl_sc_wrong" },
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let path = format!("/v1/service-credentials/{}/{}/uses", org.id, service.id);
    let entries = eventually("the refused secret", Duration::from_secs(10), async || {
        let entries = items(&org.owner.get(&path).await);
        (entries.len() == 2).then_some(entries)
    })
    .await;
    let (denied, issued) = (&entries[0], &entries[1]);
    assert_eq!((&issued["type"], &issued["outcome"]), (&json!("AccessTokenIssued"), &json!("success")));
    assert_eq!(
        (&issued["method"], &issued["route"], &issued["count"]),
        (&json!("POST"), &json!("/oauth2/token"), &json!(1))
    );
    assert_eq!(issued["userAgent"], support::OAUTH_USER_AGENT);
    assert_eq!((&denied["type"], &denied["outcome"]), (&json!("CredentialAccessDenied"), &json!("denied")));
    assert_eq!((&denied["reason"], &denied["count"]), (&json!("invalid_secret"), &json!(1)));
    assert_eq!(denied["route"], "/oauth2/token");
}
