//! Signing in and out: by pasting a personal access token, or by a one-time link that
//! `credledger dashboard` asks `POST /v1/dashboard/sign-in-links` for. A sign-in is recorded in
//! the ledger as a use of the PAT (CredentialUsed, route `/sign-in` or `/sign-in/link`), durable
//! before the session starts. Machine credentials cannot sign in.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use credledger_domain::CredentialKind;
use credledger_domain::policy::DenyReason;
use credledger_domain::token::{SecretToken, TokenDigest, TokenKind};
use maud::html;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Fields;
use super::layout::{bare, respond};
use super::session::{self, LINK_LIFETIME, SESSION_COOKIE, SESSION_LIFETIME, SIGN_IN_COOKIE, Signed};
use crate::AppState;
use crate::auth::{Caller, Peer};
use crate::problem::{Problem, ProblemDocument};
use crate::usage::Use;

/// `/`: the machine tokens for a signed-in member, the sign-in page for anybody else.
pub async fn home(signed: Result<Signed, Response>) -> Response {
    match signed {
        Ok(_) => Redirect::to("/machine-tokens").into_response(),
        Err(to_sign_in) => to_sign_in,
    }
}

/// The sign-in form. Its CSRF value is also set as a cookie, which the post must match.
pub async fn form(State(app): State<AppState>) -> Response {
    sign_in_page(&app, StatusCode::OK, None)
}

fn sign_in_page(app: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let Ok(csrf) = session::random_value() else {
        return super::layout::refusal(StatusCode::INTERNAL_SERVER_ERROR, "The server's random source failed.");
    };
    let body = html! {
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form.card method="post" action="/sign-in" {
            input type="hidden" name="csrf" value=(csrf);
            label for="token" { "Personal access token" }
            input id="token" name="token" type="password" autocomplete="off" spellcheck="false"
                placeholder="cl_pat_…" required autofocus;
            button.primary type="submit" { "Sign in" }
        }
        p.muted {
            "Or run " code { "credledger dashboard" } " on a computer where you are logged in: "
            "it prints a sign-in link that works once, for a minute."
        }
    };
    let mut response = respond(status, bare("Sign in", &body));
    let cookie = session::set_cookie(app, SIGN_IN_COOKIE, &csrf, chrono::TimeDelta::minutes(30));
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Signs in with a pasted PAT.
pub async fn submit(State(app): State<AppState>, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let Some(token) = fields.one("token") else {
        return sign_in_page(&app, StatusCode::UNPROCESSABLE_ENTITY, Some("Paste a personal access token."));
    };
    let digest = match SecretToken::parse(token) {
        Ok(secret) if secret.kind() == TokenKind::PersonalToken => secret.digest(),
        Ok(_) => {
            return sign_in_page(
                &app,
                StatusCode::FORBIDDEN,
                Some("Machine credentials cannot sign in to the dashboard: use a personal access token (cl_pat_…)."),
            );
        }
        Err(error) => {
            return sign_in_page(&app, StatusCode::UNAUTHORIZED, Some(&format!("That is not a valid token: {error}.")));
        }
    };
    start(&app, digest, peer, &headers, "/sign-in").await
}

/// Signs in with a one-time link: it works once, within a minute of being made.
///
/// Opening the link only asks; the button's post uses it up. So a link preview or a prefetch
/// cannot spend it, and a page cannot sign a visitor in as somebody else without a click that
/// names who they would be.
pub async fn link_form(
    State(app): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Path(link): Path<String>,
) -> Response {
    let Some(pat) = app.dashboard.peek_link(&link, app.clock.now()) else { return link_spent(&app) };
    let Ok((caller, org)) = session::member_pat(&app, &pat, &headers, peer.0, "GET") else { return link_spent(&app) };
    let email = caller
        .member_id()
        .and_then(|member| app.projections.member(org, member).ok().flatten())
        .map(|row| row.email)
        .unwrap_or_default();
    let Ok(csrf) = session::random_value() else {
        return super::layout::refusal(StatusCode::INTERNAL_SERVER_ERROR, "The server's random source failed.");
    };
    let body = html! {
        form.card method="post" action={ "/sign-in/link/" (link) } {
            input type="hidden" name="csrf" value=(csrf);
            p { "Sign in to the dashboard as " strong { (email) } "?" }
            p.help { "This link works once, within a minute of being made." }
            button.primary type="submit" { "Sign in" }
        }
    };
    let mut response = respond(StatusCode::OK, bare("Sign in with a link", &body));
    if let Ok(value) = session::set_cookie(&app, SIGN_IN_COOKIE, &csrf, chrono::TimeDelta::minutes(5)).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Uses a one-time sign-in link up: it works once, within a minute of being made.
pub async fn with_link(
    State(app): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Path(link): Path<String>,
) -> Response {
    match app.dashboard.take_link(&link, app.clock.now()) {
        Some(pat) => start(&app, pat, peer, &headers, "/sign-in/link").await,
        None => link_spent(&app),
    }
}

fn link_spent(app: &AppState) -> Response {
    sign_in_page(
        app,
        StatusCode::GONE,
        Some("This sign-in link was already used or has expired. Run `credledger dashboard` again."),
    )
}

/// Checks the PAT, records the sign-in, starts the session.
async fn start(app: &AppState, pat: TokenDigest, peer: Peer, headers: &HeaderMap, route: &str) -> Response {
    let peer = peer.0;
    let (caller, _) = match session::member_pat(app, &pat, headers, peer, "POST") {
        Ok(signed) => signed,
        Err(why) => return sign_in_page(app, StatusCode::UNAUTHORIZED, Some(&format!("Cannot sign in: {why}."))),
    };
    let used = Use {
        method: "POST",
        route,
        request: &caller.request,
        ip: caller.request.ip.clone().unwrap_or_default(),
        at: app.clock.now(),
        seen: caller.seen,
    };
    if let Err(error) = app.usage.used(&caller.view, &used).await {
        let problem = Problem::from(error);
        return sign_in_page(app, problem.status, Some(&problem.detail));
    }
    let cookie = match app.dashboard.start(pat, app.clock.now()) {
        Ok(cookie) => cookie,
        Err(problem) => return sign_in_page(app, problem.status, Some(&problem.detail)),
    };
    let mut response = Redirect::to("/machine-tokens").into_response();
    for value in [
        session::set_cookie(app, SESSION_COOKIE, &cookie, SESSION_LIFETIME),
        session::set_cookie(app, SIGN_IN_COOKIE, "", chrono::TimeDelta::zero()),
    ] {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Ends the session (the CSRF layer checked the form first).
pub async fn sign_out(State(app): State<AppState>, signed: Result<Signed, Response>) -> Response {
    if let Ok(signed) = signed {
        app.dashboard.end(&signed.cookie);
    }
    let mut response = Redirect::to("/sign-in").into_response();
    if let Ok(value) = session::set_cookie(&app, SESSION_COOKIE, "", chrono::TimeDelta::zero()).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_link))
}

/// A one-time sign-in link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignInLinkView {
    /// Open it in a browser within a minute; it works once.
    url: String,
    #[serde(with = "credledger_domain::time_format")]
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// Makes a link that signs the caller's PAT in to the dashboard once, within 60 seconds. Only
/// its SHA-256 is kept, in memory. Members' PATs only.
#[utoipa::path(post, path = "/v1/dashboard/sign-in-links", tag = "dashboard",
    responses((status = 201, description = "The link, shown once", body = SignInLinkView),
        (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn create_link(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<SignInLinkView>), Problem> {
    caller.require_human()?;
    if caller.view.kind != CredentialKind::PersonalToken {
        return Err(Problem::denied(DenyReason::MachineCredentialForbidden));
    }
    if caller.is_server_admin() {
        return Err(Problem::forbidden(
            "server_admin",
            "the server-admin token only creates organizations; sign in with a member's token",
        ));
    }
    // The bearer was checked by `Caller`; its digest is what the session will check again.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    let pat = SecretToken::parse(bearer).map_err(|error| Problem::unauthorized(error.code(), error.to_string()))?;
    let now = app.clock.now();
    let link = app.dashboard.new_link(pat.digest(), now)?;
    let base = app.config.public_url.trim_end_matches('/');
    Ok((
        StatusCode::CREATED,
        Json(SignInLinkView { url: format!("{base}/sign-in/link/{link}"), expires_at: now + LINK_LIFETIME }),
    ))
}
