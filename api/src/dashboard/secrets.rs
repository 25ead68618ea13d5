//! An environment's secrets: its versions (who changed which names, when), who read which
//! version, and the values behind a click. Revealing them is a read like any other — the API's
//! own read handler records it (SecretsRead) before the values are shown, and only for members
//! allowed to read — and the answer is never cached.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{self, Section, ago_text, csrf_field, page, respond, text};
use super::session::Signed;
use crate::AppState;
use crate::extract::Query;
use crate::routes::secrets;

fn path(signed: &Signed, project: &str, environment: &str) -> Path<(String, String, String)> {
    Path((signed.org.to_string(), project.to_owned(), environment.to_owned()))
}

/// The environment's history, and its values when `revealed` holds them.
async fn render(
    app: &AppState,
    signed: &Signed,
    project: &str,
    environment: &str,
    revealed: Option<&Value>,
) -> Response {
    let versions =
        match secrets::versions(State(app.clone()), signed.caller.clone(), path(signed, project, environment)).await {
            Ok(versions) => serde_json::to_value(versions.0).unwrap_or_default(),
            Err(problem) => return layout::problem(signed, Section::Projects, &problem),
        };
    let reads =
        match secrets::reads(State(app.clone()), signed.caller.clone(), path(signed, project, environment)).await {
            Ok(reads) => serde_json::to_value(reads.0).unwrap_or_default(),
            Err(problem) => return layout::problem(signed, Section::Projects, &problem),
        };
    let now = app.clock.now();
    let emails = super::cli_tokens::emails(app, signed.org);
    let author = |author: &Value| -> String {
        let id = text(author, "id");
        match emails.get(id) {
            Some(email) if text(author, "kind") == "member" => email.clone(),
            _ => format!("{} {id}", text(author, "kind")),
        }
    };
    let versions = versions["items"].as_array().cloned().unwrap_or_default();
    let reads = reads["items"].as_array().cloned().unwrap_or_default();
    let names = |value: &Value| -> String {
        value.as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
    };
    let body: Markup = html! {
        p.lead {
            "Set secrets with " code { "credledger secrets set NAME=VALUE --project " (project) " --env " (environment) } "; "
            "pipelines read them with " code { "credledger run --project " (project) " --env " (environment) " -- ./deploy.sh" } "."
        }
        h2 { "Values" }
        @if let Some(revealed) = revealed {
            p.muted { "Version " (revealed["version"]) ". This read is recorded in the ledger." }
            div.table-wrap { table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                tbody { @for (name, value) in revealed["secrets"].as_object().into_iter().flatten() {
                    tr { td data-label="Name" { code { (name) } } td data-label="Value" { code.secret { (value.as_str().unwrap_or_default()) } } }
                } }
            } }
        } @else {
            form method="post" action={ "/secrets/" (project) "/" (environment) "/reveal" } {
                (csrf_field(signed))
                button type="submit" { "Reveal values" }
                " " span.muted { "The read is recorded in the ledger, with your name." }
            }
        }
        h2 { "Versions" }
        @if versions.is_empty() { p.empty { "No secrets yet." } } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Version" } th scope="col" { "When" } th scope="col" { "By" } th scope="col" { "Changed" } th scope="col" { "Removed" } th scope="col" { "Message" } } }
                tbody { @for version in &versions {
                    tr {
                        td data-label="Version" { (version["version"]) }
                        td data-label="When" { (ago_text(now, &version["at"])) }
                        td data-label="By" { (author(&version["author"])) }
                        td data-label="Changed" { (names(&version["changed"])) }
                        td data-label="Removed" { (names(&version["removed"])) }
                        td data-label="Message" { (text(version, "message")) }
                    }
                } }
            } }
        }
        h2 { "Reads" }
        @if reads.is_empty() { p.empty { "Nobody has read these secrets." } } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Credential" } th scope="col" { "Version" } th scope="col" { "Names" } th scope="col" { "From" } } }
                tbody { @for read in &reads {
                    tr {
                        td data-label="When" { (ago_text(now, &read["at"])) }
                        td data-label="Credential" { (text(read, "kind")) " " code.id { (text(read, "credentialId")) } }
                        td data-label="Version" { (read["version"]) }
                        td data-label="Names" { (names(&read["names"])) }
                        td data-label="From" { code { (text(read, "ip")) } " · " (text(read, "userAgent")) }
                    }
                } }
            } }
        }
    };
    respond(StatusCode::OK, page(signed, Section::Projects, &format!("Secrets of {project} / {environment}"), &body))
}

pub async fn show(
    State(app): State<AppState>,
    signed: Signed,
    Path((project, environment)): Path<(String, String)>,
) -> Response {
    render(&app, &signed, &project, &environment, None).await
}

/// Reveals the latest values: the API's read, recorded before they are shown.
pub async fn reveal(
    State(app): State<AppState>,
    signed: Signed,
    Path((project, environment)): Path<(String, String)>,
) -> Response {
    let read = secrets::read(
        State(app.clone()),
        signed.caller.clone(),
        path(&signed, &project, &environment),
        Query(secrets::ReadQuery::default()),
    )
    .await;
    match read {
        Ok(values) => {
            let values = serde_json::to_value(values.0).unwrap_or_default();
            render(&app, &signed, &project, &environment, Some(&values)).await
        }
        Err(problem) => layout::problem(&signed, Section::Projects, &problem),
    }
}
