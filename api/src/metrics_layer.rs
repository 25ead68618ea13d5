//! What every request leaves behind besides its answer: its count and latency by route template,
//! method and status (metrics), and one log line naming the route template, the status, the
//! latency, the request id and the credential that made it (never a secret, never the path's
//! values beyond the template).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use credledger_domain::{CredentialId, CredentialKind};

/// The credential that made a request, set by authentication once it knows it (accepted or
/// denied), read by the request's log line.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestCredential(Arc<OnceLock<(CredentialKind, CredentialId)>>);

impl RequestCredential {
    pub(crate) fn set(&self, kind: CredentialKind, id: CredentialId) {
        let _ = self.0.set((kind, id));
    }
}

/// Longest client-chosen request id that is logged and echoed; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

pub async fn record(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    // Clients choose the method string: only the standard ones become label values.
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned);
    let credential = RequestCredential::default();
    request.extensions_mut().insert(credential.clone());

    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let (kind, id) = credential.0.get().map_or(("-", String::from("-")), |(kind, id)| (kind.as_str(), id.to_string()));
    tracing::info!(
        target: "credledger::request",
        method = %method,
        route = %route,
        status,
        latency_ms = format_args!("{:.3}", elapsed.as_secs_f64() * 1000.0),
        request_id = %request_id,
        credential_kind = %kind,
        credential_id = %id,
        "request"
    );
    metrics::counter!("credledger_http_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("credledger_http_request_seconds", "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
    response
}
