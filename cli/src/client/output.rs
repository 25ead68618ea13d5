//! Printing the API's objects: an aligned table (states coloured only on a terminal), the JSON
//! objects themselves (stable, for scripts), or only their ids (`-q`).

use std::io::IsTerminal as _;

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Color, ColumnConstraint, ContentArrangement, Table, Width};
use serde_json::Value;

use super::{Format, Global};

/// Writes a line to standard output. A closed pipe (`credledger … | head`) ends the output
/// quietly instead of panicking as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The format in effect: the flag, else a table on a terminal and JSON in a pipe.
pub fn format(global: &Global) -> Format {
    global.output.unwrap_or(if std::io::stdout().is_terminal() { Format::Table } else { Format::Json })
}

/// Fields that hold a secret shown once. The table view of an object leaves them out: each
/// command prints its secret on a line of its own, once.
const SECRET_FIELDS: &[&str] = &["token", "clientSecret", "ownerToken", "initialToken", "machineKey"];

/// Prints one object: its fields as `key  value` lines, or the JSON.
pub fn object(global: &Global, value: &Value) {
    if global.quiet {
        out!("{}", value["id"].as_str().unwrap_or_default());
        return;
    }
    match format(global) {
        Format::Json => out!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(NOTHING).set_content_arrangement(ContentArrangement::Dynamic);
            if let Value::Object(map) = value {
                for (key, field) in map.iter().filter(|(key, _)| !SECRET_FIELDS.contains(&key.as_str())) {
                    table.add_row(vec![Cell::new(key), cell(key, field)]);
                }
            }
            out!("{table}");
        }
    }
}

/// Prints a list (`{"items": [...]}` or an array) with the given columns. On a terminal the
/// table fits its width: long cells wrap within their column rather than the line.
pub fn list(global: &Global, value: &Value, columns: &[&str]) {
    let items = value["items"].as_array().or_else(|| value.as_array()).cloned().unwrap_or_default();
    if global.quiet {
        for item in &items {
            out!("{}", item["id"].as_str().unwrap_or_default());
        }
        return;
    }
    match format(global) {
        Format::Json => out!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(NOTHING).set_content_arrangement(ContentArrangement::Dynamic);
            table.set_header(columns.iter().map(|column| Cell::new(header(column))));
            for item in &items {
                table.add_row(columns.iter().map(|column| cell(column, &item[*column])));
            }
            // A narrow terminal may wrap a header between its words, never inside one.
            for (index, column) in columns.iter().enumerate() {
                let longest_word = header(column).split(' ').map(str::len).max().unwrap_or(1) as u16;
                if let Some(column) = table.column_mut(index) {
                    // The boundary counts the cell's padding too.
                    let padding = column.padding_width();
                    column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(longest_word + padding)));
                }
            }
            out!("{table}");
        }
    }
}

/// A column's header: `lastUsedAt` → `LAST USED`, `environmentHint` → `ENVIRONMENT`.
pub fn header(column: &str) -> String {
    match column {
        "environmentHint" => return "ENVIRONMENT".to_owned(),
        "useCount" => return "USES".to_owned(),
        "lastUsedIp" => return "LAST IP".to_owned(),
        "tokenPrefix" => return "PREFIX".to_owned(),
        _ => {}
    }
    let column = column.strip_suffix("At").filter(|rest| !rest.is_empty()).unwrap_or(column);
    let mut words = String::new();
    for (index, character) in column.char_indices() {
        if character.is_uppercase() && index > 0 {
            words.push(' ');
        }
        words.extend(character.to_uppercase());
    }
    words
}

/// An RFC 3339 time to the second (`2027-02-24T00:14:26.374075818Z` → `2027-02-24T00:14:26Z`);
/// anything else as it is.
pub fn to_the_second(text: &str) -> Option<String> {
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(chrono::SubsecRound::trunc_subsecs(time, 0).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Replaces member ids in the items' `owner` field by the members' emails, for a table a person
/// reads (JSON keeps the ids). Members the caller may not list stay ids.
pub async fn owners_as_emails(global: &Global, api: &super::Api, org: &str, items: &mut [Value]) {
    if global.quiet || format(global) != Format::Table || items.iter().all(|item| item["owner"].is_null()) {
        return;
    }
    let Ok(members) = api.get(&format!("/v1/orgs/{org}/members")).await else { return };
    let emails: std::collections::HashMap<&str, &str> = members["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|member| Some((member["id"].as_str()?, member["email"].as_str()?)))
        .collect();
    for item in items {
        if let Some(email) = item["owner"].as_str().and_then(|owner| emails.get(owner)) {
            item["owner"] = Value::String((*email).to_owned());
        }
    }
}

/// [`object`], with the owner's email in place of its member id in a table.
pub async fn object_with_owner(global: &Global, api: &super::Api, org: &str, value: Value) {
    let mut items = [value];
    owners_as_emails(global, api, org, &mut items).await;
    let [value] = items;
    object(global, &value);
}

fn cell(key: &str, value: &Value) -> Cell {
    let text = match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => to_the_second(text).unwrap_or_else(|| text.clone()),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let cell = Cell::new(&text);
    if key != "state" || !colour() {
        return cell;
    }
    match text.as_str() {
        "active" => cell.fg(Color::Green),
        "disabled" | "expired" => cell.fg(Color::Yellow),
        "revoked" => cell.fg(Color::Red),
        _ => cell,
    }
}

/// Colour for a person at a terminal that has not asked for none (`NO_COLOR`).
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// A line for humans (on standard error when the output is JSON, so pipes stay parseable).
pub fn say(global: &Global, line: &str) {
    if global.quiet {
        return;
    }
    match format(global) {
        Format::Table => out!("{line}"),
        Format::Json => eprintln!("{line}"),
    }
}

/// Prints a secret the server shows once, as `Label: value`. With `-q` it goes to standard
/// error, so standard output keeps only ids and the secret is not lost. With `-o json` it is
/// only in the document on standard output: standard error often ends up in CI logs.
pub fn secret(global: &Global, label: &str, secret: &Value) {
    secret_line(global, &format!("{label}: {}", secret.as_str().unwrap_or_default()));
}

/// A line that carries a secret (`CREDLEDGER_CLIENT_SECRET=…`), printed like [`secret`].
pub fn secret_line(global: &Global, line: &str) {
    if global.quiet {
        eprintln!("{line}");
    } else if format(global) == Format::Table {
        out!("{line}");
    }
}
