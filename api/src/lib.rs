//! credledger's HTTP API. It owns HTTP and JSON wire shapes: handlers turn requests into domain
//! commands, append their events to the store, wait until the projections have applied them, and
//! answer from the read models.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use credledger_projections::Projections;
use credledger_store::EventStore;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub projections: Projections,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready once the read models have caught up with the log as it was when the request arrived.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let head = match state.store.head().await {
        Ok(head) => head,
        Err(error) => {
            tracing::error!(%error, "reading the log head failed");
            return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "store unavailable" })));
        }
    };
    let projected = state.projections.position();
    let body = serde_json::json!({ "status": if projected >= head { "ready" } else { "catching up" }, "head": head, "projected": projected });
    let status = if projected >= head { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}
