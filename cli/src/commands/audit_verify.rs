//! `credledger audit verify`: checks the ledger without trusting the server or its database.
//!
//! Offline (`--export`), an export is verified against the ledger's public key and, when given,
//! a checkpoint obtained independently (see `credledger_store::verify`); the first bad position
//! and why is reported, with exit code 1. In monitor mode (`--state`), the server's latest signed
//! checkpoint must extend the last one verified — saved in the state file with the pinned key —
//! by a consistency proof; a smaller tree, or another root for the same size, is refused.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};
use credledger_store::checkpoint::{Checkpoint, CheckpointVerifier};
use credledger_store::merkle::verify_consistency;
use credledger_store::verify::{Progress, Scope, Verified, VerifyError, verify_export};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{Api, CliError, CliResult, Format, Global, exit, output};

/// Verify the ledger: an export offline, or the server's latest checkpoint against the last one
/// seen (monitor mode).
///
/// Examples:
///   credledger audit verify --export ledger.ndjson --key ledger.pub --checkpoint checkpoint.txt
///   credledger audit verify --url https://ledger.example --state ~/.credledger-monitor.json
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["export", "state"])))]
pub struct VerifyArgs {
    /// Offline: the export to verify, a ledger export or an organization's NDJSON export (`-`
    /// reads standard input).
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// Offline: a checkpoint you trust (the signed note text), obtained independently: from a
    /// monitor's state file, or published by the operator. Without it the export is only checked
    /// against the checkpoint it carries, which may be an old one.
    #[arg(long, value_name = "FILE", requires = "export")]
    checkpoint: Option<PathBuf>,
    /// The ledger's verifier key: `<origin>+<key id>+<base64>` as `credledger audit key` prints
    /// it, or the JSON document `GET /v1/ledger/key` answers.
    /// Required offline. In monitor mode it pins the key; without it the key saved in the state
    /// file is used, or on the first run the server's, trusted on first use.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Monitor mode: check that the server's latest checkpoint extends the one saved in FILE, then
    /// save it there (created on the first run).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

pub async fn run(global: &Global, args: VerifyArgs) -> CliResult<()> {
    let VerifyArgs { export, checkpoint, key, state } = args;
    match (export, state) {
        (Some(export), None) => offline(global, &export, checkpoint.as_deref(), key.as_deref()),
        (None, Some(state)) => monitor(global, &state, key.as_deref()).await,
        _ => Err(CliError::usage("pass either --export FILE (offline) or --state FILE (monitor mode)")),
    }
}

/// A verification that failed: exit code 1, with the reason as a document for `-o json`.
fn failed(code: &str, position: Option<u64>, reason: String) -> CliError {
    let message = format!("verification failed: {reason}");
    let document = json!({ "status": "failed", "code": code, "position": position, "reason": Value::String(reason) });
    CliError { code: exit::SERVER, message, document: Some(document) }
}

/// A file that cannot be read fails the verification (exit 1): nothing was verified.
fn read_text(path: &Path, what: &str) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|error| CliError::server(format!("cannot read the {what} file {}: {error}", path.display())))
}

/// The verifier key as `audit key` prints it (`<origin>+<key id>+<base64>`), or the JSON document
/// `GET /v1/ledger/key` answers (its `verifierKey`).
fn read_key(path: &Path) -> CliResult<CheckpointVerifier> {
    let key = key_text(path)?;
    CheckpointVerifier::new(&key).map_err(|error| CliError::usage(format!("{}: {error}", path.display())))
}

fn key_text(path: &Path) -> CliResult<String> {
    let text = read_text(path, "key")?;
    let text = text.trim();
    let key = if text.starts_with('{') {
        let document: Value = serde_json::from_str(text).map_err(|error| {
            CliError::usage(format!("{}: not a key, nor its JSON document: {error}", path.display()))
        })?;
        document["verifierKey"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::usage(format!("{}: a JSON document without `verifierKey`", path.display())))?
    } else {
        text.to_owned()
    };
    Ok(key)
}

fn offline(global: &Global, export: &Path, trusted: Option<&Path>, key: Option<&Path>) -> CliResult<()> {
    let key = key.ok_or_else(|| {
        CliError::usage(
            "offline verification needs --key FILE: the ledger's verifier key, obtained independently of the export",
        )
    })?;
    let key = read_key(key)?;
    let trusted = trusted.map(|path| read_text(path, "checkpoint")).transpose()?;
    let reader: Box<dyn BufRead> = if export == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = File::open(export)
            .map_err(|error| CliError::server(format!("cannot open the export {}: {error}", export.display())))?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let bar = progress_bar(global);
    let result = verify_export(reader, &key, trusted.as_deref(), |progress: Progress| {
        if let Some(bar) = &bar {
            bar.set_length(progress.tree_size);
            bar.set_position(progress.position);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(verified) => {
            print_verified(global, &verified);
            Ok(())
        }
        Err(error @ VerifyError::Read(_)) => Err(CliError::server(error.to_string())),
        Err(error) => Err(failed(error.code(), error.position(), error.to_string())),
    }
}

/// A bar on standard error, only for a human watching a terminal.
fn progress_bar(global: &Global) -> Option<ProgressBar> {
    if global.quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template("verifying {wide_bar} {pos}/{len} positions ({per_sec}, {eta} left)")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    Some(ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style))
}

fn checkpoint_json(checkpoint: &Checkpoint) -> Value {
    json!({
        "treeSize": checkpoint.tree_size,
        "rootHash": hex::encode(checkpoint.root_hash),
        "signedAt": credledger_domain::time_format::format(&checkpoint.signed_at).unwrap_or_default(),
    })
}

fn print_verified(global: &Global, verified: &Verified) {
    if global.quiet {
        return;
    }
    let (scope, org_id) = match verified.scope {
        Scope::Ledger => ("ledger", None),
        Scope::Organization(org) => ("organization", Some(org.to_string())),
    };
    let document = json!({
        "status": "verified",
        "scope": scope,
        "orgId": org_id,
        "events": verified.events,
        "streams": verified.streams,
        "organizations": verified.organizations,
        "checkpointsChecked": verified.checkpoints_checked,
        "checkpointsUnchecked": verified.checkpoints_unchecked,
        "treeSize": verified.tree_size,
        "rootHash": hex::encode(verified.root_hash),
        "madeUnder": checkpoint_json(&verified.made_under),
        "trustedCheckpoint": verified.trusted.as_ref().map(checkpoint_json),
    });
    if output::format(global) == Format::Json {
        output::object(global, &document);
        return;
    }
    let what = match verified.scope {
        Scope::Ledger => format!(
            "the ledger's {} events are complete, in order and unaltered; {} checkpoints recorded in the log match them",
            verified.events, verified.checkpoints_checked
        ),
        Scope::Organization(org) => format!(
            "organization {org}'s {} events are part of the ledger of {} events, unaltered, with no gap in their sequence",
            verified.events, verified.tree_size
        ),
    };
    output::say(global, &format!("✓ Verified: {what}."));
    match &verified.trusted {
        Some(trusted) => output::say(
            global,
            &format!(
                "  against the trusted checkpoint of {} events signed at {}",
                trusted.tree_size,
                signed_at(trusted)
            ),
        ),
        None => output::say(
            global,
            &format!(
                "  against the checkpoint the export carries ({} events, signed at {}): pass --checkpoint FILE with one \
                 you obtained independently to rule out an older or substituted export",
                verified.made_under.tree_size,
                signed_at(&verified.made_under)
            ),
        ),
    }
    let mut summary = json!({
        "events": verified.events,
        "treeSize": verified.tree_size,
        "rootHash": hex::encode(verified.root_hash),
    });
    if verified.scope == Scope::Ledger {
        summary["streams"] = json!(verified.streams);
        summary["organizations"] = json!(verified.organizations);
        summary["checkpointsChecked"] = json!(verified.checkpoints_checked);
        if verified.checkpoints_unchecked > 0 {
            summary["checkpointsUnchecked"] = json!(verified.checkpoints_unchecked);
        }
    }
    output::object(global, &summary);
}

fn signed_at(checkpoint: &Checkpoint) -> String {
    credledger_domain::time_format::format(&checkpoint.signed_at).unwrap_or_default()
}

/// What monitor mode keeps between runs: the pinned key and the last checkpoint verified. The note
/// is the record; the other fields are there for a reader and are not trusted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MonitorState {
    format: String,
    version: u32,
    url: String,
    verifier_key: String,
    checkpoint: String,
    tree_size: u64,
    root_hash: String,
    signed_at: String,
}

const STATE_FORMAT: &str = "credledger-monitor";

impl MonitorState {
    fn load(path: &Path) -> CliResult<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(CliError::usage(format!("cannot read the state file {}: {error}", path.display())));
            }
        };
        let state: Self = serde_json::from_str(&text).map_err(|error| {
            failed(
                "state_unreadable",
                None,
                format!("the state file {} is not a monitor state: {error}", path.display()),
            )
        })?;
        if state.format != STATE_FORMAT || state.version != 1 {
            return Err(failed(
                "state_unreadable",
                None,
                format!("the state file {} is not a monitor state of version 1", path.display()),
            ));
        }
        Ok(Some(state))
    }

    /// Writes the state atomically: a private temporary file beside it, flushed, then renamed
    /// over it, so a crash leaves the old state or the new one, never half of one.
    fn save(&self, path: &Path) -> CliResult<()> {
        let cannot =
            |error: std::io::Error| CliError::server(format!("cannot save the state file {}: {error}", path.display()));
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // tempfile creates the file readable and writable by its owner only (0600).
        let mut file = tempfile::Builder::new().prefix(".credledger-monitor").tempfile_in(dir).map_err(cannot)?;
        let text = serde_json::to_string_pretty(self).map_err(|error| CliError::server(error.to_string()))?;
        file.write_all(text.as_bytes()).map_err(cannot)?;
        file.write_all(b"\n").map_err(cannot)?;
        file.as_file().sync_all().map_err(cannot)?;
        file.persist(path).map_err(|error| cannot(error.error))?;
        // Make the rename itself durable; not every platform can open a directory.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// The key id of a verifier key `<origin>+<key id>+<base64>`.
fn key_id(verifier_key: &str) -> &str {
    verifier_key.split('+').nth(1).unwrap_or("?")
}

async fn monitor(global: &Global, state_path: &Path, key: Option<&Path>) -> CliResult<()> {
    let saved = MonitorState::load(state_path)?;
    let given = key.map(key_text).transpose()?;
    let api = Api::connect(global).await?;
    let (verifier_key, first_use) = match (&saved, given) {
        (Some(state), Some(given)) if given != state.verifier_key => {
            return Err(failed(
                "key_changed",
                None,
                format!(
                    "the key given ({}) is not the key pinned in {} ({}): if the operator rotated the ledger key, \
                     start a new state file",
                    key_id(&given),
                    state_path.display(),
                    key_id(&state.verifier_key)
                ),
            ));
        }
        (Some(state), _) => (state.verifier_key.clone(), false),
        (None, Some(given)) => (given, false),
        (None, None) => {
            let key = api.get("/v1/ledger/key").await?;
            let text = key["verifierKey"].as_str().ok_or_else(|| CliError::server("the server sent no verifierKey"))?;
            (text.to_owned(), true)
        }
    };
    let verifier = CheckpointVerifier::new(&verifier_key).map_err(|error| CliError::usage(error.to_string()))?;
    if first_use {
        eprintln!(
            "credledger: trusting the ledger key {} of `{}` on first use, pinned in {}; compare it with the key the \
             operator publishes",
            key_id(&verifier_key),
            verifier.origin(),
            state_path.display()
        );
    }
    let previous = saved.as_ref().map(|state| verifier.verify(&state.checkpoint)).transpose().map_err(|error| {
        failed(
            "state_checkpoint_invalid",
            None,
            format!("the checkpoint saved in {} does not verify with the pinned key: {error}", state_path.display()),
        )
    })?;

    let latest = api.get("/v1/ledger/checkpoint").await.map_err(|error| match &error.document {
        Some(document) if document["code"] == "no_checkpoint" => {
            CliError::server("the ledger has signed no checkpoint yet: try again shortly")
        }
        _ => error,
    })?;
    let note =
        latest["note"].as_str().ok_or_else(|| CliError::server("the server sent a checkpoint without its note"))?;
    let checkpoint = verifier.verify(note).map_err(|error| {
        failed("checkpoint_invalid", None, format!("the server's latest checkpoint cannot be trusted: {error}"))
    })?;
    if let Some(previous) = &previous {
        check_extends(&api, previous, &checkpoint).await?;
    }
    let unchanged = previous.as_ref().is_some_and(|previous| previous.tree_size == checkpoint.tree_size);
    if !unchanged {
        MonitorState {
            format: STATE_FORMAT.to_owned(),
            version: 1,
            url: api.base().to_owned(),
            verifier_key: verifier_key.clone(),
            checkpoint: note.to_owned(),
            tree_size: checkpoint.tree_size,
            root_hash: hex::encode(checkpoint.root_hash),
            signed_at: signed_at(&checkpoint),
        }
        .save(state_path)?;
    }
    print_monitored(global, &checkpoint, previous.as_ref(), &verifier_key, first_use, state_path);
    Ok(())
}

/// Refuses a checkpoint that does not extend `previous`: a smaller tree (a rolled-back log),
/// another root for the same size, or a consistency proof that does not verify (a rewritten
/// history, or two different views of the log).
async fn check_extends(api: &Api, previous: &Checkpoint, latest: &Checkpoint) -> CliResult<()> {
    let (old, new) = (previous.tree_size, latest.tree_size);
    match new.cmp(&old) {
        Ordering::Less => Err(failed(
            "rolled_back",
            Some(new + 1),
            format!(
                "the ledger now signs {new} events, fewer than the {old} it signed at {}: events {}..={old} were \
                 removed",
                signed_at(previous),
                new + 1
            ),
        )),
        Ordering::Equal if latest.root_hash != previous.root_hash => Err(failed(
            "split_view",
            None,
            format!("the ledger signed two different roots for the same {old} events: its history was rewritten"),
        )),
        Ordering::Equal => Ok(()),
        Ordering::Greater => {
            let answer = api.get(&format!("/v1/ledger/proofs/consistency?from={old}&to={new}")).await?;
            if answer["from"].as_u64() != Some(old) || answer["to"].as_u64() != Some(new) {
                return Err(CliError::server("the server answered a consistency proof for other tree sizes"));
            }
            let proof = answer["proof"]
                .as_array()
                .map(|hashes| {
                    hashes
                        .iter()
                        .map(|hash| {
                            let mut bytes = [0u8; 32];
                            hex::decode_to_slice(hash.as_str()?, &mut bytes).ok().map(|()| bytes)
                        })
                        .collect::<Option<Vec<[u8; 32]>>>()
                })
                .ok_or_else(|| CliError::server("the server sent a consistency proof without hashes"))?
                .ok_or_else(|| {
                    failed("inconsistent", None, "the consistency proof holds a hash that is not hex".to_owned())
                })?;
            verify_consistency(old, new, &previous.root_hash, &latest.root_hash, &proof).map_err(|error| {
                failed(
                    "inconsistent",
                    None,
                    format!(
                        "the checkpoint of {new} events does not extend the one of {old} verified before: {error}; \
                         the first {old} events were altered, removed or reordered"
                    ),
                )
            })
        }
    }
}

fn print_monitored(
    global: &Global,
    checkpoint: &Checkpoint,
    previous: Option<&Checkpoint>,
    verifier_key: &str,
    first_use: bool,
    state_path: &Path,
) {
    if global.quiet {
        return;
    }
    let document = json!({
        "status": "consistent",
        "treeSize": checkpoint.tree_size,
        "rootHash": hex::encode(checkpoint.root_hash),
        "signedAt": signed_at(checkpoint),
        "previousTreeSize": previous.map(|previous| previous.tree_size),
        "keyId": key_id(verifier_key),
        "trustedOnFirstUse": first_use,
    });
    if output::format(global) == Format::Table {
        let line = match previous {
            Some(previous) if previous.tree_size == checkpoint.tree_size => {
                format!("✓ No new events: the checkpoint of {} events is the one verified before", checkpoint.tree_size)
            }
            Some(previous) => format!(
                "✓ The checkpoint of {} events extends the one of {} verified before; saved in {}",
                checkpoint.tree_size,
                previous.tree_size,
                state_path.display()
            ),
            None => format!(
                "✓ The checkpoint of {} events verifies; saved in {}",
                checkpoint.tree_size,
                state_path.display()
            ),
        };
        output::say(global, &line);
    }
    output::object(global, &document);
}
