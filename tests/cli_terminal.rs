//! What a person sees at a terminal, in a real terminal: the binary runs in a tmux pane of a known
//! size, and the test reads the screen. The token typed at `login` is never shown; tables fit
//! the terminal's width; the server's log has colour on a terminal, and none with `NO_COLOR`.
//!
//! Needs `tmux` (Debian's `tmux` package); without it these tests fail and say so.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::Server;

/// Printed after the command under test ends, so the test knows the screen is final.
const DONE: &str = "__terminal_test_done__";

/// A tmux server of its own (a private socket) with one pane running one command.
struct Pane {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pane {
    /// Runs `program args…` in a `width`×`height` pane, with only the variables `vars` (and
    /// TERM), then prints [`DONE`] and waits, so the screen can be read after it ends.
    fn run(width: u16, height: u16, vars: &[(&str, &str)], program: &Path, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("tmux.sock");
        let mut line = String::from("env -i TERM=xterm-256color PATH=/usr/bin:/bin");
        for (name, value) in vars {
            let _ = write!(line, " {name}={}", quote(value));
        }
        let _ = write!(line, " {}", quote(&program.to_string_lossy()));
        for arg in args {
            let _ = write!(line, " {}", quote(arg));
        }
        let _ = write!(line, "; echo {DONE}; sleep 600");
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["-f", "/dev/null", "new-session", "-d", "-x", &width.to_string(), "-y", &height.to_string()])
            .args(["sh", "-c", &line])
            .status()
            .expect("tmux runs (install Debian's `tmux` package)");
        assert!(status.success(), "tmux new-session failed");
        Self { socket, _dir: dir }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().expect("tmux");
        assert!(output.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The screen's text, wrapped lines joined (`-J`), with colour codes when `escapes`.
    fn screen(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-J", "-S", "-"];
        if escapes {
            args.push("-e");
        }
        self.tmux(&args)
    }

    /// Waits until the screen shows `text`, and returns the screen.
    fn wait_for(&self, text: &str, escapes: bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen(escapes);
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "`{text}` never showed; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-l", text]);
        self.tmux(&["send-keys", "Enter"]);
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        // Ctrl-C first: a server in the pane stops on SIGINT, while the SIGHUP of kill-server
        // would only make it reload its certificate.
        let _ = Command::new("tmux").arg("-S").arg(&self.socket).args(["send-keys", "C-c"]).status();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = Command::new("tmux").arg("-S").arg(&self.socket).arg("kill-server").status();
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[tokio::test]
async fn login_at_a_terminal_does_not_show_the_token() {
    let server = Server::start().unwrap();
    let (_, _, pat) = server.admin().create_org("acme", "ops@acme.example").await;
    let config = tempfile::tempdir().unwrap();
    let config_dir = config.path().to_string_lossy().into_owned();
    let pane = Pane::run(
        120,
        20,
        &[("CREDLEDGER_URL", &server.base_url), ("CREDLEDGER_CONFIG_DIR", &config_dir)],
        &support::binary(),
        &["login"],
    );
    pane.wait_for("Personal access token (input hidden):", false);
    pane.type_text(&pat);
    let screen = pane.wait_for(DONE, false);
    assert!(screen.contains("✓ Logged in as member"), "{screen}");
    assert!(!screen.contains(&pat) && !screen.contains("cl_pat_"), "the token was echoed:\n{screen}");
    let saved = std::fs::read_to_string(config.path().join("login")).unwrap();
    assert!(saved.contains(&pat), "the token typed was saved");
}

#[tokio::test]
async fn a_table_fits_the_terminal_width() {
    let server = Server::start().unwrap();
    let (org, _, pat) = server.admin().create_org("acme", "platform-operations@acme.example").await;
    let owner = server.client(&pat);
    for name in ["GitHub Actions — production deploys of the payments API", "nightly backup verification job"] {
        owner.create_token(&org, json!({ "name": name, "environmentHint": "production", "expiresInDays": 90 })).await;
    }
    let width = 80;
    let pane = Pane::run(
        width,
        40,
        &[("CREDLEDGER_URL", &server.base_url), ("CREDLEDGER_TOKEN", &pat), ("CREDLEDGER_CONFIG_DIR", "/nonexistent")],
        &support::binary(),
        // No -o: a terminal gets a table.
        &["token", "list"],
    );
    let screen = pane.wait_for(DONE, false);
    let table: Vec<&str> = screen.lines().take_while(|line| !line.contains(DONE)).collect();
    for line in &table {
        assert!(line.chars().count() <= usize::from(width), "a line wider than the terminal ({width}):\n{screen}");
    }
    // Headers may wrap between their words, never inside one.
    let header: Vec<&str> = table[..2].iter().flat_map(|line| line.split_whitespace()).collect();
    for word in ["ID", "NAME", "ENVIRONMENT", "STATE", "OWNER", "EXPIRES", "LAST", "USED", "FLAGGED"] {
        assert!(header.contains(&word), "`{word}` whole in the header:\n{screen}");
    }

    // A wide terminal: one line per row, headers and owners' emails whole.
    let pane = Pane::run(
        250,
        40,
        &[("CREDLEDGER_URL", &server.base_url), ("CREDLEDGER_TOKEN", &pat), ("CREDLEDGER_CONFIG_DIR", "/nonexistent")],
        &support::binary(),
        &["token", "list"],
    );
    let screen = pane.wait_for(DONE, false);
    let table: Vec<&str> = screen.lines().take_while(|line| !line.contains(DONE)).collect();
    assert_eq!(table.len(), 3, "a header and two rows:\n{screen}");
    assert!(table[0].contains("ENVIRONMENT") && table[0].contains("LAST USED"), "readable headers:\n{screen}");
    assert!(table[1..].iter().all(|row| row.contains("platform-operations@acme.example")), "owners' emails:\n{screen}");
}

#[tokio::test]
async fn the_server_log_has_colour_on_a_terminal_and_none_with_no_color() {
    for (no_color, coloured) in [("", true), ("1", false)] {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_string_lossy().into_owned();
        let pane = Pane::run(
            200,
            30,
            &[("CREDLEDGER_LOG", "info"), ("NO_COLOR", no_color)],
            &support::binary(),
            &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir],
        );
        let screen = pane.wait_for("credledger listening on", true);
        let log: Vec<&str> = screen.lines().filter(|line| line.contains("INFO")).collect();
        assert!(!log.is_empty(), "{screen}");
        assert_eq!(
            log.iter().any(|line| line.contains('\u{1b}')),
            coloured,
            "NO_COLOR={no_color:?}: colour codes expected: {coloured}:\n{screen}"
        );
    }
}
