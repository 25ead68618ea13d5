//! Project secrets end to end: the real binary's `secrets`, `pull` and `run` commands in human
//! and machine modes against a real server. Values are sealed in the log, every read is in the
//! ledger before the values are sent, and each kind of credential reads only what it may.

mod support;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credledger_domain::machine_key::MachineKey;
use credledger_domain::{CredentialId, OrgId};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use support::Server;

/// Values no file, log or export may ever hold in the clear.
const VALUES: [&str; 4] = ["postgres://s3cret-db-value", "k2-pushed-value", "quoted pushed value", "k1-first-value"];

/// One run of the binary with only `vars` in its environment (no saved login).
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(server: &Server, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let config = tempfile::tempdir().unwrap();
    let output = Command::new(support::binary())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("CREDLEDGER_URL", &server.base_url)
        .env("CREDLEDGER_CONFIG_DIR", config.path())
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[track_caller]
fn ok(run: &Run) -> &str {
    assert_eq!(run.code, 0, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    &run.stdout
}

/// A server with an organization, its owner, and a project `api` with two environments.
async fn setup() -> (Server, String, String) {
    let server = Server::start().unwrap();
    let (org, _, owner) = server.admin().create_org("acme", "ops@acme.example").await;
    let reply = server
        .client(&owner)
        .post(&format!("/v1/projects/{org}"), json!({ "name": "api", "environments": ["production", "staging"] }))
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    (server, org, owner)
}

fn project_id(server_projects: &Value) -> String {
    server_projects["items"][0]["id"].as_str().unwrap().to_owned()
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            files.push((path.display().to_string(), bytes));
        }
    }
    files
}

fn assert_no_values(what: &str, bytes: &[u8]) {
    for value in VALUES {
        assert!(!bytes.windows(value.len()).any(|window| window == value.as_bytes()), "{what} holds `{value}`");
    }
}

/// People set, push, unset, pull (by version too) and run; history names changes, never values;
/// a stale change is refused; nothing outside a response holds a value in the clear.
#[tokio::test]
async fn secrets_are_versioned_pulled_and_never_kept_in_the_clear() {
    let (server, org, owner) = setup().await;
    let human = [("CREDLEDGER_TOKEN", owner.as_str())];
    let target = ["--project", "api", "--env", "production"];
    let set = cli(
        &server,
        &human,
        &[
            &["secrets", "set", "DB_URL=postgres://s3cret-db-value", "API_KEY=k1-first-value", "-m", "first"][..],
            &target,
        ]
        .concat(),
    );
    ok(&set);
    let dotenv = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(dotenv.path(), "# pushed\nAPI_KEY=k2-pushed-value\nNEW_ONE=\"quoted pushed value\"\n").unwrap();
    ok(&cli(&server, &human, &[&["secrets", "push", dotenv.path().to_str().unwrap()][..], &target].concat()));
    ok(&cli(&server, &human, &[&["secrets", "unset", "DB_URL"][..], &target].concat()));

    let latest: Value =
        serde_json::from_str(ok(&cli(&server, &human, &[&["pull", "--format", "json"][..], &target].concat())))
            .unwrap();
    assert_eq!(latest, json!({ "API_KEY": "k2-pushed-value", "NEW_ONE": "quoted pushed value" }));
    let first = cli(&server, &human, &[&["pull", "--version", "1"][..], &target].concat());
    assert!(
        ok(&first).contains("DB_URL=\"postgres://s3cret-db-value\""),
        "an old version reads back: {}",
        first.stdout
    );
    let shell = cli(&server, &human, &[&["pull", "--format", "shell"][..], &target].concat());
    assert!(ok(&shell).contains("export NEW_ONE='quoted pushed value'"), "{}", shell.stdout);

    let run = cli(
        &server,
        &human,
        &[&["run"][..], &target, &["--", "sh", "-c", "test \"$API_KEY\" = k2-pushed-value && exit 7"]].concat(),
    );
    assert_eq!(run.code, 7, "run passes the command's exit code and its environment: {}", run.stderr);

    let history: Value =
        serde_json::from_str(ok(&cli(&server, &human, &[&["-o", "json", "secrets", "history"][..], &target].concat())))
            .unwrap();
    let versions = history["items"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "{history}");
    assert_eq!(versions[0]["version"], 3);
    assert_eq!(versions[0]["removed"], json!(["DB_URL"]));
    assert_eq!(versions[1]["changed"], json!(["API_KEY", "NEW_ONE"]), "a changed value shows as changed");
    assert_eq!(versions[2]["message"], "first");
    assert_no_values("the history", history.to_string().as_bytes());
    let list = cli(&server, &human, &[&["-o", "json", "secrets", "list"][..], &target].concat());
    assert!(ok(&list).contains("NEW_ONE") && !list.stdout.contains("quoted pushed value"), "{}", list.stdout);

    let client = server.client(&owner);
    let path = format!("/v1/secrets/{org}/api/production");
    let stale = client.send("PUT", &path, Some(json!({ "secrets": {}, "expectedVersion": 1 }))).await;
    assert_eq!((stale.status, stale.code()), (409, "stale_version"), "{stale:?}");
    let bad = client.send("PUT", &path, Some(json!({ "secrets": { "bad-name": "x" } }))).await;
    assert_eq!(
        (bad.status, bad.code(), bad.body["field"].as_str()),
        (422, "invalid_secret_name", Some("secrets.bad-name")),
        "{bad:?}"
    );
    let long = client.send("PATCH", &path, Some(json!({ "set": { "BIG": "x".repeat(65 * 1024) } }))).await;
    assert_eq!((long.status, long.code()), (422, "secret_value_too_long"), "{long:?}");
    let missing = client.get(&format!("/v1/secrets/{org}/api/qa")).await;
    assert_eq!(missing.status, 404, "an environment the project lacks: {missing:?}");
    let (_, member) = client.add_member_with_token(&org, "dev@acme.example", "member").await;
    let member_client = server.client(&member);
    assert_eq!(member_client.get(&path).await.status, 200, "members read");
    let write = member_client.send("PATCH", &path, Some(json!({ "set": { "X": "1" } }))).await;
    assert_eq!((write.status, write.code()), (403, "insufficient_role"), "{write:?}");

    // Every read is in the trail, with its version.
    // The read models apply the last read a moment after it is answered.
    let reads = support::eventually("five reads", std::time::Duration::from_secs(10), async || {
        let reads = client.get(&format!("{path}/reads")).await;
        let items = reads.body["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 5).then_some(items)
    })
    .await;
    assert!(reads.iter().any(|read| read["version"] == 1), "{reads:?}");
    let trail = client.get(&format!("/v1/audit/{org}?type=SecretsRead&limit=100")).await;
    assert_eq!(trail.body["items"].as_array().unwrap().len(), 5, "{trail:?}");

    let admin = server.admin_token.clone().unwrap();
    let export = reqwest::Client::new().get(server.url("/v1/ledger/export")).bearer_auth(&admin).send().await.unwrap();
    let export = export.bytes().await.unwrap();
    assert!(!export.is_empty());
    assert_no_values("the ledger export", &export);
    assert_no_values("the server's output", server.log().as_bytes());
    // The log as stored (the SQLite file or the PostgreSQL table), and every file of the data
    // directory: the read models, the WAL, the keys.
    let log = support::raw_log(&server.data_dir);
    assert!(log.len() > 10, "the log is read");
    for (position, envelope, _) in log {
        assert_no_values(&format!("the event at position {position}"), &envelope);
    }
    let files = files_under(&server.data_dir);
    assert!(
        files.iter().any(|(file, _)| file.ends_with("read.db")),
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (file, bytes) in files {
        assert_no_values(&file, &bytes);
    }
}

/// A fresh Ed25519 key seed.
fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    seed
}

/// Machine identities pull only their own environment and never write; a machine token reads
/// only its project, writes only with the write scope; revocation stops pulls at once; the
/// incident trace of a token lists what it read; the ledger still verifies.
#[tokio::test]
async fn machine_credentials_read_only_what_they_are_for() {
    let (server, org, owner) = setup().await;
    let client = server.client(&owner);
    let project = project_id(&client.get(&format!("/v1/projects/{org}")).await.body);
    let path = format!("/v1/secrets/{org}/api/production");
    let put = client.send("PUT", &path, Some(json!({ "secrets": { "DEPLOY_KEY": "k1-first-value" } }))).await;
    assert_eq!(put.status, 200, "{put:?}");
    let staging = client
        .send("PUT", &format!("/v1/secrets/{org}/api/staging"), Some(json!({ "secrets": { "OTHER": "x" } })))
        .await;
    assert_eq!(staging.status, 200, "{staging:?}");

    // A machine identity of api/production.
    let seed = seed();
    let public = URL_SAFE_NO_PAD.encode(SigningKey::from_bytes(&seed).verifying_key().to_bytes());
    let body = json!({ "name": "deploy-prod", "project": "api", "environment": "production", "publicKey": public });
    let machine = client.post(&format!("/v1/machines/{org}"), body).await;
    assert_eq!(machine.status, 201, "{machine:?}");
    let key = MachineKey::new(
        OrgId::parse(&org).unwrap(),
        CredentialId::parse(machine.body["id"].as_str().unwrap()).unwrap(),
        seed,
    )
    .encode();
    let machine_mode = [("CREDLEDGER_MACHINE_KEY", key.as_str())];
    let pulled = cli(&server, &machine_mode, &["pull"]);
    assert_eq!(ok(&pulled).trim(), "DEPLOY_KEY=\"k1-first-value\"", "its own environment by default");
    let other = cli(&server, &machine_mode, &["pull", "--project", "api", "--env", "staging"]);
    assert_eq!(other.code, 3, "another environment is refused: {}", other.stderr);
    let write = cli(&server, &machine_mode, &["secrets", "set", "X=1"]);
    assert_eq!(write.code, 3, "pull-only: {}", write.stderr);
    let run = cli(&server, &machine_mode, &["run", "--", "sh", "-c", "test \"$DEPLOY_KEY\" = k1-first-value"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let token = cli(&server, &machine_mode, &["auth", "print-access-token"]);
    let token = ok(&token).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    // The resource-server example of the docs accepts it, and refuses it altered.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/resource_server.py");
    let checked = Command::new("python3").arg(&example).arg(&server.base_url).arg(&token).output().unwrap();
    assert!(
        checked.status.success(),
        "the example verifies the token (it needs PyJWT: pip install 'pyjwt[crypto]'): {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let claims: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(claims["sub"], machine.body["id"], "{claims}");
    let mut altered = token.clone();
    altered.insert(token.rfind('.').unwrap() + 2, 'A');
    let refused = Command::new("python3").arg(&example).arg(&server.base_url).arg(&altered).output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));

    // Machine tokens: without a project nothing; with one, its project; writes need the scope.
    let (_, unscoped) = client.create_token(&org, json!({ "name": "loose", "environmentHint": "prod" })).await;
    let refused =
        cli(&server, &[("CREDLEDGER_TOKEN", unscoped.as_str())], &["pull", "--project", "api", "--env", "production"]);
    assert_eq!(refused.code, 3, "a token without a project reads no secrets: {}", refused.stderr);
    let body =
        json!({ "name": "ci", "environmentHint": "prod", "projectId": project, "scopes": ["credledger-api/read"] });
    let (token_id, scoped) = client.create_token(&org, body).await;
    let scoped_mode = [("CREDLEDGER_TOKEN", scoped.as_str())];
    let pulled = cli(&server, &scoped_mode, &["pull", "--project", "api", "--env", "production"]);
    assert!(ok(&pulled).contains("k1-first-value"));
    let write = cli(&server, &scoped_mode, &["secrets", "set", "X=1", "--project", "api", "--env", "production"]);
    assert_eq!(write.code, 3, "no write scope: {}", write.stderr);
    let print = cli(&server, &scoped_mode, &["auth", "print-access-token"]);
    assert_eq!(print.code, 2, "a machine token is its own bearer: {}", print.stderr);

    let trace = client.post(&format!("/v1/incidents/{org}/trace"), json!({ "token": scoped })).await;
    assert_eq!(trace.status, 200, "{trace:?}");
    let read = &trace.body["secretsRead"];
    assert_eq!(read.as_array().map(Vec::len), Some(1), "{trace:?}");
    assert_eq!((read[0]["environment"].as_str(), read[0]["version"].as_u64()), (Some("production"), Some(1)));
    assert_eq!(trace.body["secretsToRotate"][0]["names"], json!(["DEPLOY_KEY"]), "{trace:?}");

    let revoked = client.delete(&format!("/v1/machine-tokens/{org}/{token_id}")).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let after = cli(&server, &scoped_mode, &["pull", "--project", "api", "--env", "production"]);
    assert_eq!(after.code, 3, "revocation stops pulls at once: {}", after.stderr);

    let admin = server.admin_token.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state = state.path().join("state.json");
    let verify =
        cli(&server, &[("CREDLEDGER_TOKEN", admin.as_str())], &["audit", "verify", "--state", state.to_str().unwrap()]);
    assert_eq!(verify.code, 0, "the ledger verifies: {}\n{}", verify.stdout, verify.stderr);
}
