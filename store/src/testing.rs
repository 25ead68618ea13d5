//! A throwaway PostgreSQL cluster for tests: started once per test process on a loopback port
//! from the machine's PostgreSQL server binaries, one fresh database per caller, and stopped (its
//! directory removed) by a watchdog as soon as the test process is gone.
//!
//! Set `CREDLEDGER_TEST_POSTGRES_URL` to a superuser URL of a server of your own to use it
//! instead, and `CREDLEDGER_TEST_PG_BIN` to the directory holding `initdb`, `postgres` and
//! `pg_isready` when they are not under `/usr/lib/postgresql/*/bin`. Running as root (as CI
//! does), the cluster runs as the `postgres` user through `runuser`, since PostgreSQL refuses to
//! run as root. Nothing here skips: a cluster that cannot start fails the test that asked for it.
//!
//! This module is test support, compiled into the library only so that every crate's tests can
//! reach it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

/// The shared cluster's superuser URL (without a database), starting the cluster on first use.
pub fn server_url() -> &'static str {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    match SERVER.get_or_init(|| match std::env::var("CREDLEDGER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Ok(url.trim_end_matches('/').to_owned()),
        _ => start_cluster(),
    }) {
        Ok(url) => url,
        Err(reason) => panic!("cannot start the throwaway PostgreSQL cluster for the tests: {reason}"),
    }
}

/// A URL of a new, empty database on the test cluster (starting the cluster on first use).
pub async fn database() -> String {
    let server = tokio::task::spawn_blocking(server_url).await.expect("starting the test cluster");
    let name = format!("credledger_test_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&format!("{server}/postgres"), NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to the test cluster: {error}"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|error| panic!("creating a test database: {error}"));
    drop(client);
    let _ = driver.await;
    format!("{server}/{name}")
}

/// The `psql` to reach the cluster with: the one beside the server binaries, else the `PATH`'s.
pub fn client_binary() -> PathBuf {
    binaries().map(|bin| bin.join("psql")).ok().filter(|psql| psql.exists()).unwrap_or_else(|| PathBuf::from("psql"))
}

/// The directory of the server binaries: `CREDLEDGER_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin` holding `postgres` (Debian's layout).
fn binaries() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CREDLEDGER_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|error| format!("no PostgreSQL server under /usr/lib/postgresql ({error}); install Debian's `postgresql` package or set CREDLEDGER_TEST_PG_BIN"))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no server binaries under /usr/lib/postgresql/*/bin; install Debian's `postgresql` package".to_owned()
    })
}

/// Whether this process runs as root, which PostgreSQL refuses to run as.
fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs `program` with `args`, as the `postgres` user when this process is root.
fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start_cluster() -> Result<String, String> {
    let bin = binaries()?;
    let as_postgres = is_root();
    let dir =
        std::env::temp_dir().join(format!("credledger-pg-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|error| format!("creating {}: {error}", dir.display()))?;
    if as_postgres {
        let owner = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|error| format!("chown: {error}"))?;
        if !owner.success() {
            return Err("cannot hand the cluster directory to the `postgres` user (does it exist?)".to_owned());
        }
    }
    let data = dir.join("data");
    let initdb = command(as_postgres, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"])
        .stdout(Stdio::null())
        .output()
        .map_err(|error| format!("running initdb: {error}"))?;
    if !initdb.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&initdb.stderr)));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| format!("finding a free port: {error}"))?
        .port();
    // The watchdog runs the server and, once the test process is gone (or the server died),
    // stops it with a fast shutdown and removes the cluster's directory.
    let watchdog = r#"
        "$2/postgres" -D "$3/data" -p "$4" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$3" \
            -c fsync=off -c max_connections=300 -c shared_buffers=64MB >"$3/server.log" 2>&1 &
        server=$!
        while [ -d "/proc/$1" ] && kill -0 "$server" 2>/dev/null; do sleep 1; done
        kill -INT "$server" 2>/dev/null
        wait "$server"
        rm -rf "$3"
    "#;
    command(as_postgres, Path::new("/bin/sh"))
        .args(["-c", watchdog, "credledger-test-postgres"])
        .arg(std::process::id().to_string())
        .arg(&bin)
        .arg(&dir)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("starting the server: {error}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return Ok(format!("postgres://postgres@127.0.0.1:{port}"));
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!("the server did not accept connections within 60 s; its log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
