//! The frame every page shares (head, navigation, sign-out form), the error page, and the small
//! formatting helpers pages use: relative times, states, JSON fields of the API's views.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::session::Signed;
use crate::Problem;

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    MachineTokens,
    CliTokens,
    Audit,
    Incident,
    Machines,
    Members,
    Projects,
    Ledger,
}

const SECTIONS: [(Section, &str, &str); 8] = [
    (Section::MachineTokens, "/machine-tokens", "Machine tokens"),
    (Section::Machines, "/machines", "Machines"),
    (Section::CliTokens, "/settings/cli-tokens", "Settings → CLI Tokens"),
    (Section::Members, "/members", "Members"),
    (Section::Projects, "/projects", "Projects"),
    (Section::Audit, "/audit", "Audit"),
    (Section::Incident, "/incident", "Incident"),
    (Section::Ledger, "/ledger", "Ledger"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · credledger" }
            link rel="stylesheet" href="/assets/dashboard.css";
            script src="/assets/dashboard.js" defer {}
        }
    }
}

/// A page of a signed-in member.
pub fn page(signed: &Signed, section: Section, title: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "credledger" }
                    nav aria-label="Sections" {
                        @for (s, href, label) in SECTIONS {
                            a href=(href) aria-current=[(s == section).then_some("page")] { (label) }
                        }
                    }
                    form.sign-out method="post" action="/sign-out" {
                        (csrf_field(signed))
                        span.who { (signed.email) }
                        button type="submit" { "Sign out" }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page for a signed-out visitor.
pub fn bare(title: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/" { "credledger" } }
                main.narrow { h1 { (title) } (body) }
            }
        }
    }
}

pub fn csrf_field(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

/// An HTML answer with a status.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A refusal before any page could be chosen (a failed CSRF check, a bad form).
pub fn refusal(status: StatusCode, message: &str) -> Response {
    let body = html! {
        p.error role="alert" { (message) }
        p { a href="/" { "Back to the dashboard" } }
    };
    respond(status, bare(status.canonical_reason().unwrap_or("Refused"), &body))
}

/// The API's refusal of something a page asked for, shown in the page's frame.
pub fn problem(signed: &Signed, section: Section, problem: &Problem) -> Response {
    let body = html! {
        p.error role="alert" {
            (problem.detail)
            @if let Some(field) = &problem.field { " (" (field) ")" }
        }
        p.muted { "Code: " code { (problem.code) } }
        p { a href=(SECTIONS.iter().find(|s| s.0 == section).map_or("/", |s| s.1)) { "Back" } }
    };
    let title = if problem.status == StatusCode::FORBIDDEN { "Not allowed" } else { "That did not work" };
    respond(problem.status, page(signed, section, title, &body))
}

/// "5 minutes ago", with the exact time as a tooltip.
pub fn ago(now: DateTime<Utc>, at: DateTime<Utc>) -> Markup {
    let seconds = (now - at).num_seconds();
    let text = match seconds {
        s if s < 0 => format!("in {}", span(-s)),
        s if s < 45 => "just now".to_owned(),
        s => format!("{} ago", span(s)),
    };
    html! { time datetime=(rfc3339(at)) title=(rfc3339(at)) { (text) } }
}

fn span(seconds: i64) -> String {
    let (n, unit) = match seconds {
        s if s < 90 => (s.max(1), "second"),
        s if s < 90 * 60 => (s / 60, "minute"),
        s if s < 36 * 3600 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    credledger_domain::time_format::format(&at).unwrap_or_default()
}

/// A time the API rendered as RFC 3339, relative to now.
pub fn ago_text(now: DateTime<Utc>, value: &Value) -> Markup {
    if let Some(at) = value.as_str().and_then(|text| credledger_domain::time_format::parse(text).ok()) {
        ago(now, at)
    } else {
        html! { span.muted { "Never" } }
    }
}

/// A credential state as a badge.
pub fn state(state: &str) -> Markup {
    html! { span class={ "state state-" (state) } { (state) } }
}

/// A string field of an API view, or "".
pub fn text<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A read-only box holding a secret, with a copy button (the value is in the page, never stored).
pub fn secret_box(id: &str, label: &str, value: &str) -> Markup {
    html! {
        div.secret {
            label for=(id) { (label) }
            div.copy-row {
                input id=(id) type="text" readonly value=(value) spellcheck="false" autocomplete="off";
                button type="button" data-copy=(id) { "Copy" }
            }
        }
    }
}
