//! `/v1/audit/:orgId`, the organization's audit trail, and `…/:id/uses` of each kind of machine
//! credential, the incident-response view of every use and denial. Both read the audit-trail
//! read model newest first; the cursor is the last position a page returned, and positions never
//! change once given, so events appended between pages never shift, repeat or hide an entry.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use credledger_domain::values::Cidr;
use credledger_domain::{
    CredentialId, OrgId, machine_identity, machine_token, organization, personal_token, service_credential, usage,
};
use credledger_projections::queries::{AuditEntry, AuditFilter, AuditOutcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{Query, page_limit, path_id};
use crate::problem::{Problem, ProblemDocument};
use crate::views::Page;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(trail))
        .routes(routes!(machine_token_uses))
        .routes(routes!(service_credential_uses))
        .routes(routes!(machine_uses))
}

const TAG: &str = "audit";
const DEFAULT_PAGE: usize = 100;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only events of this credential.
    #[param(format = Uuid)]
    pub(crate) credential_id: Option<String>,
    /// Only events caused by this actor (a member id, a credential id, or a system actor's name).
    pub(crate) actor: Option<String>,
    /// Only events of this type, e.g. `MachineTokenRevoked`.
    #[serde(rename = "type")]
    pub(crate) event_type: Option<String>,
    /// Only events recorded at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub(crate) since: Option<String>,
    /// Only events recorded before this time (RFC 3339).
    #[param(format = DateTime)]
    pub(crate) until: Option<String>,
    /// Only events whose request came from this network (CIDR, or a single address).
    #[param(
        pattern = r"^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3})(/(3[0-2]|[12]?[0-9]))?|((([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:)|::(ffff(:0{1,4})?:)?(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|([0-9a-fA-F]{1,4}:){1,4}:(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|([0-9a-fA-F]{1,4}:){6}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$"
    )]
    pub(crate) ip: Option<String>,
    /// `success` or `denied`.
    #[param(pattern = "^(success|denied)$")]
    pub(crate) outcome: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(
        pattern = r"^([0-9]{1,19}|0[0-9]{19}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]{1}|1844674407370955161[0-4]|18446744073709551615)$"
    )]
    pub(crate) cursor: Option<String>,
    /// 1 to 500; 100 by default.
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsesQuery {
    /// Only uses at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only uses before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Only uses from this network (CIDR, or a single address).
    #[param(
        pattern = r"^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3})(/(3[0-2]|[12]?[0-9]))?|((([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:)|::(ffff(:0{1,4})?:)?(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|([0-9a-fA-F]{1,4}:){1,4}:(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|([0-9a-fA-F]{1,4}:){6}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$"
    )]
    ip: Option<String>,
    /// `success` or `denied`.
    #[param(pattern = "^(success|denied)$")]
    outcome: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(
        pattern = r"^([0-9]{1,19}|0[0-9]{19}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]{1}|1844674407370955161[0-4]|18446744073709551615)$"
    )]
    cursor: Option<String>,
    /// 1 to 500; 100 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// Who caused an event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ActorView {
    /// member, machine_token, service_credential, machine or system.
    kind: String,
    id: String,
}

/// One event of the trail.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditEntryView {
    /// The event's position in the log: its leaf index + 1 in the verifiable ledger.
    position: u64,
    /// When the event was recorded.
    #[serde(with = "credledger_domain::time_format")]
    at: DateTime<Utc>,
    #[serde(rename = "type")]
    event_type: String,
    actor: ActorView,
    /// The address the request came from, where a request caused the event.
    ip: Option<String>,
    user_agent: Option<String>,
    /// success or denied.
    outcome: String,
    summary: String,
    /// SHA-256(0x00 ‖ envelope), hex: the event's leaf in the verifiable ledger.
    leaf_hash: String,
    credential_id: Option<String>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        Self {
            position: entry.position,
            at: entry.recorded_at,
            event_type: entry.event_type,
            actor: ActorView { kind: entry.actor_kind, id: entry.actor_id },
            ip: entry.ip,
            user_agent: entry.user_agent,
            outcome: entry.outcome,
            summary: entry.summary,
            leaf_hash: entry.leaf_hash,
            credential_id: entry.credential_id,
        }
    }
}

/// One use, issued access token or coalesced denial of a credential.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UseView {
    position: u64,
    /// When the event was recorded (a coalesced denial: at most a second after its requests).
    #[serde(with = "credledger_domain::time_format")]
    at: DateTime<Utc>,
    /// CredentialUsed, CredentialAccessDenied or AccessTokenIssued.
    #[serde(rename = "type")]
    event_type: String,
    ip: Option<String>,
    user_agent: Option<String>,
    method: Option<String>,
    /// The route template, e.g. `/v1/machine-tokens/{orgId}`.
    route: Option<String>,
    /// success or denied.
    outcome: String,
    /// Why the requests were denied, e.g. `ip_not_allowed`.
    reason: Option<String>,
    /// How many requests the entry stands for: denials of one reason within a second are
    /// coalesced into one entry; a use is 1.
    count: u64,
}

impl From<AuditEntry> for UseView {
    fn from(entry: AuditEntry) -> Self {
        Self {
            position: entry.position,
            at: entry.recorded_at,
            event_type: entry.event_type,
            ip: entry.ip,
            user_agent: entry.user_agent,
            method: entry.method,
            route: entry.route,
            outcome: entry.outcome,
            reason: entry.reason,
            count: entry.count.unwrap_or(1),
        }
    }
}

/// The organization's audit trail, newest first. Owners and admins only, with their PATs.
#[utoipa::path(get, path = "/v1/audit/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), AuditQuery),
    responses((status = 200, description = "A page of the trail, newest first", body = Page<AuditEntryView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn trail(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Page<AuditEntryView>>, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    let filter = AuditFilter {
        credential_id: query.credential_id.as_deref().map(|id| path_id("credentialId", id)).transpose()?,
        actor_id: query.actor.map(|actor| actor.trim().to_owned()),
        event_type: query.event_type.as_deref().map(parse_event_type).transpose()?,
        since: query.since.as_deref().map(|at| parse_time("since", at)).transpose()?,
        until: query.until.as_deref().map(|at| parse_time("until", at)).transpose()?,
        outcome: query.outcome.as_deref().map(parse_outcome).transpose()?,
        ip: query.ip.as_deref().map(parse_network).transpose()?,
    };
    let before = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let limit = page_limit(query.limit, DEFAULT_PAGE)?;
    let entries = app.projections.audit_filtered(org, &filter, before, limit + 1)?;
    Ok(Json(page(entries, limit)))
}

#[utoipa::path(get, path = "/v1/machine-tokens/{orgId}/{tokenId}/uses", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("tokenId" = uuid::Uuid, Path, description = "The machine token"), UsesQuery),
    responses((status = 200, description = "The token's uses and denials, newest first", body = Page<UseView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn machine_token_uses(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<UsesQuery>,
) -> Result<Json<Page<UseView>>, Problem> {
    let (org, id) = super::credential_ids(&org, &id, "tokenId")?;
    caller.require_human()?;
    let (token, _) = super::machine_tokens::find(&app, org, id)?;
    // Its owner may trace a token as well as the organization's owners and admins.
    caller.require_manager_of(&app, org, token.owner)?;
    uses(&app, id, &query).map(Json)
}

#[utoipa::path(get, path = "/v1/service-credentials/{orgId}/{id}/uses", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("id" = uuid::Uuid, Path, description = "The service credential"), UsesQuery),
    responses((status = 200, description = "The credential's uses and denials, newest first", body = Page<UseView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn service_credential_uses(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<UsesQuery>,
) -> Result<Json<Page<UseView>>, Problem> {
    let (org, id) = super::credential_ids(&org, &id, "id")?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    super::service_credentials::find(&app, org, id)?;
    uses(&app, id, &query).map(Json)
}

#[utoipa::path(get, path = "/v1/machines/{orgId}/{id}/uses", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("id" = uuid::Uuid, Path, description = "The machine"), UsesQuery),
    responses((status = 200, description = "The machine's uses and denials, newest first", body = Page<UseView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn machine_uses(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<UsesQuery>,
) -> Result<Json<Page<UseView>>, Problem> {
    let (org, id) = super::credential_ids(&org, &id, "id")?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    super::machines::find(&app, org, id)?;
    uses(&app, id, &query).map(Json)
}

/// A page of a credential's uses, once the caller may read them.
fn uses(app: &AppState, id: CredentialId, query: &UsesQuery) -> Result<Page<UseView>, Problem> {
    let filter = AuditFilter {
        since: query.since.as_deref().map(|at| parse_time("since", at)).transpose()?,
        until: query.until.as_deref().map(|at| parse_time("until", at)).transpose()?,
        outcome: query.outcome.as_deref().map(parse_outcome).transpose()?,
        ip: query.ip.as_deref().map(parse_network).transpose()?,
        ..AuditFilter::default()
    };
    let before = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let limit = page_limit(query.limit, DEFAULT_PAGE)?;
    let entries = app.projections.uses(id, &filter, before, limit + 1)?;
    Ok(page(entries, limit))
}

/// The first `limit` of `entries` (read with one more, to know whether a next page exists).
fn page<T: From<AuditEntry>>(mut entries: Vec<AuditEntry>, limit: usize) -> Page<T> {
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_cursor = if more { entries.last().map(|entry| entry.position.to_string()) } else { None };
    Page { items: entries.into_iter().map(T::from).collect(), next_cursor }
}

pub(super) fn invalid_query(field: &str, detail: impl Into<String>) -> Problem {
    Problem::bad_request("invalid_query", detail).with_field(field)
}

pub(super) fn parse_time(field: &str, input: &str) -> Result<DateTime<Utc>, Problem> {
    credledger_domain::time_format::parse(input.trim())
        .map_err(|_| invalid_query(field, format!("`{field}` takes an RFC 3339 time such as 2025-01-31T09:30:00Z")))
}

fn parse_outcome(input: &str) -> Result<AuditOutcome, Problem> {
    AuditOutcome::parse(input).ok_or_else(|| invalid_query("outcome", "`outcome` is success or denied"))
}

pub(super) fn parse_network(input: &str) -> Result<Cidr, Problem> {
    Cidr::parse(input).map_err(|_| invalid_query("ip", "`ip` takes a CIDR such as 203.0.113.0/24 or an address"))
}

fn parse_cursor(input: &str) -> Result<u64, Problem> {
    crate::extract::position(input)
        .ok_or_else(|| invalid_query("cursor", "`cursor` takes the `nextCursor` of a previous page"))
}

/// A known event type: the trail never holds any other, so a misspelt one is an error rather
/// than an empty page.
fn parse_event_type(input: &str) -> Result<String, Problem> {
    let known = organization::Event::TYPES
        .iter()
        .chain(&personal_token::Event::TYPES)
        .chain(&machine_token::Event::TYPES)
        .chain(&service_credential::Event::TYPES)
        .chain(&machine_identity::Event::TYPES)
        .chain(&usage::Event::TYPES)
        .any(|known| *known == input);
    if known {
        Ok(input.to_owned())
    } else {
        Err(invalid_query("type", "`type` names an event type, such as MachineTokenRevoked"))
    }
}
