//! The Debian package's parts: the systemd unit passes `systemd-analyze verify` and keeps its
//! exposure low (`systemd-analyze security`), the packaged configuration file is one the server
//! reads as it is, and the package metadata installs the binary, the unit and the configuration.
//!
//! Needs `systemd-analyze` (Debian's `systemd` package); without it these tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The unit as the package installs it, with `ExecStart` pointing at the binary this test run
/// built (verify checks that the program exists).
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(package_dir().join("debian/credledger.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/credledger serve --config /etc/credledger/credledger.toml"), "{unit}");
    let path = dir.join("credledger.service");
    std::fs::write(&path, unit.replace("/usr/bin/credledger", env!("CARGO_BIN_EXE_credledger"))).unwrap();
    path
}

fn systemd_analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze runs (install Debian's `systemd` package)")
}

#[test]
fn the_service_unit_is_valid_and_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let verify = systemd_analyze(&["verify"], &unit);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");

    // Exposure 0.0 (locked down) to 10.0 (unprotected); 1.5 or less.
    let security = systemd_analyze(&["security", "--offline=true", "--threshold=15"], &unit);
    assert!(security.status.success(), "exposure too high:\n{}", String::from_utf8_lossy(&security.stdout));

    let text = std::fs::read_to_string(&unit).unwrap();
    for line in ["User=credledger", "ProtectSystem=strict", "StateDirectory=credledger", "NoNewPrivileges=yes"] {
        assert!(text.lines().any(|l| l == line), "`{line}` in the unit");
    }
}

#[test]
fn the_packaged_configuration_is_read_as_it_is() {
    let config = package_dir().join("debian/credledger.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_credledger"))
        .args(["serve", "--print-config", "--config"])
        .arg(&config)
        .env_clear()
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let settings: toml::Table = toml::from_str(&printed).unwrap();
    assert_eq!(settings["data-dir"].as_str(), Some("/var/lib/credledger"));
    assert_eq!(settings["admin-token-file"].as_str(), Some("/var/lib/credledger/admin-token"));
    assert_eq!(settings["store"].as_str(), Some("sqlite:///var/lib/credledger/events.db"));
}

#[test]
fn the_package_installs_the_binary_the_unit_and_the_configuration() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(package_dir().join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|asset| (asset[0].as_str().unwrap().to_owned(), asset[1].as_str().unwrap().to_owned()))
        .collect();
    assert!(assets.contains(&("target/release/credledger".to_owned(), "usr/bin/".to_owned())), "{assets:?}");
    assert!(assets.contains(&("debian/credledger.toml".to_owned(), "etc/credledger/credledger.toml".to_owned())));
    for (source, _) in &assets {
        if !source.starts_with("target/") && !source.contains('*') {
            assert!(package_dir().join(source).exists(), "the asset {source} exists");
        }
    }
    assert_eq!(deb["systemd-units"]["unit-name"].as_str(), Some("credledger"));
    let scripts = package_dir().join(deb["maintainer-scripts"].as_str().unwrap());
    assert!(scripts.join("credledger.service").exists());
    let postinst = std::fs::read_to_string(scripts.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("#DEBHELPER#"), "{postinst}");
    // dpkg runs it: it must be a valid shell script.
    let syntax = Command::new("sh").arg("-n").arg(scripts.join("postinst")).status().unwrap();
    assert!(syntax.success());
}
