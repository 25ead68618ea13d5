//! The command-line client as a person uses it day to day, against a real server: a remembered
//! server and organization, names where ids are long, the audit trail (followed as it grows),
//! machine mode without extra requests, each secret printed once, and usage errors caught before
//! any request. Every invocation runs the real binary with only the variables a case gives it.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{CliRun, Server, run_cli};

/// An organization with its owner, and a configuration directory for the invocations.
struct Org {
    server: Server,
    id: String,
    pat: String,
    owner: support::Client,
    config: tempfile::TempDir,
}

impl Org {
    async fn start() -> Self {
        let server = Server::start().expect("server");
        let (id, _, pat) = server.admin().create_org("acme", "ops@acme.example").await;
        let owner = server.client(&pat);
        Self { server, id, pat, owner, config: tempfile::tempdir().expect("config dir") }
    }

    fn config_dir(&self) -> String {
        self.config.path().to_string_lossy().into_owned()
    }

    /// The binary as the owner (`CREDLEDGER_TOKEN`), with extra variables.
    fn as_owner(&self, args: &[&str], vars: &[(&str, &str)]) -> CliRun {
        let config = self.config_dir();
        let mut all = vec![
            ("CREDLEDGER_URL", self.server.base_url.as_str()),
            ("CREDLEDGER_TOKEN", self.pat.as_str()),
            ("CREDLEDGER_CONFIG_DIR", config.as_str()),
        ];
        all.extend_from_slice(vars);
        run_cli(args, &all)
    }

    /// The binary with exactly these variables (and the configuration directory).
    fn with(&self, args: &[&str], vars: &[(&str, &str)]) -> CliRun {
        let config = self.config_dir();
        let mut all = vec![("CREDLEDGER_CONFIG_DIR", config.as_str())];
        all.extend_from_slice(vars);
        run_cli(args, &all)
    }

    async fn token(&self, name: &str) -> (String, String) {
        self.owner.create_token(&self.id, json!({ "name": name, "environmentHint": "ci", "expiresInDays": 30 })).await
    }

    /// `CredentialUsed` events of a credential, in log order.
    fn uses(&self, credential: &str) -> Vec<Value> {
        support::stream_events(&self.server.data_dir, &format!("usage-{credential}"), "CredentialUsed")
    }
}

#[track_caller]
fn ok(run: CliRun) -> CliRun {
    assert_eq!(run.code, 0, "expected success: {run:#?}");
    run
}

#[track_caller]
fn exits(run: CliRun, code: i32, needle: &str) -> CliRun {
    assert_eq!(run.code, code, "expected exit {code}: {run:#?}");
    assert!(run.stderr.contains(needle), "stderr mentions `{needle}`: {run:#?}");
    assert!(run.stdout.is_empty(), "nothing on stdout: {run:#?}");
    run
}

fn json_of(run: &CliRun) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {run:#?}"))
}

/// The `GET` request lines `-v` printed.
fn requests(run: &CliRun) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|line| line.starts_with("credledger: GET ") || line.starts_with("credledger: POST "))
        .collect()
}

#[tokio::test]
async fn login_remembers_the_server_and_the_organization() {
    let org = Org::start().await;
    let url = org.server.base_url.clone();
    // No CREDLEDGER_URL: the server comes from --url, and is remembered.
    ok(org.with(&["login", "--url", &url, "--token", &org.pat, "-o", "table"], &[]));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(org.config.path().join("login")).unwrap()).unwrap();
    assert_eq!((saved["url"].as_str(), saved["orgId"].as_str()), (Some(url.as_str()), Some(org.id.as_str())));

    let whoami = ok(org.with(&["whoami", "-o", "json"], &[]));
    assert_eq!(json_of(&whoami)["orgId"], json!(org.id), "the remembered server answered");
    // The organization is remembered too: a command asks nothing else of the server.
    let list = ok(org.with(&["token", "list", "-o", "json", "-v"], &[]));
    assert_eq!(requests(&list), [format!("credledger: GET {url}/v1/machine-tokens/{}?limit=500", org.id)]);
    // --url still wins over the saved one (here: nothing listens there).
    exits(org.with(&["whoami", "--url", "http://127.0.0.1:9"], &[]), 1, "cannot reach");
    // Machine modes read no file, the saved login's server included.
    let machine = org
        .with(&["whoami", "-v"], &[("CREDLEDGER_CLIENT_ID", "cl_ci_0000"), ("CREDLEDGER_CLIENT_SECRET", "cl_cs_0000")]);
    assert!(machine.stderr.contains("POST http://127.0.0.1:8080/oauth2/token"), "the default server: {machine:#?}");
}

#[tokio::test]
async fn machine_mode_makes_one_request_per_command_and_shows_the_exchange_with_v() {
    let org = Org::start().await;
    let credential = org
        .owner
        .create_service_credential(&org.id, json!({ "name": "release", "scopes": ["credledger-api/read"] }))
        .await;
    let url = org.server.base_url.clone();
    let run = ok(org.with(
        &["token", "list", "-o", "json", "-v"],
        &[
            ("CREDLEDGER_URL", &url),
            ("CREDLEDGER_CLIENT_ID", &credential.client_id),
            ("CREDLEDGER_CLIENT_SECRET", &credential.secret),
        ],
    ));
    assert!(
        run.stderr.contains(&format!(
            "credledger: POST {url}/oauth2/token grant_type=client_credentials client_id={}",
            credential.client_id
        )),
        "{run:#?}"
    );
    assert!(run.stderr.contains("credledger: got an access token (Bearer, scope credledger-api/read"), "{run:#?}");
    assert!(!run.stderr.contains(&credential.secret), "never the secret: {run:#?}");
    assert!(!run.stderr.contains("/v1/whoami"), "the organization comes with the access token: {run:#?}");
    let uses = org.uses(&credential.id);
    assert_eq!(uses.len(), 1, "one use recorded for one command: {uses:#?}");
}

#[tokio::test]
async fn usage_errors_are_caught_before_any_request() {
    let org = Org::start().await;
    for url in ["http//oops", "ftp://ledger.example", "https://"] {
        let run = org.as_owner(&["whoami", "--url", url], &[]);
        assert_eq!(run.code, 2, "`{url}` is a usage error: {run:#?}");
        assert!(run.stderr.contains("--url"), "{run:#?}");
    }
    let run = org.as_owner(&["whoami"], &[("CREDLEDGER_URL", "http//oops")]);
    assert_eq!(run.code, 2, "{run:#?}");

    // A bare number of days is refused rather than guessed at.
    exits(org.as_owner(&["token", "create", "--name", "ci", "--env", "ci", "--expires", "90"], &[]), 2, "90d");
    let list = json_of(&ok(org.as_owner(&["token", "list", "-o", "json"], &[])));
    assert_eq!(list["items"], json!([]), "nothing was created");
    let created =
        json_of(&ok(org.as_owner(&["token", "create", "--name", "ci", "--env", "ci", "--expires", "90d"], &[])));
    assert!(created["expiresAt"].is_string(), "{created}");
}

#[tokio::test]
async fn names_stand_for_ids_where_they_are_unique() {
    let org = Org::start().await;
    let (ci, _) = org.token("deploy-prod").await;
    org.token("twin").await;
    org.token("twin").await;
    let revoked = json_of(&ok(org.as_owner(&["token", "revoke", "deploy-prod", "-o", "json"], &[])));
    assert_eq!((revoked["id"].as_str(), revoked["state"].as_str()), (Some(ci.as_str()), Some("revoked")));
    // Revoked ones no longer answer to their name; two current ones make it ambiguous.
    exits(org.as_owner(&["token", "get", "deploy-prod"], &[]), 2, "no token named `deploy-prod`");
    exits(org.as_owner(&["token", "get", "twin"], &[]), 2, "2 tokens are named `twin`");

    let credential = org.owner.create_service_credential(&org.id, json!({ "name": "release" })).await;
    let got = json_of(&ok(org.as_owner(&["service-credential", "get", "release", "-o", "json"], &[])));
    assert_eq!(got["id"], json!(credential.id));

    let dev = org.owner.add_member(&org.id, "dev@acme.example", "member").await;
    let changed =
        json_of(&ok(org.as_owner(&["member", "set-role", "dev@acme.example", "--role", "admin", "-o", "json"], &[])));
    assert_eq!((changed["id"].as_str(), changed["role"].as_str()), (Some(dev.as_str()), Some("admin")));
}

#[tokio::test]
async fn tables_show_times_to_the_second_and_owners_by_email() {
    let org = Org::start().await;
    let (id, _) = org.token("ci").await;
    let run = ok(org.as_owner(&["token", "get", &id, "-o", "table"], &[]));
    let expires = run
        .stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("expiresAt"))
        .unwrap_or_else(|| panic!("no expiresAt row: {run:#?}"))
        .trim();
    assert_eq!(expires.len(), "2027-02-24T00:14:26Z".len(), "to the second: {expires}");
    assert!(
        run.stdout.lines().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["owner", "ops@acme.example"]),
        "the owner's email: {run:#?}"
    );
    assert!(expires.ends_with('Z') && !expires.contains('.'), "{expires}");
    // JSON keeps the server's exact value.
    let json = json_of(&ok(org.as_owner(&["token", "get", &id, "-o", "json"], &[])));
    assert!(json["expiresAt"].as_str().is_some_and(|at| at.starts_with(&expires[..19])), "{json}");
}

#[tokio::test]
async fn a_piped_machine_create_ends_with_the_key_line_on_stderr() {
    let org = Org::start().await;
    let reply = org
        .owner
        .post(&format!("/v1/projects/{}", org.id), json!({ "name": "api", "environments": ["production"] }))
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");

    // No -o and stdout a pipe: JSON on stdout; the person at the terminal gets the line on stderr.
    let run = ok(org.as_owner(&["machine", "create", "deploy-prod", "--project", "api", "--env", "production"], &[]));
    let key = json_of(&run)["machineKey"].as_str().expect("machineKey").to_owned();
    let stderr: Vec<&str> = run.stderr.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(
        stderr[stderr.len() - 2..],
        ["To use this machine, set:".to_owned(), format!("CREDLEDGER_MACHINE_KEY={key}")],
        "{run:#?}"
    );

    // -o json asked for: the key only in the document.
    let run = ok(org
        .as_owner(&["machine", "create", "deploy-stg", "--project", "api", "--env", "production", "-o", "json"], &[]));
    assert!(!run.stderr.contains("credledger-machine-v1:") && !run.stderr.contains("To use this machine"), "{run:#?}");
}

#[tokio::test]
async fn audit_verify_reads_files_and_the_key_document_the_api_serves() {
    let org = Org::start().await;
    org.token("ci").await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ledger-key.json");
    let document = reqwest::get(org.server.url("/v1/ledger/key")).await.unwrap().text().await.unwrap();
    std::fs::write(&key, &document).unwrap();
    let key = key.to_string_lossy().into_owned();

    // The checkpoint the export carries covers every event.
    org.owner.checkpoint_covering(support::last_event_to_sign(&org.server.data_dir)).await;
    let export = dir.path().join("acme.ndjson").to_string_lossy().into_owned();
    ok(org.as_owner(&["audit", "export", "--out", &export], &[]));
    let run = ok(org.as_owner(&["audit", "verify", "--export", &export, "--key", &key, "-o", "table"], &[]));
    assert!(run.stdout.contains("✓ Verified"), "{run:#?}");

    // A file that cannot be read verifies nothing: exit 1, as for a failed verification.
    let missing = dir.path().join("missing.ndjson").to_string_lossy().into_owned();
    exits(org.as_owner(&["audit", "verify", "--export", &missing, "--key", &key], &[]), 1, "missing.ndjson");
    exits(org.as_owner(&["audit", "verify", "--export", &export, "--key", &missing], &[]), 1, "missing.ndjson");
}

#[tokio::test]
async fn audit_log_prints_the_trail_and_follows_new_entries() {
    let org = Org::start().await;
    let (first, _) = org.token("first").await;

    let run = ok(org.as_owner(&["audit", "log", "--type", "MachineTokenCreated", "-o", "json"], &[]));
    let entries: Vec<Value> = run.stdout.lines().map(|line| serde_json::from_str(line).expect("NDJSON")).collect();
    assert_eq!(entries.len(), 1, "{run:#?}");
    assert_eq!(
        (entries[0]["type"].as_str(), entries[0]["credentialId"].as_str()),
        (Some("MachineTokenCreated"), Some(first.as_str()))
    );
    let run = ok(org.as_owner(&["audit", "log", "--limit", "3", "-o", "table"], &[]));
    assert_eq!(run.stdout.lines().count(), 3, "the latest three, one line each: {run:#?}");
    assert!(
        run.stdout.lines().last().is_some_and(|line| line.contains("MachineTokenCreated")),
        "oldest first: {run:#?}"
    );
    exits(org.as_owner(&["audit", "log", "--since", "yesterday"], &[]), 2, "since");

    // --follow: an entry recorded later arrives on its own.
    let config = org.config_dir();
    let mut follower = Command::new(support::binary())
        .args(["audit", "log", "--follow", "--interval", "1", "--type", "MachineTokenCreated", "-o", "json"])
        .env_clear()
        .env("CREDLEDGER_URL", &org.server.base_url)
        .env("CREDLEDGER_TOKEN", &org.pat)
        .env("CREDLEDGER_CONFIG_DIR", &config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let line = received.recv_timeout(Duration::from_secs(10)).expect("the existing entry");
    assert!(line.contains(&first), "{line}");
    let (later, _) = org.token("later").await;
    let line = received.recv_timeout(Duration::from_secs(10)).expect("the new entry, followed");
    let _ = follower.kill();
    let _ = follower.wait();
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["credentialId"], json!(later), "{line}");
}
