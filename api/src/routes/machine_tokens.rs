//! `/v1/machine-tokens/:orgId`: the machine-token API of the reference documents, exactly.
//! Every member and credential of the organization may read; a member manages the tokens it
//! owns; owners and admins manage all of them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::TimeDelta;
use credledger_domain::machine_token::{self, Command, MachineToken, NewMachineToken, Update};
use credledger_domain::token::SecretToken;
use credledger_domain::values::{EnvHint, Scopes, TokenName};
use credledger_domain::{CredentialId, CredentialKind, MemberId, OrgId, ProjectId, Status};
use credledger_projections::Credential;
use credledger_projections::queries::{CredentialFilter, UsageSummary};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::as_of::{self, AsOf, AsOfQuery};
use crate::auth::Caller;
use crate::command;
use crate::extract::{Body, OptionalBody, Query, page_limit, path_id};
use crate::input::{ConditionsInput, double_option, parse_duration, parse_scopes};
use crate::problem::{Problem, ProblemDocument};
use crate::views::{MachineTokenView, Page, WithSecret};
use crate::{AppState, random_bytes};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, revoke))
        .routes(routes!(roll))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(transfer))
}

const TAG: &str = "machine tokens";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateMachineTokenRequest {
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 100)]
    name: String,
    #[schema(pattern = "^[a-z0-9-]{1,16}$")]
    environment_hint: String,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
    #[serde(default)]
    #[schema(format = Uuid)]
    project_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::input::ScopeName>>, min_items = 1)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    conditions: Option<ConditionsInput>,
    /// The member who will own the token; the caller by default. Owners and admins only.
    #[serde(default)]
    owner: Option<String>,
}

#[utoipa::path(post, path = "/v1/machine-tokens/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization")), request_body = CreateMachineTokenRequest,
    responses((status = 201, description = "Created; `token` is the plaintext, shown once", body = WithSecret<MachineTokenView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Body(body): Body<CreateMachineTokenRequest>,
) -> Result<(StatusCode, Json<WithSecret<MachineTokenView>>), Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    caller.require_human()?;
    let name = TokenName::parse(&body.name)?;
    let environment_hint = EnvHint::parse(&body.environment_hint)?;
    let scopes = body.scopes.as_deref().map(parse_scopes).transpose()?.unwrap_or_else(Scopes::all);
    let conditions = body.conditions.as_ref().map(ConditionsInput::parse).transpose()?.unwrap_or_default();
    let project_id = body.project_id.as_deref().map(|id| existing_project(&app, org, id)).transpose()?;
    let owner = match body.owner.as_deref() {
        Some(owner) => resolve_member(&app, org, "owner", owner)?,
        None => caller
            .member_id()
            .ok_or_else(|| Problem::invalid("owner", "owner_required", "name the member who will own the token"))?,
    };
    caller.require_manager_of(&app, org, owner)?;
    let secret = SecretToken::machine_token(&environment_hint, random_bytes()?);
    let id = CredentialId::from_uuid(uuid::Uuid::now_v7());
    let new = NewMachineToken {
        id,
        org_id: org,
        name,
        environment_hint,
        project_id,
        owner,
        scopes,
        conditions,
        secret_hash: secret.digest(),
        token_prefix: secret.prefix(),
        expires_in_days: body.expires_in_days,
    };
    let token = command::execute_present::<command::MachineToken>(
        &app,
        &machine_token::stream(id),
        Some(org),
        &caller.origin(),
        Command::Create(Box::new(new)),
    )
    .await?;
    let view = MachineTokenView::new(&token, &UsageSummary::default(), app.clock.now());
    Ok((StatusCode::CREATED, Json(WithSecret { view, token: secret.expose().to_owned() })))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    #[param(pattern = "^(active|disabled|expired|revoked)$")]
    pub(crate) state: Option<String>,
    #[param(pattern = "^[a-z0-9-]{1,16}$")]
    pub(crate) environment_hint: Option<String>,
    #[param(format = Uuid)]
    pub(crate) project_id: Option<String>,
    /// A member id.
    #[param(format = Uuid)]
    pub(crate) owner: Option<String>,
    pub(crate) flagged: Option<bool>,
    /// A duration: `30d`, `12h`, `90m`, or a number of days.
    #[param(pattern = r"^([0-9]{1,4}d?|[0-9]{1,5}h|[0-9]{1,7}m)$")]
    pub(crate) expiring_within: Option<String>,
    #[param(pattern = r"^([0-9]{1,4}d?|[0-9]{1,5}h|[0-9]{1,7}m)$")]
    pub(crate) unused_for: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    pub(crate) cursor: Option<String>,
    /// 1 to 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<usize>,
    /// The inventory as it was then: an RFC 3339 time or a log position, folded from the log.
    #[param(
        pattern = r"^([0-9]{1,19}|0[0-9]{19}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]{1}|1844674407370955161[0-4]|18446744073709551615|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$"
    )]
    pub(crate) as_of: Option<String>,
}

const DEFAULT_PAGE: usize = 50;

#[utoipa::path(get, path = "/v1/machine-tokens/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ListQuery),
    responses((status = 200, description = "A page of tokens", body = Page<MachineTokenView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<MachineTokenView>>, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    require_reader(&caller, &app, org)?;
    let filter = CredentialFilter {
        kind: Some(CredentialKind::MachineToken),
        status: query
            .state
            .as_deref()
            .map(|state| {
                Status::parse(state).ok_or_else(|| {
                    Problem::bad_request("invalid_query", "state is active, disabled, expired or revoked")
                        .with_field("state")
                })
            })
            .transpose()?,
        environment_hint: query.environment_hint.clone(),
        project_id: query.project_id.as_deref().map(|id| path_id::<ProjectId>("projectId", id)).transpose()?,
        owner: query.owner.as_deref().map(|id| path_id::<MemberId>("owner", id)).transpose()?,
        flagged: query.flagged,
        expiring_within: query.expiring_within.as_deref().map(|d| parse_duration("expiringWithin", d)).transpose()?,
        unused_for: query.unused_for.as_deref().map(|d| parse_duration("unusedFor", d)).transpose()?,
    };
    caller.require_in_scope(filter.project_id, filter.environment_hint.as_deref())?;
    let after = query.cursor.as_deref().map(|cursor| path_id::<CredentialId>("cursor", cursor)).transpose()?;
    let limit = page_limit(query.limit, DEFAULT_PAGE)?;
    if let Some(as_of) = query.as_of.as_deref() {
        let as_of = AsOf::parse(as_of)?;
        if filter.expiring_within.is_some() || filter.unused_for.is_some() {
            return Err(Problem::bad_request(
                "invalid_query",
                "`asOf` does not combine with expiringWithin or unusedFor",
            )
            .with_field("asOf"));
        }
        let past = as_of::credentials::<command::MachineToken>(&app, org, as_of).await?;
        return Ok(Json(past.page(after, limit, |token, usage| {
            past_filter(&filter, token, past.then).then(|| MachineTokenView::new(token, usage, past.then))
        })));
    }
    let now = app.clock.now();
    let records = app.projections.credentials(org, &filter, now, after, limit + 1)?;
    let more = records.len() > limit;
    let items: Vec<MachineTokenView> = records
        .iter()
        .take(limit)
        .filter_map(|record| match &record.credential {
            Credential::MachineToken(token) => Some(MachineTokenView::new(token, &record.usage, now)),
            _ => None,
        })
        .collect();
    let next_cursor = if more { items.last().map(|item| item.id.to_string()) } else { None };
    Ok(Json(Page { items, next_cursor }))
}

#[utoipa::path(get, path = "/v1/machine-tokens/{orgId}/{tokenId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("tokenId" = uuid::Uuid, Path, description = "The machine token"), AsOfQuery),
    responses((status = 200, body = MachineTokenView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<MachineTokenView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    let as_of = query.parse()?;
    require_reader(&caller, &app, org)?;
    let (token, usage) = find(&app, org, id)?;
    caller.require_in_scope(token.project_id, Some(token.environment_hint.as_str()))?;
    if let Some(as_of) = as_of {
        let past = as_of::credentials::<command::MachineToken>(&app, org, as_of).await?;
        let (token, usage) =
            past.credentials.get(&id).ok_or_else(|| Problem::not_found("machine token at that time"))?;
        return Ok(Json(MachineTokenView::new(token, usage, past.then)));
    }
    Ok(Json(MachineTokenView::new(&token, &usage, app.clock.now())))
}

/// The list filters that apply to a past state (usage-based ones do not).
fn past_filter(filter: &CredentialFilter, token: &MachineToken, then: chrono::DateTime<chrono::Utc>) -> bool {
    filter.status.is_none_or(|status| token.effective_status(then) == status)
        && filter.environment_hint.as_deref().is_none_or(|hint| token.environment_hint.as_str() == hint)
        && filter.project_id.is_none_or(|project| token.project_id == Some(project))
        && filter.owner.is_none_or(|owner| token.owner == owner)
        && filter.flagged.is_none_or(|flagged| token.flagged.is_some() == flagged)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateMachineTokenRequest {
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 100)]
    name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::input::ScopeName>>, min_items = 1)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    conditions: Option<ConditionsInput>,
    /// `null` removes the expiry.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 3650)]
    #[allow(clippy::option_option)]
    expires_in_days: Option<Option<u32>>,
}

#[utoipa::path(patch, path = "/v1/machine-tokens/{orgId}/{tokenId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("tokenId" = uuid::Uuid, Path, description = "The machine token")), request_body = UpdateMachineTokenRequest,
    responses((status = 200, body = MachineTokenView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Body(body): Body<UpdateMachineTokenRequest>,
) -> Result<Json<MachineTokenView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    let update = Update {
        name: body.name.as_deref().map(TokenName::parse).transpose()?,
        scopes: body.scopes.as_deref().map(parse_scopes).transpose()?,
        conditions: body.conditions.as_ref().map(ConditionsInput::parse).transpose()?,
        expires_in_days: body.expires_in_days,
    };
    caller.require_human()?;
    run(&app, &caller, org, id, Command::Update(update)).await.map(Json)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RollMachineTokenRequest {
    /// How long the old value keeps working; at once when absent.
    #[serde(default)]
    #[schema(maximum = 86400)]
    pub(crate) grace_period_seconds: Option<u32>,
}

#[utoipa::path(post, path = "/v1/machine-tokens/{orgId}/{tokenId}/roll", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("tokenId" = uuid::Uuid, Path, description = "The machine token")), request_body(content = Option<RollMachineTokenRequest>),
    responses((status = 200, description = "Rolled; `token` is the new plaintext, shown once", body = WithSecret<MachineTokenView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn roll(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<RollMachineTokenRequest>,
) -> Result<Json<WithSecret<MachineTokenView>>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_self_or_human(id)?;
    let (current, _) = find(&app, org, id)?;
    let secret = SecretToken::machine_token(&current.environment_hint, random_bytes()?);
    let command = Command::Roll {
        secret_hash: secret.digest(),
        token_prefix: secret.prefix(),
        grace: body.grace_period_seconds.map(|seconds| TimeDelta::seconds(i64::from(seconds))),
    };
    let view = run(&app, &caller, org, id, command).await?;
    Ok(Json(WithSecret { view, token: secret.expose().to_owned() }))
}

#[utoipa::path(post, path = "/v1/machine-tokens/{orgId}/{tokenId}/disable", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("tokenId" = uuid::Uuid, Path, description = "The machine token")),
    responses((status = 200, body = MachineTokenView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn disable(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<MachineTokenView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_self_or_human(id)?;
    run(&app, &caller, org, id, Command::Disable).await.map(Json)
}

#[utoipa::path(post, path = "/v1/machine-tokens/{orgId}/{tokenId}/enable", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("tokenId" = uuid::Uuid, Path, description = "The machine token")),
    responses((status = 200, body = MachineTokenView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn enable(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<MachineTokenView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_human()?;
    run(&app, &caller, org, id, Command::Enable).await.map(Json)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RevokeQuery {
    pub(crate) reason: Option<String>,
}

#[utoipa::path(delete, path = "/v1/machine-tokens/{orgId}/{tokenId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("tokenId" = uuid::Uuid, Path, description = "The machine token"), RevokeQuery),
    responses((status = 200, description = "Revoked", body = MachineTokenView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<RevokeQuery>,
) -> Result<Json<MachineTokenView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_self_or_human(id)?;
    let reason = query.reason.map(|reason| reason.chars().filter(|c| !c.is_control()).take(500).collect());
    run(&app, &caller, org, id, Command::Revoke { reason }).await.map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TransferRequest {
    /// A member id or email address.
    pub(crate) to: String,
}

#[utoipa::path(post, path = "/v1/machine-tokens/{orgId}/{tokenId}/transfer", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("tokenId" = uuid::Uuid, Path, description = "The machine token")), request_body = TransferRequest,
    responses((status = 200, body = MachineTokenView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn transfer(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Body(body): Body<TransferRequest>,
) -> Result<Json<MachineTokenView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    // Ownership decides who may manage a token, so only owners and admins move it: a member
    // handing its token to an owner would otherwise gain the owner's reach.
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    let to = resolve_member(&app, org, "to", &body.to)?;
    run(&app, &caller, org, id, Command::Transfer { to }).await.map(Json)
}

/// Runs a lifecycle command on an existing token the caller manages.
async fn run(
    app: &AppState,
    caller: &Caller,
    org: OrgId,
    id: CredentialId,
    command: Command,
) -> Result<MachineTokenView, Problem> {
    let (current, usage) = find(app, org, id)?;
    caller.require_manager_of(app, org, current.owner)?;
    let token = command::execute_present::<command::MachineToken>(
        app,
        &machine_token::stream(id),
        Some(org),
        &caller.origin(),
        command,
    )
    .await?;
    Ok(MachineTokenView::new(&token, &usage, app.clock.now()))
}

fn ids(org: &str, id: &str) -> Result<(OrgId, CredentialId), Problem> {
    super::credential_ids(org, id, "tokenId")
}

/// A machine token of the organization as the read models hold it, or 404.
pub(crate) fn find(app: &AppState, org: OrgId, id: CredentialId) -> Result<(Box<MachineToken>, UsageSummary), Problem> {
    super::find_credential(app, org, id, "machine token", |credential| match credential {
        Credential::MachineToken(token) => Some(token),
        _ => None,
    })
}

/// Reading needs membership (or a credential of the organization, which the policy checked).
fn require_reader(caller: &Caller, app: &AppState, org: OrgId) -> Result<(), Problem> {
    if caller.view.kind.is_machine() || caller.role(app, org)?.is_some() {
        Ok(())
    } else {
        Err(Problem::not_found("organization"))
    }
}

/// A current member named by id or email.
pub(crate) fn resolve_member(app: &AppState, org: OrgId, field: &str, input: &str) -> Result<MemberId, Problem> {
    let row = match MemberId::parse(input) {
        Ok(id) => app.projections.member(org, id)?.filter(|row| !row.removed),
        Err(_) => app.projections.member_by_email(org, &input.trim().to_lowercase())?,
    };
    let row = row.ok_or_else(|| {
        Problem::invalid(field, "member_not_found", "no current member of the organization has this id or email")
    })?;
    path_id(field, &row.member_id)
}

fn existing_project(app: &AppState, org: OrgId, id: &str) -> Result<ProjectId, Problem> {
    let id: ProjectId =
        ProjectId::parse(id).map_err(|_| Problem::invalid("projectId", "invalid_id", "projectId must be a UUID"))?;
    let exists = app.projections.projects(org)?.iter().any(|project| project.project_id == id.to_string());
    if exists {
        Ok(id)
    } else {
        Err(Problem::invalid("projectId", "project_not_found", "the organization has no such project"))
    }
}
