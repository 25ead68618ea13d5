//! Machine tokens: the list with the API's filters, a token's page (conditions, last use, a chart
//! of uses and denials per day drawn here as SVG), and its lifecycle actions. A roll's new value
//! is shown once, in the answer to the post.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use credledger_projections::queries::AuditEntry;
use maud::{Markup, html};

use super::Fields;
use super::cli_tokens::emails;
use super::layout::{self, Section, ago, csrf_field, page, respond, rfc3339, secret_box, state};
use super::session::{Signed, random_value};
use crate::AppState;
use crate::extract::{Body, OptionalBody, Query};
use crate::routes::machine_tokens::{self as api, ListQuery, RevokeQuery, RollMachineTokenRequest, TransferRequest};
use crate::views::MachineTokenView;

const SECTION: Section = Section::MachineTokens;

pub async fn list(State(app): State<AppState>, signed: Signed, RawQuery(raw): RawQuery) -> Response {
    let query: ListQuery = match super::api_query(raw.as_deref()) {
        Ok(query) => query,
        Err(problem) => return layout::problem(&signed, SECTION, &problem),
    };
    let filters = Filters::of(&query);
    let answer = api::list(State(app.clone()), signed.caller.clone(), Path(signed.org.to_string()), Query(query)).await;
    let tokens = match answer {
        Ok(page) => page.0,
        Err(problem) => return layout::problem(&signed, SECTION, &problem),
    };
    let now = app.clock.now();
    let owners = emails(&app, signed.org);
    let projects = app.projections.projects(signed.org).unwrap_or_default();
    let next = tokens.next_cursor.as_ref().map(|cursor| {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.push(("cursor".to_owned(), cursor.clone()));
        format!("/machine-tokens?{}", form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
    });
    let body = html! {
        form.filters method="get" action="/machine-tokens" aria-label="Filters" {
            div.field {
                label for="state" { "State" }
                select id="state" name="state" {
                    @for (value, label) in [("", "Any"), ("active", "Active"), ("disabled", "Disabled"), ("expired", "Expired"), ("revoked", "Revoked")] {
                        option value=(value) selected[filters.state == value] { (label) }
                    }
                }
            }
            div.field {
                label for="environmentHint" { "Environment" }
                input id="environmentHint" name="environmentHint" value=(filters.environment) placeholder="prod";
            }
            div.field {
                label for="projectId" { "Project" }
                select id="projectId" name="projectId" {
                    option value="" { "Any" }
                    @for project in &projects {
                        option value=(project.project_id) selected[filters.project == project.project_id] { (project.name) }
                    }
                }
            }
            div.field {
                label for="owner" { "Owner" }
                select id="owner" name="owner" {
                    option value="" { "Anyone" }
                    @for (id, email) in &owners {
                        option value=(id) selected[filters.owner == *id] { (email) }
                    }
                }
            }
            div.field {
                label for="flagged" { "Flagged" }
                select id="flagged" name="flagged" {
                    @for (value, label) in [("", "Either"), ("true", "Flagged"), ("false", "Not flagged")] {
                        option value=(value) selected[filters.flagged == value] { (label) }
                    }
                }
            }
            div.field {
                label for="expiringWithin" { "Expiring within" }
                input id="expiringWithin" name="expiringWithin" value=(filters.expiring) placeholder="7d";
            }
            div.field {
                label for="unusedFor" { "Unused for" }
                input id="unusedFor" name="unusedFor" value=(filters.unused) placeholder="30d";
            }
            div.field.submit { button type="submit" { "Filter" } a href="/machine-tokens" { "Clear" } }
        }
        @if tokens.items.is_empty() {
            p.empty { "No machine tokens match." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Environment" } th scope="col" { "State" }
                        th scope="col" { "Prefix" } th scope="col" { "Owner" } th scope="col" { "Expires" }
                        th scope="col" { "Last used" }
                    } }
                    tbody {
                        @for token in &tokens.items {
                            tr {
                                td data-label="Name" { a href={ "/machine-tokens/" (token.id) } { (token.name) } }
                                td data-label="Environment" { code { (token.environment_hint) } }
                                td data-label="State" {
                                    (state(token.state))
                                    @if token.flagged.is_some() { " " span.state.state-flagged { "flagged" } }
                                }
                                td data-label="Prefix" { code { (token.token_prefix) "…" } }
                                td data-label="Owner" { (owners.get(&token.owner.to_string()).cloned().unwrap_or_else(|| token.owner.to_string())) }
                                td data-label="Expires" { @match token.expires_at { Some(at) => (ago(now, at)), None => span.muted { "Never" } } }
                                td data-label="Last used" { @match token.last_used_at { Some(at) => (ago(now, at)), None => span.muted { "Never" } } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next { p { a.button href=(next) { "Next page" } } }
        p.muted { "Create machine tokens with " code { "credledger token create --name ci --env prod" } "." }
    };
    respond(StatusCode::OK, page(&signed, SECTION, "Machine tokens", &body))
}

/// The filter form's current values.
#[derive(Debug, Default)]
struct Filters {
    state: String,
    environment: String,
    project: String,
    owner: String,
    flagged: String,
    expiring: String,
    unused: String,
}

impl Filters {
    fn of(query: &ListQuery) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        Self {
            state: text(&query.state),
            environment: text(&query.environment_hint),
            project: text(&query.project_id),
            owner: text(&query.owner),
            flagged: query.flagged.map(|f| f.to_string()).unwrap_or_default(),
            expiring: text(&query.expiring_within),
            unused: text(&query.unused_for),
        }
    }
}

fn token_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').collect()
}

pub async fn show(State(app): State<AppState>, signed: Signed, Path(id): Path<String>) -> Response {
    let path = Path((signed.org.to_string(), token_id(&id)));
    let token =
        match api::show(State(app.clone()), signed.caller.clone(), path, Query(crate::as_of::AsOfQuery::default()))
            .await
        {
            Ok(token) => token.0,
            Err(problem) => return layout::problem(&signed, SECTION, &problem),
        };
    let timeline = app.projections.credential_timeline(signed.org, token.id).unwrap_or_default();
    let now = app.clock.now();
    let owners = emails(&app, signed.org);
    let title = format!("Machine token {}", token.name);
    let body = html! {
        (facts(&token, &owners, now))
        h2 { "Uses and denials, last 14 days" }
        (chart(&timeline, now.date_naive()))
        h2 { "Actions" }
        (actions(&signed, &token))
        h2 { "Recent activity" }
        (recent(&timeline, now))
        p { a href={ "/audit?credentialId=" (token.id) } { "All its events in the audit trail" } }
    };
    respond(StatusCode::OK, page(&signed, SECTION, &title, &body))
}

fn facts(token: &MachineTokenView, owners: &std::collections::HashMap<String, String>, now: DateTime<Utc>) -> Markup {
    let conditions = &token.conditions;
    html! {
        dl.facts {
            dt { "State" } dd { (state(token.state)) @if let Some(flag) = token.flagged { " " span.state.state-flagged { "flagged " (ago(now, flag.at)) } } }
            dt { "Environment" } dd { code { (token.environment_hint) } }
            dt { "Prefix" } dd { code { (token.token_prefix) "…" } }
            dt { "Owner" } dd { (owners.get(&token.owner.to_string()).cloned().unwrap_or_else(|| token.owner.to_string())) }
            dt { "Scopes" } dd { @for scope in token.scopes.iter() { code { (scope.as_str()) } " " } }
            dt { "Created" } dd { (ago(now, token.created_at)) }
            dt { "Expires" } dd { @match token.expires_at { Some(at) => (ago(now, at)), None => "Never" } }
            dt { "Last used" } dd {
                @match token.last_used_at {
                    Some(at) => { (ago(now, at)) " from " code { (token.last_used_ip.clone().unwrap_or_default()) } " · " (token.last_used_user_agent.clone().unwrap_or_default()) }
                    None => "Never",
                }
            }
            dt { "Uses / denials" } dd { (token.use_count) " / " (token.denied_count) }
            dt { "IP allowlist" } dd { @if conditions.ip_allowlist.is_empty() { "Any address" } @else { @for cidr in &conditions.ip_allowlist { code { (cidr.to_string()) } " " } } }
            dt { "Time windows" } dd { @if conditions.time_windows.is_empty() { "Any time" } @else { @for window in &conditions.time_windows { span.nowrap { (window.to_string()) " UTC" } br; } } }
            dt { "User agent" } dd { @match &conditions.user_agent_pattern { Some(pattern) => code { (pattern.to_string()) }, None => "Any" } }
        }
    }
}

fn actions(signed: &Signed, token: &MachineTokenView) -> Markup {
    let base = format!("/machine-tokens/{}", token.id);
    let form_id = random_value().unwrap_or_default();
    if token.state == "revoked" {
        return html! { p.muted { "Revoked: nothing more can be done with it." } };
    }
    html! {
        div.actions {
            form method="post" action={ (base) "/roll" } data-confirm="Roll this token? The current value stops working at once." {
                (csrf_field(signed))
                input type="hidden" name="form" value=(form_id);
                button type="submit" { "Roll" }
            }
            @if token.state == "disabled" {
                form method="post" action={ (base) "/enable" } { (csrf_field(signed)) button type="submit" { "Enable" } }
            } @else if token.state == "active" {
                form method="post" action={ (base) "/disable" } { (csrf_field(signed)) button type="submit" { "Disable" } }
            }
            form method="post" action={ (base) "/revoke" } data-confirm="Revoke this token? It stops working at once, for good." {
                (csrf_field(signed))
                button.danger type="submit" { "Revoke" }
            }
        }
        form.inline method="post" action={ (base) "/transfer" } {
            (csrf_field(signed))
            label for="to" { "Transfer to" }
            input id="to" name="to" type="email" placeholder="member@example.com" required;
            button type="submit" { "Transfer" }
        }
    }
}

const DAYS: i64 = 14;

/// Uses and denials per day for the last [`DAYS`] days, as bars.
pub(super) fn chart(timeline: &[AuditEntry], today: NaiveDate) -> Markup {
    let mut uses = [0u64; DAYS as usize];
    let mut denials = [0u64; DAYS as usize];
    for entry in timeline {
        let age = (today - entry.recorded_at.date_naive()).num_days();
        if !(0..DAYS).contains(&age) {
            continue;
        }
        let slot = (DAYS - 1 - age) as usize;
        let count = entry.count.unwrap_or(1);
        match (entry.event_type.as_str(), entry.outcome.as_str()) {
            (_, "denied") => denials[slot] += count,
            ("CredentialUsed" | "AccessTokenIssued", _) => uses[slot] += count,
            _ => {}
        }
    }
    let most = uses.iter().chain(denials.iter()).copied().max().unwrap_or(0).max(1);
    let (width, height, bottom) = (700.0_f64, 180.0_f64, 150.0_f64);
    let step = width / DAYS as f64;
    let bar = (step - 8.0) / 2.0;
    let scale = |count: u64| (count as f64 / most as f64) * (bottom - 20.0);
    let total_uses: u64 = uses.iter().sum();
    let total_denials: u64 = denials.iter().sum();
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (width) " " (height) } role="img"
                aria-label={ (total_uses) " uses and " (total_denials) " denials in the last 14 days" } {
                line x1="0" y1=(bottom) x2=(width) y2=(bottom) stroke="#888" stroke-width="1" {}
                text x="4" y="12" font-size="11" fill="#555" { "max " (most) " per day" }
                @for day in 0..DAYS as usize {
                    @let x = day as f64 * step + 4.0;
                    @let u = scale(uses[day]);
                    @let d = scale(denials[day]);
                    rect x=(x) y=(bottom - u) width=(bar) height=(u) fill="#2f7d4f" { title { (uses[day]) " uses" } }
                    rect x=(x + bar) y=(bottom - d) width=(bar) height=(d) fill="#c0392b" { title { (denials[day]) " denials" } }
                    @if day % 2 == 1 || day == DAYS as usize - 1 {
                        @let date = today - chrono::TimeDelta::days(DAYS - 1 - day as i64);
                        text x=(x) y=(bottom + 16.0) font-size="11" fill="#555" { (date.month()) "/" (date.day()) }
                    }
                }
            }
            figcaption {
                span.legend.legend-use { "Uses: " (total_uses) } " "
                span.legend.legend-deny { "Denials: " (total_denials) }
            }
        }
    }
}

pub(super) fn recent(timeline: &[AuditEntry], now: DateTime<Utc>) -> Markup {
    html! {
        @if timeline.is_empty() { p.empty { "Nothing recorded yet." } } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Outcome" } th scope="col" { "From" } th scope="col" { "Detail" } } }
                    tbody {
                        @for entry in timeline.iter().rev().take(50) {
                            tr {
                                td data-label="When" { (ago(now, entry.recorded_at)) }
                                td data-label="Event" { (entry.event_type) }
                                td data-label="Outcome" { span class={ "outcome-" (entry.outcome) } { (entry.outcome) } }
                                td data-label="From" { (entry.ip.clone().unwrap_or_default()) " " span.muted { (entry.user_agent.clone().unwrap_or_default()) } }
                                td data-label="Detail" { (entry.summary) @if let Some(reason) = &entry.reason { " (" (reason) ")" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Roll, disable, enable, revoke or transfer, through the API's handlers.
pub async fn act(
    State(app): State<AppState>,
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let id = token_id(&id);
    let fields = Fields::parse(&body);
    let path = || Path((signed.org.to_string(), id.clone()));
    let caller = signed.caller.clone();
    let state = || State(app.clone());
    let answer = match action.as_str() {
        "roll" => {
            let form = fields.one("form").unwrap_or_default().to_owned();
            if form.is_empty() || !app.dashboard.answer_form(&signed.cookie, &form) {
                return already_rolled(&signed, &id);
            }
            return match api::roll(state(), caller, path(), OptionalBody(RollMachineTokenRequest::default())).await {
                Ok(rolled) => shown_once(&signed, &rolled.0.view, &rolled.0.token),
                Err(problem) => layout::problem(&signed, SECTION, &problem),
            };
        }
        "disable" => api::disable(state(), caller, path()).await.map(|_| ()),
        "enable" => api::enable(state(), caller, path()).await.map(|_| ()),
        "revoke" => api::revoke(state(), caller, path(), Query(RevokeQuery { reason: None })).await.map(|_| ()),
        "transfer" => {
            let to = fields.one("to").unwrap_or_default().to_owned();
            api::transfer(state(), caller, path(), Body(TransferRequest { to })).await.map(|_| ())
        }
        _ => return layout::refusal(StatusCode::NOT_FOUND, "There is no such action."),
    };
    match answer {
        Ok(()) => Redirect::to(&format!("/machine-tokens/{id}")).into_response(),
        Err(problem) => layout::problem(&signed, SECTION, &problem),
    }
}

fn shown_once(signed: &Signed, token: &MachineTokenView, value: &str) -> Response {
    let body = html! {
        p.warning role="status" {
            strong { "Copy the new value now: it is shown once." }
            " The old value stopped working. This page cannot show the new one again."
        }
        (secret_box("token-value", "New token value (shown once)", value))
        p { "Valid until: " (token.expires_at.map_or_else(|| "no expiry".to_owned(), rfc3339)) }
        p { a.button.primary href={ "/machine-tokens/" (token.id) } { "Done" } }
    };
    respond(StatusCode::OK, page(signed, SECTION, &format!("Machine token {} rolled", token.name), &body))
}

fn already_rolled(signed: &Signed, id: &str) -> Response {
    let body = html! {
        p.warning role="alert" {
            "This roll was already done. Its new value was shown once, in the answer to the first "
            "submission, and is never shown again. If it was lost, roll again."
        }
        p { a.button href={ "/machine-tokens/" (id) } { "Back to the token" } }
    };
    respond(StatusCode::CONFLICT, page(signed, SECTION, "Already done", &body))
}
