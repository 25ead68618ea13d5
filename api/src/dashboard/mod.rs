//! The web dashboard served at `/`: server-rendered pages (maud) for the people who run
//! credledger — owners, incident responders, auditors. Every page acts as the signed-in member's
//! [`Caller`](crate::auth::Caller) and calls the API's own handlers, so a page can never decide
//! differently from the API. Sessions, CSRF and the security headers are layers set up once here.
//!
//! Sessions and CSRF are a few lines of our own rather than tower-sessions and a CSRF crate: a
//! session must name its PAT only by digest and be checked against the hot index on every request
//! (so that revoking the PAT ends it), which a generic session store would not do for us.

mod audit;
mod cli_tokens;
mod layout;
mod ledger;
mod machine_tokens;
mod organization;
mod secrets;
mod session;
mod sign_in;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa_axum::router::OpenApiRouter;

pub use session::Sessions;

use crate::AppState;

/// The JSON API's route for `credledger dashboard`.
pub fn api_routes() -> OpenApiRouter<AppState> {
    sign_in::api_routes()
}

/// The pages, with their layers.
pub fn pages(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(sign_in::home))
        .route("/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/sign-in/link/{link}", get(sign_in::link_form).post(sign_in::with_link))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/settings/cli-tokens", get(cli_tokens::list).post(cli_tokens::create))
        .route("/settings/cli-tokens/new", get(cli_tokens::new))
        .route("/settings/cli-tokens/{id}/revoke", post(cli_tokens::revoke))
        .route("/settings/cli-tokens/{id}/rotate", post(cli_tokens::rotate))
        .route("/settings/cli-tokens/{id}/transfer", post(cli_tokens::transfer))
        .route("/machine-tokens", get(machine_tokens::list))
        .route("/machine-tokens/{id}", get(machine_tokens::show))
        .route("/machine-tokens/{id}/{action}", post(machine_tokens::act))
        .route("/machines", get(organization::machines))
        .route("/machines/{id}", get(organization::machine))
        .route("/machines/{id}/revoke", post(organization::revoke_machine))
        .route("/members", get(organization::members))
        .route("/projects", get(organization::projects))
        .route("/secrets/{project}/{environment}", get(secrets::show))
        .route("/secrets/{project}/{environment}/reveal", post(secrets::reveal))
        .route("/ledger", get(ledger::show))
        .route("/audit", get(audit::trail))
        .route("/incident", get(audit::incident_form).post(audit::incident))
        .route("/assets/dashboard.css", get(css))
        .route("/assets/dashboard.js", get(js))
        .layer(axum::middleware::from_fn_with_state(state.clone(), csrf))
        .layer(axum::middleware::from_fn(security_headers))
}

const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], CSS)
}

async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], JS)
}

/// Scripts and styles only from this server's own files, nothing framed, forms posted only here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The security headers of every dashboard answer. Pages are never stored by a cache, so the
/// back button cannot bring a shown secret back from one.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Most bytes a dashboard form may send.
const FORM_LIMIT: usize = 16 * 1024;

/// Every POST carries the `csrf` field of the form it came from: the session's token, or before
/// sign-in the value of the sign-in cookie (double submit). Anything else is 403 before a handler
/// runs. The body is read here and handed on unchanged.
async fn csrf(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return layout::refusal(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    };
    let expected = match session::cookie(&parts.headers, session::SESSION_COOKIE)
        .and_then(|cookie| app.dashboard.get(cookie, app.clock.now()))
    {
        Some(session) => Some(session.csrf),
        None if parts.uri.path() == "/sign-in" || parts.uri.path().starts_with("/sign-in/link/") => {
            session::cookie(&parts.headers, session::SIGN_IN_COOKIE).map(str::to_owned)
        }
        None => None,
    };
    let sent = Fields::parse(&bytes).one("csrf").map(str::to_owned);
    let valid = match (expected, sent) {
        (Some(expected), Some(sent)) => credledger_domain::token::TokenDigest::of(&expected)
            .ct_eq(&credledger_domain::token::TokenDigest::of(&sent)),
        _ => false,
    };
    if !valid {
        return layout::refusal(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this dashboard. Go back, reload the page and try again.",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The fields of a posted form, in order (a checkbox group repeats its name).
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &Bytes) -> Self {
        Self(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The field's value, if sent and not blank.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

/// A query string without its blank fields (an empty filter box means no filter), parsed into
/// the API's own query struct.
pub fn api_query<T: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<T, crate::Problem> {
    let kept: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .collect();
    let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish();
    serde_urlencoded::from_str(&encoded)
        .map_err(|error| crate::Problem::bad_request("invalid_query", error.to_string()))
}
