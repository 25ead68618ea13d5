//! The organization's machines (identities), members and projects, read through the API's own
//! list handlers; a machine can be revoked here. Keys are made on the machine's side, so rotating
//! one is a command to run there, which the page spells out.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde_json::Value;

use super::cli_tokens::emails;
use super::layout::{self, Section, ago_text, csrf_field, page, respond, state, text};
use super::session::Signed;
use crate::AppState;
use crate::as_of::AsOfQuery;
use crate::extract::Query;
use crate::routes::{machines, orgs, projects};

fn items<T: serde::Serialize>(page: &T) -> Vec<Value> {
    serde_json::to_value(page).ok().and_then(|v| v["items"].as_array().cloned()).unwrap_or_default()
}

pub async fn machines(State(app): State<AppState>, signed: Signed) -> Response {
    let answer = machines::list(
        State(app.clone()),
        signed.caller.clone(),
        Path(signed.org.to_string()),
        Query(AsOfQuery::default()),
    )
    .await;
    let list = match answer {
        Ok(page) => items(&page.0),
        Err(problem) => return layout::problem(&signed, Section::Machines, &problem),
    };
    let now = app.clock.now();
    let owners = emails(&app, signed.org);
    let body = html! {
        p.lead {
            "Machine identities hold an Ed25519 key made on the machine; the server keeps only the public key. "
            "Create one with " code { "credledger machine create" } "; rotate its key on the machine with "
            code { "credledger machine rotate-key ID" } ", which makes the new key there and sends only its public half."
        }
        @if list.is_empty() { p.empty { "No machines yet." } } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Project / environment" } th scope="col" { "State" }
                    th scope="col" { "Owner" } th scope="col" { "Key rotated" } th scope="col" { "Last used" } th scope="col" { "Actions" }
                } }
                tbody { @for item in &list {
                    tr {
                        td data-label="Name" { a href={ "/machines/" (text(item, "id")) } { (text(item, "name")) } }
                        td data-label="Project / environment" { code { (text(item, "environment")) } }
                        td data-label="State" { (state(text(item, "state"))) @if item["flagged"].is_object() { " " span.state.state-flagged { "flagged" } } }
                        td data-label="Owner" { (owners.get(text(item, "owner")).map_or(text(item, "owner"), String::as_str)) }
                        td data-label="Key rotated" { (ago_text(now, &item["keyRotatedAt"])) }
                        td data-label="Last used" {
                            (ago_text(now, &item["lastUsedAt"]))
                            @if item["lastUsedAt"].is_string() { br; span.muted { (text(item, "lastUsedIp")) " · " (text(item, "lastUsedUserAgent")) } }
                        }
                        td data-label="Actions" {
                            @if text(item, "state") != "revoked" {
                                form method="post" action={ "/machines/" (text(item, "id")) "/revoke" }
                                    data-confirm={ "Revoke the machine " (text(item, "name")) "? Its access tokens fail on their next request." } {
                                    (csrf_field(&signed))
                                    button.danger type="submit" aria-label={ "Revoke " (text(item, "name")) } { "Revoke" }
                                }
                            }
                        }
                    }
                } }
            } }
        }
    };
    respond(StatusCode::OK, page(&signed, Section::Machines, "Machines", &body))
}

pub async fn machine(State(app): State<AppState>, signed: Signed, Path(id): Path<String>) -> Response {
    let id: String = id.chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').collect();
    let path = Path((signed.org.to_string(), id.clone()));
    let item = match machines::show(State(app.clone()), signed.caller.clone(), path, Query(AsOfQuery::default())).await
    {
        Ok(machine) => serde_json::to_value(machine.0).unwrap_or_default(),
        Err(problem) => return layout::problem(&signed, Section::Machines, &problem),
    };
    let timeline = id
        .parse()
        .ok()
        .and_then(|credential| app.projections.credential_timeline(signed.org, credential).ok())
        .unwrap_or_default();
    let now = app.clock.now();
    let owners = emails(&app, signed.org);
    let name = text(&item, "name");
    let body = html! {
        dl.facts {
            dt { "State" } dd { (state(text(&item, "state"))) }
            dt { "Environment" } dd { code { (text(&item, "environment")) } }
            dt { "Owner" } dd { (owners.get(text(&item, "owner")).map_or(text(&item, "owner"), String::as_str)) }
            dt { "Public key" } dd { code.id { (text(&item, "publicKey")) } }
            dt { "Created" } dd { (ago_text(now, &item["createdAt"])) }
            dt { "Key rotated" } dd { (ago_text(now, &item["keyRotatedAt"])) }
            dt { "Last used" } dd {
                (ago_text(now, &item["lastUsedAt"]))
                @if item["lastUsedAt"].is_string() { " from " code { (text(&item, "lastUsedIp")) } " · " (text(&item, "lastUsedUserAgent")) }
            }
        }
        h2 { "Uses and denials, last 14 days" }
        (super::machine_tokens::chart(&timeline, now.date_naive()))
        h2 { "Actions" }
        @if text(&item, "state") == "revoked" { p.muted { "Revoked: nothing more can be done with it." } } @else {
            p {
                "To rotate its key, run this where the machine's key is kept: it makes the new key pair there and sends "
                "only the public key; then put the new " code { "CREDLEDGER_MACHINE_KEY" } " line it prints in the machine's CI/CD secrets."
            }
            pre.note { "credledger machine rotate-key " (text(&item, "id")) }
            form method="post" action={ "/machines/" (text(&item, "id")) "/revoke" }
                data-confirm={ "Revoke the machine " (name) "? Its access tokens fail on their next request." } {
                (csrf_field(&signed))
                button.danger type="submit" { "Revoke" }
            }
        }
        h2 { "Recent activity" }
        (super::machine_tokens::recent(&timeline, now))
    };
    respond(StatusCode::OK, page(&signed, Section::Machines, &format!("Machine {name}"), &body))
}

pub async fn revoke_machine(State(app): State<AppState>, signed: Signed, Path(id): Path<String>) -> Response {
    let id: String = id.chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').collect();
    match machines::revoke(State(app), signed.caller.clone(), Path((signed.org.to_string(), id))).await {
        Ok(_) => Redirect::to("/machines").into_response(),
        Err(problem) => layout::problem(&signed, Section::Machines, &problem),
    }
}

pub async fn members(State(app): State<AppState>, signed: Signed) -> Response {
    let answer = orgs::list_members(
        State(app.clone()),
        signed.caller.clone(),
        Path(signed.org.to_string()),
        Query(AsOfQuery::default()),
    )
    .await;
    let list = match answer {
        Ok(page) => items(&page.0),
        Err(problem) => return layout::problem(&signed, Section::Members, &problem),
    };
    let body = html! {
        p.lead { "Add, change and remove members with " code { "credledger member add|set-role|remove" } ". Removing a member revokes its personal access tokens and flags the credentials it owns." }
        div.table-wrap { table {
            thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "ID" } } }
            tbody { @for item in &list {
                tr {
                    td data-label="Email" { (text(item, "email")) }
                    td data-label="Role" { (text(item, "role")) }
                    td data-label="State" { @if item["removed"].as_bool() == Some(true) { (state("revoked")) " removed" } @else { (state("active")) } }
                    td data-label="ID" { code.id { (text(item, "id")) } }
                }
            } }
        } }
    };
    respond(StatusCode::OK, page(&signed, Section::Members, "Members", &body))
}

pub async fn projects(State(app): State<AppState>, signed: Signed) -> Response {
    let answer = projects::list(
        State(app.clone()),
        signed.caller.clone(),
        Path(signed.org.to_string()),
        Query(AsOfQuery::default()),
    )
    .await;
    let list = match answer {
        Ok(page) => items(&page.0),
        Err(problem) => return layout::problem(&signed, Section::Projects, &problem),
    };
    let now = app.clock.now();
    let body = html! {
        p.lead { "Create projects and environments with " code { "credledger project create|add-env" } "; open an environment for its secrets." }
        @if list.is_empty() { p.empty { "No projects yet." } } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Project" } th scope="col" { "Environments" } th scope="col" { "Created" } th scope="col" { "ID" } } }
                tbody { @for item in &list {
                    tr {
                        td data-label="Project" { strong { (text(item, "name")) } }
                        td data-label="Environments" { @for env in item["environments"].as_array().into_iter().flatten() {
                            a href={ "/secrets/" (text(item, "name")) "/" (env.as_str().unwrap_or_default()) } aria-label={ "Secrets of " (text(item, "name")) " " (env.as_str().unwrap_or_default()) } {
                                code { (env.as_str().unwrap_or_default()) }
                            } " "
                        } }
                        td data-label="Created" { (ago_text(now, &item["createdAt"])) }
                        td data-label="ID" { code.id { (text(item, "id")) } }
                    }
                } }
            } }
        }
    };
    respond(StatusCode::OK, page(&signed, Section::Projects, "Projects and environments", &body))
}
