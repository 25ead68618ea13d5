//! Audit and incident pages: the trail with the API's filters and paging, and the incident page
//! that traces a pasted token (or its SHA-256) to its credential and timeline with the API's own
//! trace, with a Revoke button. A pasted value is hashed by that code and kept nowhere.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use std::collections::HashMap;

use super::Fields;
use super::cli_tokens::emails;
use super::layout::{self, Section, ago_text, csrf_field, page, respond, text};
use super::session::Signed;
use crate::AppState;
use crate::extract::{Body, Query};
use crate::routes::audit::{AuditQuery, trail as api_trail};
use crate::routes::incidents::{TraceRequest, trace};

pub async fn trail(State(app): State<AppState>, signed: Signed, RawQuery(raw): RawQuery) -> Response {
    let query: AuditQuery = match super::api_query(raw.as_deref()) {
        Ok(query) => query,
        Err(problem) => return layout::problem(&signed, Section::Audit, &problem),
    };
    let value = |field: &Option<String>| field.clone().unwrap_or_default();
    let current = [
        ("credentialId", "Credential ID", value(&query.credential_id), "uuid"),
        ("actor", "Actor", value(&query.actor), "member or credential id"),
        ("type", "Event type", value(&query.event_type), "MachineTokenRevoked"),
        ("since", "Since", value(&query.since), "2026-01-01T00:00:00Z"),
        ("until", "Until", value(&query.until), "2026-12-31T00:00:00Z"),
        ("ip", "IP or network", value(&query.ip), "203.0.113.0/24"),
    ];
    let outcome = value(&query.outcome);
    let answer = api_trail(State(app.clone()), signed.caller.clone(), Path(signed.org.to_string()), Query(query)).await;
    let entries = match answer {
        Ok(page) => serde_json::to_value(&page.0).unwrap_or_default(),
        Err(problem) => return layout::problem(&signed, Section::Audit, &problem),
    };
    let now = app.clock.now();
    let next = entries["nextCursor"].as_str().map(|cursor| {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.push(("cursor".to_owned(), cursor.to_owned()));
        format!("/audit?{}", form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
    });
    let items = entries["items"].as_array().cloned().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/audit" aria-label="Filters" {
            @for (name, label, current, hint) in &current {
                div.field {
                    label for=(name) { (label) }
                    input id=(name) name=(name) value=(current) placeholder=(hint);
                }
            }
            div.field {
                label for="outcome" { "Outcome" }
                select id="outcome" name="outcome" {
                    @for (v, label) in [("", "Any"), ("success", "Success"), ("denied", "Denied")] {
                        option value=(v) selected[outcome == v] { (label) }
                    }
                }
            }
            div.field.submit { button type="submit" { "Filter" } a href="/audit" { "Clear" } }
        }
        @if items.is_empty() { p.empty { "No events match." } } @else {
            (entries_table(&items, now, &emails(&app, signed.org)))
        }
        @if let Some(next) = next { p { a.button href=(next) { "Older events" } } }
        p.muted {
            "Export and verify the whole trail offline: " code { "credledger audit export" } " then "
            code { "credledger audit verify" } "."
        }
    };
    respond(StatusCode::OK, page(&signed, Section::Audit, "Audit trail", &body))
}

fn entries_table(items: &[Value], now: chrono::DateTime<chrono::Utc>, members: &HashMap<String, String>) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Actor" }
                    th scope="col" { "Outcome" } th scope="col" { "From" } th scope="col" { "Summary" }
                } }
                tbody {
                    @for item in items {
                        tr {
                            td data-label="#" { (item["position"].as_u64().unwrap_or_default()) }
                            td data-label="When" { (ago_text(now, &item["at"])) }
                            td data-label="Event" { (text(item, "type")) }
                            td data-label="Actor" {
                                @if let Some(email) = members.get(text(&item["actor"], "id")) { (email) }
                                @else { span.muted { (text(&item["actor"], "kind")) } " " code.id { (text(&item["actor"], "id")) } }
                            }
                            td data-label="Outcome" { span class={ "outcome-" (text(item, "outcome")) } { (text(item, "outcome")) } }
                            td data-label="From" { (text(item, "ip")) " " span.muted { (text(item, "userAgent")) } }
                            td data-label="Summary" {
                                (text(item, "summary"))
                                @if let Some(reason) = item["reason"].as_str() { " (" (reason) ")" }
                                @if let Some(count) = item["count"].as_u64().filter(|c| *c > 1) { " ×" (count) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn incident_page(signed: &Signed, status: StatusCode, result: &Markup) -> Response {
    let body = html! {
        p.lead { "Found a token in a log, a repository or a paste? Trace it to its credential, see every use and denial, and revoke it." }
        form.card method="post" action="/incident" {
            (csrf_field(signed))
            label for="value" { "Token or its SHA-256" }
            input id="value" name="value" type="text" autocomplete="off" spellcheck="false" required
                placeholder="cl_mt_prod_… or 64 hex characters";
            p.help { "The value is hashed at once and stored nowhere." }
            button.primary type="submit" { "Trace" }
        }
        (result)
    };
    respond(status, page(signed, Section::Incident, "Incident", &body))
}

pub async fn incident_form(signed: Signed) -> Response {
    incident_page(&signed, StatusCode::OK, &html! {})
}

pub async fn incident(State(app): State<AppState>, signed: Signed, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let value = fields.one("value").unwrap_or_default();
    let is_digest = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
    let request = if is_digest {
        TraceRequest { token: None, sha256: Some(value.to_owned()) }
    } else {
        TraceRequest { token: Some(value.to_owned()), sha256: None }
    };
    let answer = trace(State(app.clone()), signed.caller.clone(), Path(signed.org.to_string()), Body(request)).await;
    let traced = match answer {
        Ok(traced) => serde_json::to_value(&traced.0).unwrap_or_default(),
        Err(problem) => {
            let result = html! {
                p.error role="alert" { (problem.detail) " (" code { (problem.code) } ")" }
            };
            return incident_page(&signed, problem.status, &result);
        }
    };
    let now = app.clock.now();
    let credential = &traced["credential"];
    let id = text(credential, "id");
    let kind = text(credential, "kind");
    let revoke = match kind {
        "machine_token" => Some(format!("/machine-tokens/{id}/revoke")),
        "service_credential" => Some(format!("/settings/cli-tokens/{id}/revoke")),
        _ => None,
    };
    let timeline: Vec<Value> = traced["timeline"].as_array().cloned().unwrap_or_default();
    let uses = timeline
        .iter()
        .filter(|e| text(e, "type") == "CredentialUsed" || text(e, "type") == "AccessTokenIssued")
        .count();
    let denials: u64 =
        timeline.iter().filter(|e| text(e, "outcome") == "denied").map(|e| e["count"].as_u64().unwrap_or(1)).sum();
    let newest_first: Vec<Value> = timeline.iter().rev().cloned().collect();
    let result = html! {
        section.traced aria-labelledby="traced" {
            h2 id="traced" { "Credential found" }
            dl.facts {
                dt { "Name" } dd { strong { (text(credential, "name")) } }
                dt { "Kind" } dd { (kind.replace('_', " ")) }
                dt { "State" } dd { (layout::state(text(credential, "state"))) }
                dt { "Matched" } dd {
                    @if text(&traced, "matched") == "current" { "the current value" } @else { "a value a roll or rotation replaced" }
                }
                dt { "ID" } dd { code { (id) } }
                dt { "Prefix" } dd { code { (text(credential, "tokenPrefix")) "…" } }
                dt { "Uses / denials" } dd { (uses) " / " (denials) }
            }
            @if let Some(action) = revoke {
                @if text(credential, "state") != "revoked" {
                    form method="post" action=(action) data-confirm="Revoke this credential now? It stops working at once." {
                        (csrf_field(&signed))
                        button.danger type="submit" { "Revoke" }
                    }
                }
            }
            h2 { "Timeline, newest first" }
            (entries_table(&newest_first, now, &emails(&app, signed.org)))
        }
    };
    incident_page(&signed, StatusCode::OK, &result)
}
