//! End-to-end tests of token introspection (RFC 7662, DESIGN.md §8) against the real binary: a
//! resource server authenticates with its own service credential and learns about access JWTs
//! and machine tokens of its organization, with the subject's conditions checked and recorded
//! when it passes the subject's request; anything else is exactly `{"active": false}`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Client, ClientAuth, OAuthReply, Server, ServiceCredential, assert_oauth_error, eventually, jwt_claims,
    stream_events,
};

const INTROSPECT: &str = "/oauth2/introspect";
const READ: &str = "credledger-api/read";

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
    async fn credential(&self, name: &str) -> ServiceCredential {
        self.owner.create_service_credential(&self.id, json!({ "name": name })).await
    }

    /// A machine token with the given extra fields: (id, plaintext).
    async fn machine_token(&self, extra: Value) -> (String, String) {
        let mut body = json!({ "name": "deploy", "environmentHint": "ci" });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.owner.create_token(&self.id, body).await
    }

    async fn revoke_credential(&self, id: &str) {
        let reply = self.owner.post_empty(&format!("/v1/service-credentials/{}/{id}/revoke", self.id)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
}

/// Introspects `token` as the resource server `client`, with extra parameters.
async fn introspect(server: &Server, client: &ServiceCredential, token: &str, extra: &[(&str, &str)]) -> OAuthReply {
    let mut parameters = vec![("token", token)];
    parameters.extend_from_slice(extra);
    let auth = ClientAuth::Basic { id: &client.client_id, secret: &client.secret };
    let reply = server.oauth_form(INTROSPECT, auth, &parameters).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("cache-control"), "no-store", "{reply:?}");
    reply
}

#[track_caller]
fn assert_inactive(what: &str, reply: &OAuthReply) {
    assert_eq!(reply.body, json!({ "active": false }), "{what}: {reply:?}");
}

#[tokio::test]
async fn introspection_describes_active_tokens_of_the_callers_organization() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let resource_server = org.credential("gateway").await;
    let pipeline = org.credential("release").await;
    let token = server.access_token(&pipeline.client_id, &pipeline.secret, Some(READ)).await;
    let claims = jwt_claims(&token);

    let reply = introspect(&server, &resource_server, &token, &[]).await;
    let body = &reply.body;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["scope"], READ, "{body}");
    assert_eq!(body["client_id"], pipeline.client_id.as_str(), "{body}");
    assert_eq!(body["sub"], pipeline.id.as_str(), "{body}");
    assert_eq!((&body["exp"], &body["iat"]), (&claims["exp"], &claims["iat"]), "{body}");
    assert_eq!(body["org"], org.id.as_str(), "{body}");
    assert_eq!(body["kind"], "service_credential", "{body}");
    // client_secret_post authenticates the resource server as well.
    let post = ClientAuth::Post { id: &resource_server.client_id, secret: &resource_server.secret };
    let reply = server.oauth_form(INTROSPECT, post, &[("token", &token)]).await;
    assert_eq!((reply.status, &reply.body["active"]), (200, &json!(true)), "{reply:?}");

    let (token_id, machine_token) = org.machine_token(json!({})).await;
    let reply = introspect(&server, &resource_server, &machine_token, &[]).await;
    let body = &reply.body;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["kind"], "machine_token", "{body}");
    assert_eq!(body["environment_hint"], "ci", "{body}");
    assert_eq!(body["sub"], token_id.as_str(), "{body}");
    assert_eq!(body["org"], org.id.as_str(), "{body}");
}

#[tokio::test]
async fn anything_but_an_active_token_of_the_organization_is_only_inactive() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let resource_server = org.credential("gateway").await;
    let pipeline = org.credential("release").await;
    let token = server.access_token(&pipeline.client_id, &pipeline.secret, None).await;
    let (_, machine_token) = org.machine_token(json!({})).await;
    let (revoked_id, revoked_token) = org.machine_token(json!({})).await;
    assert_eq!(org.owner.delete(&format!("/v1/machine-tokens/{}/{revoked_id}", org.id)).await.status, 200);
    let doomed = org.credential("doomed").await;
    let doomed_token = server.access_token(&doomed.client_id, &doomed.secret, None).await;
    org.revoke_credential(&doomed.id).await;

    let globex = new_org(&server, "globex").await;
    let foreign = globex.credential("release").await;
    let foreign_token = server.access_token(&foreign.client_id, &foreign.secret, None).await;
    let (_, foreign_machine_token) = globex.machine_token(json!({})).await;
    assert_eq!(introspect(&server, &foreign, &foreign_token, &[]).await.body["active"], true, "in its own org");

    let unknown = format!("cl_mt_ci_{}", "5a".repeat(32));
    let unknown = format!("{unknown}{:08x}", crc32(unknown.as_bytes()));
    for (what, token) in [
        ("a revoked machine token", revoked_token.as_str()),
        ("a JWT of a revoked credential", &doomed_token),
        ("an unknown machine token", &unknown),
        ("garbage", "not-a-token"),
        ("three dotted parts", "a.b.c"),
        ("a client secret", &pipeline.secret),
        ("another organization's JWT", &foreign_token),
        ("another organization's machine token", &foreign_machine_token),
    ] {
        assert_inactive(what, &introspect(&server, &resource_server, token, &[]).await);
    }

    // 15 minutes and the 30 s leeway later, the JWT has expired; the machine token has not.
    server.shift_clock(15 * 60 + 31 + 5);
    assert_eq!(introspect(&server, &resource_server, &machine_token, &[]).await.body["active"], true);
    assert_inactive("an expired JWT", &introspect(&server, &resource_server, &token, &[]).await);
}

#[tokio::test]
async fn the_subjects_request_is_checked_against_the_tokens_conditions_and_recorded() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let resource_server = org.credential("gateway").await;
    let (token_id, token) = org.machine_token(json!({ "conditions": { "ipAllowlist": ["10.0.0.0/8"] } })).await;
    let stream = format!("usage-{token_id}");

    let outside = [("client_ip", "192.0.2.7"), ("user_agent", "deployer/2")];
    assert_inactive("outside the allowlist", &introspect(&server, &resource_server, &token, &outside).await);
    let denials = eventually("the ip_not_allowed denial", Duration::from_secs(3), async || {
        Some(stream_events(&server.data_dir, &stream, "CredentialAccessDenied")).filter(|d| !d.is_empty())
    })
    .await;
    assert_eq!(denials.len(), 1, "{denials:?}");
    let payload = &denials[0]["payload"];
    assert_eq!(
        (&payload["reason"], &payload["ip"], &payload["count"]),
        (&json!("ip_not_allowed"), &json!("192.0.2.7"), &json!(1))
    );
    assert_eq!(payload["userAgent"], "deployer/2", "{payload}");
    assert!(stream_events(&server.data_dir, &stream, "CredentialUsed").is_empty());

    let inside = [("client_ip", "10.1.2.3"), ("user_agent", "deployer/2")];
    let reply = introspect(&server, &resource_server, &token, &inside).await;
    assert_eq!(reply.body["active"], true, "{reply:?}");
    // Recorded before the answer: no polling.
    let used = stream_events(&server.data_dir, &stream, "CredentialUsed");
    assert_eq!(used.len(), 1, "{used:?}");
    assert_eq!((&used[0]["payload"]["ip"], &used[0]["payload"]["route"]), (&json!("10.1.2.3"), &json!(INTROSPECT)));

    // Without the subject's request only the state is checked, and nothing is recorded.
    assert_eq!(introspect(&server, &resource_server, &token, &[]).await.body["active"], true);
    assert_eq!(stream_events(&server.data_dir, &stream, "CredentialUsed").len(), 1);
    // Only what the resource server says about its caller is checked: a user agent alone does
    // not put the caller at the introspecting server's own address.
    let agent_only = introspect(&server, &resource_server, &token, &[("user_agent", "deployer/2")]).await;
    assert_eq!(agent_only.body["active"], true, "{agent_only:?}");
}

#[tokio::test]
async fn only_an_active_client_of_the_organization_may_introspect() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let resource_server = org.credential("gateway").await;
    let (_, token) = org.machine_token(json!({})).await;
    let auth = ClientAuth::Basic { id: &resource_server.client_id, secret: &resource_server.secret };
    assert_oauth_error(
        &server.oauth_form(INTROSPECT, ClientAuth::None, &[("token", &token)]).await,
        401,
        "invalid_client",
    );
    assert_oauth_error(&server.oauth_form(INTROSPECT, auth, &[]).await, 400, "invalid_request");
    // RFC 6749 §3.2: an empty parameter is an omitted one, not a token to look up.
    assert_oauth_error(&server.oauth_form(INTROSPECT, auth, &[("token", "")]).await, 400, "invalid_request");
    assert_oauth_error(
        &server.oauth_form(INTROSPECT, auth, &[("token", &token), ("client_ip", "not-an-ip")]).await,
        400,
        "invalid_request",
    );
    assert_eq!(introspect(&server, &resource_server, &token, &[]).await.body["active"], true);

    org.revoke_credential(&resource_server.id).await;
    assert_oauth_error(&server.oauth_form(INTROSPECT, auth, &[("token", &token)]).await, 401, "invalid_client");
}

#[tokio::test]
async fn an_introspecting_client_outside_its_own_ip_allowlist_is_refused() {
    let server = Server::start().unwrap();
    let org = new_org(&server, "acme").await;
    let fenced = org
        .owner
        .create_service_credential(
            &org.id,
            json!({ "name": "gateway", "conditions": { "ipAllowlist": ["10.0.0.0/8"] } }),
        )
        .await;
    let (_, token) = org.machine_token(json!({})).await;
    let auth = ClientAuth::Basic { id: &fenced.client_id, secret: &fenced.secret };
    // The token endpoint refuses the client from 127.0.0.1 ...
    let reply = server.oauth_form("/oauth2/token", auth, &[("grant_type", "client_credentials")]).await;
    assert_eq!((reply.status, reply.error()), (400, "unauthorized_client"), "{reply:?}");
    // ... and so must introspection: a credential's conditions hold wherever it is presented.
    let reply = server.oauth_form(INTROSPECT, auth, &[("token", &token)]).await;
    assert!(
        reply.status != 200 && ["unauthorized_client", "invalid_client"].contains(&reply.error()),
        "a client outside its ipAllowlist introspected: {reply:?}"
    );
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
