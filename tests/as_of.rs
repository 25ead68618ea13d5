//! Time travel: every credential, the members and the projects as they were at any past instant
//! or position, folded from the log; and `credledger audit replay`, which prints the inventory of
//! a past moment.

mod support;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde_json::{Value, json};
use support::{Client, Reply, Server};

fn instant() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Waits a little so that the next command is recorded strictly after the instant just taken.
async fn tick() -> String {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let at = instant();
    tokio::time::sleep(Duration::from_millis(30)).await;
    at
}

#[tokio::test]
async fn the_inventory_as_of_each_instant_shows_the_state_name_owner_and_prefix_of_then() {
    let server = Server::start().unwrap();
    let (org, owner_id, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let bob = owner.add_member(&org, "bob@acme.example", "member").await;
    let before_create = tick().await;
    let (id, _) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let path = format!("/v1/machine-tokens/{org}/{id}");
    let created_prefix = owner.get(&path).await.body["tokenPrefix"].clone();
    let after_create = tick().await;
    assert_eq!(owner.patch(&path, json!({ "name": "deploy" })).await.status, 200);
    let after_rename = tick().await;
    assert_eq!(owner.post_empty(&format!("{path}/disable")).await.status, 200);
    let after_disable = tick().await;
    assert_eq!(owner.post(&format!("{path}/transfer"), json!({ "to": bob })).await.status, 200);
    let after_transfer = tick().await;
    let rolled = owner.post_empty(&format!("{path}/roll")).await;
    let rolled_prefix = rolled.body["tokenPrefix"].clone();
    assert_ne!(rolled_prefix, created_prefix);
    let after_roll = tick().await;
    assert_eq!(owner.delete(&path).await.status, 200);
    let after_revoke = tick().await;

    let expected: [(&str, &str, &str, &str, &Value); 6] = [
        (&after_create, "active", "ci", &owner_id, &created_prefix),
        (&after_rename, "active", "deploy", &owner_id, &created_prefix),
        (&after_disable, "disabled", "deploy", &owner_id, &created_prefix),
        (&after_transfer, "disabled", "deploy", &bob, &created_prefix),
        (&after_roll, "disabled", "deploy", &bob, &rolled_prefix),
        (&after_revoke, "revoked", "deploy", &bob, &rolled_prefix),
    ];
    for (at, state, name, owner_of_then, prefix) in expected {
        let query = format!("?asOf={}", at.replace('+', "%2B"));
        let then = owner.get(&format!("{path}{query}")).await;
        assert_eq!(then.status, 200, "{at}: {then:?}");
        let seen = (&then.body["state"], &then.body["name"], &then.body["owner"], &then.body["tokenPrefix"]);
        assert_eq!(seen, (&json!(state), &json!(name), &json!(owner_of_then), prefix), "as of {at}");
        let listed = owner.get(&format!("/v1/machine-tokens/{org}{query}")).await;
        let items = listed.body["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1, "{at}: {listed:?}");
        assert_eq!(items[0]["state"], json!(state), "{at}");
    }
    // Before the token existed: not found, and an empty inventory.
    let query = format!("?asOf={before_create}");
    assert_eq!(owner.get(&format!("{path}{query}")).await.status, 404);
    let empty = owner.get(&format!("/v1/machine-tokens/{org}{query}")).await;
    assert_eq!(empty.body["items"], json!([]), "{empty:?}");
    // Filters apply to the past state.
    let disabled_then = owner.get(&format!("/v1/machine-tokens/{org}?asOf={after_disable}&state=disabled")).await;
    assert_eq!(disabled_then.body["items"].as_array().map(Vec::len), Some(1));
    let active_then = owner.get(&format!("/v1/machine-tokens/{org}?asOf={after_disable}&state=active")).await;
    assert_eq!(active_then.body["items"], json!([]));

    // A log position works as well: the token right after its creation event.
    let created_at = support::log_events(&server.data_dir)
        .into_iter()
        .find(|event| event["type"] == "MachineTokenCreated")
        .and_then(|event| event["position"].as_u64())
        .unwrap();
    let at_position = owner.get(&format!("{path}?asOf={created_at}")).await;
    assert_eq!((&at_position.body["state"], &at_position.body["name"]), (&json!("active"), &json!("ci")));

    // Bad input is a clear 400.
    let bad = owner.get(&format!("{path}?asOf=yesterday")).await;
    assert_eq!((bad.status, bad.code(), bad.body["field"].as_str()), (400, "invalid_query", Some("asOf")));
    let mixed = owner.get(&format!("/v1/machine-tokens/{org}?asOf={after_create}&unusedFor=1d")).await;
    assert_eq!((mixed.status, mixed.code()), (400, "invalid_query"));
}

/// `?asOf=…` for an instant or a position.
fn as_of(at: &str) -> String {
    format!("?asOf={}", at.replace('+', "%2B"))
}

/// The log position of the first event of a type in a stream.
fn position_of(server: &Server, stream: &str, event_type: &str) -> u64 {
    let events = support::stream_events(&server.data_dir, stream, event_type);
    events.first().and_then(|event| event["position"].as_u64()).unwrap_or_else(|| panic!("no {event_type} in {stream}"))
}

/// The items of a list answer.
#[track_caller]
fn items(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["items"].as_array().cloned().unwrap_or_else(|| panic!("no items: {reply:?}"))
}

/// An Ed25519 public key as the machines API takes it (base64url of its 32 bytes).
fn public_key(seed: u8) -> String {
    URL_SAFE_NO_PAD.encode(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes())
}

/// A server with an organization; the owner calls it with the owner PAT.
struct Org {
    server: Server,
    id: String,
    owner_id: String,
    owner_token: String,
    owner: Client,
}

impl Org {
    async fn start() -> Self {
        let server = Server::start().unwrap();
        let (id, owner_id, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
        let owner = server.client(&owner_token);
        Self { server, id, owner_id, owner_token, owner }
    }

    /// Creates a project with environments; returns its id.
    async fn project(&self, name: &str, environments: &[&str]) -> String {
        let body = json!({ "name": name, "environments": environments });
        let reply = self.owner.post(&format!("/v1/projects/{}", self.id), body).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// Registers a machine in project `api`, environment `production`; returns its id.
    async fn machine(&self, name: &str, key_seed: u8) -> String {
        let body =
            json!({ "name": name, "project": "api", "environment": "production", "publicKey": public_key(key_seed) });
        let reply = self.owner.post(&format!("/v1/machines/{}", self.id), body).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.body["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn a_service_credential_as_of_each_instant_shows_the_state_owner_secret_prefix_and_use_of_then() {
    let org = Org::start().await;
    let owner = &org.owner;
    let bob = owner.add_member(&org.id, "bob@acme.example", "owner").await;
    let before_create = tick().await;
    let created = owner.create_service_credential(&org.id, json!({ "name": "release pipeline" })).await;
    let path = format!("/v1/service-credentials/{}/{}", org.id, created.id);
    let list = format!("/v1/service-credentials/{}", org.id);
    let created_prefix = owner.get(&path).await.body["secretPrefix"].clone();
    let after_create = tick().await;
    org.server.access_token(&created.client_id, &created.secret, None).await;
    let after_use = tick().await;
    let rotated = owner.post_empty(&format!("{path}/rotate")).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let rotated_prefix = rotated.body["secretPrefix"].clone();
    assert_ne!(rotated_prefix, created_prefix);
    let after_rotate = tick().await;
    assert_eq!(owner.post(&format!("{path}/transfer"), json!({ "to": bob })).await.status, 200);
    let after_transfer = tick().await;
    assert_eq!(owner.post_empty(&format!("{path}/revoke")).await.status, 200);
    let after_revoke = tick().await;

    let expected: [(&str, &str, &str, &Value, u64); 5] = [
        (&after_create, "active", &org.owner_id, &created_prefix, 0),
        (&after_use, "active", &org.owner_id, &created_prefix, 1),
        (&after_rotate, "active", &org.owner_id, &rotated_prefix, 1),
        (&after_transfer, "active", &bob, &rotated_prefix, 1),
        (&after_revoke, "revoked", &bob, &rotated_prefix, 1),
    ];
    for (at, state, owner_then, prefix, uses) in expected {
        let then = owner.get(&format!("{path}{}", as_of(at))).await;
        assert_eq!(then.status, 200, "{at}: {then:?}");
        let seen = (&then.body["state"], &then.body["owner"], &then.body["secretPrefix"], &then.body["useCount"]);
        assert_eq!(seen, (&json!(state), &json!(owner_then), prefix, &json!(uses)), "as of {at}");
        assert_eq!(
            (&then.body["name"], &then.body["clientId"]),
            (&json!("release pipeline"), &json!(created.client_id))
        );
        let listed = items(&owner.get(&format!("{list}{}", as_of(at))).await);
        assert_eq!(listed.len(), 1, "{at}: {listed:?}");
        assert_eq!((&listed[0]["state"], &listed[0]["owner"]), (&json!(state), &json!(owner_then)), "{at}");
    }
    // Before it existed: not found, and an empty list.
    assert_eq!(owner.get(&format!("{path}{}", as_of(&before_create))).await.status, 404);
    assert_eq!(items(&owner.get(&format!("{list}{}", as_of(&before_create))).await), Vec::<Value>::new());

    // By position: the rotation's own position shows the new prefix, the one before it the old.
    let rotation = position_of(&org.server, &format!("sc-{}", created.id), "ServiceCredentialSecretRotated");
    let at_rotation = owner.get(&format!("{path}?asOf={rotation}")).await;
    assert_eq!(at_rotation.body["secretPrefix"], rotated_prefix, "{at_rotation:?}");
    let before_rotation = owner.get(&format!("{path}?asOf={}", rotation - 1)).await;
    assert_eq!(before_rotation.body["secretPrefix"], created_prefix, "{before_rotation:?}");
    assert_eq!(before_rotation.body["state"], "active");
    let revocation = position_of(&org.server, &format!("sc-{}", created.id), "ServiceCredentialRevoked");
    assert_eq!(owner.get(&format!("{path}?asOf={}", revocation - 1)).await.body["state"], "active");
    assert_eq!(owner.get(&format!("{path}?asOf={revocation}")).await.body["state"], "revoked");
}

#[tokio::test]
async fn a_machine_as_of_each_instant_shows_the_state_owner_and_public_key_of_then() {
    let org = Org::start().await;
    let owner = &org.owner;
    let bob = owner.add_member(&org.id, "bob@acme.example", "admin").await;
    org.project("api", &["production"]).await;
    let before_create = tick().await;
    let id = org.machine("deploy-prod", 1).await;
    let path = format!("/v1/machines/{}/{id}", org.id);
    let list = format!("/v1/machines/{}", org.id);
    let after_create = tick().await;
    let rotated = owner.post(&format!("{path}/rotate-key"), json!({ "publicKey": public_key(2) })).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let after_rotate = tick().await;
    assert_eq!(owner.post(&format!("{path}/transfer"), json!({ "to": "bob@acme.example" })).await.status, 200);
    let after_transfer = tick().await;
    assert_eq!(owner.post_empty(&format!("{path}/revoke")).await.status, 200);
    let after_revoke = tick().await;

    let (first_key, second_key) = (public_key(1), public_key(2));
    let expected: [(&str, &str, &str, &str, bool); 4] = [
        (&after_create, "active", &org.owner_id, &first_key, false),
        (&after_rotate, "active", &org.owner_id, &second_key, true),
        (&after_transfer, "active", &bob, &second_key, true),
        (&after_revoke, "revoked", &bob, &second_key, true),
    ];
    for (at, state, owner_then, key, rotated) in expected {
        let then = owner.get(&format!("{path}{}", as_of(at))).await;
        assert_eq!(then.status, 200, "{at}: {then:?}");
        let seen =
            (&then.body["state"], &then.body["owner"], &then.body["publicKey"], then.body["keyRotatedAt"].is_string());
        assert_eq!(seen, (&json!(state), &json!(owner_then), &json!(key), rotated), "as of {at}");
        assert_eq!((&then.body["name"], &then.body["environment"]), (&json!("deploy-prod"), &json!("production")));
        let listed = items(&owner.get(&format!("{list}{}", as_of(at))).await);
        assert_eq!(listed.len(), 1, "{at}: {listed:?}");
        assert_eq!((&listed[0]["state"], &listed[0]["publicKey"]), (&json!(state), &json!(key)), "{at}");
    }
    assert_eq!(owner.get(&format!("{path}{}", as_of(&before_create))).await.status, 404);
    assert_eq!(items(&owner.get(&format!("{list}{}", as_of(&before_create))).await), Vec::<Value>::new());

    let stream = format!("mi-{id}");
    let rotation = position_of(&org.server, &stream, "MachineKeyRotated");
    assert_eq!(owner.get(&format!("{path}?asOf={}", rotation - 1)).await.body["publicKey"], json!(first_key));
    assert_eq!(owner.get(&format!("{path}?asOf={rotation}")).await.body["publicKey"], json!(second_key));
    let transfer = position_of(&org.server, &stream, "MachineTransferred");
    assert_eq!(owner.get(&format!("{path}?asOf={}", transfer - 1)).await.body["owner"], json!(org.owner_id));
    assert_eq!(owner.get(&format!("{path}?asOf={transfer}")).await.body["owner"], json!(bob));
}

#[tokio::test]
async fn a_moment_in_the_future_or_beyond_the_head_gives_the_present_state() {
    let org = Org::start().await;
    let (id, _) =
        org.owner.create_token(&org.id, json!({ "name": "ci", "environmentHint": "prod", "expiresInDays": 1 })).await;
    let path = format!("/v1/machine-tokens/{}/{id}", org.id);
    let present = org.owner.get(&path).await.body;
    assert_eq!(present["state"], "active");
    // Three days ahead the token will have expired, but the future is not known: it is the present.
    let future = (Utc::now() + chrono::TimeDelta::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    for moment in [future, u64::MAX.to_string()] {
        let then = org.owner.get(&format!("{path}{}", as_of(&moment))).await;
        assert_eq!(then.status, 200, "{moment}: {then:?}");
        assert_eq!(then.body, present, "as of {moment}");
        let listed = items(&org.owner.get(&format!("/v1/machine-tokens/{}{}", org.id, as_of(&moment))).await);
        assert_eq!(listed, vec![present.clone()], "as of {moment}");
    }
}

#[tokio::test]
async fn personal_tokens_as_of_a_moment_before_their_revocation_were_active() {
    let org = Org::start().await;
    let owner = &org.owner;
    let (bob, bob_token) = owner.add_member_with_token(&org.id, "bob@acme.example", "member").await;
    let before_create = tick().await;
    let (pat, _) = owner.create_pat(&org.id, &org.owner_id).await;
    let list = format!("/v1/orgs/{}/members/{}/tokens", org.id, org.owner_id);
    let path = format!("{list}/{pat}");
    let after_create = tick().await;
    assert_eq!(owner.delete(&path).await.status, 200);
    let after_revoke = tick().await;

    let states = |listed: Vec<Value>| -> Vec<(Value, Value)> {
        listed.into_iter().map(|item| (item["id"].clone(), item["state"].clone())).collect()
    };
    let ids_of = |listed: &[Value]| listed.iter().map(|item| item["id"].clone()).collect::<Vec<_>>();
    let before = items(&owner.get(&format!("{list}{}", as_of(&before_create))).await);
    assert!(!ids_of(&before).contains(&json!(pat)), "{before:?}");
    assert_eq!(before.len(), 1, "only the owner token: {before:?}");
    let then = states(items(&owner.get(&format!("{list}{}", as_of(&after_create))).await));
    assert!(then.contains(&(json!(pat), json!("active"))), "{then:?}");
    let later = states(items(&owner.get(&format!("{list}{}", as_of(&after_revoke))).await));
    assert!(later.contains(&(json!(pat), json!("revoked"))), "{later:?}");
    // Only the member's own PATs: Bob's initial token is not among the owner's.
    assert_eq!(later.len(), 2, "{later:?}");

    assert_eq!(owner.get(&path).await.body["state"], "revoked");
    let active_then = owner.get(&format!("{path}{}", as_of(&after_create))).await;
    assert_eq!((active_then.status, &active_then.body["state"]), (200, &json!("active")), "{active_then:?}");
    assert_eq!(owner.get(&format!("{path}{}", as_of(&before_create))).await.status, 404);
    // Bob's own list, then and now, through his own token.
    let bob_list = format!("/v1/orgs/{}/members/{bob}/tokens", org.id);
    let bob_then = items(&org.server.client(&bob_token).get(&format!("{bob_list}{}", as_of(&after_revoke))).await);
    assert_eq!((bob_then.len(), &bob_then[0]["state"]), (1, &json!("active")), "{bob_then:?}");
}

#[tokio::test]
async fn members_and_projects_as_of_a_moment_before_each_change() {
    let org = Org::start().await;
    let owner = &org.owner;
    let members = format!("/v1/orgs/{}/members", org.id);
    let projects = format!("/v1/projects/{}", org.id);
    let before_add = tick().await;
    let bob = owner.add_member(&org.id, "bob@acme.example", "member").await;
    let after_add = tick().await;
    assert_eq!(owner.patch(&format!("{members}/{bob}"), json!({ "role": "admin" })).await.status, 200);
    let after_role = tick().await;
    assert_eq!(owner.delete(&format!("{members}/{bob}")).await.status, 200);
    let after_remove = tick().await;
    let project = org.project("api", &["production"]).await;
    let after_project = tick().await;
    let env = owner.post(&format!("{projects}/{project}/environments"), json!({ "name": "staging" })).await;
    assert_eq!(env.status, 201, "{env:?}");
    let after_env = tick().await;

    let bob_then = |listed: Vec<Value>| listed.into_iter().find(|member| member["id"] == json!(bob));
    assert_eq!(bob_then(items(&owner.get(&format!("{members}{}", as_of(&before_add))).await)), None);
    for (at, role, removed) in
        [(&after_add, "member", false), (&after_role, "admin", false), (&after_remove, "admin", true)]
    {
        let seen = bob_then(items(&owner.get(&format!("{members}{}", as_of(at))).await)).expect("bob is listed");
        assert_eq!(seen, json!({ "id": bob, "email": "bob@acme.example", "role": role, "removed": removed }), "{at}");
    }
    // The present, folded from the log, is the current list.
    let now = owner.get(&members).await.body;
    assert_eq!(owner.get(&format!("{members}{}", as_of(&instant()))).await.body, now);

    assert_eq!(items(&owner.get(&format!("{projects}{}", as_of(&after_remove))).await), Vec::<Value>::new());
    let current = items(&owner.get(&projects).await);
    let created_then = items(&owner.get(&format!("{projects}{}", as_of(&after_project))).await);
    assert_eq!(created_then.len(), 1, "{created_then:?}");
    assert_eq!(created_then[0]["environments"], json!(["production"]));
    assert_eq!((&created_then[0]["id"], &created_then[0]["createdAt"]), (&current[0]["id"], &current[0]["createdAt"]));
    let with_env = items(&owner.get(&format!("{projects}{}", as_of(&after_env))).await);
    assert_eq!(with_env, current);
    assert_eq!(current[0]["environments"], json!(["production", "staging"]));

    // Before the organization existed (position 0 includes nothing): not found.
    assert_eq!(owner.get(&format!("{members}?asOf=0")).await.status, 404);
    assert_eq!(owner.get(&format!("{projects}?asOf=0")).await.status, 404);
}

#[tokio::test]
async fn a_bad_as_of_is_a_400_problem_naming_the_field_on_every_get_and_list() {
    let org = Org::start().await;
    let (o, member) = (&org.id, &org.owner_id);
    let (token, _) = org.owner.create_token(o, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let credential = org.owner.create_service_credential(o, json!({ "name": "release" })).await;
    org.project("api", &["production"]).await;
    let machine = org.machine("deploy-prod", 3).await;
    let (pat, _) = org.owner.create_pat(o, member).await;
    let routes = [
        format!("/v1/machine-tokens/{o}"),
        format!("/v1/machine-tokens/{o}/{token}"),
        format!("/v1/service-credentials/{o}"),
        format!("/v1/service-credentials/{o}/{}", credential.id),
        format!("/v1/machines/{o}"),
        format!("/v1/machines/{o}/{machine}"),
        format!("/v1/orgs/{o}/members"),
        format!("/v1/orgs/{o}/members/{member}/tokens"),
        format!("/v1/orgs/{o}/members/{member}/tokens/{pat}"),
        format!("/v1/projects/{o}"),
    ];
    for route in &routes {
        assert_eq!(org.owner.get(&format!("{route}?asOf=1000000")).await.status, 200, "{route} takes asOf");
        for bad in ["yesterday", "2026-02-30T10:00:00Z", "2026-11-25%2010:00", "-1", ""] {
            let reply = org.owner.get(&format!("{route}?asOf={bad}")).await;
            let seen = (reply.status, reply.content_type.as_str(), reply.code(), reply.body["field"].as_str());
            assert_eq!(
                seen,
                (400, "application/problem+json", "invalid_query", Some("asOf")),
                "{route}?asOf={bad}: {reply:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_lists_as_of_on_every_get_and_list() {
    let server = Server::start().unwrap();
    let document = Client::anonymous(&server).get("/openapi.json").await.body;
    for path in [
        "/v1/machine-tokens/{orgId}",
        "/v1/machine-tokens/{orgId}/{tokenId}",
        "/v1/service-credentials/{orgId}",
        "/v1/service-credentials/{orgId}/{id}",
        "/v1/machines/{orgId}",
        "/v1/machines/{orgId}/{id}",
        "/v1/orgs/{orgId}/members",
        "/v1/orgs/{orgId}/members/{memberId}/tokens",
        "/v1/orgs/{orgId}/members/{memberId}/tokens/{tokenId}",
        "/v1/projects/{orgId}",
    ] {
        let parameters = document["paths"][path]["get"]["parameters"].as_array().cloned().unwrap_or_default();
        let as_of = parameters.iter().find(|parameter| parameter["name"] == "asOf");
        assert!(as_of.is_some_and(|p| p["in"] == "query"), "GET {path} does not document asOf: {parameters:?}");
    }
}

/// Runs the real `credledger` binary as the organization's owner, in an isolated environment.
fn credledger(org: &Org, args: &[&str]) -> (i32, String, String) {
    let config = tempfile::tempdir().unwrap();
    let output = Command::new(support::binary())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("CREDLEDGER_URL", &org.server.base_url)
        .env("CREDLEDGER_CONFIG_DIR", config.path())
        .env("CREDLEDGER_TOKEN", &org.owner_token)
        .args(args)
        .output()
        .expect("the credledger binary runs");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
    (output.status.code().expect("an exit code"), text(output.stdout), text(output.stderr))
}

/// `(kind, name, state)` of each item of `audit replay -o json`, in order.
fn replayed(org: &Org, at: &str, extra: &[&str]) -> Vec<(String, String, String)> {
    let mut args = vec!["audit", "replay", "--org", &org.id, "--as-of", at, "-o", "json"];
    args.extend(extra);
    let (code, stdout, stderr) = credledger(org, &args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let document: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!((&document["orgId"], &document["asOf"]), (&json!(org.id), &json!(at)), "{document}");
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    document["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {document}"))
        .iter()
        .map(|item| (text(&item["kind"]), text(&item["name"]), text(&item["state"])))
        .collect()
}

#[tokio::test]
async fn audit_replay_prints_the_inventory_of_each_instant() {
    let org = Org::start().await;
    let owner = &org.owner;
    org.project("api", &["production"]).await;
    let (token, _) = owner.create_token(&org.id, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let credential = owner.create_service_credential(&org.id, json!({ "name": "release" })).await;
    let machine = org.machine("deploy-prod", 4).await;
    let after_create = tick().await;
    assert_eq!(owner.delete(&format!("/v1/machine-tokens/{}/{token}", org.id)).await.status, 200);
    let sc = format!("/v1/service-credentials/{}/{}", org.id, credential.id);
    assert_eq!(owner.post_empty(&format!("{sc}/revoke")).await.status, 200);
    assert_eq!(owner.post_empty(&format!("/v1/machines/{}/{machine}/revoke", org.id)).await.status, 200);
    let after_revoke = tick().await;

    let inventory = |state: &str| {
        [("machine_token", "ci"), ("service_credential", "release"), ("machine", "deploy-prod")]
            .map(|(kind, name)| (kind.to_owned(), name.to_owned(), state.to_owned()))
            .to_vec()
    };
    assert_eq!(replayed(&org, &after_create, &[]), inventory("active"));
    assert_eq!(replayed(&org, &after_revoke, &[]), inventory("revoked"));
    assert_eq!(replayed(&org, &after_create, &["--kind", "machines"]), vec![inventory("active")[2].clone()]);
    // A log position: right after the token's creation, only the token existed.
    let created = position_of(&org.server, &format!("mt-{token}"), "MachineTokenCreated");
    assert_eq!(replayed(&org, &created.to_string(), &[]), vec![inventory("active")[0].clone()]);

    // The table: one row per credential with its state, owner and prefix or client id then.
    let (code, table, stderr) = credledger(&org, &["audit", "replay", "--as-of", &after_create, "-o", "table"]);
    assert_eq!(code, 0, "{table}\n{stderr}");
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["KIND", "NAME", "ID", "STATE", "OWNER", "PREFIX", "EXPIRES"], "{table}");
    let prefix = owner.get(&format!("/v1/machine-tokens/{}/{token}", org.id)).await.body["tokenPrefix"].clone();
    // Owners by their email, for a person reading the table.
    let owner_id = "ops@acme.example";
    let expected: [[&str; 7]; 3] = [
        ["machine_token", "ci", &token, "active", owner_id, prefix.as_str().unwrap(), "-"],
        ["service_credential", "release", &credential.id, "active", owner_id, &credential.client_id, "-"],
        ["machine", "deploy-prod", &machine, "active", owner_id, "-", "-"],
    ];
    assert_eq!(rows[1..], expected.map(|row| row.to_vec()), "{table}");
    let (_, later, _) = credledger(&org, &["audit", "replay", "--as-of", &after_revoke, "-o", "table"]);
    let states: Vec<&str> = later.lines().skip(2).filter_map(|line| line.split_whitespace().nth(3)).collect();
    assert_eq!(states, ["revoked", "revoked", "revoked"], "{later}");

    // A moment the server cannot read is a usage error (exit 2) naming the field.
    let (code, stdout, stderr) = credledger(&org, &["audit", "replay", "--as-of", "yesterday"]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.starts_with("error: invalid_query") && stderr.contains("asOf"), "{stderr}");
}
