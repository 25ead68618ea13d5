//! Network failures: the CLI retries reads with backoff, and never retries a mutation, which may
//! have been applied before the connection broke.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// A free loopback port, closed again so that connecting to it is refused for now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// After `delay`, listens on `address` and answers every request with `body`, reporting each
/// request line it saw.
fn late_server(address: SocketAddr, delay: Duration, body: &'static str) -> mpsc::Receiver<String> {
    let (seen, requests) = mpsc::channel();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = TcpListener::bind(address).unwrap();
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut content_length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut request_body = vec![0; content_length];
            reader.read_exact(&mut request_body).unwrap();
            let _ = seen.send(request_line.trim().to_owned());
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    requests
}

fn cli(address: SocketAddr, args: &[&str]) -> std::process::Output {
    let config = tempfile::tempdir().unwrap();
    Command::new(support::binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CREDLEDGER_URL", format!("http://{address}"))
        .env("CREDLEDGER_CONFIG_DIR", config.path())
        .env("CREDLEDGER_TOKEN", "cl_pat_unused")
        .output()
        .unwrap()
}

#[test]
fn a_read_is_retried_until_the_server_answers() {
    let address = free_port();
    let requests = late_server(address, Duration::from_millis(300), r#"{"id":"x","kind":"personal_token"}"#);
    let output = cli(address, &["whoami", "-o", "json"]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("personal_token"), "{output:?}");
    assert_eq!(requests.recv_timeout(Duration::from_secs(1)).unwrap(), "GET /v1/whoami HTTP/1.1");
}

#[test]
fn a_mutation_is_not_retried_after_a_network_failure() {
    let address = free_port();
    let requests = late_server(address, Duration::from_millis(300), r#"{"id":"x"}"#);
    let output = cli(
        address,
        &["token", "disable", "0190a6e2-0000-7000-8000-000000000000", "--org", "0190a6e2-0000-7000-8000-000000000001"],
    );
    assert_eq!(output.status.code(), Some(1), "a network failure exits 1: {output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"), "{output:?}");
    // The server that came up later never saw the POST.
    std::thread::sleep(Duration::from_millis(600));
    assert!(requests.try_recv().is_err(), "a mutation was sent again");
}
