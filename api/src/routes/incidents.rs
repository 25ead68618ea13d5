//! `/v1/incidents/:orgId/…`, incident response across credentials: `trace` finds the credential
//! a leaked value (current or rolled away) belongs to, with its whole timeline; `activity` lists
//! every credential used or denied from a network. Both read the audit-trail read model, and are
//! for the organization's owners and admins, with their PATs.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use credledger_domain::token::{SecretToken, TokenDigest};
use credledger_domain::{CredentialId, OrgId, Status};
use credledger_projections::Credential;
use credledger_projections::queries::{AuditEntry, AuditFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::{invalid_query, parse_network, parse_time};
use crate::AppState;
use crate::auth::Caller;
use crate::extract::{Body, Query, path_id};
use crate::problem::{Problem, ProblemDocument};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(trace)).routes(routes!(activity))
}

const TAG: &str = "incidents";

/// A leaked value to trace: exactly one of the two. No `Debug`, so the plaintext cannot reach a
/// log by accident; it is hashed at once and neither logged nor stored.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TraceRequest {
    /// The plaintext, e.g. `cl_mt_prod_…`, `cl_cs_…` or `cl_pat_…`.
    #[serde(default)]
    pub(crate) token: Option<String>,
    /// The SHA-256 of the plaintext, 64 hex characters, e.g. from a secret scanner's report.
    #[serde(default)]
    pub(crate) sha256: Option<String>,
}

/// The credential a traced value belongs to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TracedCredentialView {
    id: String,
    /// personal_token, machine_token, service_credential or machine.
    kind: &'static str,
    name: String,
    /// active, disabled, expired or revoked.
    state: &'static str,
    owner_id: Option<String>,
    /// The current value's display prefix; none for a machine, whose key the server never sees.
    token_prefix: Option<String>,
}

/// One entry of a credential's timeline: an audit-trail entry with the request details of a use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TimelineEntryView {
    #[serde(flatten)]
    entry: super::audit::AuditEntryView,
    /// The request's method, for a usage event.
    method: Option<String>,
    /// The request's route template, for a usage event.
    route: Option<String>,
    /// Why the requests were denied, for a denial.
    reason: Option<String>,
    /// How many requests a usage entry stands for (coalesced denials count several).
    count: Option<u64>,
}

impl From<AuditEntry> for TimelineEntryView {
    fn from(mut entry: AuditEntry) -> Self {
        let (method, route, reason, count) =
            (entry.method.take(), entry.route.take(), entry.reason.take(), entry.count);
        Self { entry: entry.into(), method, route, reason, count }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TraceView {
    credential: TracedCredentialView,
    /// `current` when the value authenticates the credential now, `previous` when a roll or
    /// rotation replaced it.
    matched: &'static str,
    /// Every audit-trail entry of the credential, lifecycle and usage, oldest first.
    timeline: Vec<TimelineEntryView>,
    /// Every read of secrets by the credential, oldest first: what it could have leaked.
    #[serde(rename = "secretsRead")]
    secrets_read: Vec<SecretsReadView>,
    /// The secrets to rotate if the credential leaked: every name it read, by environment.
    #[serde(rename = "secretsToRotate")]
    secrets_to_rotate: Vec<SecretsToRotateView>,
}

/// A read of an environment's secrets by the traced credential.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SecretsReadView {
    project_id: String,
    environment: String,
    version: u64,
    names: Vec<String>,
    ip: String,
    user_agent: Option<String>,
    #[serde(with = "credledger_domain::time_format")]
    #[schema(value_type = String, format = DateTime)]
    at: DateTime<Utc>,
    position: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SecretsToRotateView {
    project_id: String,
    environment: String,
    names: Vec<String>,
}

fn secrets_read_by(
    app: &AppState,
    id: CredentialId,
) -> Result<(Vec<SecretsReadView>, Vec<SecretsToRotateView>), Problem> {
    let rows = app.projections.secret_reads_by(id)?;
    let mut to_rotate: std::collections::BTreeMap<(String, String), std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for row in &rows {
        to_rotate
            .entry((row.project_id.clone(), row.environment.clone()))
            .or_default()
            .extend(row.names.iter().cloned());
    }
    let reads = rows
        .into_iter()
        .map(|row| SecretsReadView {
            project_id: row.project_id,
            environment: row.environment,
            version: row.version,
            names: row.names,
            ip: row.ip,
            user_agent: row.user_agent,
            at: DateTime::from_timestamp_millis(row.at).unwrap_or(DateTime::UNIX_EPOCH),
            position: row.position,
        })
        .collect();
    let to_rotate = to_rotate
        .into_iter()
        .map(|((project_id, environment), names)| SecretsToRotateView {
            project_id,
            environment,
            names: names.into_iter().collect(),
        })
        .collect();
    Ok((reads, to_rotate))
}

/// Finds the credential whose current or past secret is the given value, with its timeline.
/// Another organization's credential is not found, as an unknown value is not.
#[utoipa::path(post, path = "/v1/incidents/{orgId}/trace", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization")), request_body = TraceRequest,
    responses((status = 200, description = "The credential, which of its values matched, and its timeline", body = TraceView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn trace(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Body(request): Body<TraceRequest>,
) -> Result<Json<TraceView>, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    let digest = traced_digest(request)?;
    let not_found = || Problem::not_found("credential with this secret");
    let id = app.projections.credential_by_secret(&digest)?.ok_or_else(not_found)?;
    let record = app.projections.credential(org, id)?.ok_or_else(not_found)?;
    let matched = if record.credential.current_secret().ct_eq(&digest) { "current" } else { "previous" };
    let timeline = app.projections.credential_timeline(org, id)?;
    let (secrets_read, secrets_to_rotate) = secrets_read_by(&app, id)?;
    Ok(Json(TraceView {
        credential: traced_credential(&record.credential, app.clock.now()),
        matched,
        timeline: timeline.into_iter().map(TimelineEntryView::from).collect(),
        secrets_read,
        secrets_to_rotate,
    }))
}

/// The digest to look up. The plaintext is parsed (its checksum refuses a mistyped value) and
/// dropped here.
fn traced_digest(request: TraceRequest) -> Result<TokenDigest, Problem> {
    match (request.token, request.sha256) {
        (Some(token), None) => SecretToken::parse(token.trim())
            .map(|token| token.digest())
            .map_err(|error| Problem::invalid("token", error.code(), error.to_string())),
        (None, Some(sha256)) => TokenDigest::from_hex(&sha256)
            .map_err(|_| Problem::invalid("sha256", "invalid_field", "`sha256` takes 64 hex characters")),
        (Some(_), Some(_)) => {
            Err(Problem::invalid("sha256", "invalid_field", "send either `token` or `sha256`, not both"))
        }
        (None, None) => Err(Problem::invalid("token", "invalid_field", "send `token` (a plaintext) or `sha256`")),
    }
}

fn traced_credential(credential: &Credential, now: DateTime<Utc>) -> TracedCredentialView {
    let (name, owner, prefix, state) = match credential {
        Credential::PersonalToken(t) => {
            let expired = t.status == Status::Active && t.expires_at.is_some_and(|at| at <= now);
            let state = if expired { Status::Expired } else { t.status };
            (t.name.to_string(), t.member_id.map(|m| m.to_string()), Some(t.token_prefix.to_string()), state)
        }
        Credential::MachineToken(t) => {
            (t.name.to_string(), Some(t.owner.to_string()), Some(t.token_prefix.to_string()), t.effective_status(now))
        }
        Credential::ServiceCredential(c) => {
            (c.name.to_string(), Some(c.owner.to_string()), Some(c.secret_prefix.to_string()), c.effective_status(now))
        }
        Credential::Machine(m) => (m.name.to_string(), Some(m.owner.to_string()), None, m.status),
    };
    TracedCredentialView {
        id: credential.id().to_string(),
        kind: credential.kind().as_str(),
        name,
        state: state.as_str(),
        owner_id: owner,
        token_prefix: prefix,
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ActivityQuery {
    /// Required: the network (CIDR, or a single address) requests came from.
    #[param(
        required = true,
        pattern = r"^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3})(/(3[0-2]|[12]?[0-9]))?|((([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:)|::(ffff(:0{1,4})?:)?(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|([0-9a-fA-F]{1,4}:){1,4}:(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|([0-9a-fA-F]{1,4}:){6}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$"
    )]
    ip: Option<String>,
    /// Only requests at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only requests before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

/// What one credential did from the network.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CredentialActivityView {
    credential_id: String,
    kind: Option<&'static str>,
    name: Option<String>,
    /// Accepted requests (uses and issued access tokens).
    uses: u64,
    /// Refused requests, coalesced denials counted in full.
    denials: u64,
    #[serde(with = "credledger_domain::time_format")]
    first_seen: DateTime<Utc>,
    #[serde(with = "credledger_domain::time_format")]
    last_seen: DateTime<Utc>,
    /// The distinct user agents, sorted.
    user_agents: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ActivityView {
    /// One item per credential, the earliest seen first.
    items: Vec<CredentialActivityView>,
}

/// Every credential used or denied from a network in a window, with counts.
#[utoipa::path(get, path = "/v1/incidents/{orgId}/activity", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ActivityQuery),
    responses((status = 200, description = "The credentials seen from the network, earliest first", body = ActivityView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn activity(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(query): Query<ActivityQuery>,
) -> Result<Json<ActivityView>, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    let network = match query.ip.as_deref() {
        Some(ip) => parse_network(ip)?,
        None => return Err(invalid_query("ip", "`ip` is required: a CIDR such as 203.0.113.0/24 or an address")),
    };
    let filter = AuditFilter {
        since: query.since.as_deref().map(|at| parse_time("since", at)).transpose()?,
        until: query.until.as_deref().map(|at| parse_time("until", at)).transpose()?,
        ip: Some(network),
        ..AuditFilter::default()
    };
    let mut items: Vec<CredentialActivityView> = Vec::new();
    let mut user_agents: Vec<BTreeSet<String>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for entry in app.projections.usage_entries(org, &filter)? {
        let Some(credential_id) = entry.credential_id else { continue };
        let at = entry.recorded_at;
        let slot = *index.entry(credential_id.clone()).or_insert_with(|| {
            items.push(CredentialActivityView {
                credential_id,
                kind: None,
                name: None,
                uses: 0,
                denials: 0,
                first_seen: at,
                last_seen: at,
                user_agents: Vec::new(),
            });
            user_agents.push(BTreeSet::new());
            items.len() - 1
        });
        let item = &mut items[slot];
        let count = entry.count.unwrap_or(1);
        if entry.outcome == "denied" {
            item.denials += count;
        } else {
            item.uses += count;
        }
        item.first_seen = item.first_seen.min(at);
        item.last_seen = item.last_seen.max(at);
        if let Some(user_agent) = entry.user_agent {
            user_agents[slot].insert(user_agent);
        }
    }
    for (item, agents) in items.iter_mut().zip(user_agents) {
        item.user_agents = agents.into_iter().collect();
        // The trail names credentials by id; the inventory holds what a responder recognises.
        if let Ok(id) = item.credential_id.parse::<CredentialId>()
            && let Some(record) = app.projections.credential(org, id)?
        {
            item.kind = Some(record.credential.kind().as_str());
            item.name = Some(traced_credential(&record.credential, app.clock.now()).name);
        }
    }
    Ok(Json(ActivityView { items }))
}
