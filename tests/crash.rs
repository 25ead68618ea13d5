//! kill -9 under load: the real server on SQLite is killed mid-load a few times and restarted on
//! the same data directory. Every acknowledged create is still there, every acknowledged revoke
//! still refuses the token, every acknowledged use is still counted, and the whole ledger still
//! verifies offline with `credledger audit verify` (DESIGN.md §13: nothing acknowledged is lost).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Client, Server, eventually};

const ROUNDS: usize = 3;
const CLIENTS: usize = 16;
const LOAD: Duration = Duration::from_secs(2);

/// What the server acknowledged: a 2xx answer reached the client.
#[derive(Debug, Default, Clone)]
struct Acknowledged {
    /// Machine token id → plaintext, for every 201 of a create.
    created: HashMap<String, String>,
    /// Ids whose revoke was answered 200.
    revoked: HashSet<String>,
    /// Id → requests made with the token that were answered 200.
    uses: HashMap<String, u64>,
}

/// A client of the load: creates, uses and revokes machine tokens until told to stop. Answers that
/// never arrive (the server was killed) acknowledge nothing.
async fn load(
    http: reqwest::Client,
    base: String,
    org: String,
    owner: String,
    seed: usize,
    book: Arc<Mutex<Acknowledged>>,
    stop: Arc<AtomicBool>,
) {
    let mut step = seed;
    while !stop.load(Ordering::Relaxed) {
        step = step.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let pick = step >> 33;
        let known: Vec<(String, String)> = {
            let book = book.lock().unwrap();
            book.created
                .iter()
                .filter(|(id, _)| !book.revoked.contains(*id))
                .map(|(i, t)| (i.clone(), t.clone()))
                .collect()
        };
        let action = if known.len() < 4 { 0 } else { pick % 10 };
        let outcome = match action {
            // Create: 2 in 10.
            0 | 1 => {
                let body = json!({ "name": format!("load-{seed}-{step:x}"), "environmentHint": "ci" });
                let request = http.post(format!("{base}/v1/machine-tokens/{org}")).bearer_auth(&owner).json(&body);
                match request.send().await {
                    Ok(response) if response.status() == 201 => match response.json::<serde_json::Value>().await {
                        Ok(view) => {
                            let id = view["id"].as_str().unwrap_or_default().to_owned();
                            let token = view["token"].as_str().unwrap_or_default().to_owned();
                            book.lock().unwrap().created.insert(id, token);
                            Ok(())
                        }
                        Err(error) => Err(error),
                    },
                    Ok(_) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            // Revoke: 1 in 10.
            2 => {
                let (id, _) = &known[pick % known.len()];
                let request = http.delete(format!("{base}/v1/machine-tokens/{org}/{id}")).bearer_auth(&owner);
                match request.send().await {
                    Ok(response) if response.status() == 200 => {
                        book.lock().unwrap().revoked.insert(id.clone());
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            // Use: 7 in 10.
            _ => {
                let (id, token) = &known[pick % known.len()];
                let request = http.get(format!("{base}/v1/projects/{org}")).bearer_auth(token);
                match request.send().await {
                    Ok(response) if response.status() == 200 => {
                        *book.lock().unwrap().uses.entry(id.clone()).or_default() += 1;
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(error) => Err(error),
                }
            }
        };
        if outcome.is_err() {
            // The server is gone (or going): wait for the round to end.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until the restarted server has replayed its log into the read models.
async fn ready(server: &Server) {
    let anonymous = Client::anonymous(server);
    eventually("the restarted server to be ready", Duration::from_secs(30), async || {
        let reply = anonymous.get("/readyz").await;
        assert_ne!(reply.body["status"], "ledger integrity failure", "{reply:?}");
        (reply.status == 200).then_some(())
    })
    .await;
}

/// Everything acknowledged before the kill is there after the restart.
async fn check_acknowledged(server: &Server, org: &str, owner: &Client, book: &Acknowledged) -> Vec<String> {
    let mut lost = Vec::new();
    for (id, token) in &book.created {
        let reply = owner.get(&format!("/v1/machine-tokens/{org}/{id}")).await;
        if reply.status != 200 {
            lost.push(format!("acknowledged create of {id}: {} {}", reply.status, reply.body));
            continue;
        }
        let uses = book.uses.get(id).copied().unwrap_or_default();
        let counted = reply.body["useCount"].as_u64().unwrap_or_default();
        if counted < uses {
            lost.push(format!("{id}: {uses} acknowledged uses, {counted} counted"));
        }
        if book.revoked.contains(id) {
            if reply.body["state"] != "revoked" {
                lost.push(format!("acknowledged revoke of {id}: state {}", reply.body["state"]));
            }
            let refused = server.client(token).get(&format!("/v1/projects/{org}")).await;
            if (refused.status, refused.code()) != (401, "revoked") {
                lost.push(format!("revoked {id} was not refused: {} {}", refused.status, refused.body));
            }
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_to_kill_9_under_load() {
    support::sqlite_only();
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path()).unwrap();
    let admin_token = server.admin_token.clone().expect("the first start prints the admin token");
    let (org, _, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let book = Arc::new(Mutex::new(Acknowledged::default()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    for round in 1..=ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let seed = round * 1000 + client;
                let task = load(
                    http.clone(),
                    server.base_url.clone(),
                    org.clone(),
                    owner_token.clone(),
                    seed,
                    book.clone(),
                    stop.clone(),
                );
                tokio::spawn(task)
            })
            .collect();
        tokio::time::sleep(LOAD).await;
        // SIGKILL while the clients are still sending.
        let killed = std::process::Command::new("kill").args(["-KILL", &server.pid().to_string()]).status().unwrap();
        assert!(killed.success());
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await.unwrap();
        }
        drop(server);

        server = Server::start_in(data.path()).unwrap();
        ready(&server).await;
        let owner = server.client(&owner_token);
        let book = book.lock().unwrap().clone();
        let acknowledged = (book.created.len(), book.revoked.len(), book.uses.values().sum::<u64>());
        assert!(
            acknowledged.0 >= 4 && acknowledged.2 > 0,
            "round {round}: too little load acknowledged: {acknowledged:?}"
        );
        let lost = check_acknowledged(&server, &org, &owner, &book).await;
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged write(s) lost after kill -9:\n{}",
            lost.len(),
            lost.join("\n")
        );
        eprintln!("round {round}: {acknowledged:?} (creates, revokes, uses) acknowledged and kept");
    }

    // The whole ledger, written through three crashes, verifies offline.
    let export = http.get(server.url("/v1/ledger/export")).bearer_auth(&admin_token).send().await.unwrap();
    assert_eq!(export.status(), 200);
    let export = export.bytes().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let (export_file, key_file) = (files.path().join("ledger.ndjson"), files.path().join("ledger.vkey"));
    std::fs::write(&export_file, &export).unwrap();
    let key = Client::anonymous(&server).get("/v1/ledger/key").await;
    std::fs::write(&key_file, key.body["verifierKey"].as_str().unwrap()).unwrap();
    let verified = support::run_cli(
        &[
            "audit",
            "verify",
            "-o",
            "json",
            "--export",
            export_file.to_str().unwrap(),
            "--key",
            key_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(server.stop().unwrap().success());
    assert!(started.elapsed() < Duration::from_secs(90), "took {:?}", started.elapsed());
}
