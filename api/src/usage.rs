//! Recording the use of credentials (DESIGN.md §5, item 3).
//!
//! An accepted request by a machine credential is answered only after its CredentialUsed event
//! is durable; the store's group commit turns many such appends into one transaction. Denials of
//! known credentials are coalesced in memory, at most one event per credential, reason and
//! second, carrying a count, so that a flood of refused requests cannot flood the log; a
//! background task writes them out every second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use credledger_domain::policy::{CredentialView, DenyReason};
use credledger_domain::usage::{self, AccessTokenIssued, CredentialAccessDenied, CredentialUsed};
use credledger_domain::values::Scopes;
use credledger_domain::{Actor, ActorKind, CredentialId, EventId, RequestMeta, SCHEMA_VERSION, event};
use credledger_store::{Basis, EventStore, ExpectedVersion, NewEvent, StoreError};

/// Appends usage events; cheap to clone.
#[derive(Debug, Clone)]
pub struct UsageRecorder {
    store: Arc<dyn EventStore>,
    /// Keyed by credential, reason and second: a denial in a new second starts a new entry, and
    /// the writer takes entries only once their second is over.
    pending: Arc<Mutex<HashMap<DenialKey, PendingDenial>>>,
}

/// Credential, reason, and the second (unix time) of the denials an event counts.
type DenialKey = (CredentialId, DenyReason, i64);

#[derive(Debug)]
struct PendingDenial {
    view: Arc<CredentialView>,
    event: CredentialAccessDenied,
    request: RequestMeta,
}

/// What the request looked like, for the usage record.
#[derive(Debug, Clone)]
pub struct Use<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub request: &'a RequestMeta,
    pub ip: String,
    pub at: DateTime<Utc>,
    /// The log position the hot index had reached when the credential's view was looked up (read
    /// before the lookup): what the decision to accept was based on.
    pub seen: u64,
}

impl UsageRecorder {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store, pending: Arc::default() }
    }

    /// Appends CredentialUsed and returns once it is durable. Refused with
    /// [`StoreError::Superseded`] when an event of the credential's lifecycle was recorded after
    /// the view the use was judged on: catch up to it and judge again.
    pub async fn used(&self, view: &CredentialView, used: &Use<'_>) -> Result<(), StoreError> {
        let event = usage::Event::CredentialUsed(CredentialUsed {
            credential_id: view.id,
            kind: view.kind,
            org_id: view.org_id,
            method: used.method.to_owned(),
            route: used.route.to_owned(),
            ip: used.ip.clone(),
            user_agent: used.request.user_agent.clone(),
            at: used.at,
            based_on: Some(used.seen),
        });
        let stream = usage::stream(view.id);
        let basis = Some(lifecycle_basis(view, used.seen));
        self.append_to(&stream, ExpectedVersion::Any, basis, view, &event, used.at, used.request.clone()).await
    }

    /// Appends AccessTokenIssued and returns once it is durable; refused as [`UsageRecorder::used`] is.
    pub async fn issued(&self, view: &CredentialView, issued: &Use<'_>, token: IssuedToken) -> Result<(), StoreError> {
        let IssuedToken { jti, assertion_jti, scopes, expires_at } = token;
        // An exchanged assertion gets a stream of its own, which must not exist yet: the store's
        // optimistic concurrency makes every assertion usable once, durably and on every node.
        let (stream, expected) = match &assertion_jti {
            Some(assertion) => (assertion_stream(view.id, assertion), ExpectedVersion::NoStream),
            None => (usage::stream(view.id), ExpectedVersion::Any),
        };
        let event = usage::Event::AccessTokenIssued(AccessTokenIssued {
            credential_id: view.id,
            kind: view.kind,
            org_id: view.org_id,
            jti,
            assertion_jti,
            scopes,
            expires_at,
            ip: issued.ip.clone(),
            user_agent: issued.request.user_agent.clone(),
            at: issued.at,
            based_on: Some(issued.seen),
        });
        let basis = Some(lifecycle_basis(view, issued.seen));
        self.append_to(&stream, expected, basis, view, &event, issued.at, issued.request.clone()).await
    }

    /// Appends a usage event of a request already accepted (SecretsRead) and returns once it is
    /// durable; refused as [`UsageRecorder::used`] is when the credential's lifecycle moved past
    /// `seen`, the position its request was judged on.
    pub async fn record(
        &self,
        view: &CredentialView,
        event: &usage::Event,
        at: DateTime<Utc>,
        request: RequestMeta,
        seen: u64,
    ) -> Result<(), StoreError> {
        let basis = Some(lifecycle_basis(view, seen));
        self.append_to(&usage::stream(view.id), ExpectedVersion::Any, basis, view, event, at, request).await
    }

    /// Counts a denial; the first of its credential, reason and second starts a new event.
    pub fn denied(&self, view: &Arc<CredentialView>, reason: DenyReason, denied: &Use<'_>) {
        let second = denied.at.timestamp();
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pending
            .entry((view.id, reason, second))
            .and_modify(|entry| entry.event.count = entry.event.count.saturating_add(1))
            .or_insert_with(|| PendingDenial {
                view: Arc::clone(view),
                event: CredentialAccessDenied {
                    credential_id: view.id,
                    kind: view.kind,
                    org_id: view.org_id,
                    reason,
                    count: 1,
                    method: denied.method.to_owned(),
                    route: denied.route.to_owned(),
                    ip: denied.ip.clone(),
                    user_agent: denied.request.user_agent.clone(),
                    at: denied.at,
                },
                request: denied.request.clone(),
            });
    }

    /// Writes every coalesced denial of a second that has ended (all of them when `all`).
    pub async fn flush_denials(&self, now: DateTime<Utc>, all: bool) {
        let ready: Vec<PendingDenial> = {
            let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let keys: Vec<_> = pending
                .iter()
                .filter(|((_, _, second), _)| all || *second < now.timestamp())
                .map(|(key, _)| *key)
                .collect();
            keys.into_iter().filter_map(|key| pending.remove(&key)).collect()
        };
        // Each append waits for its own durable commit; issued together they share one.
        futures::future::join_all(ready.into_iter().map(|denial| self.write_denial(denial))).await;
    }

    async fn write_denial(&self, denial: PendingDenial) {
        let at = denial.event.at;
        let event = usage::Event::CredentialAccessDenied(denial.event);
        if let Err(error) = self.append(&denial.view, &event, at, denial.request).await {
            tracing::error!(%error, credential = %denial.view.id, "recording a denial failed");
        }
    }

    async fn append(
        &self,
        view: &CredentialView,
        event: &usage::Event,
        at: DateTime<Utc>,
        request: RequestMeta,
    ) -> Result<(), StoreError> {
        self.append_to(&usage::stream(view.id), ExpectedVersion::Any, None, view, event, at, request).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn append_to(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        basis: Option<Basis>,
        view: &CredentialView,
        event: &usage::Event,
        at: DateTime<Utc>,
        request: RequestMeta,
    ) -> Result<(), StoreError> {
        let (event_type, payload) = event::encode(event).map_err(StoreError::Encode)?;
        let new = NewEvent {
            event_id: EventId::from_uuid(uuid::Uuid::now_v7()),
            event_type,
            schema_version: SCHEMA_VERSION,
            org_id: view.org_id,
            occurred_at: at,
            actor: Actor { kind: actor_kind(view), id: view.id.to_string() },
            request: Some(request),
            payload,
        };
        match basis {
            Some(basis) => self.store.append_on_basis(stream, expected, vec![new], basis).await.map(|_| ()),
            None => self.store.append(stream, expected, vec![new]).await.map(|_| ()),
        }
    }
}

/// A use judged on the credential's view at `seen` must not land after a later event of its
/// lifecycle stream (a revocation, a disabling, an expiry, a roll, a removal of its owner's PATs).
fn lifecycle_basis(view: &CredentialView, seen: u64) -> Basis {
    Basis { stream: format!("{}{}", view.kind.stream_prefix(), view.id), position: seen }
}

/// What an issuance records.
#[derive(Debug)]
pub struct IssuedToken {
    pub jti: String,
    /// The exchanged assertion's `jti` (jwt-bearer grant).
    pub assertion_jti: Option<String>,
    pub scopes: Scopes,
    pub expires_at: DateTime<Utc>,
}

/// The stream that records the one use of an assertion: named by the machine and a digest of
/// the assertion's `jti` (which the client chose, so it is not used raw in a stream name).
pub fn assertion_stream(machine: CredentialId, jti: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(jti.as_bytes());
    format!("assertion-{machine}-{}", hex::encode(&digest[..16]))
}

fn actor_kind(view: &CredentialView) -> ActorKind {
    use credledger_domain::CredentialKind;
    match view.kind {
        CredentialKind::PersonalToken => ActorKind::Member,
        CredentialKind::MachineToken => ActorKind::MachineToken,
        CredentialKind::ServiceCredential => ActorKind::ServiceCredential,
        CredentialKind::Machine => ActorKind::Machine,
    }
}
