//! Settings → CLI Tokens: the organization's service credentials (OAuth2 clients), owners only as
//! in the API. A new or rotated client secret is shown in the answer to the post that made it,
//! once: that answer is never cached, the form that asked for it is answered once, and the
//! secret is kept nowhere.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::Fields;
use super::layout::{self, Section, ago_text, csrf_field, page, respond, secret_box, state, text};
use super::session::{Signed, random_value};
use crate::AppState;
use crate::extract::{Body, OptionalBody, Query};
use crate::problem::Problem;
use crate::routes::service_credentials::{
    self as api, CreateServiceCredentialRequest, ListQuery, RotateRequest, TransferServiceCredentialRequest,
};

const SECTION: Section = Section::CliTokens;
const SCOPES: [&str; 2] = ["credledger-api/read", "credledger-api/write"];

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Member ids to email addresses, for owner columns.
pub fn emails(app: &AppState, org: credledger_domain::OrgId) -> HashMap<String, String> {
    app.projections
        .members(org)
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            let label = if row.removed { format!("{} (removed)", row.email) } else { row.email };
            (row.member_id, label)
        })
        .collect()
}

pub async fn list(State(app): State<AppState>, signed: Signed) -> Response {
    let answer = api::list(
        State(app.clone()),
        signed.caller.clone(),
        Path(signed.org.to_string()),
        Query(ListQuery { limit: Some(500), ..ListQuery::default() }),
    )
    .await;
    let page_of = match answer {
        Ok(page) => json(&page.0),
        Err(problem) => return layout::problem(&signed, SECTION, &problem),
    };
    let now = app.clock.now();
    let owners = emails(&app, signed.org);
    let items = page_of["items"].as_array().cloned().unwrap_or_default();
    let body = html! {
        p.lead {
            "CLI tokens are OAuth2 client credentials for pipelines and scripts: "
            code { "POST /oauth2/token" } " with " code { "grant_type=client_credentials" } "."
        }
        p { a.button.primary href="/settings/cli-tokens/new" { "New CLI token" } }
        @if items.is_empty() {
            p.empty { "No CLI tokens yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Client ID" } th scope="col" { "Scopes" }
                        th scope="col" { "State" } th scope="col" { "Created" } th scope="col" { "Last used" }
                        th scope="col" { "Owner" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for item in &items { (row(&signed, item, &owners, now)) }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, page(&signed, SECTION, "Settings → CLI Tokens", &body))
}

fn row(signed: &Signed, item: &Value, owners: &HashMap<String, String>, now: chrono::DateTime<chrono::Utc>) -> Markup {
    let id = text(item, "id");
    let live = text(item, "state") != "revoked";
    let owner = owners.get(text(item, "owner")).map_or(text(item, "owner"), String::as_str);
    let form_id = random_value().unwrap_or_default();
    html! {
        tr data-client-id=(text(item, "clientId")) {
            td data-label="Name" { strong { (text(item, "name")) } }
            td data-label="Client ID" { code { (text(item, "clientId")) } }
            td data-label="Scopes" {
                @for scope in item["scopes"].as_array().into_iter().flatten() { span.scope { (scope.as_str().unwrap_or_default()) } " " }
            }
            td data-label="State" { (state(text(item, "state"))) }
            td data-label="Created" { (ago_text(now, &item["createdAt"])) }
            td data-label="Last used" class="last-used" {
                (ago_text(now, &item["lastUsedAt"]))
                @if item["lastUsedAt"].is_string() {
                    br; span.muted { (text(item, "lastUsedIp")) " · " (text(item, "lastUsedUserAgent")) }
                }
            }
            td data-label="Owner" {
                (owner)
                @if item["flagged"].is_object() { " " span.state.state-flagged title="Its owner was removed: transfer or revoke it" { "flagged" } }
            }
            td data-label="Actions" {
                @if live {
                    div.actions {
                        form method="post" action={ "/settings/cli-tokens/" (id) "/revoke" }
                            data-confirm={ "Revoke " (text(item, "name")) "? Its secret and access tokens stop working at once." } {
                            (csrf_field(signed))
                            button.danger type="submit" aria-label={ "Revoke " (text(item, "name")) } { "Revoke" }
                        }
                        form method="post" action={ "/settings/cli-tokens/" (id) "/rotate" }
                            data-confirm={ "Rotate the secret of " (text(item, "name")) "? The current secret stops working at once." } {
                            (csrf_field(signed))
                            input type="hidden" name="form" value=(form_id);
                            button type="submit" aria-label={ "Rotate " (text(item, "name")) } { "Rotate" }
                        }
                    }
                    details.transfer {
                        summary { "Transfer…" }
                        form.inline method="post" action={ "/settings/cli-tokens/" (id) "/transfer" } {
                            (csrf_field(signed))
                            label for={ "to-" (id) } { "New owner's email" }
                            input id={ "to-" (id) } name="to" type="email" placeholder="member@example.com" required;
                            button type="submit" { "Transfer" }
                        }
                    }
                }
            }
        }
    }
}

pub async fn new(signed: Signed) -> Response {
    new_form(&signed, StatusCode::OK, None, "", &[SCOPES[0].to_owned()])
}

/// The form, fresh or again with what the API refused about it.
fn new_form(signed: &Signed, status: StatusCode, error: Option<&Problem>, name: &str, scopes: &[String]) -> Response {
    let form_id = random_value().unwrap_or_default();
    let body = html! {
        @if let Some(problem) = error {
            p.error role="alert" { (problem.detail) @if let Some(field) = &problem.field { " (" (field) ")" } }
        }
        form.card method="post" action="/settings/cli-tokens" {
            (csrf_field(signed))
            input type="hidden" name="form" value=(form_id);
            label for="name" { "Name" }
            input id="name" name="name" type="text" required maxlength="100" placeholder="deploy-pipeline"
                value=(name) aria-describedby="name-help";
            p.help id="name-help" { "Say what uses it, so that whoever finds it later knows." }
            fieldset {
                legend { "Scopes" }
                @for scope in SCOPES {
                    label.check {
                        input type="checkbox" name="scope" value=(scope) checked[scopes.iter().any(|s| s == scope)];
                        " " code { (scope) }
                    }
                }
            }
            div.actions {
                button.primary type="submit" { "Create CLI token" }
                a.button href="/settings/cli-tokens" { "Cancel" }
            }
        }
    };
    respond(status, page(signed, SECTION, "New CLI token", &body))
}

pub async fn create(State(app): State<AppState>, signed: Signed, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let form = fields.one("form").unwrap_or_default().to_owned();
    if form.is_empty() || !app.dashboard.answer_form(&signed.cookie, &form) {
        return already_answered(&signed);
    }
    let (name, scopes) = (fields.one("name").unwrap_or_default().to_owned(), fields.all("scope"));
    let request = CreateServiceCredentialRequest {
        name: name.clone(),
        scopes: Some(scopes.clone()),
        conditions: None,
        expires_in_days: None,
        owner: None,
    };
    match api::create(State(app), signed.caller.clone(), Path(signed.org.to_string()), Body(request)).await {
        Ok((_, created)) => {
            let created = json(&created.0);
            shown_once(&signed, "CLI token created", &created)
        }
        // Nothing was made: the same form may be sent again, corrected.
        Err(problem) if problem.status.is_client_error() && problem.status != StatusCode::FORBIDDEN => {
            new_form(&signed, problem.status, Some(&problem), &name, &scopes)
        }
        Err(problem) => layout::problem(&signed, SECTION, &problem),
    }
}

/// The one page that shows a client secret.
fn shown_once(signed: &Signed, title: &str, created: &Value) -> Response {
    let body = html! {
        p.warning role="status" {
            strong { "Copy the client secret now: it is shown once." }
            " It is not stored anywhere and this page cannot show it again."
        }
        dl.facts {
            dt { "Name" } dd { (text(created, "name")) }
            dt { "Scopes" } dd { @for scope in created["scopes"].as_array().into_iter().flatten() { code { (scope.as_str().unwrap_or_default()) } " " } }
        }
        (secret_box("client-id", "Client ID", text(created, "clientId")))
        (secret_box("client-secret", "Client secret (shown once)", text(created, "clientSecret")))
        p.muted {
            "Use them with " code { "CREDLEDGER_CLIENT_ID" } " and " code { "CREDLEDGER_CLIENT_SECRET" }
            ", or " code { "POST /oauth2/token" } " with " code { "grant_type=client_credentials" } "."
        }
        p { a.button.primary href="/settings/cli-tokens" { "Done" } }
    };
    respond(StatusCode::OK, page(signed, SECTION, title, &body))
}

fn already_answered(signed: &Signed) -> Response {
    let body = html! {
        p.warning role="alert" {
            "This form was already submitted. A secret is shown once, in the answer to the first submission, "
            "and never again. If it was lost, rotate the secret."
        }
        p { a.button href="/settings/cli-tokens" { "Back to CLI tokens" } }
    };
    respond(StatusCode::CONFLICT, page(signed, SECTION, "Already done", &body))
}

fn credential_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').collect()
}

pub async fn revoke(State(app): State<AppState>, signed: Signed, Path(id): Path<String>) -> Response {
    let answer =
        api::revoke(State(app), signed.caller.clone(), Path((signed.org.to_string(), credential_id(&id)))).await;
    back_to_list(&signed, answer.map(|_| ()))
}

pub async fn rotate(State(app): State<AppState>, signed: Signed, Path(id): Path<String>, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let form = fields.one("form").unwrap_or_default().to_owned();
    if form.is_empty() || !app.dashboard.answer_form(&signed.cookie, &form) {
        return already_answered(&signed);
    }
    let path = Path((signed.org.to_string(), credential_id(&id)));
    match api::rotate(State(app), signed.caller.clone(), path, OptionalBody(RotateRequest::default())).await {
        Ok(rotated) => shown_once(&signed, "Secret rotated", &json(&rotated.0)),
        Err(problem) => layout::problem(&signed, SECTION, &problem),
    }
}

pub async fn transfer(State(app): State<AppState>, signed: Signed, Path(id): Path<String>, body: Bytes) -> Response {
    let to = Fields::parse(&body).one("to").unwrap_or_default().to_owned();
    let path = Path((signed.org.to_string(), credential_id(&id)));
    let answer =
        api::transfer(State(app), signed.caller.clone(), path, Body(TransferServiceCredentialRequest { to })).await;
    back_to_list(&signed, answer.map(|_| ()))
}

fn back_to_list(signed: &Signed, answer: Result<(), Problem>) -> Response {
    match answer {
        Ok(()) => Redirect::to("/settings/cli-tokens").into_response(),
        Err(problem) => layout::problem(signed, SECTION, &problem),
    }
}
