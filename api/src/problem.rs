//! Errors as `application/problem+json` (RFC 9457), in one place.
//!
//! Every refusal has a stable `code` clients can switch on, a human `detail`, and for validation
//! errors the offending `field`. Internal causes are logged here and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use credledger_domain::DomainError;
use credledger_domain::policy::DenyReason;
use credledger_domain::values::ValueError;
use credledger_projections::ProjectionError;
use credledger_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// What a client waits before retrying after a storage fault.
const STORAGE_RETRY_SECONDS: u32 = 5;

/// A refused or failed request.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub field: Option<String>,
    /// Seconds after which a retry may succeed, sent as `Retry-After` (storage faults).
    pub retry_after: Option<u32>,
}

/// The problem+json document every refusal carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDocument {
    /// A URI naming the problem kind.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// Stable, snake_case: what clients switch on.
    code: String,
    detail: String,
    /// The offending request field, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), field: None, retry_after: None }
    }

    /// The storage under the log or the read models failed (disk full, an I/O error, a
    /// read-only file system, the database unreachable): 503 with `Retry-After`, the cause
    /// logged and never sent. The server recovers by itself once the fault clears.
    pub fn storage(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the server's storage failed; nothing of this request was recorded; retry later",
        )
        .retry_after(STORAGE_RETRY_SECONDS)
    }

    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// A request value that failed to parse: 422 with the field named.
    pub fn invalid(field: &str, code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).with_field(field)
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    /// A failure of ours: logged with its cause, answered without it.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "the server failed; the request may be retried")
    }

    /// The answer to a denied credential. A credential of another organization learns nothing
    /// about what exists there: 404, as for anything else it cannot see.
    pub fn denied(reason: DenyReason) -> Self {
        match reason {
            DenyReason::WrongOrganization => Self::not_found("resource"),
            DenyReason::Disabled
            | DenyReason::Expired
            | DenyReason::Revoked
            | DenyReason::InvalidSecret
            | DenyReason::Locked => {
                Self::unauthorized(reason.as_str(), format!("the credential is {}", reason.as_str()))
            }
            DenyReason::IpNotAllowed => Self::forbidden(reason.as_str(), "the request's IP address is not allowed"),
            DenyReason::OutsideTimeWindow => {
                Self::forbidden(reason.as_str(), "the credential may not be used at this time")
            }
            DenyReason::UserAgentMismatch => {
                Self::forbidden(reason.as_str(), "the request's User-Agent does not match the credential's pattern")
            }
            DenyReason::InsufficientScope => {
                Self::forbidden(reason.as_str(), "the credential's scopes do not allow this request")
            }
            DenyReason::MachineCredentialForbidden => Self::forbidden(
                reason.as_str(),
                "machine credentials cannot do this: they never manage humans or other kinds of credential, \
                 and change no credential but themselves",
            ),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        metrics::counter!("credledger_problems_total", "code" => self.code).increment(1);
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = ProblemDocument {
            kind: format!("https://credledger.dev/problems/{}", self.code.replace('_', "-")),
            title: title.to_owned(),
            status: self.status.as_u16(),
            code: self.code.to_owned(),
            detail: self.detail,
            field: self.field,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // RFC 6750 §3: no error code when no credentials were sent.
        let challenge = match (self.status, self.code) {
            (StatusCode::UNAUTHORIZED, "missing_credentials") => Some("Bearer realm=\"credledger\""),
            (StatusCode::UNAUTHORIZED, _) => Some("Bearer realm=\"credledger\", error=\"invalid_token\""),
            (_, "insufficient_scope") => Some("Bearer realm=\"credledger\", error=\"insufficient_scope\""),
            _ => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        // Every 503 is a passing state (catching up, shutting down, storage trouble).
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.entry(header::RETRY_AFTER).or_insert(HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<ValueError> for Problem {
    fn from(error: ValueError) -> Self {
        Self::invalid(error.field(), error.code(), error.to_string())
    }
}

impl From<DomainError> for Problem {
    fn from(error: DomainError) -> Self {
        let status = match &error {
            DomainError::InvalidTransition { .. }
            | DomainError::AlreadyExists { .. }
            | DomainError::MemberExists
            | DomainError::LastOwner
            | DomainError::ProjectExists
            | DomainError::EnvironmentExists
            | DomainError::NotYetExpired
            | DomainError::GraceNotApplicable
            | DomainError::StaleVersion { .. } => StatusCode::CONFLICT,
            DomainError::NotFound { .. } | DomainError::MemberNotFound | DomainError::ProjectNotFound => {
                StatusCode::NOT_FOUND
            }
            DomainError::InvalidExpiry { .. }
            | DomainError::GracePeriodTooLong { .. }
            | DomainError::NothingToUpdate => StatusCode::UNPROCESSABLE_ENTITY,
            DomainError::Value(value) => return value.clone().into(),
        };
        let field = match &error {
            DomainError::InvalidExpiry { .. } => Some("expiresInDays"),
            DomainError::GracePeriodTooLong { .. } => Some("gracePeriodSeconds"),
            _ => None,
        };
        let problem = Self::new(status, error.code(), error.to_string());
        match field {
            Some(field) => problem.with_field(field),
            None => problem,
        }
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::WrongExpectedVersion { .. } => Self::new(
                StatusCode::CONFLICT,
                "concurrent_modification",
                "the resource kept changing while this request was applied; retry",
            ),
            // A use the node judged on a view older than its credential's last lifecycle event,
            // still so after the node tried to catch up.
            StoreError::Superseded { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stale_view",
                "the credential changed while this request was judged; retry",
            ),
            StoreError::Closed => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down; retry")
            }
            StoreError::ReadOnly(reason) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_integrity",
                format!("the ledger is read-only until an operator restores or accepts its log: {reason}"),
            ),
            error if error.is_storage_fault() => Self::storage("event store failure", &error),
            other => Self::internal("event store failure", &other),
        }
    }
}

impl From<ProjectionError> for Problem {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::Store(error) => error.into(),
            ProjectionError::Sqlite(_) | ProjectionError::Pool(_) => Self::storage("read model failure", &error),
            other => Self::internal("read model failure", &other),
        }
    }
}
