//! The server's log as an operator reads it from a file: plain text (no colour codes), one line
//! per request naming its route template, status, latency, request id and credential, and never
//! a secret.

mod support;

use std::time::Duration;

use serde_json::json;
use support::Server;

/// The log lines of requests (`credledger::request`), in order.
fn request_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|line| line.contains("credledger::request")).collect()
}

#[tokio::test]
async fn a_log_written_to_a_file_has_one_plain_line_per_request_and_no_secret() {
    // TERM and CLICOLOR_FORCE as a terminal would have them: only the destination decides.
    let server =
        Server::start_with_env(&[], &[("CREDLEDGER_LOG", "info"), ("TERM", "xterm-256color"), ("CLICOLOR_FORCE", "1")])
            .unwrap();
    let admin_token = server.admin_token.clone().unwrap();
    let (org, _, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (token_id, token) = owner
        .create_token(&org, json!({ "name": "GitHub Actions prod", "environmentHint": "prod", "expiresInDays": 90 }))
        .await;
    let response = reqwest::Client::new()
        .get(server.url(&format!("/v1/projects/{org}")))
        .bearer_auth(&token)
        .header("x-request-id", "deploy-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "deploy-4711", "the request id is echoed");
    let refused = server.client("cl_pat_not-a-token").get(&format!("/v1/projects/{org}")).await;
    assert_eq!(refused.status, 401);
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    let generated = health.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!generated.is_empty(), "a request without an id gets one");

    let log = support::eventually("five request lines", Duration::from_secs(5), async || {
        let log = server.log();
        (request_lines(&log).len() >= 5).then_some(log)
    })
    .await;
    assert!(!log.contains('\u{1b}'), "no escape codes in a log file:\n{log}");
    let lines = request_lines(&log);
    assert_eq!(lines.len(), 5, "one line per request:\n{log}");

    let used = lines[2];
    for needle in [
        "method=GET",
        "route=/v1/projects/{orgId}",
        "status=200",
        "latency_ms=",
        "request_id=deploy-4711",
        "credential_kind=machine_token",
        &format!("credential_id={token_id}"),
    ] {
        assert!(used.contains(needle), "`{needle}` in the request's line: {used}");
    }
    assert!(!used.contains(&org), "the route template, not the path's values: {used}");
    assert!(lines[0].contains("method=POST") && lines[0].contains("route=/v1/orgs") && lines[0].contains("status=201"));
    assert!(lines[0].contains("credential_kind=personal_token"), "{}", lines[0]);
    assert!(lines[3].contains("status=401") && lines[3].contains("credential_kind=-"), "{}", lines[3]);
    assert!(lines[4].contains("route=/healthz") && lines[4].contains(&format!("request_id={generated}")));

    for secret in [&token, &owner_token, &admin_token] {
        assert!(!log.contains(secret.as_str()), "a secret in the log:\n{log}");
    }
    assert!(!log.contains("listening"), "`listening` is announced once, on standard output:\n{log}");
}
