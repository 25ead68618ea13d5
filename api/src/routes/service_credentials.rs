//! `/v1/service-credentials/:orgId`: OAuth2 confidential clients for pipelines. Owners only;
//! machine credentials never reach these routes (the policy answers 403 first).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use credledger_domain::service_credential::{self, Command, NewServiceCredential, ServiceCredential};
use credledger_domain::token::{ClientId, SecretToken};
use credledger_domain::values::{Scopes, TokenName};
use credledger_domain::{CredentialId, OrgId};
use credledger_projections::Credential;
use credledger_projections::queries::{CredentialFilter, UsageSummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::as_of::{self, AsOf, AsOfQuery};
use crate::auth::Caller;
use crate::command;
use crate::extract::{Body, OptionalBody, Query, page_limit, path_id};
use crate::input::{ConditionsInput, parse_scopes};
use crate::problem::{Problem, ProblemDocument};
use crate::routes::machine_tokens::resolve_member;
use crate::views::{ConditionsDocument, FlagDocument, Page};
use crate::{AppState, random_bytes};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(rotate))
        .routes(routes!(revoke))
        .routes(routes!(transfer))
}

const TAG: &str = "service credentials";

/// A service credential as clients see it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCredentialView {
    #[schema(value_type = String, format = Uuid)]
    id: CredentialId,
    client_id: String,
    name: String,
    #[schema(value_type = String, format = Uuid)]
    owner: credledger_domain::MemberId,
    state: &'static str,
    #[schema(value_type = Vec<String>)]
    scopes: Scopes,
    #[schema(value_type = ConditionsDocument)]
    conditions: credledger_domain::values::Conditions,
    secret_prefix: String,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    last_used_ip: Option<String>,
    last_used_user_agent: Option<String>,
    use_count: u64,
    denied_count: u64,
    #[schema(value_type = Option<FlagDocument>)]
    flagged: Option<credledger_domain::Flag>,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    credledger_domain::time_format::format(&at).unwrap_or_default()
}

impl ServiceCredentialView {
    fn new(credential: &ServiceCredential, usage: &UsageSummary, now: DateTime<Utc>) -> Self {
        Self {
            id: credential.id,
            client_id: credential.client_id.to_string(),
            name: credential.name.to_string(),
            owner: credential.owner,
            state: credential.effective_status(now).as_str(),
            scopes: credential.scopes.clone(),
            conditions: credential.conditions.clone(),
            secret_prefix: credential.secret_prefix.to_string(),
            created_at: rfc3339(credential.created_at),
            expires_at: credential.expires_at.map(rfc3339),
            last_used_at: usage.last_used_at.map(rfc3339),
            last_used_ip: usage.last_used_ip.clone(),
            last_used_user_agent: usage.last_used_user_agent.clone(),
            use_count: usage.use_count,
            denied_count: usage.denied_count,
            flagged: credential.flagged,
        }
    }
}

/// The one answer that shows a client secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WithClientSecret {
    #[serde(flatten)]
    view: ServiceCredentialView,
    client_secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateServiceCredentialRequest {
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 100)]
    pub(crate) name: String,
    /// The scopes its access tokens may carry; read and write by default.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::input::ScopeName>>, min_items = 1)]
    pub(crate) scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) conditions: Option<ConditionsInput>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub(crate) expires_in_days: Option<u32>,
    /// The owning member (id or email); the caller by default.
    #[serde(default)]
    pub(crate) owner: Option<String>,
}

const O: &str = "orgId";

#[utoipa::path(post, path = "/v1/service-credentials/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path)),
    request_body = CreateServiceCredentialRequest,
    responses((status = 201, description = "Created; `clientSecret` is shown once", body = WithClientSecret),
        (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Body(body): Body<CreateServiceCredentialRequest>,
) -> Result<(StatusCode, Json<WithClientSecret>), Problem> {
    let org: OrgId = path_id(O, &org)?;
    let name = TokenName::parse(&body.name)?;
    let scopes = body.scopes.as_deref().map(parse_scopes).transpose()?.unwrap_or_else(Scopes::all);
    let conditions = body.conditions.as_ref().map(ConditionsInput::parse).transpose()?.unwrap_or_default();
    caller.require_owner(&app, org)?;
    let owner = match body.owner.as_deref() {
        Some(owner) => resolve_member(&app, org, "owner", owner)?,
        None => caller.member_id().ok_or_else(|| {
            Problem::invalid("owner", "owner_required", "name the member who will own the credential")
        })?,
    };
    let secret = SecretToken::client_secret(random_bytes()?);
    let mut client = [0u8; 12];
    client.copy_from_slice(&random_bytes()?[..12]);
    let id = CredentialId::from_uuid(uuid::Uuid::now_v7());
    let command = Command::Create(Box::new(NewServiceCredential {
        id,
        org_id: org,
        client_id: ClientId::generate(client),
        name,
        owner,
        scopes,
        conditions,
        secret_hash: secret.digest(),
        secret_prefix: secret.prefix(),
        expires_in_days: body.expires_in_days,
    }));
    let credential = run(&app, &caller, org, id, command).await?;
    let view = ServiceCredentialView::new(&credential, &UsageSummary::default(), app.clock.now());
    Ok((StatusCode::CREATED, Json(WithClientSecret { view, client_secret: secret.expose().to_owned() })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    pub(crate) cursor: Option<String>,
    /// 1 to 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<usize>,
    /// The credentials as they were then: an RFC 3339 time or a log position, folded from the log.
    #[param(
        pattern = r"^([0-9]{1,19}|0[0-9]{19}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]{1}|1844674407370955161[0-4]|18446744073709551615|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$"
    )]
    pub(crate) as_of: Option<String>,
}

#[utoipa::path(get, path = "/v1/service-credentials/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path), ListQuery),
    responses((status = 200, body = Page<ServiceCredentialView>), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<ServiceCredentialView>>, Problem> {
    let org: OrgId = path_id(O, &org)?;
    let as_of = query.as_of.as_deref().map(AsOf::parse).transpose()?;
    caller.require_owner(&app, org)?;
    let filter = CredentialFilter {
        kind: Some(credledger_domain::CredentialKind::ServiceCredential),
        ..CredentialFilter::default()
    };
    let after = query.cursor.as_deref().map(|cursor| path_id::<CredentialId>("cursor", cursor)).transpose()?;
    let limit = page_limit(query.limit, 50)?;
    if let Some(as_of) = as_of {
        let past = as_of::credentials::<command::ServiceCredential>(&app, org, as_of).await?;
        return Ok(Json(
            past.page(after, limit, |credential, usage| Some(ServiceCredentialView::new(credential, usage, past.then))),
        ));
    }
    let now = app.clock.now();
    let records = app.projections.credentials(org, &filter, now, after, limit + 1)?;
    let more = records.len() > limit;
    let items: Vec<ServiceCredentialView> = records
        .iter()
        .take(limit)
        .filter_map(|record| match &record.credential {
            Credential::ServiceCredential(credential) => {
                Some(ServiceCredentialView::new(credential, &record.usage, now))
            }
            _ => None,
        })
        .collect();
    let next_cursor = if more { items.last().map(|item| item.id.to_string()) } else { None };
    Ok(Json(Page { items, next_cursor }))
}

#[utoipa::path(get, path = "/v1/service-credentials/{orgId}/{id}", tag = TAG, params(("orgId" = uuid::Uuid, Path), ("id" = uuid::Uuid, Path), AsOfQuery),
    responses((status = 200, body = ServiceCredentialView), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<ServiceCredentialView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    let as_of = query.parse()?;
    caller.require_owner(&app, org)?;
    if let Some(as_of) = as_of {
        let past = as_of::credentials::<command::ServiceCredential>(&app, org, as_of).await?;
        let (credential, usage) =
            past.credentials.get(&id).ok_or_else(|| Problem::not_found("service credential at that time"))?;
        return Ok(Json(ServiceCredentialView::new(credential, usage, past.then)));
    }
    let (credential, usage) = find(&app, org, id)?;
    Ok(Json(ServiceCredentialView::new(&credential, &usage, app.clock.now())))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RotateRequest {
    /// How long the old secret keeps working (at most 24 h); at once when absent.
    #[serde(default)]
    #[schema(maximum = 86400)]
    pub(crate) grace_period_seconds: Option<u32>,
}

#[utoipa::path(post, path = "/v1/service-credentials/{orgId}/{id}/rotate", tag = TAG, params(("orgId" = uuid::Uuid, Path), ("id" = uuid::Uuid, Path)),
    request_body(content = Option<RotateRequest>),
    responses((status = 200, description = "Rotated; `clientSecret` is the new secret, shown once", body = WithClientSecret),
        (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn rotate(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<RotateRequest>,
) -> Result<Json<WithClientSecret>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_owner(&app, org)?;
    let (_, usage) = find(&app, org, id)?;
    let secret = SecretToken::client_secret(random_bytes()?);
    let command = Command::RotateSecret {
        secret_hash: secret.digest(),
        secret_prefix: secret.prefix(),
        grace: body.grace_period_seconds.map(|seconds| TimeDelta::seconds(i64::from(seconds))),
    };
    let credential = run(&app, &caller, org, id, command).await?;
    let view = ServiceCredentialView::new(&credential, &usage, app.clock.now());
    Ok(Json(WithClientSecret { view, client_secret: secret.expose().to_owned() }))
}

#[utoipa::path(post, path = "/v1/service-credentials/{orgId}/{id}/revoke", tag = TAG, params(("orgId" = uuid::Uuid, Path), ("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "Revoked at once: its secret and its access tokens stop working", body = ServiceCredentialView),
        (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<ServiceCredentialView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_owner(&app, org)?;
    let (_, usage) = find(&app, org, id)?;
    let credential = run(&app, &caller, org, id, Command::Revoke { reason: None }).await?;
    Ok(Json(ServiceCredentialView::new(&credential, &usage, app.clock.now())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TransferServiceCredentialRequest {
    /// A member id or email address.
    pub(crate) to: String,
}

#[utoipa::path(post, path = "/v1/service-credentials/{orgId}/{id}/transfer", tag = TAG, params(("orgId" = uuid::Uuid, Path), ("id" = uuid::Uuid, Path)),
    request_body = TransferServiceCredentialRequest,
    responses((status = 200, body = ServiceCredentialView), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn transfer(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Body(body): Body<TransferServiceCredentialRequest>,
) -> Result<Json<ServiceCredentialView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_owner(&app, org)?;
    let to = resolve_member(&app, org, "to", &body.to)?;
    let (_, usage) = find(&app, org, id)?;
    let credential = run(&app, &caller, org, id, Command::Transfer { to }).await?;
    Ok(Json(ServiceCredentialView::new(&credential, &usage, app.clock.now())))
}

async fn run(
    app: &AppState,
    caller: &Caller,
    org: OrgId,
    id: CredentialId,
    command: Command,
) -> Result<Box<ServiceCredential>, Problem> {
    command::execute_present::<command::ServiceCredential>(
        app,
        &service_credential::stream(id),
        Some(org),
        &caller.origin(),
        command,
    )
    .await
}

fn ids(org: &str, id: &str) -> Result<(OrgId, CredentialId), Problem> {
    super::credential_ids(org, id, "id")
}

pub(crate) fn find(
    app: &AppState,
    org: OrgId,
    id: CredentialId,
) -> Result<(Box<ServiceCredential>, UsageSummary), Problem> {
    super::find_credential(app, org, id, "service credential", |credential| match credential {
        Credential::ServiceCredential(found) => Some(found),
        _ => None,
    })
}
