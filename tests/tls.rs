//! `serve --tls-cert/--tls-key`: HTTPS with a certificate made by openssl, checked by curl and by
//! the CLI against that certificate alone; the OAuth2 issuer says https; a renewed certificate
//! is served after SIGHUP without a restart.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{Server, issue_certificate as issue};

/// `curl --cacert CA URL`: (exit code, body).
fn curl(ca: &Path, url: &str) -> (i32, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

struct Https {
    server: Server,
    /// What clients trust: the CA that issued the server's certificate.
    ca: PathBuf,
    dir: tempfile::TempDir,
}

fn start() -> Https {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue(dir.path(), "first");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(dir.path().join("first-cert.pem"), &cert).unwrap();
    std::fs::copy(dir.path().join("first-key.pem"), &key).unwrap();
    let server =
        Server::start_with(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]).unwrap();
    Https { server, ca, dir }
}

#[test]
fn serve_answers_https_with_its_certificate_and_its_issuer_is_https() {
    let https = start();
    let base = &https.server.base_url;
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    assert_eq!(curl(&https.ca, &format!("{base}/healthz")), (0, r#"{"status":"ok"}"#.to_owned()));
    let (code, metadata) = curl(&https.ca, &format!("{base}/.well-known/oauth-authorization-server"));
    assert_eq!(code, 0);
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["issuer"].as_str(), Some(base.as_str()), "{metadata}");
    assert!(metadata["token_endpoint"].as_str().is_some_and(|url| url.starts_with("https://")), "{metadata}");
    // Nothing vouches for the certificate without it (curl: 60, an unknown issuer).
    let refused =
        Command::new("curl").args(["--silent", "--max-time", "10"]).arg(format!("{base}/healthz")).status().unwrap();
    assert_eq!(refused.code(), Some(60));

    // The CLI trusts what SSL_CERT_FILE names.
    let admin = https.server.admin_token.clone().unwrap();
    let ca = https.ca.to_string_lossy().into_owned();
    let run = support::run_cli(
        &["whoami", "-o", "json"],
        &[("CREDLEDGER_URL", base), ("CREDLEDGER_TOKEN", &admin), ("SSL_CERT_FILE", &ca)],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.document()["serverAdmin"], true, "{run:#?}");
}

#[test]
fn a_renewed_certificate_is_served_after_sighup() {
    let https = start();
    let base = https.server.base_url.clone();
    // A renewal from another CA, written over the files the server was started with.
    let renewed_ca = issue(https.dir.path(), "renewed");
    std::fs::copy(https.dir.path().join("renewed-cert.pem"), https.dir.path().join("cert.pem")).unwrap();
    std::fs::copy(https.dir.path().join("renewed-key.pem"), https.dir.path().join("key.pem")).unwrap();
    let status = Command::new("kill").args(["-HUP", &https.server.pid().to_string()]).status().unwrap();
    assert!(status.success());

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while curl(&renewed_ca, &format!("{base}/healthz")).0 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is not served; log:\n{}",
            https.server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(curl(&https.ca, &format!("{base}/healthz")).0, 0, "the old certificate is no longer served");
    assert!(!https.server.log().contains("ERROR"), "{}", https.server.log());
}

#[test]
fn a_certificate_that_cannot_be_used_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("missing.pem");
    let output = Command::new(support::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--tls-cert")
        .arg(&missing)
        .arg("--tls-key")
        .arg(&missing)
        .env("CREDLEDGER_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing.pem"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));

    // One without the other is a usage error.
    let output = Command::new(support::binary()).args(["serve", "--tls-cert", "cert.pem"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn a_sighup_without_tls_leaves_the_server_running() {
    let server = Server::start().unwrap();
    let status = Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = reqwest::get(server.url("/healthz")).await.expect("the server still answers");
    assert_eq!(health.status(), 200);
}

#[test]
fn a_renewed_certificate_is_served_when_its_files_change() {
    let https = start();
    let base = https.server.base_url.clone();
    let renewed_ca = issue(https.dir.path(), "renewed");
    std::fs::copy(https.dir.path().join("renewed-cert.pem"), https.dir.path().join("cert.pem")).unwrap();
    std::fs::copy(https.dir.path().join("renewed-key.pem"), https.dir.path().join("key.pem")).unwrap();
    // No signal: the server notices the change within its check interval (5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while curl(&renewed_ca, &format!("{base}/healthz")).0 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is not served; log:\n{}",
            https.server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
