//! `credledger audit …`: the auditor's commands. `log` prints the trail (see `audit_log`); `replay` prints the organization's credential
//! inventory as it was at a past moment, which the server folds from the log (the API's `asOf`);
//! `verify` checks an export offline, or the server's latest checkpoint against the last one seen.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::client::{Api, CliError, CliResult, Format, Global, output};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the audit trail, the latest entries oldest first; `--follow` prints new ones as they
    /// are recorded.
    ///
    /// Example: credledger audit log --outcome denied --follow
    Log(super::audit_log::LogArgs),
    /// Print the credential inventory as it was at a past moment, folded from the log.
    ///
    /// Example: credledger audit replay --org ORG_ID --as-of 2026-11-25T10:00:00Z
    Replay(ReplayArgs),
    /// Verify the ledger: an export offline against the ledger key and a checkpoint, or (monitor
    /// mode) that the server's latest checkpoint extends the last one verified.
    ///
    /// Example: credledger audit verify --export ledger.ndjson --checkpoint checkpoint.txt --key ledger.vkey
    Verify(super::audit_verify::VerifyArgs),
    /// Print the ledger's public verifier key (what `audit verify --key` reads). Needs no token.
    ///
    /// Example: credledger audit key > ledger.vkey
    Key,
    /// Print a signed checkpoint (what `audit verify --checkpoint` reads): the latest, or the one
    /// of a tree size.
    ///
    /// Example: credledger audit checkpoint > checkpoint.txt
    Checkpoint {
        /// The checkpoint of exactly this tree size instead of the latest.
        #[arg(long)]
        tree_size: Option<u64>,
    },
    /// Download a verifiable export: the organization's (owners and admins), or with `--ledger`
    /// the whole ledger (server admin). Written to FILE, or standard output.
    ///
    /// Example: credledger audit export --ledger --out ledger.ndjson
    Export {
        /// The whole ledger instead of one organization.
        #[arg(long)]
        ledger: bool,
        /// Where to write the NDJSON (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The moment: an RFC 3339 time (`2026-11-25T10:00:00Z`) or a log position (`1234`).
    #[arg(long, value_name = "TIME|POSITION")]
    as_of: String,
    /// Which credentials; `service-credentials` needs an owner, `machines` an owner or admin.
    #[arg(long, value_enum, default_value_t = Kind::All)]
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    MachineTokens,
    ServiceCredentials,
    Machines,
    All,
}

/// A kind of credential the inventory shows: its API collection (and whether it pages), its
/// `kind` in the JSON document, and the field that recognises it in the table's PREFIX column.
struct Collection {
    kind: Kind,
    path: &'static str,
    paged: bool,
    label: &'static str,
    prefix: Option<&'static str>,
}

const COLLECTIONS: [Collection; 3] = [
    Collection {
        kind: Kind::MachineTokens,
        path: "machine-tokens",
        paged: true,
        label: "machine_token",
        prefix: Some("tokenPrefix"),
    },
    Collection {
        kind: Kind::ServiceCredentials,
        path: "service-credentials",
        paged: true,
        label: "service_credential",
        prefix: Some("clientId"),
    },
    Collection { kind: Kind::Machines, path: "machines", paged: false, label: "machine", prefix: None },
];

/// Columns of the `audit replay` table.
const COLUMNS: &[&str] = &["kind", "name", "id", "state", "owner", "prefix", "expiresAt"];

pub async fn run(global: &Global, args: AuditArgs) -> CliResult<()> {
    match args.command {
        AuditCommand::Log(log) => super::audit_log::run(global, log).await?,
        AuditCommand::Verify(verify) => super::audit_verify::run(global, verify).await?,
        AuditCommand::Key => {
            let key = Api::with_token(global, "")?.get("/v1/ledger/key").await?;
            print_line(global, &key, "verifierKey")?;
        }
        AuditCommand::Checkpoint { tree_size } => {
            let api = Api::connect(global).await?;
            let checkpoint = match tree_size {
                None => api.get("/v1/ledger/checkpoint").await?,
                Some(size) => {
                    let page = api.get(&format!("/v1/ledger/checkpoints?treeSize={size}&limit=1")).await?;
                    page["items"].get(0).cloned().ok_or_else(|| {
                        CliError::usage(format!(
                            "no checkpoint of tree size {size}: list them with GET /v1/ledger/checkpoints"
                        ))
                    })?
                }
            };
            // The note is a file format of its own: text unless JSON is asked for explicitly.
            if global.output == Some(Format::Json) {
                output::object(global, &checkpoint);
            } else if !global.quiet {
                print!("{}", checkpoint["note"].as_str().unwrap_or_default());
            }
        }
        AuditCommand::Export { ledger, out } => {
            let api = Api::connect(global).await?;
            let path =
                if ledger { "/v1/ledger/export".to_owned() } else { format!("/v1/audit/{}/export", api.org().await?) };
            let written = match &out {
                Some(file) => {
                    let mut file = std::fs::File::create(file)
                        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", file.display())))?;
                    api.download(&path, &mut file).await?
                }
                None => api.download(&path, &mut std::io::stdout().lock()).await?,
            };
            if let Some(file) = &out {
                output::say(global, &format!("{written} bytes written to {}", file.display()));
            }
        }
        AuditCommand::Replay(replay) => {
            let api = Api::connect(global).await?;
            let org = api.org().await?;
            let as_of = query_value(&replay.as_of);
            let mut items = Vec::new();
            let mut rows = Vec::new();
            for collection in COLLECTIONS.iter().filter(|c| replay.kind == Kind::All || replay.kind == c.kind) {
                for mut item in every_item(&api, collection, &org, &as_of).await? {
                    rows.push(json!({
                        "kind": collection.label,
                        "name": item["name"],
                        "id": item["id"],
                        "state": item["state"],
                        "owner": item["owner"],
                        "prefix": collection.prefix.map_or(Value::Null, |field| item[field].clone()),
                        "expiresAt": item["expiresAt"],
                    }));
                    item["kind"] = json!(collection.label);
                    items.push(item);
                }
            }
            output::owners_as_emails(global, &api, &org, &mut rows).await;
            if output::format(global) == Format::Table && !global.quiet {
                output::say(global, &format!("Credential inventory of {org} as of {}", replay.as_of));
                output::list(global, &json!({ "items": rows }), COLUMNS);
            } else {
                output::list(global, &json!({ "orgId": org, "asOf": replay.as_of, "items": items }), COLUMNS);
            }
        }
    }
    Ok(())
}

/// Prints one text field of an answer as a line, even into a pipe or a file (it is a file format
/// of its own); the whole answer only with an explicit `-o json`.
fn print_line(global: &Global, answer: &Value, field: &str) -> CliResult<()> {
    if global.output == Some(Format::Json) {
        output::object(global, answer);
    } else if !global.quiet {
        let text = answer[field].as_str().ok_or_else(|| CliError::server(format!("the answer has no `{field}`")))?;
        println!("{text}");
    }
    Ok(())
}

/// Every item of a collection as of the moment (`as_of` encoded), page after page.
async fn every_item(api: &Api, collection: &Collection, org: &str, as_of: &str) -> CliResult<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/{}/{org}?asOf={as_of}", collection.path);
        if collection.paged {
            path.push_str("&limit=500");
        }
        if let Some(cursor) = &cursor {
            path.push_str("&cursor=");
            path.push_str(cursor);
        }
        let page = api.get(&path).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
}

/// Percent-encodes a query value: a time's `+02:00` offset would otherwise arrive as a space.
pub(crate) fn query_value(input: &str) -> String {
    input
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
