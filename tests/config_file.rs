//! `serve --config FILE`: a TOML file alone starts a server; a flag beats its variable, which
//! beats the file; `--print-config` shows the outcome without a store password; a misspelt
//! setting is refused.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

/// `credledger serve ARGS` with no `CREDLEDGER_*` variable but `vars`.
fn serve(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(support::binary());
    command.env_clear().env("PATH", "/usr/bin:/bin").envs(vars.iter().copied()).arg("serve").args(args);
    command
}

#[tokio::test]
async fn a_configuration_file_alone_starts_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("credledger.toml");
    std::fs::write(
        &config,
        r#"
# Relative paths are relative to this file's directory.
listen = "127.0.0.1:0"
data-dir = "data"
admin-token-file = "admin-token"
expiry-sweep-seconds = 60
trusted-proxies = ["10.0.0.0/8"]
log-format = "json"
"#,
    )
    .unwrap();
    let mut child = serve(&["--config", config.to_str().unwrap()], &[])
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the server announces its address").unwrap();
        if let Some(url) = line.strip_prefix("credledger listening on ") {
            break url.to_owned();
        }
    };
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let token =
        std::fs::read_to_string(dir.path().join("admin-token")).expect("the admin token file beside the config");
    let whoami = reqwest::Client::new().get(format!("{url}/v1/whoami")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(whoami.status(), 200);
    assert!(dir.path().join("data/events.db").exists(), "the data directory beside the config file");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("credledger.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:7001\"\nexpiry-sweep-seconds = 5\nlog-format = \"json\"\nstore = \"postgres://credledger:s3cret@db.internal/credledger\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let printed = |args: &[&str], vars: &[(&str, &str)]| -> toml::Table {
        let mut all = vec!["--config", config, "--print-config"];
        all.extend_from_slice(args);
        let output = serve(&all, vars).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(!text.contains("s3cret"), "a password in the printed settings:\n{text}");
        toml::from_str(&text).unwrap_or_else(|e| panic!("not TOML ({e}):\n{text}"))
    };

    let file_only = printed(&[], &[]);
    assert_eq!(file_only["listen"].as_str(), Some("127.0.0.1:7001"));
    assert_eq!(file_only["expiry-sweep-seconds"].as_integer(), Some(5));
    assert_eq!(file_only["log-format"].as_str(), Some("json"));
    assert_eq!(file_only["store"].as_str(), Some("postgres://credledger:REDACTED@db.internal/credledger"));
    assert_eq!(file_only["checkpoint-interval-ms"].as_integer(), Some(1000), "a default");

    let variable = printed(&[], &[("CREDLEDGER_LISTEN", "127.0.0.1:7002"), ("CREDLEDGER_LOG_FORMAT", "text")]);
    assert_eq!((variable["listen"].as_str(), variable["log-format"].as_str()), (Some("127.0.0.1:7002"), Some("text")));
    assert_eq!(variable["expiry-sweep-seconds"].as_integer(), Some(5), "the file still counts");

    let flag = printed(&["--listen", "127.0.0.1:7003"], &[("CREDLEDGER_LISTEN", "127.0.0.1:7002")]);
    assert_eq!(flag["listen"].as_str(), Some("127.0.0.1:7003"));
}

#[test]
fn a_misspelt_or_invalid_setting_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("lisen = \"127.0.0.1:0\"\n", "lisen"),
        ("expiry-sweep-seconds = 0\n", "expiry-sweep-seconds"),
        ("trusted-proxies = [\"not a network\"]\n", "trusted-proxies"),
        ("tls-cert = \"cert.pem\"\n", "tls-key"),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let output = serve(&["--config", config.to_str().unwrap()], &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(needle), "{text}: {stderr}");
    }
    let output = serve(&["--config", "/nonexistent/credledger.toml"], &[]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
