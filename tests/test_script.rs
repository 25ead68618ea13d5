//! `scripts/test`, the README's test command: on a machine without what the tests need it stops
//! at once and says exactly what to install, before compiling or running anything.

use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test")
}

#[test]
fn without_postgresql_it_stops_and_names_the_package_to_install() {
    let output = Command::new(script())
        .env("CREDLEDGER_TEST_PG_BIN", "/nonexistent/postgresql/bin")
        .env("CREDLEDGER_TEST_NO_INSTALL", "1")
        .env_remove("CREDLEDGER_TEST_POSTGRES_URL")
        .output()
        .expect("scripts/test runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    assert!(!stdout.contains("== workspace"), "no stage ran: {stdout}");
}

#[test]
fn it_lists_its_stages_and_refuses_an_unknown_one() {
    let list = Command::new(script()).arg("--list").output().expect("scripts/test runs");
    let stages = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{stages}");
    for stage in ["workspace", "package", "browser", "e2e-postgres", "schemathesis", "fuzz"] {
        assert!(stages.lines().any(|line| line.split_whitespace().next() == Some(stage)), "{stage} in {stages}");
    }
    let unknown = Command::new(script()).arg("no-such-stage").output().expect("scripts/test runs");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no stage named no-such-stage"));
}
