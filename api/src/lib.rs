//! credledger's HTTP API. It owns HTTP and JSON wire shapes: handlers turn requests into domain
//! commands, append their events to the store, wait until the projections have applied them, and
//! answer from the read models.

mod as_of;
pub mod auth;
pub mod background;
mod clock;
mod command;
pub mod dashboard;
mod extract;
pub mod freshness;
#[doc(hidden)]
pub mod fuzzing;
mod input;
pub mod ledger;
mod limiter;
mod metrics_layer;
pub mod problem;
mod routes;
pub mod secrets_key;
pub mod signing;
mod strict_json;
mod usage;
mod views;

use std::sync::{Arc, OnceLock};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use credledger_domain::values::Cidr;
use credledger_projections::Projections;
use credledger_store::EventStore;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use clock::Clock;
pub use problem::Problem;
pub use signing::SigningKeys;
pub use usage::UsageRecorder;

/// Settings of the API that come from the server's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Peers whose `X-Forwarded-For` is believed (DESIGN.md §5, item 4).
    pub trusted_proxies: Vec<Cidr>,
    /// The URL clients reach this server at: the base of the OAuth2 metadata's endpoints.
    pub public_url: String,
    /// How old this node's last confirmation that its view has caught up with a shared log may
    /// be before it stops judging requests (see [`freshness`]).
    pub freshness: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self { trusted_proxies: Vec::new(), public_url: String::new(), freshness: std::time::Duration::from_secs(2) }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub projections: Projections,
    pub usage: UsageRecorder,
    pub clock: Clock,
    pub config: Arc<Config>,
    pub keys: SigningKeys,
    pub ledger: Arc<ledger::Ledger>,
    pub freshness: freshness::Freshness,
    /// The master key of secrets; a server without one refuses the secrets routes.
    pub secrets_key: Option<Arc<secrets_key::SecretsKey>>,
    pub(crate) limiter: Arc<limiter::Limiter>,
    /// The dashboard's sessions and one-time sign-in links (memory only).
    pub(crate) dashboard: Arc<dashboard::Sessions>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn EventStore>,
        projections: Projections,
        clock: Clock,
        config: Config,
        keys: SigningKeys,
        ledger: Arc<ledger::Ledger>,
    ) -> Self {
        Self {
            usage: UsageRecorder::new(store.clone()),
            freshness: freshness::Freshness::new(&*store, config.freshness),
            store,
            projections,
            clock,
            config: Arc::new(config),
            keys,
            ledger,
            secrets_key: None,
            limiter: Arc::default(),
            dashboard: Arc::default(),
        }
    }

    /// The state with the master key of secrets.
    #[must_use]
    pub fn with_secrets_key(mut self, key: secrets_key::SecretsKey) -> Self {
        self.secrets_key = Some(Arc::new(key));
        self
    }
}

impl AppState {
    /// Waits until this node's view of the ledger is fresh (see [`freshness`]) and returns the
    /// position it has reached: read before a credential is looked up, it is what the decision
    /// on the request is based on.
    pub async fn fresh_view(&self) -> Result<u64, Problem> {
        self.freshness.wait(&self.projections, 0).await
    }

    /// Waits until the view includes `position` (an event that voided a decision) and is fresh,
    /// and returns the position reached, for judging the request again.
    pub async fn view_including(&self, position: u64) -> Result<u64, Problem> {
        self.freshness.wait(&self.projections, position).await
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "credledger", description = "An event-sourced credential ledger for machine credentials."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Every authenticated route takes `Authorization: Bearer <PAT or machine token>`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The routes and the OpenAPI document generated from their handlers.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .merge(routes::orgs::routes())
        .merge(routes::projects::routes())
        .merge(routes::secrets::routes())
        .merge(routes::machine_tokens::routes())
        .merge(routes::oauth::routes())
        .merge(routes::service_credentials::routes())
        .merge(routes::machines::routes())
        .merge(routes::whoami::routes())
        .merge(routes::signing_keys::routes())
        .merge(routes::audit::routes())
        .merge(routes::export::routes())
        .merge(routes::incidents::routes())
        .merge(routes::ledger::routes())
        .merge(dashboard::api_routes())
        .split_for_parts()
}

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut openapi) = api();
    openapi.paths.add_path_operation(
        "/openapi.json",
        vec![utoipa::openapi::HttpMethod::Get],
        utoipa::openapi::path::OperationBuilder::new()
            .summary(Some("This document"))
            .tag("operations")
            // Public, like the health checks: an empty requirement overrides the document's bearer.
            .security(utoipa::openapi::security::SecurityRequirement::default())
            .response("200", utoipa::openapi::ResponseBuilder::new().description("The OpenAPI document"))
            .build(),
    );
    openapi
}

pub fn router(state: AppState) -> Router {
    let (routes, _) = api();
    let routes = routes.merge(dashboard::pages(&state));
    let document: axum::body::Bytes = serde_json::to_vec(&openapi()).unwrap_or_default().into();
    routes
        .route(
            "/openapi.json",
            get(move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document) }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(deadline))
        .layer(axum::middleware::from_fn(metrics_layer::record))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .with_state(state)
}

/// 32 bytes from the operating system's CSPRNG, for a new secret.
pub(crate) fn random_bytes() -> Result<[u8; 32], Problem> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| Problem::internal("the system's random source failed", &error))?;
    Ok(bytes)
}

/// Answers as soon as the server runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "Running")))]
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// How long `/readyz` reports a failed append when nothing has been appended since.
const STORAGE_FAULT_SHOWN: std::time::Duration = std::time::Duration::from_secs(30);

/// How long `/readyz` waits for the read models to reach the log's head as it was when the
/// request arrived before it says the node is catching up.
const READY_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Ready once the store answers and the read models have caught up, within [`READY_GRACE`], with
/// the log as it was when the request arrived.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "Ready"), (status = 503, description = "Catching up or store unavailable")))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let head = match state.store.head().await {
        Ok(head) => head,
        Err(error) => {
            tracing::error!(%error, "reading the log head failed");
            return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "store unavailable" })));
        }
    };
    state.ledger.check_holds_projected(head);
    let projected = state.projections.position();
    if let Some(reason) = state.ledger.halted() {
        let body = serde_json::json!({ "status": "ledger integrity failure", "reason": reason, "head": head, "projected": projected });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    // A storage fault shows until an append succeeds again, or for a while after the last one
    // failed when nothing has been appended since; the read models' own writes count too.
    let fault = state
        .ledger
        .storage_fault()
        .filter(|fault| fault.at.elapsed() < STORAGE_FAULT_SHOWN)
        .map(|fault| fault.cause)
        .or_else(|| state.projections.failure());
    if let Some(cause) = fault {
        let body =
            serde_json::json!({ "status": "storage failure", "cause": cause, "head": head, "projected": projected });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    // A node that has not confirmed lately how far the shared log reaches may be behind other
    // nodes' writes (after a stall, say) even when it has applied all it knows of.
    if let freshness::Standing::Checked { head: shared, age, fresh: false } =
        state.freshness.standing(&state.projections)
    {
        let body = serde_json::json!({
            "status": "stale",
            "head": head,
            "projected": projected,
            "sharedHead": shared,
            "confirmedSecondsAgo": age.as_secs_f64(),
            "freshnessSeconds": state.freshness.bound().as_secs_f64(),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    // Under a steady stream of writes the read models trail the log by the events of the batch
    // being applied; that is a node at work, not one catching up.
    if projected < head {
        let _ = tokio::time::timeout(READY_GRACE, state.projections.wait_for(head)).await;
    }
    let projected = state.projections.position();
    let ready = projected >= head;
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "catching up" },
        "head": head,
        "projected": projected,
        "leader": state.store.leads_now(),
    });
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// The Prometheus recorder, installed once per process.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then this one simply stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Prometheus metrics: requests by route and status, authentication outcomes by reason, store
/// batch sizes and latencies, projection lag.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()), responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let head = state.store.head().await.unwrap_or_default();
    let projected = state.projections.position();
    metrics::gauge!("credledger_log_head").set(head as f64);
    metrics::gauge!("credledger_projection_lag_events").set(head.saturating_sub(projected) as f64);
    metrics::gauge!("credledger_hot_index_credentials").set(state.projections.hot_index().len() as f64);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics_handle().render())
}

/// No request waits longer than this for its answer, whatever its storage does.
const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Answers 503 to a request that could not be answered within [`REQUEST_DEADLINE`] (a
/// stalled database, a storage fault that blocks instead of failing). A streamed body (an
/// export) is bounded only until its first bytes.
async fn deadline(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the server could not answer within 10 seconds because its storage is slow or unreachable; \
             a command may or may not have been recorded: read it back before repeating it",
        )
        .retry_after(5)
        .into_response(),
    }
}

async fn not_found() -> Problem {
    Problem::not_found("route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "the route does not take this method")
}
