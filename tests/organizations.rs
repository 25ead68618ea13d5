//! Organizations, members, projects and personal access tokens over HTTP: who may create and
//! change them, what a machine token may never touch, what stays inside its organization, and
//! the process manager that flags a removed member's machine tokens and revokes its PATs.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, Reply, Server, log_events};

/// Asserts a problem+json refusal with this status and code.
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(reply.content_type.starts_with("application/problem+json"), "{reply:?}");
    assert_eq!(reply.code(), code, "{reply:?}");
}

/// The `items` of a list reply.
fn items(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["items"].as_array().cloned().unwrap_or_else(|| panic!("no items in {reply:?}"))
}

/// The ids of a list reply's items, sorted.
fn ids(reply: &Reply) -> Vec<String> {
    let mut ids: Vec<String> = items(reply).iter().map(|item| item["id"].as_str().expect("id").to_owned()).collect();
    ids.sort();
    ids
}

/// Polls `check` until it returns `Some`, for at most `within`.
async fn eventually<T>(within: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many events of this type the log holds for this stream.
fn count_events(server: &Server, stream: &str, event_type: &str) -> usize {
    log_events(&server.data_dir).iter().filter(|event| event["stream"] == stream && event["type"] == event_type).count()
}

#[tokio::test]
async fn server_admin_creates_an_organization_whose_owner_token_works() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let reply = admin.post("/v1/orgs", json!({ "name": "acme", "ownerEmail": "Ops@Acme.Example" })).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let org = reply.body["id"].as_str().expect("id").to_owned();
    assert_eq!(reply.body["name"], "acme");
    assert_eq!(reply.body["owner"]["email"], "ops@acme.example", "emails are lower-cased");
    assert_eq!(reply.body["owner"]["role"], "owner");
    let owner_id = reply.body["owner"]["id"].as_str().expect("owner id").to_owned();
    let owner_token = reply.body["ownerToken"].as_str().expect("ownerToken").to_owned();
    assert!(owner_token.starts_with("cl_pat_"), "{owner_token}");

    let owner = server.client(&owner_token);
    let shown = owner.get(&format!("/v1/orgs/{org}")).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.body["id"], org.as_str());
    assert_eq!(shown.body["name"], "acme");
    assert_eq!(shown.body["owner"]["id"], owner_id.as_str());
    assert!(shown.body.get("ownerToken").is_none(), "the owner token is shown once: {shown:?}");

    let refused = owner.post("/v1/orgs", json!({ "name": "rogue", "ownerEmail": "x@rogue.example" })).await;
    assert_problem(&refused, 403, "server_admin_only");
    let anonymous =
        Client::anonymous(&server).post("/v1/orgs", json!({ "name": "anon", "ownerEmail": "a@b.example" })).await;
    assert_problem(&anonymous, 401, "missing_credentials");
    let organizations = log_events(&server.data_dir).iter().filter(|event| event["type"] == "OrgCreated").count();
    assert_eq!(organizations, 1, "refused creations append nothing");
}

#[tokio::test]
async fn owners_and_admins_manage_members_and_an_organization_keeps_an_owner() {
    let server = Server::start().unwrap();
    let (org, owner_id, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let members_path = format!("/v1/orgs/{org}/members");

    let (admin_id, admin_token) = owner.add_member_with_token(&org, "lead@acme.example", "admin").await;
    let admin = server.client(&admin_token);
    let (dev_id, dev_token) = admin.add_member_with_token(&org, "dev@acme.example", "member").await;
    let dev = server.client(&dev_token);

    let listed = owner.get(&members_path).await;
    let mut roles: Vec<(String, String)> = items(&listed)
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [("dev@acme.example", "member"), ("lead@acme.example", "admin"), ("ops@acme.example", "owner")]
            .map(|(email, role)| (email.to_owned(), role.to_owned()))
    );
    assert_eq!(dev.get(&members_path).await.status, 200, "every member may list the members");

    // A plain member manages no one; an admin manages everyone but owners.
    let by_member = dev.post(&members_path, json!({ "email": "friend@acme.example" })).await;
    assert_problem(&by_member, 403, "insufficient_role");
    let owner_by_admin = admin.post(&members_path, json!({ "email": "boss@acme.example", "role": "owner" })).await;
    assert_problem(&owner_by_admin, 403, "insufficient_role");
    let promoted_by_admin = admin.patch(&format!("{members_path}/{dev_id}"), json!({ "role": "owner" })).await;
    assert_problem(&promoted_by_admin, 403, "insufficient_role");
    let demoted_by_admin = admin.patch(&format!("{members_path}/{owner_id}"), json!({ "role": "member" })).await;
    assert_problem(&demoted_by_admin, 403, "insufficient_role");
    let removed_by_admin = admin.delete(&format!("{members_path}/{owner_id}")).await;
    assert_problem(&removed_by_admin, 403, "insufficient_role");

    let duplicate = owner.post(&members_path, json!({ "email": "DEV@acme.example", "role": "admin" })).await;
    assert_problem(&duplicate, 409, "member_exists");

    // The last owner can be neither demoted nor removed.
    let demote_last = owner.patch(&format!("{members_path}/{owner_id}"), json!({ "role": "admin" })).await;
    assert_problem(&demote_last, 409, "last_owner");
    let remove_last = owner.delete(&format!("{members_path}/{owner_id}")).await;
    assert_problem(&remove_last, 409, "last_owner");

    let changed = admin.patch(&format!("{members_path}/{dev_id}"), json!({ "role": "admin" })).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["id"], dev_id.as_str());
    assert_eq!(changed.body["role"], "admin");
    let promoted = owner.patch(&format!("{members_path}/{admin_id}"), json!({ "role": "owner" })).await;
    assert_eq!(promoted.body["role"], "owner", "{promoted:?}");
    // With a second owner, the first may step down.
    let stepped_down = owner.patch(&format!("{members_path}/{owner_id}"), json!({ "role": "admin" })).await;
    assert_eq!(stepped_down.body["role"], "admin", "{stepped_down:?}");

    let removed = admin.delete(&format!("{members_path}/{dev_id}")).await;
    assert_eq!(removed.status, 200, "{removed:?}");
    assert_eq!(removed.body["removed"], true, "{removed:?}");
    let listed = admin.get(&members_path).await;
    let dev_row =
        items(&listed).into_iter().find(|m| m["id"] == dev_id.as_str()).expect("a removed member stays listed");
    assert_eq!(dev_row["removed"], true);
    let again = admin.delete(&format!("{members_path}/{dev_id}")).await;
    assert_problem(&again, 404, "not_found");
    // The email of a removed member may join again, as a new member.
    let rejoined = admin.add_member(&org, "dev@acme.example", "member").await;
    assert_ne!(rejoined, dev_id);
}

#[tokio::test]
async fn members_create_list_and_revoke_their_own_personal_tokens() {
    let server = Server::start().unwrap();
    let (org, owner_id, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (dev_id, first_token) = owner.add_member_with_token(&org, "dev@acme.example", "member").await;
    let dev = server.client(&first_token);
    let tokens_path = format!("/v1/orgs/{org}/members/{dev_id}/tokens");
    // The initial token the invitation carried is the member's first PAT.
    let first_id = ids(&dev.get(&tokens_path).await).pop().expect("the initial token is listed");

    let created = dev.post(&tokens_path, json!({ "name": "ci laptop", "expiresInDays": 30 })).await;
    assert_eq!(created.status, 201, "{created:?}");
    let second_id = created.body["id"].as_str().expect("id").to_owned();
    let second_token = created.body["token"].as_str().expect("token").to_owned();
    assert!(second_token.starts_with("cl_pat_"), "{second_token}");
    assert_eq!(created.body["name"], "ci laptop");
    assert_eq!(created.body["memberId"], dev_id.as_str());
    assert_eq!(created.body["state"], "active");
    assert!(created.body["expiresAt"].is_string(), "{created:?}");
    let without_body = dev.post_empty(&tokens_path).await;
    assert_eq!(without_body.status, 201, "a body is optional: {without_body:?}");
    let third_id = without_body.body["id"].as_str().expect("id").to_owned();

    let listed = dev.get(&tokens_path).await;
    let mut expected = vec![first_id.clone(), second_id.clone(), third_id];
    expected.sort();
    assert_eq!(ids(&listed), expected);
    let text = listed.body.to_string();
    for secret in [&first_token, &second_token] {
        assert!(!text.contains(secret.as_str()), "a list never shows a plaintext: {text}");
    }
    for item in items(&listed) {
        assert!(item.get("token").is_none(), "{item}");
        let prefix = item["tokenPrefix"].as_str().expect("tokenPrefix");
        assert!(prefix.starts_with("cl_pat_"), "{prefix}");
    }

    // A member manages only its own tokens.
    let for_owner = dev.post(&format!("/v1/orgs/{org}/members/{owner_id}/tokens"), json!({ "name": "x" })).await;
    assert_problem(&for_owner, 403, "not_your_token");
    let owners_list = dev.get(&format!("/v1/orgs/{org}/members/{owner_id}/tokens")).await;
    assert_problem(&owners_list, 403, "insufficient_role");

    let revoked = dev.delete(&format!("{tokens_path}/{second_id}")).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.body["state"], "revoked");
    let refused = server.client(&second_token).get(&format!("/v1/orgs/{org}")).await;
    assert_problem(&refused, 401, "revoked");
    assert_eq!(dev.get(&format!("/v1/orgs/{org}")).await.status, 200, "the member's other PATs still work");
    let again = dev.delete(&format!("{tokens_path}/{second_id}")).await;
    assert_problem(&again, 409, "invalid_transition");
    // Another member's PAT is not found under this member, even for an owner.
    let (owner_pat_id, _) = owner.create_pat(&org, &owner_id).await;
    let elsewhere = owner.delete(&format!("{tokens_path}/{owner_pat_id}")).await;
    assert_problem(&elsewhere, 404, "not_found");
    let listed = dev.get(&tokens_path).await;
    let second = items(&listed).into_iter().find(|item| item["id"] == second_id.as_str()).expect("still listed");
    assert_eq!(second["state"], "revoked", "{second}");
}

/// Only owners may grant the owner role or remove an owner; a PAT minted for an owner, or the
/// revocation of an owner's PATs, would let an admin step around both.
#[tokio::test]
async fn an_admin_cannot_mint_or_revoke_an_owners_personal_tokens() {
    let server = Server::start().unwrap();
    let (org, owner_id, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (_, admin_token) = owner.add_member_with_token(&org, "lead@acme.example", "admin").await;
    let admin = server.client(&admin_token);
    let owner_tokens = format!("/v1/orgs/{org}/members/{owner_id}/tokens");
    let owner_pat = items(&owner.get(&owner_tokens).await)[0]["id"].as_str().expect("id").to_owned();

    let minted = admin.post(&owner_tokens, json!({ "name": "borrowed" })).await;
    let revoked = admin.delete(&format!("{owner_tokens}/{owner_pat}")).await;
    assert_eq!(
        [(minted.status, minted.code()), (revoked.status, revoked.code())],
        [(403, "not_your_token"), (403, "insufficient_role")],
        "minted: {minted:?}\nrevoked: {revoked:?}"
    );
    assert_eq!(owner.get(&format!("/v1/orgs/{org}")).await.status, 200, "the owner keeps its access");
    // Nobody mints a PAT for someone else: a new member's first PAT comes with its invitation.
    let (dev_id, dev_token) = admin.add_member_with_token(&org, "dev@acme.example", "member").await;
    let for_dev = admin.post(&format!("/v1/orgs/{org}/members/{dev_id}/tokens"), json!({ "name": "x" })).await;
    assert_problem(&for_dev, 403, "not_your_token");
    assert_eq!(server.client(&dev_token).get(&format!("/v1/orgs/{org}")).await.status, 200);
}

#[tokio::test]
async fn projects_are_created_listed_and_given_environments() {
    let server = Server::start().unwrap();
    let (org, _, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let projects_path = format!("/v1/projects/{org}");

    let created = owner.post(&projects_path, json!({ "name": "web", "environments": ["production", "staging"] })).await;
    assert_eq!(created.status, 201, "{created:?}");
    let project_id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body["name"], "web");
    assert_eq!(sorted_strings(&created.body["environments"]), ["production", "staging"]);
    let bare = owner.post(&projects_path, json!({ "name": "batch" })).await;
    assert_eq!(bare.status, 201, "environments are optional: {bare:?}");
    assert_eq!(bare.body["environments"], json!([]));

    let duplicate = owner.post(&projects_path, json!({ "name": "web" })).await;
    assert_problem(&duplicate, 409, "project_exists");

    let added = owner.post(&format!("{projects_path}/{project_id}/environments"), json!({ "name": "qa" })).await;
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(sorted_strings(&added.body["environments"]), ["production", "qa", "staging"]);
    let added_twice = owner.post(&format!("{projects_path}/{project_id}/environments"), json!({ "name": "qa" })).await;
    assert_problem(&added_twice, 409, "environment_exists");
    let unknown_project = "01900000-0000-7000-8000-000000000000";
    let nowhere = owner.post(&format!("{projects_path}/{unknown_project}/environments"), json!({ "name": "qa" })).await;
    assert_problem(&nowhere, 404, "project_not_found");

    let listed = owner.get(&projects_path).await;
    let web = items(&listed).into_iter().find(|p| p["id"] == project_id.as_str()).expect("web is listed");
    assert_eq!(web["name"], "web");
    assert_eq!(sorted_strings(&web["environments"]), ["production", "qa", "staging"]);
    assert_eq!(ids(&listed).len(), 2);

    // Members read projects; only owners and admins create them.
    let (_, dev_token) = owner.add_member_with_token(&org, "dev@acme.example", "member").await;
    let dev = server.client(&dev_token);
    assert_eq!(ids(&dev.get(&projects_path).await).len(), 2);
    assert_problem(&dev.post(&projects_path, json!({ "name": "mine" })).await, 403, "insufficient_role");
    let env_by_member = dev.post(&format!("{projects_path}/{project_id}/environments"), json!({ "name": "dev" })).await;
    assert_problem(&env_by_member, 403, "insufficient_role");

    // Machine tokens read projects and may belong to one that exists.
    let (_, machine) =
        owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod", "projectId": project_id })).await;
    let by_machine = server.client(&machine).get(&projects_path).await;
    assert_eq!(ids(&by_machine).len(), 2, "{by_machine:?}");
    let unknown = owner
        .post(
            &format!("/v1/machine-tokens/{org}"),
            json!({ "name": "ci", "environmentHint": "prod", "projectId": unknown_project }),
        )
        .await;
    assert_problem(&unknown, 422, "project_not_found");
    assert_eq!(unknown.body["field"], "projectId", "{unknown:?}");
    let in_project = owner.get(&format!("/v1/machine-tokens/{org}?projectId={project_id}")).await;
    assert_eq!(items(&in_project).len(), 1, "{in_project:?}");
}

fn sorted_strings(value: &Value) -> Vec<String> {
    let mut strings: Vec<String> =
        value.as_array().expect("an array").iter().map(|s| s.as_str().expect("a string").to_owned()).collect();
    strings.sort();
    strings
}

#[tokio::test]
async fn removing_a_member_flags_its_machine_tokens_and_revokes_its_personal_tokens() {
    let server = Server::start().unwrap();
    let owner_email = "ops@acme.example";
    let (org, owner_id, owner_token) = server.admin().create_org("acme", owner_email).await;
    let owner = server.client(&owner_token);
    let (dev_id, dev_token) = owner.add_member_with_token(&org, "dev@acme.example", "member").await;
    let dev = server.client(&dev_token);
    let (first, first_secret) = dev.create_token(&org, json!({ "name": "ci-1", "environmentHint": "prod" })).await;
    let (second, second_secret) = dev.create_token(&org, json!({ "name": "ci-2", "environmentHint": "prod" })).await;
    let own_pat = dev.post(&format!("/v1/orgs/{org}/members/{dev_id}/tokens"), json!({ "name": "own" })).await;
    assert_eq!(own_pat.status, 201, "{own_pat:?}");
    let own_pat = own_pat.body["token"].as_str().expect("token").to_owned();
    // An unrelated token of the owner must stay unflagged.
    let (bystander, _) = owner.create_token(&org, json!({ "name": "owner-ci", "environmentHint": "prod" })).await;

    let removed = owner.delete(&format!("/v1/orgs/{org}/members/{dev_id}")).await;
    assert_eq!(removed.status, 200, "{removed:?}");
    assert_eq!(removed.body["removed"], true);

    let list_path = format!("/v1/machine-tokens/{org}");
    let flagged = eventually(Duration::from_secs(10), "flagging both tokens", async || {
        let listed = owner.get(&list_path).await;
        let flagged: Vec<Value> = items(&listed)
            .into_iter()
            .filter(|token| token["id"] == first.as_str() || token["id"] == second.as_str())
            .filter(|token| !token["flagged"].is_null())
            .collect();
        (flagged.len() == 2).then_some(flagged)
    })
    .await;
    for token in &flagged {
        assert_eq!(token["flagged"]["reason"], "owner_removed", "{token}");
        assert!(token["flagged"]["at"].is_string(), "{token}");
        assert_eq!(token["owner"], dev_id.as_str(), "flagging keeps the owner: {token}");
        assert_eq!(token["state"], "active", "{token}");
    }
    for pat in [&dev_token, &own_pat] {
        let client = server.client(pat);
        let org_path = format!("/v1/orgs/{org}");
        eventually(Duration::from_secs(10), "revoking the removed member's PATs", async || {
            let reply = client.get(&org_path).await;
            (reply.status == 401 && reply.code() == "revoked").then_some(())
        })
        .await;
    }
    let bystander_view = owner.get(&format!("{list_path}/{bystander}")).await;
    assert!(bystander_view.body["flagged"].is_null(), "{bystander_view:?}");

    // A flagged token still works until it is transferred or revoked.
    for secret in [&first_secret, &second_secret] {
        let reply = server.client(secret).get(&list_path).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let transferred = owner.post(&format!("{list_path}/{first}/transfer"), json!({ "to": owner_email })).await;
    assert_eq!(transferred.status, 200, "{transferred:?}");
    assert!(transferred.body["flagged"].is_null(), "a transfer clears the flag: {transferred:?}");
    assert_eq!(transferred.body["owner"], owner_id.as_str());

    // The process manager flags each token once, however long it keeps running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in [&first, &second] {
        assert_eq!(count_events(&server, &format!("mt-{id}"), "MachineTokenFlagged"), 1, "token {id}");
    }
    let removals = log_events(&server.data_dir).iter().filter(|event| event["type"] == "MemberRemoved").count();
    assert_eq!(removals, 1);

    assert_eq!(ids(&owner.get(&format!("{list_path}?flagged=true")).await), [second.as_str()]);
    let unflagged = ids(&owner.get(&format!("{list_path}?flagged=false")).await);
    assert!(
        unflagged.contains(&first) && unflagged.contains(&bystander) && !unflagged.contains(&second),
        "{unflagged:?}"
    );
    let still_flagged = owner.get(&format!("{list_path}/{second}")).await;
    assert_eq!(still_flagged.body["flagged"]["reason"], "owner_removed", "{still_flagged:?}");
}

#[tokio::test]
async fn an_organization_cannot_see_into_another() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let (org_a, _, owner_a) = admin.create_org("acme", "ops@acme.example").await;
    let (org_b, owner_b_id, owner_b) = admin.create_org("globex", "ops@globex.example").await;
    let b = server.client(&owner_b);
    let b_project = b.post(&format!("/v1/projects/{org_b}"), json!({ "name": "secret" })).await;
    assert_eq!(b_project.status, 201, "{b_project:?}");
    let a = server.client(&owner_a);
    let (_, a_machine) = a.create_token(&org_a, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let a_machine = server.client(&a_machine);

    for (client, method, path) in [
        (&a, "GET", format!("/v1/orgs/{org_b}")),
        (&a, "GET", format!("/v1/orgs/{org_b}/members")),
        (&a, "DELETE", format!("/v1/orgs/{org_b}/members/{owner_b_id}")),
        (&a, "GET", format!("/v1/orgs/{org_b}/members/{owner_b_id}/tokens")),
        (&a, "GET", format!("/v1/projects/{org_b}")),
        (&a_machine, "GET", format!("/v1/projects/{org_b}")),
        (&a_machine, "GET", format!("/v1/machine-tokens/{org_b}")),
    ] {
        let reply = client.send(method, &path, None).await;
        assert_problem(&reply, 404, "not_found");
    }
    let created = a.post(&format!("/v1/projects/{org_b}"), json!({ "name": "intruder" })).await;
    assert_problem(&created, 404, "not_found");
    let added = a.post(&format!("/v1/orgs/{org_b}/members"), json!({ "email": "spy@acme.example" })).await;
    assert_problem(&added, 404, "not_found");
    // Through A's own paths, B's members and PATs do not exist either.
    let b_pat = items(&b.get(&format!("/v1/orgs/{org_b}/members/{owner_b_id}/tokens")).await)[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let minted = a.post(&format!("/v1/orgs/{org_a}/members/{owner_b_id}/tokens"), json!({ "name": "x" })).await;
    assert_problem(&minted, 404, "not_found");
    let a_owner_id = a.get(&format!("/v1/orgs/{org_a}")).await.body["owner"]["id"].as_str().expect("id").to_owned();
    let revoked = a.delete(&format!("/v1/orgs/{org_a}/members/{a_owner_id}/tokens/{b_pat}")).await;
    assert_problem(&revoked, 404, "not_found");
    assert_eq!(b.get(&format!("/v1/orgs/{org_b}")).await.status, 200, "B's PAT still works");

    let members = b.get(&format!("/v1/orgs/{org_b}/members")).await;
    assert_eq!(items(&members).len(), 1, "nothing changed in B: {members:?}");
    let projects = b.get(&format!("/v1/projects/{org_b}")).await;
    assert_eq!(ids(&projects).len(), 1, "{projects:?}");
}

#[tokio::test]
async fn machine_tokens_cannot_manage_organizations_members_or_personal_tokens() {
    let server = Server::start().unwrap();
    let (org, owner_id, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (pat_id, _) = owner.create_pat(&org, &owner_id).await;
    let (_, secret) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let machine = server.client(&secret);
    let member = format!("/v1/orgs/{org}/members/{owner_id}");

    for (method, path, body) in [
        ("POST", "/v1/orgs".to_owned(), Some(json!({ "name": "machine-org", "ownerEmail": "m@acme.example" }))),
        ("GET", format!("/v1/orgs/{org}"), None),
        ("GET", format!("/v1/orgs/{org}/members"), None),
        ("POST", format!("/v1/orgs/{org}/members"), Some(json!({ "email": "bot@acme.example", "role": "owner" }))),
        ("PATCH", member.clone(), Some(json!({ "role": "member" }))),
        ("DELETE", member.clone(), None),
        ("GET", format!("{member}/tokens"), None),
        ("POST", format!("{member}/tokens"), Some(json!({ "name": "stolen" }))),
        ("DELETE", format!("{member}/tokens/{pat_id}"), None),
    ] {
        let reply = machine.send(method, &path, body).await;
        assert_problem(&reply, 403, "machine_credential_forbidden");
    }

    let members = owner.get(&format!("/v1/orgs/{org}/members")).await;
    assert_eq!(items(&members).len(), 1, "{members:?}");
    assert_eq!(members.body["items"][0]["role"], "owner");
    let pats = owner.get(&format!("{member}/tokens")).await;
    assert!(items(&pats).iter().all(|pat| pat["state"] == "active"), "{pats:?}");
    let created = log_events(&server.data_dir).iter().filter(|event| event["type"] == "OrgCreated").count();
    assert_eq!(created, 1);
    // The token itself keeps working where machine credentials belong.
    assert_eq!(machine.get(&format!("/v1/projects/{org}")).await.status, 200);
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let server = Server::start().unwrap();
    let (org, _, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    // Counted requests, so that the counters exist.
    assert_eq!(server.client(&owner_token).get(&format!("/v1/orgs/{org}")).await.status, 200);

    let http = reqwest::Client::new();
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");

    let metrics = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = metrics.text().await.unwrap();
    for name in ["credledger_http_requests_total", "credledger_auth_total"] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}
