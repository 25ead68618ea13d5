//! Bad input of every kind is refused with a 4xx problem+json that names a stable code and, where
//! the input has one, the offending field, and it never appends an event (DESIGN.md §8: "never
//! a 500, and never a partial write").

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Reply, Server, commands_len};

/// One bad request: what it tries; `METHOD path`, with `{org}`, `{token}`, `{member}` and
/// `{project}` filled in; its content type and raw body; the expected status, code and field.
type Row = (&'static str, &'static str, Option<&'static str>, Vec<u8>, u16, &'static str, Option<&'static str>);

const JSON: Option<&str> = Some("application/json");

/// A machine-token creation body with these extra members.
fn token_with(extra: &str) -> Vec<u8> {
    format!(r#"{{"name": "ci", "environmentHint": "prod"{extra}}}"#).into_bytes()
}

/// A machine-token creation body with these conditions.
fn conditions(conditions: &str) -> Vec<u8> {
    token_with(&format!(r#", "conditions": {conditions}"#))
}

/// A machine-token creation body with one time window.
fn window(days: &str, start: &str, end: &str) -> Vec<u8> {
    conditions(&format!(r#"{{"timeWindows": [{{"days": {days}, "startUtc": "{start}", "endUtc": "{end}"}}]}}"#))
}

/// A machine-token creation body with this name.
fn named(name: &str) -> Vec<u8> {
    format!(r#"{{"name": "{name}", "environmentHint": "prod"}}"#).into_bytes()
}

/// A machine-token creation body with this environment hint.
fn hinted(hint: &str) -> Vec<u8> {
    format!(r#"{{"name": "ci", "environmentHint": "{hint}"}}"#).into_bytes()
}

fn body(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

// Laid out by hand as the table it is: each row on one or two lines, its expectation last.
#[rustfmt::skip]
fn rows() -> Vec<Row> {
    let create = "POST /v1/machine-tokens/{org}";
    let long_name = "n".repeat(101);
    let many_cidrs = serde_json::to_string(&vec!["10.0.0.0/8"; 101]).unwrap();
    let long_pattern = "a".repeat(257);
    let oversize = token_with(&format!(r#", "padding": "{}""#, "x".repeat(70 * 1024)));
    let hint = Some("environmentHint");
    let window_0 = Some("conditions.timeWindows[0]");
    let pattern = Some("conditions.userAgentPattern");
    vec![
        // The body as a whole.
        ("malformed JSON", create, JSON, body(r#"{"name": "ci","#), 400, "malformed_json", None),
        ("not JSON at all", create, JSON, body("name=ci&environmentHint=prod"), 400, "malformed_json", None),
        ("empty body where one is required", create, JSON, Vec::new(), 400, "malformed_json", None),
        ("trailing characters", create, JSON,
            body(r#"{"name": "ci", "environmentHint": "p"} x"#), 400, "malformed_json", None),
        ("invalid UTF-8", create, JSON,
            b"{\"name\": \"\xff\xfe\", \"environmentHint\": \"p\"}".to_vec(), 400, "malformed_json", None),
        ("JSON array instead of an object", create, JSON, body(r#"["ci", "prod"]"#), 422, "invalid_field", None),
        ("JSON string instead of an object", create, JSON, body(r#""ci""#), 422, "invalid_field", None),
        ("JSON null instead of an object", create, JSON, body("null"), 422, "invalid_field", None),
        ("text/plain content type", create, Some("text/plain"), token_with(""), 415, "unsupported_media_type", None),
        ("form content type", create, Some("application/x-www-form-urlencoded"),
            token_with(""), 415, "unsupported_media_type", None),
        ("missing content type", create, None, token_with(""), 415, "unsupported_media_type", None),
        ("body over 64 KiB", create, JSON, oversize, 413, "body_too_large", None),
        // An optional body must not be ignored because its content type is missing: this roll
        // asks for a grace period, and rolling without one would kill the old value at once.
        ("optional body without content type", "POST /v1/machine-tokens/{org}/{token}/roll", None,
            body(r#"{"gracePeriodSeconds": 60}"#), 415, "unsupported_media_type", None),
        // Shape: unknown, missing, duplicate fields and wrong types.
        ("unknown field", create, JSON, token_with(r#", "bogus": 1"#), 422, "invalid_field", Some("bogus")),
        ("unknown nested field", create, JSON,
            conditions(r#"{"bogus": 1}"#), 422, "invalid_field", Some("conditions.bogus")),
        ("missing required field", create, JSON,
            body(r#"{"name": "ci"}"#), 422, "invalid_field", Some("environmentHint")),
        ("missing nested field", create, JSON,
            conditions(r#"{"timeWindows": [{"days": ["mon"], "startUtc": "06:00"}]}"#),
            422, "invalid_field", Some("conditions.timeWindows[0].endUtc")),
        ("duplicate field", create, JSON,
            body(r#"{"name": "a", "name": "b", "environmentHint": "p"}"#), 422, "invalid_field", Some("name")),
        ("name: 5", create, JSON, body(r#"{"name": 5, "environmentHint": "p"}"#), 422, "invalid_field", Some("name")),
        ("expiresInDays: \"ten\"", create, JSON,
            token_with(r#", "expiresInDays": "ten""#), 422, "invalid_field", Some("expiresInDays")),
        ("expiresInDays: -1", create, JSON,
            token_with(r#", "expiresInDays": -1"#), 422, "invalid_field", Some("expiresInDays")),
        ("expiresInDays: 1.5", create, JSON,
            token_with(r#", "expiresInDays": 1.5"#), 422, "invalid_field", Some("expiresInDays")),
        ("scopes: \"read\"", create, JSON,
            token_with(r#", "scopes": "credledger-api/read""#), 422, "invalid_field", Some("scopes")),
        ("scopes: [5]", create, JSON, token_with(r#", "scopes": [5]"#), 422, "invalid_field", Some("scopes[0]")),
        ("conditions as an array", create, JSON,
            conditions(r#"[["10.0.0.0/8"]]"#), 422, "invalid_field", Some("conditions")),
        // Values.
        ("empty name", create, JSON, named(""), 422, "invalid_name", Some("name")),
        ("blank name", create, JSON, named("   "), 422, "invalid_name", Some("name")),
        ("name of 101 characters", create, JSON, named(&long_name), 422, "invalid_name", Some("name")),
        ("name with a control character", create, JSON, named(r"ci\u0007"), 422, "invalid_name", Some("name")),
        ("upper-case environmentHint", create, JSON, hinted("Prod"), 422, "invalid_environment_hint", hint),
        ("environmentHint of 17 characters", create, JSON,
            hinted("abcdefghijklmnopq"), 422, "invalid_environment_hint", hint),
        ("environmentHint with an underscore", create, JSON, hinted("pr_od"), 422, "invalid_environment_hint", hint),
        ("empty environmentHint", create, JSON, hinted(""), 422, "invalid_environment_hint", hint),
        ("expiresInDays: 0", create, JSON,
            token_with(r#", "expiresInDays": 0"#), 422, "invalid_expiry", Some("expiresInDays")),
        ("expiresInDays: 4000", create, JSON,
            token_with(r#", "expiresInDays": 4000"#), 422, "invalid_expiry", Some("expiresInDays")),
        ("unknown scope", create, JSON,
            token_with(r#", "scopes": ["credledger-api/admin"]"#), 422, "invalid_scope", Some("scopes")),
        ("empty scopes", create, JSON, token_with(r#", "scopes": []"#), 422, "invalid_scope", Some("scopes")),
        ("bad CIDR", create, JSON,
            conditions(r#"{"ipAllowlist": ["not-an-ip"]}"#), 422, "invalid_cidr", Some("conditions.ipAllowlist[0]")),
        ("CIDR /33, second in the list", create, JSON, conditions(r#"{"ipAllowlist": ["10.0.0.0/8", "10.0.0.0/33"]}"#),
            422, "invalid_cidr", Some("conditions.ipAllowlist[1]")),
        ("101 CIDRs", create, JSON, conditions(&format!(r#"{{"ipAllowlist": {many_cidrs}}}"#)),
            422, "too_many_conditions", Some("conditions.ipAllowlist")),
        ("unknown day", create, JSON, window(r#"["funday"]"#, "06:00", "22:00"), 422, "invalid_time_window", window_0),
        ("no day", create, JSON, window("[]", "06:00", "22:00"), 422, "invalid_time_window", window_0),
        ("time 25:00", create, JSON, window(r#"["mon"]"#, "06:00", "25:00"), 422, "invalid_time_window", window_0),
        ("time 6:00", create, JSON, window(r#"["mon"]"#, "6:00", "22:00"), 422, "invalid_time_window", window_0),
        ("start equal to end", create, JSON,
            window(r#"["mon"]"#, "10:00", "10:00"), 422, "invalid_time_window", window_0),
        ("unclosed glob", create, JSON,
            conditions(r#"{"userAgentPattern": "[unclosed"}"#), 422, "invalid_user_agent_pattern", pattern),
        ("pattern over 256 characters", create, JSON,
            conditions(&format!(r#"{{"userAgentPattern": "{long_pattern}"}}"#)),
            422, "invalid_user_agent_pattern", pattern),
        ("unknown projectId", create, JSON, token_with(r#", "projectId": "01900000-0000-7000-8000-000000000000""#),
            422, "project_not_found", Some("projectId")),
        // A body field is validated like every other body field: 422, not the 400 of a path.
        ("projectId that is not a UUID", create, JSON,
            token_with(r#", "projectId": "web""#), 422, "invalid_id", Some("projectId")),
        ("unknown owner", create, JSON,
            token_with(r#", "owner": "nobody@acme.example""#), 422, "member_not_found", Some("owner")),
        // Ids in paths.
        ("orgId that is not a UUID", "GET /v1/machine-tokens/not-a-uuid", None,
            Vec::new(), 400, "invalid_id", Some("orgId")),
        ("orgId that is not UTF-8", "GET /v1/machine-tokens/%FF", None, Vec::new(), 400, "invalid_id", Some("orgId")),
        ("tokenId that is not a UUID", "GET /v1/machine-tokens/{org}/not-a-uuid", None,
            Vec::new(), 400, "invalid_id", Some("tokenId")),
        ("memberId that is not a UUID", "PATCH /v1/orgs/{org}/members/nope", JSON,
            body(r#"{"role": "admin"}"#), 400, "invalid_id", Some("memberId")),
        ("PAT id that is not a UUID", "DELETE /v1/orgs/{org}/members/{member}/tokens/nope", None,
            Vec::new(), 400, "invalid_id", Some("tokenId")),
        ("projectId in a path that is not a UUID", "POST /v1/projects/{org}/web/environments", JSON,
            body(r#"{"name": "qa"}"#), 400, "invalid_id", Some("projectId")),
        // Query strings.
        ("state=bogus", "GET /v1/machine-tokens/{org}?state=bogus", None,
            Vec::new(), 400, "invalid_query", Some("state")),
        ("expiringWithin=abc", "GET /v1/machine-tokens/{org}?expiringWithin=abc", None,
            Vec::new(), 400, "invalid_duration", Some("expiringWithin")),
        ("unusedFor=-1d", "GET /v1/machine-tokens/{org}?unusedFor=-1d", None,
            Vec::new(), 400, "invalid_duration", Some("unusedFor")),
        ("limit=-1", "GET /v1/machine-tokens/{org}?limit=-1", None, Vec::new(), 400, "invalid_query", Some("limit")),
        // Every list bounds `limit` alike: refused, never silently clamped.
        ("limit=0", "GET /v1/machine-tokens/{org}?limit=0", None, Vec::new(), 400, "invalid_query", Some("limit")),
        ("limit=501", "GET /v1/machine-tokens/{org}?limit=501", None, Vec::new(), 400, "invalid_query", Some("limit")),
        ("service credentials, limit=0", "GET /v1/service-credentials/{org}?limit=0", None,
            Vec::new(), 400, "invalid_query", Some("limit")),
        ("service credentials, limit=501", "GET /v1/service-credentials/{org}?limit=501", None,
            Vec::new(), 400, "invalid_query", Some("limit")),
        ("audit trail, limit=0", "GET /v1/audit/{org}?limit=0", None, Vec::new(), 400, "invalid_query", Some("limit")),
        ("audit trail, limit=501", "GET /v1/audit/{org}?limit=501", None,
            Vec::new(), 400, "invalid_query", Some("limit")),
        // Positions are spelt as the document declares them: digits of a 64-bit value, no sign.
        ("asOf with a sign", "GET /v1/machine-tokens/{org}?asOf=%2B5", None,
            Vec::new(), 400, "invalid_query", Some("asOf")),
        ("audit cursor with a sign", "GET /v1/audit/{org}?cursor=%2B5", None,
            Vec::new(), 400, "invalid_query", Some("cursor")),
        ("checkpoint size beyond any log", "GET /v1/ledger/checkpoints?treeSize=9223372036854775808", None,
            Vec::new(), 400, "invalid_query", Some("treeSize")),
        ("token uses, limit=501", "GET /v1/machine-tokens/{org}/{token}/uses?limit=501", None,
            Vec::new(), 400, "invalid_query", Some("limit")),
        ("flagged=maybe", "GET /v1/machine-tokens/{org}?flagged=maybe", None,
            Vec::new(), 400, "invalid_query", Some("flagged")),
        ("unknown query parameter", "GET /v1/machine-tokens/{org}?bogus=1", None,
            Vec::new(), 400, "invalid_query", Some("bogus")),
        ("repeated query parameter", "GET /v1/machine-tokens/{org}?limit=1&limit=2", None,
            Vec::new(), 400, "invalid_query", Some("limit")),
        ("cursor that is not a UUID", "GET /v1/machine-tokens/{org}?cursor=abc", None,
            Vec::new(), 400, "invalid_id", Some("cursor")),
        ("owner filter that is not a UUID", "GET /v1/machine-tokens/{org}?owner=abc", None,
            Vec::new(), 400, "invalid_id", Some("owner")),
        // Members, projects and PATs.
        ("bad role on member add", "POST /v1/orgs/{org}/members", JSON,
            body(r#"{"email": "dev@acme.example", "role": "King"}"#), 422, "invalid_role", Some("role")),
        ("bad email on member add", "POST /v1/orgs/{org}/members", JSON,
            body(r#"{"email": "not-an-email", "role": "member"}"#), 422, "invalid_email", Some("email")),
        ("bad role on role change", "PATCH /v1/orgs/{org}/members/{member}", JSON,
            body(r#"{"role": "king"}"#), 422, "invalid_role", Some("role")),
        ("project name with a space", "POST /v1/projects/{org}", JSON,
            body(r#"{"name": "my web"}"#), 422, "invalid_name", Some("name")),
        ("upper-case environment", "POST /v1/projects/{org}", JSON,
            body(r#"{"name": "api", "environments": ["Prod"]}"#), 422, "invalid_name", Some("environments[0]")),
        ("environment with an underscore", "POST /v1/projects/{org}/{project}/environments", JSON,
            body(r#"{"name": "q_a"}"#), 422, "invalid_name", Some("name")),
        ("PAT expiresInDays: 0", "POST /v1/orgs/{org}/members/{member}/tokens", JSON,
            body(r#"{"expiresInDays": 0}"#), 422, "invalid_expiry", Some("expiresInDays")),
        ("PAT with an empty name", "POST /v1/orgs/{org}/members/{member}/tokens", JSON,
            body(r#"{"name": ""}"#), 422, "invalid_name", Some("name")),
        // Machine-token lifecycle commands.
        ("transfer to an unknown member", "POST /v1/machine-tokens/{org}/{token}/transfer", JSON,
            body(r#"{"to": "nobody@acme.example"}"#), 422, "member_not_found", Some("to")),
        ("roll with a grace period over a day", "POST /v1/machine-tokens/{org}/{token}/roll", JSON,
            body(r#"{"gracePeriodSeconds": 100000}"#), 422, "grace_period_too_long", Some("gracePeriodSeconds")),
        ("roll with a negative grace period", "POST /v1/machine-tokens/{org}/{token}/roll", JSON,
            body(r#"{"gracePeriodSeconds": -5}"#), 422, "invalid_field", Some("gracePeriodSeconds")),
        ("update naming nothing", "PATCH /v1/machine-tokens/{org}/{token}", JSON,
            body("{}"), 422, "nothing_to_update", None),
        ("update to expiresInDays: 0", "PATCH /v1/machine-tokens/{org}/{token}", JSON,
            body(r#"{"expiresInDays": 0}"#), 422, "invalid_expiry", Some("expiresInDays")),
        ("update to no scopes", "PATCH /v1/machine-tokens/{org}/{token}", JSON,
            body(r#"{"scopes": []}"#), 422, "invalid_scope", Some("scopes")),
        ("revoke with an unknown query parameter", "DELETE /v1/machine-tokens/{org}/{token}?bogus=1", None,
            Vec::new(), 400, "invalid_query", Some("bogus")),
        // Routing.
        ("unknown route", "GET /v1/nothing-here", None, Vec::new(), 404, "not_found", None),
        ("wrong method", "PUT /v1/machine-tokens/{org}", JSON, token_with(""), 405, "method_not_allowed", None),
    ]
}

/// What a reply got wrong against its row, if anything.
fn mismatches(reply: &Reply, status: u16, code: &str, field: Option<&str>) -> Vec<String> {
    let mut wrong = Vec::new();
    if reply.status != status {
        wrong.push(format!("status {} instead of {status}", reply.status));
    }
    if !(400..500).contains(&reply.status) {
        wrong.push(format!("status {} is not a client error", reply.status));
    }
    if !reply.content_type.starts_with("application/problem+json") {
        wrong.push(format!("content type {:?}", reply.content_type));
    }
    if reply.code() != code {
        wrong.push(format!("code {:?} instead of {code:?}", reply.code()));
    }
    if reply.body["status"] != reply.status {
        wrong.push(format!("problem status {} differs from the HTTP status", reply.body["status"]));
    }
    if reply.body["field"].as_str() != field {
        wrong.push(format!("field {} instead of {field:?}", reply.body["field"]));
    }
    wrong
}

/// How long a refused request is given to append something it should not (a denial is written
/// asynchronously, within a second).
const SETTLE: Duration = Duration::from_millis(150);

#[tokio::test]
async fn bad_input_is_refused_with_a_problem_naming_the_field_and_appends_nothing() {
    let server = Server::start().unwrap();
    let (org, owner_id, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    // A PAT: usage events are only recorded for machine credentials, so each refusal below
    // should leave the log exactly as it was.
    let owner = server.client(&owner_token);
    let (token, _) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let project = owner.post(&format!("/v1/projects/{org}"), json!({ "name": "web" })).await;
    assert_eq!(project.status, 201, "{project:?}");
    let project = project.body["id"].as_str().expect("project id").to_owned();

    let rows = rows();
    assert!(rows.len() >= 30, "{} rows", rows.len());
    tokio::time::sleep(SETTLE).await;
    let at_start = commands_len(&server.data_dir);
    let mut failures = Vec::new();
    for (what, request, content_type, bytes, status, code, field) in rows {
        let (method, path) = request.split_once(' ').expect("METHOD path");
        let path = path
            .replace("{org}", &org)
            .replace("{token}", &token)
            .replace("{member}", &owner_id)
            .replace("{project}", &project);
        let before = commands_len(&server.data_dir);
        let reply = owner.send_raw(method, &path, content_type, bytes).await;
        tokio::time::sleep(SETTLE).await;
        let mut wrong = mismatches(&reply, status, code, field);
        let after = commands_len(&server.data_dir);
        if after != before {
            wrong.push(format!("{} event(s) appended", after - before));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{what} ({method} {path}): {}\n    reply: {} {}",
                wrong.join("; "),
                reply.status,
                reply.body
            ));
        }
    }
    // Denials are written a second later: nothing at all may have arrived meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_end = commands_len(&server.data_dir);
    if at_end != at_start {
        failures.push(format!("the log grew from {at_start} to {at_end} events over the whole table"));
    }
    assert!(failures.is_empty(), "{} bad input(s) handled wrongly:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn credentials_are_checked_before_the_ids_in_the_path() {
    let server = Server::start().unwrap();
    let (org, _, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let anonymous = support::Client::anonymous(&server);
    let unknown = credledger_domain::token::SecretToken::personal_token([7; 32]);
    let stranger = server.client(unknown.expose());
    let owner = server.client(&owner_token);
    for path in ["/v1/machine-tokens/not-a-uuid", "/v1/machine-tokens/%FF", &format!("/v1/machine-tokens/{org}/nope")] {
        let reply = anonymous.get(path).await;
        assert_eq!((reply.status, reply.code()), (401, "missing_credentials"), "{path}: {reply:?}");
        let reply = stranger.get(path).await;
        assert_eq!(reply.status, 401, "{path}: {reply:?}");
        let reply = owner.get(path).await;
        assert_eq!((reply.status, reply.code()), (400, "invalid_id"), "{path}: {reply:?}");
    }
}

#[tokio::test]
async fn optional_bodies_take_json_null_as_no_options() {
    let server = Server::start().unwrap();
    let (org, owner_id, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (token, _) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let credential = owner.create_service_credential(&org, json!({ "name": "release" })).await;
    let null = || b"null".to_vec();
    let roll = owner.send_raw("POST", &format!("/v1/machine-tokens/{org}/{token}/roll"), JSON, null()).await;
    assert_eq!(roll.status, 200, "{roll:?}");
    let pat = owner.send_raw("POST", &format!("/v1/orgs/{org}/members/{owner_id}/tokens"), JSON, null()).await;
    assert_eq!(pat.status, 201, "{pat:?}");
    let rotate =
        owner.send_raw("POST", &format!("/v1/service-credentials/{org}/{}/rotate", credential.id), JSON, null()).await;
    assert_eq!(rotate.status, 200, "{rotate:?}");
    // Anything else that is not an object is still refused.
    let array = owner.send_raw("POST", &format!("/v1/machine-tokens/{org}/{token}/roll"), JSON, b"[]".to_vec()).await;
    assert_eq!((array.status, array.code()), (422, "invalid_field"), "{array:?}");
}

/// RFC 6750 §3: the challenge of a bearer refusal names the error once a token was presented.
#[tokio::test]
async fn bearer_refusals_carry_a_challenge_naming_the_error() {
    let server = Server::start().unwrap();
    let (org, _, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let read = json!({ "name": "reader", "environmentHint": "ci", "scopes": ["credledger-api/read"] });
    let (_, read_only) = owner.create_token(&org, read).await;
    let http = reqwest::Client::new();
    let challenge = |response: &reqwest::Response| {
        let value = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok());
        (response.status().as_u16(), value.unwrap_or_default().to_owned())
    };
    let tokens = server.url(&format!("/v1/machine-tokens/{org}"));
    let response = http.get(&tokens).send().await.unwrap();
    assert_eq!(challenge(&response), (401, r#"Bearer realm="credledger""#.to_owned()));
    let response = http.get(&tokens).bearer_auth("nonsense").send().await.unwrap();
    assert_eq!(challenge(&response), (401, r#"Bearer realm="credledger", error="invalid_token""#.to_owned()));
    let unknown = credledger_domain::token::SecretToken::personal_token([7; 32]);
    let response = http.get(&tokens).bearer_auth(unknown.expose()).send().await.unwrap();
    assert_eq!(challenge(&response), (401, r#"Bearer realm="credledger", error="invalid_token""#.to_owned()));
    let mint = json!({ "name": "x", "environmentHint": "ci" });
    let response = http.post(&tokens).bearer_auth(&read_only).json(&mint).send().await.unwrap();
    assert_eq!(challenge(&response), (403, r#"Bearer realm="credledger", error="insufficient_scope""#.to_owned()));
    // Other refusals are not about the token: no challenge.
    let response = http.get(server.url("/v1/machine-tokens/nope")).bearer_auth(&owner_token).send().await.unwrap();
    assert_eq!(challenge(&response), (400, String::new()));
}
