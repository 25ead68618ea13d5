//! `/v1/machines/:orgId`: machine identities. Owners and admins register a machine's Ed25519
//! public key for one project and one environment; the private key stays with the machine.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use credledger_domain::machine_identity::{self, Command, Machine, NewMachine, PublicKey};
use credledger_domain::names::Slug;
use credledger_domain::{CredentialId, CredentialKind, OrgId, ProjectId, Status};
use credledger_projections::Credential;
use credledger_projections::queries::{CredentialFilter, UsageSummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::as_of::{self, AsOfQuery};
use crate::auth::Caller;
use crate::command;
use crate::extract::{Body, Query, path_id};
use crate::input::ConditionsInput;
use crate::problem::{Problem, ProblemDocument};
use crate::routes::machine_tokens::resolve_member;
use crate::views::{ConditionsDocument, FlagDocument, Page};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(revoke))
        .routes(routes!(rotate_key))
        .routes(routes!(transfer))
}

const TAG: &str = "machines";

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineView {
    #[schema(value_type = String, format = Uuid)]
    id: CredentialId,
    name: String,
    #[schema(value_type = String, format = Uuid)]
    project_id: ProjectId,
    environment: String,
    state: &'static str,
    /// The registered Ed25519 public key, base64url.
    public_key: String,
    #[schema(value_type = String, format = Uuid)]
    owner: credledger_domain::MemberId,
    #[schema(value_type = ConditionsDocument)]
    conditions: credledger_domain::values::Conditions,
    #[serde(with = "credledger_domain::time_format")]
    created_at: DateTime<Utc>,
    #[serde(with = "credledger_domain::time_format::option")]
    key_rotated_at: Option<DateTime<Utc>>,
    #[serde(with = "credledger_domain::time_format::option")]
    last_used_at: Option<DateTime<Utc>>,
    last_used_ip: Option<String>,
    last_used_user_agent: Option<String>,
    use_count: u64,
    #[schema(value_type = Option<FlagDocument>)]
    flagged: Option<credledger_domain::Flag>,
}

impl MachineView {
    fn new(machine: &Machine, usage: &UsageSummary) -> Self {
        Self {
            id: machine.id,
            name: machine.name.to_string(),
            project_id: machine.project_id,
            environment: machine.environment.to_string(),
            state: machine.status.as_str(),
            public_key: machine.public_key.to_base64url(),
            owner: machine.owner,
            conditions: machine.conditions.clone(),
            created_at: machine.created_at,
            key_rotated_at: machine.key_rotated_at,
            last_used_at: usage.last_used_at,
            last_used_ip: usage.last_used_ip.clone(),
            last_used_user_agent: usage.last_used_user_agent.clone(),
            use_count: usage.use_count,
            flagged: machine.flagged,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateMachineRequest {
    /// Unique in the organization among machines that are not revoked.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// The project's id or name.
    project: String,
    /// An environment of the project.
    environment: String,
    /// Ed25519: base64url of the 32 bytes, or an SPKI PEM.
    public_key: String,
    #[serde(default)]
    conditions: Option<ConditionsInput>,
    /// The owning member (id or email); the caller by default.
    #[serde(default)]
    owner: Option<String>,
}

#[utoipa::path(post, path = "/v1/machines/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path)), request_body = CreateMachineRequest,
    responses((status = 201, body = MachineView), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Body(body): Body<CreateMachineRequest>,
) -> Result<(StatusCode, Json<MachineView>), Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    caller.require_human()?;
    let name = Slug::parse(&body.name)?;
    let environment = Slug::parse(&body.environment).map_err(|e| Problem::from(e).with_field("environment"))?;
    let public_key = parse_public_key(&body.public_key)?;
    let conditions = body.conditions.as_ref().map(ConditionsInput::parse).transpose()?.unwrap_or_default();
    caller.require_admin(&app, org)?;
    let project_id = project_with_environment(&app, org, &body.project, &environment)?;
    let owner = match body.owner.as_deref() {
        Some(owner) => resolve_member(&app, org, "owner", owner)?,
        None => caller
            .member_id()
            .ok_or_else(|| Problem::invalid("owner", "owner_required", "name the member who will own the machine"))?,
    };
    let id = CredentialId::from_uuid(uuid::Uuid::now_v7());
    reserve_name(&app, &caller, org, &name, id).await?;
    let new = NewMachine { id, org_id: org, name, project_id, environment, public_key, owner, conditions };
    let machine = run(&app, &caller, org, id, Command::Create(Box::new(new))).await?;
    Ok((StatusCode::CREATED, Json(MachineView::new(&machine, &UsageSummary::default()))))
}

#[utoipa::path(get, path = "/v1/machines/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path), AsOfQuery),
    responses((status = 200, body = Page<MachineView>), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<Page<MachineView>>, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    let as_of = query.parse()?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    if let Some(as_of) = as_of {
        let past = as_of::credentials::<command::MachineIdentity>(&app, org, as_of).await?;
        let items = past.credentials.values().map(|(machine, usage)| MachineView::new(machine, usage)).collect();
        return Ok(Json(Page { items, next_cursor: None }));
    }
    let items = machines(&app, org)?.iter().map(|(machine, usage)| MachineView::new(machine, usage)).collect();
    Ok(Json(Page { items, next_cursor: None }))
}

#[utoipa::path(get, path = "/v1/machines/{orgId}/{id}", tag = TAG, params(("orgId" = uuid::Uuid, Path), ("id" = uuid::Uuid, Path), AsOfQuery),
    responses((status = 200, body = MachineView), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<MachineView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    let as_of = query.parse()?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    if let Some(as_of) = as_of {
        let past = as_of::credentials::<command::MachineIdentity>(&app, org, as_of).await?;
        let (machine, usage) = past.credentials.get(&id).ok_or_else(|| Problem::not_found("machine at that time"))?;
        return Ok(Json(MachineView::new(machine, usage)));
    }
    let (machine, usage) = find(&app, org, id)?;
    Ok(Json(MachineView::new(&machine, &usage)))
}

#[utoipa::path(post, path = "/v1/machines/{orgId}/{id}/revoke", tag = TAG, params(("orgId" = uuid::Uuid, Path), ("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "Revoked: its access tokens fail on their next request", body = MachineView),
        (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<MachineView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    let (_, usage) = find(&app, org, id)?;
    let machine = run(&app, &caller, org, id, Command::Revoke { reason: None }).await?;
    Ok(Json(MachineView::new(&machine, &usage)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateKeyRequest {
    /// The new Ed25519 public key: base64url of the 32 bytes, or an SPKI PEM.
    public_key: String,
}

#[utoipa::path(post, path = "/v1/machines/{orgId}/{id}/rotate-key", tag = TAG, params(("orgId" = uuid::Uuid, Path), ("id" = uuid::Uuid, Path)),
    request_body = RotateKeyRequest,
    responses((status = 200, description = "The new key is registered; the old one stops at once", body = MachineView),
        (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn rotate_key(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Body(body): Body<RotateKeyRequest>,
) -> Result<Json<MachineView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_human()?;
    let public_key = parse_public_key(&body.public_key)?;
    caller.require_admin(&app, org)?;
    let (_, usage) = find(&app, org, id)?;
    let machine = run(&app, &caller, org, id, Command::RotateKey { public_key }).await?;
    Ok(Json(MachineView::new(&machine, &usage)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransferMachineRequest {
    /// A member id or email address.
    to: String,
}

#[utoipa::path(post, path = "/v1/machines/{orgId}/{id}/transfer", tag = TAG, params(("orgId" = uuid::Uuid, Path), ("id" = uuid::Uuid, Path)),
    request_body = TransferMachineRequest,
    responses((status = 200, body = MachineView), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn transfer(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Body(body): Body<TransferMachineRequest>,
) -> Result<Json<MachineView>, Problem> {
    let (org, id) = ids(&org, &id)?;
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    let to = resolve_member(&app, org, "to", &body.to)?;
    let (_, usage) = find(&app, org, id)?;
    let machine = run(&app, &caller, org, id, Command::Transfer { to }).await?;
    Ok(Json(MachineView::new(&machine, &usage)))
}

const NAME_RESERVED: &str = "MachineNameReserved";

/// Claims a machine name in the organization for `machine`, or answers 409 while a machine that
/// is not revoked holds it. The claim is an event on a stream named after the name, appended
/// with the stream's version as the expected one, so two concurrent creations cannot both win,
/// on one node or several. A revoked holder's name is free again (revocation is terminal).
async fn reserve_name(
    app: &AppState,
    caller: &Caller,
    org: OrgId,
    name: &Slug,
    machine: CredentialId,
) -> Result<(), Problem> {
    let taken =
        || Problem::new(StatusCode::CONFLICT, "machine_exists", "a machine with this name exists").with_field("name");
    let stream = format!("machine-name-{org}-{name}");
    let recorded = app.store.read_stream(&stream, 0).await?;
    if let Some(last) = recorded.last() {
        let holder = last.payload["machineId"].as_str().and_then(|id| CredentialId::parse(id).ok());
        // A holder not (yet) in the read models may still be being created: its claim stands
        // for a minute, after which a failed creation no longer blocks the name.
        let recent = last.recorded_at > app.clock.now() - chrono::TimeDelta::minutes(1);
        let live = match holder.map(|holder| find(app, org, holder)) {
            Some(Ok((machine, _))) => machine.status != Status::Revoked,
            Some(Err(_)) => recent,
            None => false,
        };
        if live {
            return Err(taken());
        }
    }
    let event = credledger_store::NewEvent {
        event_id: credledger_domain::EventId::from_uuid(uuid::Uuid::now_v7()),
        event_type: NAME_RESERVED.to_owned(),
        schema_version: credledger_domain::SCHEMA_VERSION,
        org_id: Some(org),
        occurred_at: app.clock.now(),
        actor: caller.actor.clone(),
        request: Some(caller.request.clone()),
        payload: serde_json::json!({ "machineId": machine, "name": name }),
    };
    let expected = recorded.last().map_or(credledger_store::ExpectedVersion::NoStream, |last| {
        credledger_store::ExpectedVersion::Exact(last.version)
    });
    match app.store.append(&stream, expected, vec![event]).await {
        Ok(_) => Ok(()),
        Err(credledger_store::StoreError::WrongExpectedVersion { .. }) => Err(taken()),
        Err(error) => Err(error.into()),
    }
}

/// An Ed25519 public key given as base64url of its 32 bytes or as an SPKI PEM; it must be a
/// valid curve point.
fn parse_public_key(input: &str) -> Result<PublicKey, Problem> {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::DecodePublicKey as _;
    let invalid = || {
        Problem::invalid("publicKey", "invalid_public_key", "an Ed25519 public key: base64url of 32 bytes, or SPKI PEM")
    };
    let input = input.trim();
    let key = if input.starts_with("-----BEGIN") {
        ed25519_dalek::VerifyingKey::from_public_key_pem(input).map_err(|_| invalid())?
    } else {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(input).map_err(|_| invalid())?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| invalid())?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| invalid())?
    };
    if key.is_weak() {
        return Err(invalid());
    }
    Ok(PublicKey::from_bytes(key.to_bytes()))
}

/// The project named by id or name, which must have the environment.
fn project_with_environment(
    app: &AppState,
    org: OrgId,
    project: &str,
    environment: &Slug,
) -> Result<ProjectId, Problem> {
    let projects = app.projections.projects(org)?;
    let found = projects
        .iter()
        .find(|p| p.project_id == project || p.name == project)
        .ok_or_else(|| Problem::invalid("project", "project_not_found", "the organization has no such project"))?;
    if !found.environments.iter().any(|env| env == environment.as_str()) {
        return Err(Problem::invalid("environment", "environment_not_found", "the project has no such environment"));
    }
    path_id("project", &found.project_id)
}

fn machines(app: &AppState, org: OrgId) -> Result<Vec<(Box<Machine>, UsageSummary)>, Problem> {
    let filter = CredentialFilter { kind: Some(CredentialKind::Machine), ..CredentialFilter::default() };
    let records = app.projections.credentials(org, &filter, app.clock.now(), None, 10_000)?;
    Ok(records
        .into_iter()
        .filter_map(|record| match record.credential {
            Credential::Machine(machine) => Some((machine, record.usage)),
            _ => None,
        })
        .collect())
}

async fn run(
    app: &AppState,
    caller: &Caller,
    org: OrgId,
    id: CredentialId,
    command: Command,
) -> Result<Box<Machine>, Problem> {
    command::execute_present::<command::MachineIdentity>(
        app,
        &machine_identity::stream(id),
        Some(org),
        &caller.origin(),
        command,
    )
    .await
}

fn ids(org: &str, id: &str) -> Result<(OrgId, CredentialId), Problem> {
    super::credential_ids(org, id, "id")
}

pub(crate) fn find(app: &AppState, org: OrgId, id: CredentialId) -> Result<(Box<Machine>, UsageSummary), Problem> {
    super::find_credential(app, org, id, "machine", |credential| match credential {
        Credential::Machine(found) => Some(found),
        _ => None,
    })
}
