//! The server binary starts on the embedded SQLite store with no other setup, answers its health
//! routes, and stops cleanly on SIGTERM.

mod support;

use support::Server;

#[tokio::test]
async fn serve_starts_on_an_empty_data_directory_and_reports_ready() {
    let server = Server::start().unwrap();
    let client = reqwest::Client::new();
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Ready once the read models have applied the first events (the admin token, the first
    // checkpoint), which may land just as the server starts listening.
    let ready = support::eventually("/readyz ready", std::time::Duration::from_secs(10), async || {
        let ready: serde_json::Value = client.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
        (ready["status"] == "ready").then_some(ready)
    })
    .await;
    assert!(ready["head"].as_u64() >= Some(1), "{ready}");
    assert_eq!(server.data_dir.join("events.db").exists(), !support::on_postgres());
    assert!(server.data_dir.join("read.db").exists());
    let status = server.stop().unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn serve_restarts_on_its_own_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let first = Server::start_in(data.path()).unwrap();
    assert!(first.stop().unwrap().success());
    let second = Server::start_in(data.path()).unwrap();
    let health = reqwest::get(second.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(second.stop().unwrap().success());
}

#[tokio::test]
async fn the_signing_key_rotate_command_publishes_a_second_key() {
    let server = Server::start().unwrap();
    let admin = server.admin_token.clone().unwrap();
    let rotate = |token: &str| {
        std::process::Command::new(support::binary())
            .args(["signing-key", "rotate", "--url", &server.base_url, "-o", "table"])
            .env("CREDLEDGER_TOKEN", token)
            .env("CREDLEDGER_CONFIG_DIR", server.data_dir.join("no-config"))
            .output()
            .unwrap()
    };
    let output = rotate(&admin);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("✓ Signing key rotated"), "{stdout}");
    let jwks: serde_json::Value =
        reqwest::get(server.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");

    let refused = rotate("cl_pat_0000");
    assert!(!refused.status.success());
    assert_eq!(refused.status.code(), Some(3), "an authentication failure exits with 3: {refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("malformed_token"), "{refused:?}");
    assert!(server.stop().unwrap().success());
}

/// With `--admin-token-file`, the first start writes the token there (0600) and prints it nowhere;
/// a restart with the same settings starts and leaves the file as it is.
#[tokio::test]
async fn a_restart_with_the_same_admin_token_file_starts_and_keeps_the_file() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("admin-token");
    let args = ["--admin-token-file", file.to_str().unwrap()];
    let server = Server::start_in_with(data.path(), &args).unwrap();
    assert!(server.admin_token.is_none(), "the token goes to the file only");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.trim().starts_with("cl_pat_"), "{written}");
    assert!(server.stop().unwrap().success());

    let server = Server::start_in_with(data.path(), &args).expect("a restart with the same settings starts");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
    let created = server
        .client(written.trim())
        .post("/v1/orgs", serde_json::json!({ "name": "acme", "ownerEmail": "ops@acme.example" }))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert!(server.stop().unwrap().success());
}

/// A node applying a steady stream of writes is ready: the read models trail the log only by the
/// batch being applied, and `/readyz` waits that out rather than answering 503 "catching up".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_stays_ready_under_a_steady_stream_of_writes() {
    let server = Server::start().unwrap();
    let (org, _, owner) = server.admin().create_org("acme", "ops@acme.example").await;
    let (_, token) =
        server.client(&owner).create_token(&org, serde_json::json!({ "name": "ci", "environmentHint": "prod" })).await;
    let anonymous = support::Client::anonymous(&server);
    support::eventually("/readyz ready", std::time::Duration::from_secs(10), async || {
        (anonymous.get("/readyz").await.status == 200).then_some(())
    })
    .await;

    // Every `whoami` with a machine token records a use: four clients write without a pause
    // while `/readyz` is asked, at least 100 times and until 300 uses have been recorded.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let uses = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let client = server.client(&token);
            let (stop, uses) = (stop.clone(), uses.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(client.get("/v1/whoami").await.status, 200);
                    uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut answers = Vec::new();
    while answers.len() < 100 || uses.load(std::sync::atomic::Ordering::Relaxed) < 300 {
        assert!(std::time::Instant::now() < deadline, "300 uses were not recorded within a minute");
        let reply = anonymous.get("/readyz").await;
        answers.push((reply.status, reply.body));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let not_ready: Vec<_> = answers.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        not_ready.is_empty(),
        "{} of {} answers not ready: {:?}",
        not_ready.len(),
        answers.len(),
        not_ready.first()
    );
}
