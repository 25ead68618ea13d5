//! `credledger token …`: machine tokens.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Api, CliError, CliResult, Global, output};

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

/// The scopes a credential or access token can carry.
pub const SCOPES: [&str; 2] = ["credledger-api/read", "credledger-api/write"];

/// The states a credential can be in (`--state`).
const STATES: [&str; 4] = ["active", "disabled", "expired", "revoked"];

/// Columns of `token list`.
const COLUMNS: &[&str] = &["id", "name", "environmentHint", "state", "owner", "expiresAt", "lastUsedAt", "flagged"];

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a machine token; its value is shown once.
    ///
    /// Example: credledger token create --name "GitHub Actions prod" --env prod --expires 90d
    Create {
        /// What the token is for, e.g. the pipeline that uses it.
        #[arg(long)]
        name: String,
        /// The environment hint embedded in the token's value (`[a-z0-9-]{1,16}`, e.g. `prod`).
        #[arg(long = "env", value_name = "HINT")]
        env: String,
        /// When it expires: a number of days with its unit (`90d`), or `never`.
        #[arg(long, default_value = "never", value_name = "DAYS|never")]
        expires: String,
        /// Scope the token to a project (id).
        #[arg(long, value_name = "PROJECT_ID")]
        project: Option<String>,
        /// Comma-separated scopes [default: read and write].
        #[arg(long, value_delimiter = ',', value_parser = SCOPES)]
        scopes: Vec<String>,
        #[command(flatten)]
        conditions: Conditions,
    },
    /// List machine tokens.
    ///
    /// Example: credledger token list --state active --expiring-within 30d
    List {
        /// Only tokens in this state.
        #[arg(long, value_parser = STATES)]
        state: Option<String>,
        /// Only tokens with this environment hint.
        #[arg(long = "env", value_name = "HINT")]
        env: Option<String>,
        /// Only tokens scoped to this project (id).
        #[arg(long, value_name = "PROJECT_ID")]
        project: Option<String>,
        /// Only tokens owned by this member (id).
        #[arg(long, value_name = "MEMBER_ID")]
        owner: Option<String>,
        /// Only tokens flagged for attention (their owner was removed).
        #[arg(long)]
        flagged: bool,
        /// Only tokens expiring within this duration, e.g. `30d` or `12h`.
        #[arg(long, value_name = "DURATION")]
        expiring_within: Option<String>,
        /// Only tokens not used for this duration (never-used ones included), e.g. `90d`.
        #[arg(long, value_name = "DURATION")]
        unused_for: Option<String>,
    },
    /// Show one token with its last use.
    ///
    /// Example: credledger token get TOKEN_ID
    Get {
        /// The token's id, or its name where no other token that is not revoked has it.
        id: String,
    },
    /// Change a token's name, scopes, conditions or expiry.
    ///
    /// Example: credledger token update TOKEN_ID --ip-allow 140.82.112.0/20
    Update {
        /// The token's id, or its name where no other token that is not revoked has it.
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new expiry, counted from now: days with their unit (`90d`), or `never`.
        #[arg(long, value_name = "DAYS|never")]
        expires: Option<String>,
        /// The new comma-separated scopes (replacing the current ones).
        #[arg(long, value_delimiter = ',', value_parser = SCOPES)]
        scopes: Vec<String>,
        #[command(flatten)]
        conditions: Conditions,
        /// Remove every condition (before applying the condition flags given).
        #[arg(long)]
        clear_conditions: bool,
    },
    /// Suspend a token. Example: credledger token disable TOKEN_ID
    Disable {
        /// The token's id, or its name where no other token that is not revoked has it.
        id: String,
    },
    /// Re-enable a disabled token. Example: credledger token enable TOKEN_ID
    Enable {
        /// The token's id, or its name where no other token that is not revoked has it.
        id: String,
    },
    /// Revoke a token at once and for good. Example: credledger token revoke TOKEN_ID
    Revoke {
        /// The token's id, or its name where no other token that is not revoked has it.
        id: String,
    },
    /// Replace a token's value; the old one stops working.
    ///
    /// Example: credledger token roll TOKEN_ID --grace 10m
    Roll {
        /// The token's id, or its name where no other token that is not revoked has it.
        id: String,
        /// Keep the old value working this long (e.g. `10m`, at most `24h`).
        #[arg(long)]
        grace: Option<String>,
    },
    /// Give a token to another member.
    ///
    /// Example: credledger token transfer TOKEN_ID --to user@example.com
    Transfer {
        /// The token's id, or its name where no other token that is not revoked has it.
        id: String,
        /// The new owner: a member id or email.
        #[arg(long)]
        to: String,
    },
}

/// Conditional access flags, shared by create and update.
#[derive(Debug, Args)]
pub struct Conditions {
    /// Allowed client networks (CIDR); repeatable.
    #[arg(long = "ip-allow", value_name = "CIDR")]
    pub ip_allow: Vec<String>,
    /// Allowed times in UTC, e.g. 'mon-fri 06:00-22:00'; repeatable.
    #[arg(long = "time-window", value_name = "DAYS HH:MM-HH:MM")]
    pub time_windows: Vec<String>,
    /// A glob the User-Agent must match, e.g. 'github-actions/*'.
    #[arg(long = "user-agent", value_name = "GLOB")]
    pub user_agent: Option<String>,
}

impl Conditions {
    /// Whether no conditional access flag was given.
    pub fn is_empty(&self) -> bool {
        self.ip_allow.is_empty() && self.time_windows.is_empty() && self.user_agent.is_none()
    }

    /// The conditions of `current` (the API's object) with the given flags replacing their
    /// parts: updating the user agent keeps the IP allowlist and the time windows.
    pub fn merged_into(&self, current: &Value) -> CliResult<Value> {
        let mut merged = current.clone();
        let given = self.to_json()?;
        if !self.ip_allow.is_empty() {
            merged["ipAllowlist"] = given["ipAllowlist"].clone();
        }
        if !self.time_windows.is_empty() {
            merged["timeWindows"] = given["timeWindows"].clone();
        }
        if self.user_agent.is_some() {
            merged["userAgentPattern"] = given["userAgentPattern"].clone();
        }
        Ok(merged)
    }

    /// The API's `conditions` object.
    pub fn to_json(&self) -> CliResult<Value> {
        let windows = self.time_windows.iter().map(|spec| window(spec)).collect::<CliResult<Vec<_>>>()?;
        Ok(json!({ "ipAllowlist": self.ip_allow, "timeWindows": windows, "userAgentPattern": self.user_agent }))
    }
}

/// `mon-fri 06:00-22:00` → `{"days": ["mon-fri"], "startUtc": "06:00", "endUtc": "22:00"}`; the
/// server validates the parts.
fn window(spec: &str) -> CliResult<Value> {
    let invalid = || CliError::usage(format!("--time-window `{spec}`: write it as 'mon-fri 06:00-22:00'"));
    let (days, span) = spec.trim().split_once(char::is_whitespace).ok_or_else(invalid)?;
    let (start, end) = span.trim().split_once('-').ok_or_else(invalid)?;
    Ok(json!({ "days": days.split(',').collect::<Vec<_>>(), "startUtc": start, "endUtc": end }))
}

/// `90d` → 90, `never` → None. A bare number is refused rather than guessed at: `90` could be
/// minutes to one reader and days to another.
pub fn expiry_days(flag: &str, input: &str) -> CliResult<Option<u32>> {
    if input == "never" {
        return Ok(None);
    }
    input.strip_suffix('d').and_then(|days| days.parse::<u32>().ok()).map(Some).ok_or_else(|| {
        CliError::usage(format!("--{flag} `{input}`: use a number of days with its unit, such as 90d, or never"))
    })
}

/// `10m`, `2h`, `90s` → seconds.
pub fn seconds(flag: &str, input: &str) -> CliResult<u32> {
    let invalid = || CliError::usage(format!("--{flag} `{input}`: use a duration such as 90s, 10m or 2h"));
    let (number, unit) = input.split_at(input.len().saturating_sub(1));
    let number: u32 = number.parse().map_err(|_| invalid())?;
    match unit {
        "s" => Ok(number),
        "m" => number.checked_mul(60).ok_or_else(invalid),
        "h" => number.checked_mul(3600).ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

pub async fn run(global: &Global, args: TokenArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let org = api.org().await?;
    let base = format!("/v1/machine-tokens/{org}");
    match args.command {
        TokenCommand::Create { name, env, expires, project, scopes, conditions } => {
            let mut body =
                json!({ "name": name, "environmentHint": env, "expiresInDays": expiry_days("expires", &expires)? });
            if let Some(project) = project {
                body["projectId"] = json!(project);
            }
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            if !conditions.is_empty() {
                body["conditions"] = conditions.to_json()?;
            }
            let created = api.post(&base, Some(body)).await?;
            output::say(global, "✓ Token created");
            output::secret(global, "Token", &created["token"]);
            output::say(global, "⚠ Store it now: it cannot be shown again.");
            output::object(global, &created);
        }
        TokenCommand::List { state, env, project, owner, flagged, expiring_within, unused_for } => {
            let mut query = Vec::new();
            for (key, value) in [
                ("state", state),
                ("environmentHint", env),
                ("projectId", project),
                ("owner", owner),
                ("expiringWithin", expiring_within),
                ("unusedFor", unused_for),
            ] {
                if let Some(value) = value {
                    query.push(format!("{key}={value}"));
                }
            }
            if flagged {
                query.push("flagged=true".to_owned());
            }
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut page_query = query.clone();
                page_query.push("limit=500".to_owned());
                if let Some(cursor) = &cursor {
                    page_query.push(format!("cursor={cursor}"));
                }
                let page = api.get(&format!("{base}?{}", page_query.join("&"))).await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["nextCursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            output::owners_as_emails(global, &api, &org, &mut items).await;
            output::list(global, &json!({ "items": items }), COLUMNS);
        }
        TokenCommand::Get { id } => {
            let id = api.resolve(&base, "name", &id, "token").await?;
            output::object_with_owner(global, &api, &org, api.get(&format!("{base}/{id}")).await?).await;
        }
        TokenCommand::Update { id, name, expires, scopes, conditions, clear_conditions } => {
            let id = api.resolve(&base, "name", &id, "token").await?;
            let mut body = json!({});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(expires) = expires {
                body["expiresInDays"] = json!(expiry_days("expires", &expires)?);
            }
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            if clear_conditions {
                body["conditions"] = conditions.to_json()?;
            } else if !conditions.is_empty() {
                // The server replaces conditions whole: start from the token's current ones.
                let current = api.get(&format!("{base}/{id}")).await?;
                body["conditions"] = conditions.merged_into(&current["conditions"])?;
            }
            let updated = api.patch(&format!("{base}/{id}"), body).await?;
            output::say(global, "✓ Token updated");
            output::object(global, &updated);
        }
        TokenCommand::Disable { id } => {
            let id = api.resolve(&base, "name", &id, "token").await?;
            let token = api.post(&format!("{base}/{id}/disable"), None).await?;
            output::say(global, "✓ Token disabled");
            output::object(global, &token);
        }
        TokenCommand::Enable { id } => {
            let id = api.resolve(&base, "name", &id, "token").await?;
            let token = api.post(&format!("{base}/{id}/enable"), None).await?;
            output::say(global, "✓ Token enabled");
            output::object(global, &token);
        }
        TokenCommand::Revoke { id } => {
            let id = api.resolve(&base, "name", &id, "token").await?;
            let token = api.delete(&format!("{base}/{id}")).await?;
            output::say(global, "✓ Token revoked");
            output::object(global, &token);
        }
        TokenCommand::Roll { id, grace } => {
            let id = api.resolve(&base, "name", &id, "token").await?;
            let body =
                grace.map(|grace| seconds("grace", &grace)).transpose()?.map(|s| json!({ "gracePeriodSeconds": s }));
            let rolled = api.post(&format!("{base}/{id}/roll"), body).await?;
            output::say(global, "✓ Token rolled successfully");
            output::secret(global, "New token", &rolled["token"]);
            match rolled["previousValueValidUntil"].as_str() {
                Some(until) => {
                    output::say(global, &format!("⚠ Old token stops working at {until}. Update your CI/CD secrets."));
                }
                None => output::say(global, "⚠ Old token is now revoked. Update your CI/CD secrets."),
            }
            output::object(global, &rolled);
        }
        TokenCommand::Transfer { id, to } => {
            let id = api.resolve(&base, "name", &id, "token").await?;
            let token = api.post(&format!("{base}/{id}/transfer"), Some(json!({ "to": to }))).await?;
            output::say(global, &format!("✓ Token transferred to {to}"));
            output::object(global, &token);
        }
    }
    Ok(())
}
