//! A server whose log is in PostgreSQL over TLS (`sslmode=verify-full`, `require`): the test
//! cluster is given a certificate from a throwaway CA, the server connects with the CA as its
//! root, and PostgreSQL itself says the server's connections are encrypted. A CA that did not
//! issue the certificate stops the server before it starts.
//!
//! Uses the throwaway test cluster (not a server of `CREDLEDGER_TEST_POSTGRES_URL`: the test turns
//! TLS on in the cluster's configuration).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Server, issue_certificate, psql};

/// Turns TLS on in the test cluster with a certificate for 127.0.0.1; returns the issuing CA.
fn cluster_with_tls(dir: &std::path::Path) -> std::path::PathBuf {
    let ca = issue_certificate(dir, "pg");
    let (cert, key) = (dir.join("pg-cert.pem"), dir.join("pg-key.pem"));
    let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    if root {
        // The cluster runs as `postgres`: it must reach the files, and own the key (0600).
        set_mode(dir, 0o755);
        set_mode(&cert, 0o644);
        let owned = Command::new("chown").arg("postgres:postgres").arg(&key).status().unwrap();
        assert!(owned.success(), "chown of the key");
    }
    set_mode(&key, 0o600);
    let server = format!("{}/postgres", credledger_store::testing::server_url());
    psql(&server, &format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()));
    psql(&server, &format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()));
    psql(&server, "ALTER SYSTEM SET ssl = on");
    psql(&server, "SELECT pg_reload_conf()");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while psql(&server, "SHOW ssl").trim() != "on" {
        assert!(std::time::Instant::now() < deadline, "the cluster did not turn TLS on");
        std::thread::sleep(Duration::from_millis(100));
    }
    ca
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// How many of a database's sessions are encrypted, and how many are not.
fn sessions(database: &str) -> (u64, u64) {
    let server = format!("{}/postgres", credledger_store::testing::server_url());
    let counts = psql(
        &server,
        &format!(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = '{database}'"
        ),
    );
    let mut numbers = counts.trim().split('|').map(|n| n.parse::<u64>().expect("a count"));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

#[tokio::test]
async fn a_server_keeps_its_log_in_postgresql_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = cluster_with_tls(dir.path());
    let database = support::fresh_database();
    let name = database.rsplit('/').next().unwrap().to_owned();
    let store = format!("{database}?sslmode=verify-full&sslrootcert={}", ca.display());

    let server = Server::start_with(&["--store", &store]).unwrap();
    let (org, _, _) = server.admin().create_org("acme", "ops@acme.example").await;
    assert!(!org.is_empty());
    let (encrypted, plain) = sessions(&name);
    assert!(encrypted >= 1 && plain == 0, "{encrypted} encrypted and {plain} plain sessions of the server");
    let events = psql(&database, "SELECT count(*) FROM events");
    assert!(events.trim().parse::<u64>().unwrap() >= 2, "the organization is in the log: {events}");
    drop(server);

    // `require`: encrypted without checking whose certificate it is (libpq's meaning).
    let server = Server::start_with(&["--store", &format!("{database}?sslmode=require")]).unwrap();
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
    drop(server);

    // A root that did not issue the cluster's certificate: the server does not start.
    let other_ca = issue_certificate(dir.path(), "other");
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(support::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--store")
        .arg(format!("{database}?sslmode=verify-full&sslrootcert={}", other_ca.display()))
        .env("CREDLEDGER_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("opening the event store"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
}
