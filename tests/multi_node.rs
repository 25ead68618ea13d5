//! Several `credledger serve` processes on one PostgreSQL database behave as one ledger: what one
//! records the other serves, a revocation through one is enforced by the other within a bound,
//! conflicting commands through both never both apply to the same version, and the background
//! work (expiry sweeper, checkpoint signing, member-removal process manager) runs once, on the
//! leader, and moves to another node when the leader stops.
//!
//! Always on PostgreSQL: the throwaway test cluster, whatever `CREDLEDGER_TEST_STORE` says.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, Server, eventually};

const DAY: i64 = 86_400;

/// The revocation bound the test asserts: a subscription round trip is milliseconds (a
/// NOTIFY), the polling fallback one second; two seconds leaves room for a loaded CI machine.
const REVOCATION_BOUND: Duration = Duration::from_secs(2);

/// Two nodes on one fresh database, sharing the key files as an operator would (one mounted
/// directory), each with its own data directory for its read models.
struct Cluster {
    a: Server,
    b: Server,
    url: String,
    shared: tempfile::TempDir,
    admin_token: String,
}

fn node_args<'a>(url: &'a str, shared: &'a Path) -> Vec<String> {
    vec![
        "--store".into(),
        url.into(),
        "--signing-key-file".into(),
        shared.join("signing-keys.json").display().to_string(),
        "--ledger-key-file".into(),
        shared.join("ledger-key").display().to_string(),
        // Both nodes are reached through one name (a load balancer's): the tokens' issuer.
        "--public-url".into(),
        "http://ledger.test".into(),
        "--expiry-sweep-seconds".into(),
        "1".into(),
        "--checkpoint-interval-ms".into(),
        "200".into(),
    ]
}

fn start_node(url: &str, shared: &Path) -> Server {
    let args = node_args(url, shared);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(&args).expect("a node starts")
}

impl Cluster {
    fn start() -> Self {
        let url = support::fresh_database();
        let shared = tempfile::tempdir().unwrap();
        let a = start_node(&url, shared.path());
        let b = start_node(&url, shared.path());
        let admin_token = a.admin_token.clone().expect("the first node creates the admin token");
        assert!(b.admin_token.is_none(), "the second node finds the admin token the first created");
        Self { a, b, url, shared, admin_token }
    }

    fn admin(&self, node: &Server) -> Client {
        node.client(&self.admin_token)
    }

    fn events(&self) -> Vec<Value> {
        support::psql(&self.url, "SELECT convert_from(envelope, 'UTF8') FROM events ORDER BY position")
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_str(line).expect("an envelope"))
            .collect()
    }
}

async fn new_org(client: &Client, name: &str) -> (String, String) {
    let (org, _, owner_pat) = client.create_org(name, &format!("ops@{name}.example")).await;
    (org, owner_pat)
}

fn token_path(org: &str, id: &str) -> String {
    format!("/v1/machine-tokens/{org}/{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_records_the_other_serves_and_a_revocation_crosses_within_the_bound() {
    let cluster = Cluster::start();
    let (a, b) = (&cluster.a, &cluster.b);
    let (org, owner_pat) = new_org(&cluster.admin(a), "acme").await;
    let (owner_a, owner_b) = (a.client(&owner_pat), b.client(&owner_pat));

    // Created through A, served by B (its read models follow the shared log).
    let (id, value) = owner_a.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let seen = eventually("B serves the token A created", Duration::from_secs(5), async || {
        let reply = owner_b.get(&token_path(&org, &id)).await;
        (reply.status == 200).then_some(reply.body)
    })
    .await;
    assert_eq!(seen["name"], "ci");
    // The token authenticates on both nodes.
    let probe = format!("/v1/projects/{org}");
    assert_eq!(a.client(&value).get(&probe).await.status, 200);
    assert_eq!(b.client(&value).get(&probe).await.status, 200);

    // Revoked through A; B refuses it within the bound, measured from A's answer.
    let revoked = owner_a.delete(&token_path(&org, &id)).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let since = Instant::now();
    let on_b = b.client(&value);
    let refused_after = loop {
        let reply = on_b.get(&probe).await;
        if reply.status == 401 {
            assert_eq!(reply.code(), "revoked", "{reply:?}");
            break since.elapsed();
        }
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(since.elapsed() < REVOCATION_BOUND, "B still accepted the revoked token after {:?}", since.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("a revocation through node A was enforced by node B after {refused_after:?}");

    // The usage B recorded is in the shared log, and visible through A.
    let uses = eventually("A serves B's recorded use", Duration::from_secs(5), async || {
        let reply = owner_a.get(&format!("{}/uses", token_path(&org, &id))).await;
        (reply.status == 200 && reply.body["items"].as_array().is_some_and(|items| items.len() >= 2))
            .then_some(reply.body)
    })
    .await;
    assert!(uses["items"].as_array().unwrap().len() >= 2, "{uses}");

    // An access token signed by A verifies on B: the signing keys are shared.
    let credential = owner_a.create_service_credential(&org, json!({ "name": "deployer" })).await;
    eventually("B knows the service credential", Duration::from_secs(5), async || {
        let reply = owner_b.get(&format!("/v1/service-credentials/{org}/{}", credential.id)).await;
        (reply.status == 200).then_some(())
    })
    .await;
    let access_token = a.access_token(&credential.client_id, &credential.secret, None).await;
    let introspected = b
        .oauth_form(
            "/oauth2/introspect",
            support::ClientAuth::Basic { id: &credential.client_id, secret: &credential.secret },
            &[("token", &access_token)],
        )
        .await;
    assert_eq!(introspected.status, 200, "{introspected:?}");
    assert_eq!(introspected.body["active"], true, "{introspected:?}");

    // The keys rotated through B: A signs with the new key (it reloads the shared file), and a
    // token A signs with it verifies on B, and one B signs verifies on A.
    let rotated = cluster.admin(b).post_empty("/v1/signing-keys/rotate").await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let new_kid = rotated.body["kid"].as_str().expect("the new key's id").to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (minted_by, checked_by) in [(a, b), (b, a)] {
        let token = minted_by.access_token(&credential.client_id, &credential.secret, None).await;
        assert_eq!(support::jwt_header(&token)["kid"], new_kid.as_str(), "signed with the rotated key");
        let introspected = checked_by
            .oauth_form(
                "/oauth2/introspect",
                support::ClientAuth::Basic { id: &credential.client_id, secret: &credential.secret },
                &[("token", &token)],
            )
            .await;
        assert_eq!(introspected.body["active"], true, "{introspected:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_commands_through_both_nodes_never_both_apply() {
    let cluster = Cluster::start();
    let (a, b) = (&cluster.a, &cluster.b);
    let (org, owner_pat) = new_org(&cluster.admin(a), "acme").await;
    let (owner_a, owner_b) = (a.client(&owner_pat), b.client(&owner_pat));
    for round in 0..5 {
        let (id, _) =
            owner_a.create_token(&org, json!({ "name": format!("ci-{round}"), "environmentHint": "prod" })).await;
        let path = token_path(&org, &id);
        eventually("B serves the token", Duration::from_secs(5), async || {
            (owner_b.get(&path).await.status == 200).then_some(())
        })
        .await;
        // Revoke through both at once, twice each.
        let (first, second, third, fourth) =
            tokio::join!(owner_a.delete(&path), owner_b.delete(&path), owner_a.delete(&path), owner_b.delete(&path));
        let replies = [first, second, third, fourth];
        for reply in &replies {
            assert!(reply.status == 200 || reply.status == 409, "round {round}: {reply:?}");
        }
        assert!(replies.iter().any(|reply| reply.status == 200), "round {round}: {replies:?}");
        let stream = format!("mt-{id}");
        let events: Vec<Value> = cluster.events().into_iter().filter(|event| event["stream"] == stream).collect();
        let revocations = events.iter().filter(|event| event["type"] == "MachineTokenRevoked").count();
        assert_eq!(revocations, 1, "round {round}: one revocation recorded: {events:?}");
        let versions: Vec<u64> = events.iter().map(|event| event["version"].as_u64().unwrap()).collect();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>(), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_runs_once_on_the_leader_and_moves_when_it_stops() {
    let cluster = Cluster::start();
    let (a, b) = (&cluster.a, &cluster.b);
    let (org, owner_pat) = new_org(&cluster.admin(a), "acme").await;
    let owner_a = a.client(&owner_pat);

    // Expiry: tokens that expire in a day, both clocks two days ahead.
    let mut expiring = Vec::new();
    for n in 0..4 {
        let body = json!({ "name": format!("short-{n}"), "environmentHint": "prod", "expiresInDays": 1 });
        expiring.push(owner_a.create_token(&org, body).await.0);
    }
    // Member removal: a member owning tokens, removed through B.
    let (member_id, member_pat) = owner_a.add_member_with_token(&org, "dev@acme.example", "admin").await;
    let member = a.client(&member_pat);
    let mut owned = Vec::new();
    for n in 0..3 {
        owned.push(member.create_token(&org, json!({ "name": format!("dev-{n}"), "environmentHint": "dev" })).await.0);
    }
    eventually("B knows the member", Duration::from_secs(5), async || {
        let reply = b.client(&owner_pat).get(&format!("/v1/orgs/{org}/members")).await;
        (reply.status == 200 && reply.body.to_string().contains(&member_id)).then_some(())
    })
    .await;
    let removed = b.client(&owner_pat).delete(&format!("/v1/orgs/{org}/members/{member_id}")).await;
    assert!(removed.status == 200 || removed.status == 204, "{removed:?}");
    a.shift_clock(2 * DAY);
    b.shift_clock(2 * DAY);

    eventually("every short token expired and every owned token flagged", Duration::from_secs(15), async || {
        let events = cluster.events();
        let expired = expiring
            .iter()
            .all(|id| events.iter().any(|e| e["stream"] == format!("mt-{id}") && e["type"] == "MachineTokenExpired"));
        let flagged = owned
            .iter()
            .all(|id| events.iter().any(|e| e["stream"] == format!("mt-{id}") && e["type"] == "MachineTokenFlagged"));
        (expired && flagged).then_some(())
    })
    .await;
    // Give a duplicate every chance to appear: several sweeps and signing rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = cluster.events();
    let mut per_stream_and_type: HashMap<(String, String), usize> = HashMap::new();
    for event in &events {
        let key = (event["stream"].as_str().unwrap().to_owned(), event["type"].as_str().unwrap().to_owned());
        *per_stream_and_type.entry(key).or_default() += 1;
    }
    for id in &expiring {
        assert_eq!(per_stream_and_type[&(format!("mt-{id}"), "MachineTokenExpired".to_owned())], 1, "{id}");
    }
    for id in &owned {
        assert_eq!(per_stream_and_type[&(format!("mt-{id}"), "MachineTokenFlagged".to_owned())], 1, "{id}");
    }
    let checkpoints = checkpoint_sizes(&events);
    assert!(!checkpoints.is_empty(), "checkpoints were signed");
    assert!(checkpoints.windows(2).all(|pair| pair[0] < pair[1]), "no tree size signed twice: {checkpoints:?}");

    // The leader stops; the other node takes the work over (the first node to start leads, but
    // whichever it is, one node is left running): new events get a checkpoint.
    drop(owner_a);
    let Cluster { a, b, url, shared, admin_token } = cluster;
    assert!(a.stop().unwrap().success());
    let owner_follower = b.client(&owner_pat);
    let cluster = Cluster { a: b, b: start_node(&url, shared.path()), url, shared, admin_token };
    let (created, _) = owner_follower.create_token(&org, json!({ "name": "after", "environmentHint": "prod" })).await;
    let position = cluster
        .events()
        .iter()
        .find(|e| e["stream"] == format!("mt-{created}"))
        .and_then(|e| e["position"].as_u64())
        .unwrap();
    let since = Instant::now();
    while checkpoint_sizes(&cluster.events()).last().is_none_or(|size| *size < position) {
        if since.elapsed() > Duration::from_secs(15) {
            let readiness = [
                cluster.a.client(&cluster.admin_token).get("/readyz").await.body,
                cluster.b.client(&cluster.admin_token).get("/readyz").await.body,
            ];
            let recent: Vec<Value> = cluster.events().into_iter().rev().take(6).collect();
            panic!(
                "no checkpoint covers position {position} 15 s after the leader stopped; nodes: {readiness:?}; \
                 the last events: {recent:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checkpoints = checkpoint_sizes(&cluster.events());
    assert!(checkpoints.windows(2).all(|pair| pair[0] < pair[1]), "no tree size signed twice: {checkpoints:?}");
    // And the ledger verifies through the remaining nodes.
    let verified = support::run_cli(
        &[
            "audit",
            "verify",
            "--url",
            &cluster.a.base_url,
            "--state",
            &cluster.shared.path().join("state").display().to_string(),
        ],
        &[("CREDLEDGER_TOKEN", &cluster.admin_token)],
    );
    assert_eq!(verified.code, 0, "{verified:?}");
}

/// The tree sizes of the recorded checkpoints, in log order.
fn checkpoint_sizes(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|event| event["type"] == "CheckpointSigned")
        .map(|event| event["payload"]["treeSize"].as_u64().expect("a tree size"))
        .collect()
}

/// Freezes a node the way a long pause or a frozen VM does, until [`Frozen::resume`] (or drop).
struct Frozen(u32);

impl Frozen {
    fn stall(node: &Server) -> Self {
        signal(node.pid(), "-STOP");
        Self(node.pid())
    }

    fn resume(self) {
        drop(self);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Every CredentialUsed or AccessTokenIssued of `credential` recorded after `event_type` in its
/// lifecycle stream, in log order: what must never exist.
fn uses_after(events: &[Value], lifecycle_stream: &str, event_type: &str, credential: &str) -> Vec<Value> {
    let stopped = events
        .iter()
        .find(|event| event["stream"] == lifecycle_stream && event["type"] == event_type)
        .and_then(|event| event["position"].as_u64())
        .unwrap_or_else(|| panic!("{event_type} is recorded in {lifecycle_stream}"));
    events
        .iter()
        .filter(|event| event["type"] == "CredentialUsed" || event["type"] == "AccessTokenIssued")
        .filter(|event| event["payload"]["credentialId"] == credential)
        .filter(|event| event["position"].as_u64().is_some_and(|position| position > stopped))
        .cloned()
        .collect()
}

/// Stalls `stalled` (SIGSTOP), revokes a machine token and removes a member through `active`,
/// sends requests with both credentials to the stalled node, resumes it after `pause`, and checks
/// that the token's request, and the next one, were refused, and that no use of the token is
/// recorded after its revocation; with `fresh`, the same of the removed member's PAT (whose
/// requests record no use, so only the node's freshness can refuse them).
async fn stall_through_a_revocation(
    cluster: &Cluster,
    active: &Server,
    stalled: &Server,
    pause: Duration,
    fresh: bool,
) {
    let (org, owner_pat) = new_org(&cluster.admin(active), "acme").await;
    let owner = active.client(&owner_pat);
    let (id, value) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let (member_id, member_pat) = owner.add_member_with_token(&org, "dev@acme.example", "admin").await;
    let probe = format!("/v1/projects/{org}");
    let listing = format!("/v1/machine-tokens/{org}");
    eventually("both nodes accept the token and the member's PAT", Duration::from_secs(5), async || {
        let statuses = [
            active.client(&value).get(&probe).await.status,
            stalled.client(&value).get(&probe).await.status,
            stalled.client(&member_pat).get(&listing).await.status,
        ];
        (statuses == [200, 200, 200]).then_some(())
    })
    .await;

    let frozen = Frozen::stall(stalled);
    let revoked = owner.delete(&token_path(&org, &id)).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let removed = owner.delete(&format!("/v1/orgs/{org}/members/{member_id}")).await;
    assert!(removed.status == 200 || removed.status == 204, "{removed:?}");
    // Sent while the node is frozen: the kernel queues them, the node reads them on resuming.
    let (token_client, member_client) = (stalled.client(&value), stalled.client(&member_pat));
    let waiting_use = tokio::spawn({
        let probe = probe.clone();
        async move { token_client.get(&probe).await }
    });
    let waiting_member = tokio::spawn({
        let listing = listing.clone();
        async move { member_client.get(&listing).await }
    });
    tokio::time::sleep(pause).await;
    frozen.resume();

    let (use_reply, member_reply) = (waiting_use.await.unwrap(), waiting_member.await.unwrap());
    assert_ne!(use_reply.status, 200, "the revoked token was accepted by the stalled node: {use_reply:?}");
    let next = stalled.client(&value).get(&probe).await;
    assert_eq!((next.status, next.code()), (401, "revoked"), "{next:?}");
    if fresh {
        assert_ne!(
            member_reply.status, 200,
            "the removed member's PAT was accepted by the stalled node: {member_reply:?}"
        );
        let next = stalled.client(&member_pat).get(&listing).await;
        assert_ne!(next.status, 200, "{next:?}");
    }
    let late = uses_after(&cluster.events(), &format!("mt-{id}"), "MachineTokenRevoked", &id);
    assert!(late.is_empty(), "uses recorded after the revocation: {late:?}");
    let ready = eventually("the resumed node is ready again", Duration::from_secs(5), async || {
        let reply = stalled.client(&cluster.admin_token).get("/readyz").await;
        (reply.status == 200).then_some(reply.body)
    })
    .await;
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stalled_through_a_revocation_never_accepts_the_revoked_credential() {
    let cluster = Cluster::start();
    // The follower, then the leader: both must hold.
    stall_through_a_revocation(&cluster, &cluster.a, &cluster.b, Duration::from_secs(3), true).await;
    stall_through_a_revocation(&cluster, &cluster.b, &cluster.a, Duration::from_secs(4), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_node_says_so_on_readyz_until_it_has_caught_up() {
    let cluster = Cluster::start();
    let frozen = Frozen::stall(&cluster.b);
    // What B misses while it is frozen.
    new_org(&cluster.admin(&cluster.a), "missed").await;
    let head: u64 = support::psql(&cluster.url, "SELECT MAX(position) FROM events").trim().parse().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Resumed, B answers /readyz at once: not ready until it has looked at the shared log again
    // and applied what it missed. The request may be read before or after B's own look; either
    // answer must be true.
    frozen.resume();
    let first = cluster.b.client(&cluster.admin_token).get("/readyz").await;
    if first.status == 200 {
        assert!(first.body["projected"].as_u64().unwrap() >= head, "ready on a view behind the log: {first:?}");
    } else {
        assert_eq!(first.status, 503, "{first:?}");
        assert!(first.body["status"] == "stale" || first.body["status"] == "catching up", "{first:?}");
    }
    eventually("B is ready again", Duration::from_secs(5), async || {
        (cluster.b.client(&cluster.admin_token).get("/readyz").await.status == 200).then_some(())
    })
    .await;
}

/// With freshness out of the way (a bound far longer than the stall), the shared log itself
/// refuses a use judged on the stale view: the request is judged again and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_log_refuses_a_use_judged_before_a_revocation_it_missed() {
    let url = support::fresh_database();
    let shared = tempfile::tempdir().unwrap();
    let a = start_node(&url, shared.path());
    let mut args = node_args(&url, shared.path());
    args.extend(["--freshness-seconds".to_owned(), "3600".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Server::start_with(&args).expect("a node starts");
    let admin_token = a.admin_token.clone().expect("the first node creates the admin token");
    let cluster = Cluster { a, b, url, shared, admin_token };
    stall_through_a_revocation(&cluster, &cluster.a, &cluster.b, Duration::from_secs(3), false).await;
}

/// Which of the nodes holds the leader's lease now, by their `/readyz`.
async fn leaders(cluster: &Cluster) -> Vec<bool> {
    let mut leading = Vec::new();
    for node in [&cluster.a, &cluster.b] {
        leading.push(node.client(&cluster.admin_token).get("/readyz").await.body["leader"] == true);
    }
    leading
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_is_replaced_and_once_resumed_repeats_nothing() {
    let cluster = Cluster::start();
    let (org, owner_pat) = new_org(&cluster.admin(&cluster.a), "acme").await;
    let leading = eventually("one node leads", Duration::from_secs(10), async || {
        let leading = leaders(&cluster).await;
        (leading.iter().filter(|leads| **leads).count() == 1).then_some(leading)
    })
    .await;
    let (leader, follower) = if leading[0] { (&cluster.a, &cluster.b) } else { (&cluster.b, &cluster.a) };
    let owner = follower.client(&owner_pat);
    eventually("the follower knows the owner", Duration::from_secs(5), async || {
        (owner.get(&format!("/v1/machine-tokens/{org}")).await.status == 200).then_some(())
    })
    .await;
    let mut expiring = Vec::new();
    for n in 0..3 {
        let body = json!({ "name": format!("short-{n}"), "environmentHint": "prod", "expiresInDays": 1 });
        expiring.push(owner.create_token(&org, body).await.0);
    }

    let frozen = Frozen::stall(leader);
    let stalled_at = Instant::now();
    // Work for a leader while the old one is frozen: new events to sign, tokens to expire.
    let (created, _) = owner.create_token(&org, json!({ "name": "during", "environmentHint": "prod" })).await;
    leader.shift_clock(2 * DAY);
    follower.shift_clock(2 * DAY);
    let position = cluster
        .events()
        .iter()
        .find(|event| event["stream"] == format!("mt-{created}"))
        .and_then(|event| event["position"].as_u64())
        .unwrap();
    eventually("the other node signs and sweeps within 10 s of the stall", Duration::from_secs(10), async || {
        let events = cluster.events();
        let signed = checkpoint_sizes(&events).last().is_some_and(|size| *size >= position);
        let expired = expiring.iter().all(|id| {
            events.iter().any(|event| event["stream"] == format!("mt-{id}") && event["type"] == "MachineTokenExpired")
        });
        (signed && expired).then_some(())
    })
    .await;
    println!("a stalled leader was replaced within {:?}", stalled_at.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    frozen.resume();

    // Resumed, the old leader finds its lease gone: more events, more rounds, nothing twice.
    owner.create_token(&org, json!({ "name": "after", "environmentHint": "prod" })).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events = cluster.events();
    let sizes = checkpoint_sizes(&events);
    assert!(sizes.windows(2).all(|pair| pair[0] < pair[1]), "no tree size signed twice: {sizes:?}");
    for id in &expiring {
        let stream = format!("mt-{id}");
        let expired = events.iter().filter(|e| e["stream"] == stream && e["type"] == "MachineTokenExpired").count();
        assert_eq!(expired, 1, "{id} expired once");
    }
    let leading = leaders(&cluster).await;
    assert_eq!(leading.iter().filter(|leads| **leads).count(), 1, "one leader after the resume: {leading:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_with_the_same_admin_token_file_share_the_token_the_first_wrote() {
    let url = support::fresh_database();
    let shared = tempfile::tempdir().unwrap();
    let file = shared.path().join("admin-token");
    let mut args = node_args(&url, shared.path());
    args.extend(["--admin-token-file".to_owned(), file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let a = Server::start_with(&args).expect("the first node starts");
    assert!(a.admin_token.is_none(), "the token goes to the file, not to the output");
    let written = std::fs::read_to_string(&file).expect("the first node wrote the file");
    let token = written.trim().to_owned();
    assert!(token.starts_with("cl_pat_"), "{written}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // A second node joining the ledger with the same settings starts, and leaves the file as is.
    let b = Server::start_with(&args).expect("a node joining the ledger starts with the same settings");
    assert!(b.admin_token.is_none());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written, "only the node that created the token writes it");
    let created = b.client(&token).post("/v1/orgs", json!({ "name": "acme", "ownerEmail": "ops@acme.example" })).await;
    assert_eq!(created.status, 201, "{created:?}");
    let leftovers: Vec<_> = std::fs::read_dir(shared.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".pending"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same file on a ledger without an admin token belongs to something else: refused.
    let other = support::fresh_database();
    let mut args = node_args(&other, shared.path());
    args.extend(["--admin-token-file".to_owned(), file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(Server::start_with(&args).is_err(), "a node must not start over another ledger's token file");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
}
