//! The OAuth2 authorization server: the token endpoint (RFC 6749 §4.4, client_credentials),
//! introspection (RFC 7662), the JWKS and the server metadata (RFC 8414).
//!
//! Errors here are RFC 6749 §5.2 documents (`{"error", "error_description"}`), not problem+json:
//! OAuth2 client libraries expect them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use credledger_domain::policy::{AccessRequest, CredentialView, DenyReason, Presented, RouteClass, evaluate};
use credledger_domain::token::{ClientId, SecretToken, TokenKind};
use credledger_domain::values::{Scope, Scopes};
use credledger_domain::{CredentialId, CredentialKind, RequestMeta};
use credledger_store::StoreError;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::assertion;
use crate::AppState;
use crate::auth::{Peer, request_origin};
use crate::limiter::{Failure, Verdict};
use crate::metrics_layer::RequestCredential;
use crate::signing::{ACCESS_TOKEN_LIFETIME, AUDIENCE, Claims, Jwks};
use crate::usage::{IssuedToken, Use};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token))
        .routes(routes!(introspect))
        .routes(routes!(jwks))
        .routes(routes!(metadata))
}

const TAG: &str = "oauth2";
const CLIENT_CREDENTIALS: &str = "client_credentials";

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    pub(crate) retry_after: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ErrorDocument {
    error: String,
    error_description: String,
}

impl OAuthError {
    pub(crate) fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into(), retry_after: None }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        metrics::counter!("credledger_oauth_errors_total", "error" => self.error).increment(1);
        let document = ErrorDocument { error: self.error.to_owned(), error_description: self.description };
        let mut response = (self.status, Json(document)).into_response();
        let headers = response.headers_mut();
        no_store(headers);
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"credledger\""));
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        response
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

// The forms as the document describes them; the handlers read the form themselves, so that a
// repeated parameter is an error and an empty one an omitted one (RFC 6749 §3.2).

/// The token endpoint's form: the client_credentials grant, or a machine's jwt-bearer assertion.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TokenForm {
    ClientCredentials(ClientCredentialsForm),
    JwtBearer(JwtBearerForm),
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
enum ClientCredentialsGrant {
    #[serde(rename = "client_credentials")]
    ClientCredentials,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
enum JwtBearerGrant {
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
}

/// client_credentials: the client authenticates by HTTP Basic, or by `client_id` and
/// `client_secret` here (not both).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct ClientCredentialsForm {
    grant_type: ClientCredentialsGrant,
    /// Space-separated; narrows the client's allowed scopes.
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// jwt-bearer (RFC 7523): a machine's signed assertion, used once.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct JwtBearerForm {
    grant_type: JwtBearerGrant,
    #[schema(min_length = 1)]
    assertion: String,
}

/// The introspection form; the resource server authenticates as at the token endpoint.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct IntrospectionForm {
    /// An access token or a machine token.
    #[schema(min_length = 1)]
    token: String,
    /// The IPv4 or IPv6 address of the resource server's own caller, to evaluate the token's
    /// conditions for.
    client_ip: Option<String>,
    user_agent: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The token endpoint's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
}

/// The request as the endpoints see it.
struct Caller {
    ip: IpAddr,
    request: RequestMeta,
}

fn caller(app: &AppState, peer: Peer, headers: &HeaderMap) -> Caller {
    let (ip, request) = request_origin(app, peer.0, headers);
    Caller { ip, request }
}

/// The request body, or an RFC 6749 error document when it could not be read (over the size
/// limit, or cut off): an OAuth client parses every answer of these endpoints as JSON.
fn form_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, OAuthError> {
    body.map_err(|rejection| {
        OAuthError::new(
            rejection.status(),
            "invalid_request",
            format!("the request body could not be read: {}", rejection.body_text()),
        )
    })
}

/// Parses an `application/x-www-form-urlencoded` body; a repeated parameter is an error, and a
/// parameter sent without a value is as if it were omitted (RFC 6749 §3.2).
pub(crate) fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(OAuthError::invalid_request("send the parameters as application/x-www-form-urlencoded"));
    }
    let mut parameters = HashMap::new();
    for (name, value) in form_urlencoded::parse(body).filter(|(_, value)| !value.is_empty()) {
        if parameters.insert(name.clone().into_owned(), value.into_owned()).is_some() {
            return Err(OAuthError::invalid_request(format!("the parameter `{name}` is repeated")));
        }
    }
    Ok(parameters)
}

/// Client authentication by HTTP Basic (`client_secret_basic`) or by form fields
/// (`client_secret_post`), never both. Returns the service credential and which of its secrets
/// was presented.
fn authenticate_client(
    app: &AppState,
    headers: &HeaderMap,
    parameters: &HashMap<String, String>,
    caller: &Caller,
    route: &str,
) -> Result<(Arc<CredentialView>, Presented, String), OAuthError> {
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, credentials) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| credentials.trim().to_owned())
    });
    let posted = (parameters.get("client_id"), parameters.get("client_secret"));
    let (client_id, secret) = match (basic, posted) {
        (Some(_), (Some(_), _) | (_, Some(_))) => {
            return Err(OAuthError::invalid_request("authenticate the client by one method only"));
        }
        (Some(basic), _) => decode_basic(&basic)
            .ok_or_else(|| OAuthError::invalid_client("the Basic credentials are not base64 of `id:secret`"))?,
        (None, (Some(id), Some(secret))) => (id.clone(), secret.clone()),
        (None, _) => return Err(OAuthError::invalid_client("authenticate the client (client_id and client_secret)")),
    };
    let now = app.clock.now();
    match app.limiter.check(&client_id, caller.ip, now) {
        Verdict::Allowed => {}
        Verdict::Throttled { retry_after } => {
            return Err(OAuthError {
                retry_after: Some(retry_after),
                ..OAuthError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "invalid_client",
                    "too many failed client authentications",
                )
            });
        }
        Verdict::Locked { retry_after } => {
            return Err(OAuthError {
                retry_after: Some(retry_after),
                ..OAuthError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "invalid_client",
                    "the client is locked here after repeated failed authentications",
                )
            });
        }
    }
    let known = ClientId::parse(&client_id).ok().and_then(|id| app.projections.hot_index().client(id.as_str()));
    let presented = SecretToken::parse(&secret)
        .ok()
        .filter(|secret| secret.kind() == TokenKind::ClientSecret)
        .and_then(|secret| app.projections.hot_index().lookup(&secret.digest()))
        .filter(|(view, _)| Some(view.id) == known);
    if let Some((view, presented)) = presented {
        app.limiter.succeeded(&client_id, caller.ip);
        return Ok((view, presented, client_id));
    }
    let failure = app.limiter.failed(&client_id, caller.ip, now);
    // A wrong secret for a known client is recorded against it; an unknown client only counts.
    if let Some(view) = known.and_then(|id| app.projections.hot_index().view(id)) {
        // A denial is recorded whatever the view: `seen` matters only for accepted uses.
        let used = Use { method: "POST", route, request: &caller.request, ip: caller.ip.to_string(), at: now, seen: 0 };
        app.usage.denied(&view, DenyReason::InvalidSecret, &used);
        if failure == Failure::LockedNow {
            app.usage.denied(&view, DenyReason::Locked, &used);
        }
    }
    metrics::counter!("credledger_auth_total", "outcome" => "invalid_client").increment(1);
    Err(OAuthError::invalid_client("unknown client or wrong secret"))
}

/// Whether an authenticated client may act now: its state, the value it presented (a rotated
/// secret past its grace), and its conditions for this request. A refusal is recorded.
fn authorize_client(
    app: &AppState,
    view: &Arc<CredentialView>,
    presented: Presented,
    caller: &Caller,
    used: &Use<'_>,
) -> Result<(), OAuthError> {
    let access = AccessRequest {
        org_id: None,
        ip: caller.ip,
        user_agent: caller.request.user_agent.as_deref(),
        at: used.at,
        route_class: RouteClass::Open,
        required_scope: view.scopes.iter().next().unwrap_or(Scope::Read),
    };
    evaluate(view, presented, &access).map_err(|reason| {
        app.usage.denied(view, reason, used);
        match reason {
            DenyReason::Disabled | DenyReason::Expired | DenyReason::Revoked => {
                OAuthError::invalid_client(format!("the client is {}", reason.as_str()))
            }
            other => OAuthError::new(StatusCode::BAD_REQUEST, "unauthorized_client", other.as_str()),
        }
    })
}

pub(crate) fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (id, secret) = text.split_once(':')?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
    let decode =
        |part: &str| form_urlencoded::parse(format!("x={part}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((decode(id)?, decode(secret)?))
}

/// The client_credentials grant: a service credential's id and secret for a 15-minute EdDSA
/// access token. Each issuance is recorded (AccessTokenIssued) before the token is returned.
#[utoipa::path(post, path = "/oauth2/token", tag = TAG, security(()),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded",
        description = "grant_type=client_credentials[&scope=…] with client authentication by HTTP Basic or client_id/client_secret; or grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=… (a machine's signed assertion)"),
    responses((status = 200, body = TokenResponse), (status = "4XX", description = "RFC 6749 §5.2 error", body = ErrorDocument)))]
async fn token(
    State(app): State<AppState>,
    peer: Peer,
    credential: Option<Extension<RequestCredential>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let body = form_body(body)?;
    let route = "/oauth2/token";
    let caller = caller(&app, peer, &headers);
    let parameters = form(&headers, &body)?;
    // Read before any credential is looked up: what the issuance is based on.
    let seen = app.fresh_view().await.map_err(unavailable)?;
    let grant_type =
        parameters.get("grant_type").ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    if grant_type == assertion::JWT_BEARER {
        let assertion = parameters
            .get("assertion")
            .ok_or_else(|| OAuthError::invalid_request("the jwt-bearer grant needs an assertion"))?;
        let now = app.clock.now();
        let used = Use { method: "POST", route, request: &caller.request, ip: caller.ip.to_string(), at: now, seen };
        let (access_token, scope) = assertion::exchange(&app, assertion, &used).await?;
        return Ok(token_response(access_token, scope));
    }
    if grant_type != CLIENT_CREDENTIALS {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type `{}` is not supported", grant_type.chars().take(80).collect::<String>()),
        ));
    }
    let (view, presented, client_id) = authenticate_client(&app, &headers, &parameters, &caller, route)?;
    if let Some(Extension(credential)) = credential {
        credential.set(view.kind, view.id);
    }
    let now = app.clock.now();
    let used = Use { method: "POST", route, request: &caller.request, ip: caller.ip.to_string(), at: now, seen };
    authorize_client(&app, &view, presented, &caller, &used)?;
    let scopes = match parameters.get("scope").map(|scope| scope.trim()).filter(|scope| !scope.is_empty()) {
        None => view.scopes.clone(),
        Some(requested) => {
            let requested = Scopes::parse_space_separated(requested)
                .map_err(|e| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", e.to_string()))?;
            if !requested.is_subset(&view.scopes) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "the requested scope exceeds the client's allowed scopes",
                ));
            }
            requested
        }
    };
    let jti = uuid::Uuid::now_v7().to_string();
    let expires_at = now + ACCESS_TOKEN_LIFETIME;
    let claims = Claims {
        iss: app.keys.issuer().to_owned(),
        sub: view.id.to_string(),
        aud: AUDIENCE.to_owned(),
        org: view.org_id.map(|org| org.to_string()).unwrap_or_default(),
        scope: scopes.to_space_separated(),
        jti: jti.clone(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: expires_at.timestamp(),
        kind: CredentialKind::ServiceCredential.as_str().to_owned(),
        client_id: Some(client_id),
        project: None,
        environment: None,
        machine: None,
    };
    let access_token = app.keys.sign(&claims);
    let issued = IssuedToken { jti, assertion_jti: None, scopes: scopes.clone(), expires_at };
    match app.usage.issued(&view, &used, issued).await {
        Ok(()) => Ok(token_response(access_token, claims.scope)),
        Err(StoreError::Superseded { position, .. }) => {
            // The client changed after the view it was judged on: judge it again on a view that
            // includes the change, and answer with what it is now (a revoked client is refused).
            let seen = app.view_including(position).await.map_err(unavailable)?;
            let (view, presented, _) = authenticate_client(&app, &headers, &parameters, &caller, route)?;
            let used = Use { seen, at: app.clock.now(), ..used };
            authorize_client(&app, &view, presented, &caller, &used)?;
            Err(unavailable(crate::freshness::stale(app.freshness.bound())))
        }
        Err(error) => {
            tracing::error!(%error, "recording an issued access token failed");
            Err(OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the issuance could not be recorded; retry",
            ))
        }
    }
}

/// A node that cannot judge now (its view is stale, or it is catching up): retry in a second.
pub(crate) fn unavailable(problem: crate::problem::Problem) -> OAuthError {
    OAuthError { retry_after: Some(1), ..OAuthError::new(problem.status, "temporarily_unavailable", problem.detail) }
}

fn token_response(access_token: String, scope: String) -> Response {
    metrics::counter!("credledger_access_tokens_issued_total").increment(1);
    let body =
        TokenResponse { access_token, token_type: "Bearer", expires_in: ACCESS_TOKEN_LIFETIME.num_seconds(), scope };
    let mut response = Json(body).into_response();
    no_store(response.headers_mut());
    response
}

/// An RFC 7662 introspection answer; inactive tokens carry only `active: false`.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// The kind of credential behind the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment_hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<String>,
}

/// RFC 7662 introspection for resource servers, which authenticate with their own service
/// credential. Answers for access JWTs and machine tokens of the caller's organization; the
/// optional `client_ip` and `user_agent` have the token's conditions evaluated for the resource
/// server's own caller, and that check is recorded as a use or a denial.
#[utoipa::path(post, path = "/oauth2/introspect", tag = TAG, security(()),
    request_body(content = IntrospectionForm, content_type = "application/x-www-form-urlencoded",
        description = "token=…[&client_ip=…][&user_agent=…]; client authentication as for the token endpoint"),
    responses((status = 200, body = Introspection), (status = "4XX", description = "RFC 6749 §5.2 error", body = ErrorDocument)))]
async fn introspect(
    State(app): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let body = form_body(body)?;
    let route = "/oauth2/introspect";
    let caller = caller(&app, peer, &headers);
    let parameters = form(&headers, &body)?;
    let seen = app.fresh_view().await.map_err(unavailable)?;
    let (resource_server, presented, _) = authenticate_client(&app, &headers, &parameters, &caller, route)?;
    let now = app.clock.now();
    let used = Use { method: "POST", route, request: &caller.request, ip: caller.ip.to_string(), at: now, seen };
    authorize_client(&app, &resource_server, presented, &caller, &used)?;
    let token = parameters.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let subject_ip = match parameters.get("client_ip") {
        Some(ip) => {
            Some(ip.parse::<IpAddr>().map_err(|_| OAuthError::invalid_request("client_ip is not an IP address"))?)
        }
        None => None,
    };
    let subject_agent = parameters.get("user_agent").cloned();
    let answer = introspect_token(&app, &resource_server, token, subject_ip, subject_agent, now, seen).await;
    let mut response = Json(answer).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

async fn introspect_token(
    app: &AppState,
    resource_server: &CredentialView,
    token: &str,
    subject_ip: Option<IpAddr>,
    subject_agent: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
    seen: u64,
) -> Introspection {
    let inactive = Introspection::default();
    // Which credential, which of its values, and what the token itself says.
    let (view, presented, claims) = if token.contains('.') {
        let Ok(claims) = app.keys.verify(token, app.clock.now()) else { return inactive };
        let Some(view) = CredentialId::parse(&claims.sub).ok().and_then(|id| app.projections.hot_index().view(id))
        else {
            return inactive;
        };
        (view, Presented::Current, Some(claims))
    } else {
        let Some((view, presented)) = SecretToken::parse(token)
            .ok()
            .filter(|secret| secret.kind() == TokenKind::MachineToken)
            .and_then(|secret| app.projections.hot_index().lookup(&secret.digest()))
        else {
            return inactive;
        };
        (view, presented, None)
    };
    if view.org_id != resource_server.org_id {
        return inactive;
    }
    let checks_conditions = subject_ip.is_some() || subject_agent.is_some();
    let scopes = claims
        .as_ref()
        .and_then(|claims| Scopes::parse_space_separated(&claims.scope).ok())
        .unwrap_or_else(|| view.scopes.clone());
    // Only what the resource server told about its caller is checked: without `client_ip` the
    // IP allowlist is not evaluated, without `user_agent` the pattern is not; with neither, only
    // the state is.
    let evaluated: std::borrow::Cow<'_, CredentialView> = if subject_ip.is_some() && subject_agent.is_some() {
        std::borrow::Cow::Borrowed(&*view)
    } else {
        let mut partial = (*view).clone();
        if subject_ip.is_none() {
            partial.conditions.ip_allowlist.clear();
        }
        if subject_agent.is_none() {
            partial.conditions.user_agent_pattern = None;
        }
        if !checks_conditions {
            partial.conditions.time_windows.clear();
        }
        std::borrow::Cow::Owned(partial)
    };
    let access = AccessRequest {
        org_id: view.org_id,
        ip: subject_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        user_agent: subject_agent.as_deref(),
        at: now,
        route_class: RouteClass::Open,
        required_scope: scopes.iter().next().unwrap_or(Scope::Read),
    };
    let decision = evaluate(&evaluated, presented, &access);
    if checks_conditions {
        let request = RequestMeta {
            ip: subject_ip.map(|ip| ip.to_string()),
            user_agent: subject_agent.clone(),
            request_id: None,
        };
        let used = Use {
            method: "POST",
            route: "/oauth2/introspect",
            request: &request,
            ip: subject_ip.map_or_else(String::new, |ip| ip.to_string()),
            at: now,
            seen,
        };
        match decision {
            Ok(()) => {
                if let Err(error) = app.usage.used(&view, &used).await {
                    tracing::error!(%error, "recording an introspected use failed");
                    return inactive;
                }
            }
            Err(reason) => app.usage.denied(&view, reason, &used),
        }
    }
    if decision.is_err() {
        return inactive;
    }
    match claims {
        Some(claims) => Introspection {
            active: true,
            scope: Some(claims.scope),
            client_id: claims.client_id,
            sub: Some(claims.sub),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            org: Some(claims.org),
            token_type: Some("Bearer"),
            kind: Some(kind_name(view.kind)),
            environment_hint: view.environment_hint.clone(),
            project: view.project_id.map(|id| id.to_string()),
        },
        None => Introspection {
            active: true,
            scope: Some(view.scopes.to_space_separated()),
            client_id: None,
            sub: Some(view.id.to_string()),
            exp: view.expires_at.map(|at| at.timestamp()),
            iat: None,
            org: view.org_id.map(|org| org.to_string()),
            token_type: Some("Bearer"),
            kind: Some(kind_name(view.kind)),
            environment_hint: view.environment_hint.clone(),
            project: view.project_id.map(|id| id.to_string()),
        },
    }
}

fn kind_name(kind: CredentialKind) -> &'static str {
    kind.as_str()
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = TAG, security(()), responses((status = 200, body = Jwks)))]
async fn jwks(State(app): State<AppState>) -> Json<Jwks> {
    Json(app.keys.jwks())
}

/// Authorization server metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = TAG, security(()), responses((status = 200, description = "RFC 8414 metadata")))]
async fn metadata(State(app): State<AppState>) -> Json<serde_json::Value> {
    let base = app.config.public_url.trim_end_matches('/');
    Json(serde_json::json!({
        "issuer": app.keys.issuer(),
        "token_endpoint": format!("{base}/oauth2/token"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": [CLIENT_CREDENTIALS, assertion::JWT_BEARER],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": [Scope::Read.as_str(), Scope::Write.as_str()],
        "response_types_supported": [],
    }))
}
