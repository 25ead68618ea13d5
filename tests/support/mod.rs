//! End-to-end test harness: starts the real `credledger serve` binary on a free loopback port with a fresh
//! data directory, and stops it when the test is done.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running server. Dropping it kills the process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub base_url: String,
    /// Kept so the directory lives as long as the server.
    _data: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
}

/// The `credledger` binary Cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_credledger"))
}

impl Server {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let dir = data.path().to_owned();
        let mut server = Self::start_in(&dir)?;
        server._data = Some(data);
        Ok(server)
    }

    /// Starts a server on an existing data directory (to test restarts).
    pub fn start_in(data_dir: &Path) -> anyhow::Result<Self> {
        let binary = binary();
        if !binary.exists() {
            bail!("{} is missing", binary.display());
        }
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("CREDLEDGER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let base_url = loop {
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the server did not announce its address");
            }
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("credledger listening on ") {
                        break url.trim().to_owned();
                    }
                }
                Some(Err(error)) => bail!("reading the server's output: {error}"),
                None => bail!("the server exited before listening"),
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, base_url, _data: None, data_dir: data_dir.to_owned() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the server did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
