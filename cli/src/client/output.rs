//! Printing the API's objects: an aligned table (states coloured only on a terminal), the JSON
//! objects themselves (stable, for scripts), or only their ids (`-q`).

use std::io::IsTerminal as _;

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Color, ContentArrangement, Table};
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
            table.load_preset(NOTHING);
            if let Value::Object(map) = value {
                for (key, field) in map {
                    table.add_row(vec![Cell::new(key), cell(key, field)]);
                }
            }
            out!("{table}");
        }
    }
}

/// Prints a list (`{"items": [...]}` or an array) with the given columns.
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
            table.load_preset(NOTHING).set_content_arrangement(ContentArrangement::Disabled);
            table.set_header(columns.iter().map(|column| Cell::new(column.to_uppercase())));
            for item in &items {
                table.add_row(columns.iter().map(|column| cell(column, &item[*column])));
            }
            out!("{table}");
        }
    }
}

fn cell(key: &str, value: &Value) -> Cell {
    let text = match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let cell = Cell::new(&text);
    if key != "state" || !std::io::stdout().is_terminal() {
        return cell;
    }
    match text.as_str() {
        "active" => cell.fg(Color::Green),
        "disabled" | "expired" => cell.fg(Color::Yellow),
        "revoked" => cell.fg(Color::Red),
        _ => cell,
    }
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
