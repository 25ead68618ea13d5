//! `credledger audit log`: the organization's audit trail (the API's `GET /v1/audit/{orgId}`),
//! the latest entries oldest first, and with `--follow` every entry recorded afterwards as it
//! arrives, like `tail -f`.

use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::audit::query_value;
use crate::client::{Api, CliResult, Format, Global, output};

/// Print the audit trail: the latest entries, oldest first; with `--follow`, then every new entry
/// as it is recorded. Owners and admins, with a personal access token.
///
/// With `-o json` each entry is one JSON object per line (NDJSON), so that a stream can be piped
/// into `jq` as it arrives.
///
/// Examples:
///   credledger audit log --type MachineTokenRevoked --since 2026-11-01T00:00:00Z
///   credledger audit log --outcome denied --follow
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only events of this credential (its id).
    #[arg(long, value_name = "CREDENTIAL_ID")]
    credential: Option<String>,
    /// Only events caused by this actor: a member id, a credential id, or a system actor's name.
    #[arg(long, value_name = "ID")]
    actor: Option<String>,
    /// Only events of this type, e.g. `MachineTokenRevoked` or `CredentialUsed`.
    #[arg(long = "type", value_name = "EVENT_TYPE")]
    event_type: Option<String>,
    /// Only events recorded at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events recorded before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only events whose request came from this network (a CIDR or one address).
    #[arg(long, value_name = "CIDR")]
    ip: Option<String>,
    /// Only accepted requests and actions, or only refused ones.
    #[arg(long, value_parser = ["success", "denied"])]
    outcome: Option<String>,
    /// How many of the latest entries to print.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,
    /// Keep running, printing each new entry as it is recorded, until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// With `--follow`: how often to ask the server for new entries, in seconds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600), requires = "follow")]
    interval: u64,
}

/// The largest page the API serves.
const PAGE: u32 = 500;

pub async fn run(global: &Global, args: LogArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let org = api.org().await?;
    let mut filters = Vec::new();
    for (key, value) in [
        ("credentialId", &args.credential),
        ("actor", &args.actor),
        ("type", &args.event_type),
        ("since", &args.since),
        ("until", &args.until),
        ("ip", &args.ip),
        ("outcome", &args.outcome),
    ] {
        if let Some(value) = value {
            filters.push(format!("{key}={}", query_value(value)));
        }
    }
    let trail = Trail { api: &api, base: format!("/v1/audit/{org}"), filters };

    let latest = trail.newest(args.limit, 0).await?;
    let mut last_seen = latest.first().and_then(position).unwrap_or(0);
    if !args.follow && latest.is_empty() && output::format(global) == Format::Table && !global.quiet {
        eprintln!("No entries.");
    }
    print(global, latest.iter().rev());
    if !args.follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
        let newer = trail.newest(u32::MAX, last_seen).await?;
        if let Some(newest) = newer.first().and_then(position) {
            last_seen = newest;
        }
        print(global, newer.iter().rev());
    }
}

/// One filtered view of the organization's trail.
struct Trail<'a> {
    api: &'a Api,
    base: String,
    filters: Vec<String>,
}

impl Trail<'_> {
    /// Up to `limit` entries after position `after`, newest first (the API's order).
    async fn newest(&self, limit: u32, after: u64) -> CliResult<Vec<Value>> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let wanted = limit.saturating_sub(entries.len() as u32).min(PAGE);
            let mut query = self.filters.clone();
            query.push(format!("limit={wanted}"));
            if let Some(cursor) = &cursor {
                query.push(format!("cursor={}", query_value(cursor)));
            }
            let page = self.api.get(&format!("{}?{}", self.base, query.join("&"))).await?;
            for entry in page["items"].as_array().into_iter().flatten() {
                if position(entry).unwrap_or(0) <= after || entries.len() as u32 >= limit {
                    return Ok(entries);
                }
                entries.push(entry.clone());
            }
            match page["nextCursor"].as_str() {
                Some(next) if (entries.len() as u32) < limit => cursor = Some(next.to_owned()),
                _ => return Ok(entries),
            }
        }
    }
}

fn position(entry: &Value) -> Option<u64> {
    entry["position"].as_u64()
}

/// Prints entries: a line per entry for people, a JSON object per line for programs, the
/// positions alone with `-q`. Flushed at once, so that a follower sees each entry as it comes.
fn print<'a>(global: &Global, entries: impl Iterator<Item = &'a Value>) {
    let mut stdout = std::io::stdout().lock();
    for entry in entries {
        let line = if global.quiet {
            entry["position"].to_string()
        } else if output::format(global) == Format::Json {
            entry.to_string()
        } else {
            human(entry)
        };
        // A closed pipe (`… | head`) ends the output quietly.
        if writeln!(stdout, "{line}").is_err() {
            return;
        }
    }
    let _ = stdout.flush();
}

/// `2026-11-26T00:14:27Z  #42  success  MachineTokenCreated  member 0190…  summary`
fn human(entry: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let at = text(&entry["at"]);
    let at = output::to_the_second(&at).unwrap_or(at);
    format!(
        "{at}  #{}  {:<7}  {}  {} {}  {}",
        entry["position"],
        text(&entry["outcome"]),
        text(&entry["type"]),
        text(&entry["actor"]["kind"]),
        text(&entry["actor"]["id"]),
        text(&entry["summary"]),
    )
}
