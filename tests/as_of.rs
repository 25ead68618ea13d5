//! Time travel: a machine token and the inventory as they were at any past instant or position,
//! folded from the log.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Server;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn instant() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
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
