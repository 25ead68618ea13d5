//! `/v1/secrets/:orgId/:project/:environment`: the secrets of one environment of a project, the
//! thing the credentials protect. A set of `NAME=value` pairs, versioned as a whole; the log keeps
//! each version sealed (see `secrets_key`), and every read of values is a SecretsRead event,
//! durable before the values are sent.
//!
//! Who may do what (least privilege):
//!
//! | caller | read | write |
//! |---|---|---|
//! | owner, admin (PAT) | every environment | every environment |
//! | member (PAT) | every environment | no |
//! | service credential | with `credledger-api/read` | with `credledger-api/write` |
//! | machine token | the project it is scoped to (`projectId`), with read | same project, with write |
//! | machine identity | its own project and environment | never (pull-only) |
//!
//! Conditions, blocked routes, revocation and expiry apply as on every route (the `Caller`
//! extractor), before any of this.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header;
use axum::response::Response;
use credledger_domain::names::Slug;
use credledger_domain::secrets::{self, SecretName, VersionCreated};
use credledger_domain::usage::{self, SecretsRead};
use credledger_domain::values::Role;
use credledger_domain::{CredentialKind, OrgId, ProjectId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::command;
use crate::extract::{Body, Query, path_id};
use crate::problem::{Problem, ProblemDocument};
use crate::secrets_key::SecretsKey;

const TAG: &str = "secrets";

/// A request that sets up to 1,000 values of up to 64 KiB each is bounded as a whole at 1 MiB.
const BODY_LIMIT: usize = 1024 * 1024;

/// How many times a change without `expectedVersion` is applied again after losing a race.
const ATTEMPTS: usize = 5;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read, replace, patch))
        .routes(routes!(versions))
        .routes(routes!(reads))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Values are never cached on the way back.
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            response.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            response
        }))
}

/// `PUT`: the whole set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReplaceRequest {
    /// Every secret of the new version: names `[A-Z_][A-Z0-9_]*`, values at most 64 KiB.
    #[schema(value_type = BTreeMap<String, String>)]
    secrets: BTreeMap<String, String>,
    message: Option<String>,
    /// The version the change is based on (0: none yet); 409 `stale_version` if the set moved on.
    expected_version: Option<u64>,
}

/// `PATCH`: some names set, some removed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchRequest {
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    unset: Vec<String>,
    message: Option<String>,
    expected_version: Option<u64>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReadQuery {
    /// A past version (default: the latest).
    version: Option<u64>,
}

/// A version's values: sent only after the read is recorded.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretsView {
    /// 0 when the environment has no secrets yet.
    version: u64,
    secrets: BTreeMap<String, String>,
}

/// What a change made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ChangeView {
    version: u64,
    names: Vec<String>,
}

/// A version in the history: names, never values.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct VersionView {
    version: u64,
    names: Vec<String>,
    changed: Vec<String>,
    removed: Vec<String>,
    message: Option<String>,
    /// Who made it: `{kind, id}` as in the audit trail.
    #[schema(value_type = Object)]
    author: serde_json::Value,
    #[serde(with = "credledger_domain::time_format")]
    #[schema(value_type = String, format = DateTime)]
    at: chrono::DateTime<chrono::Utc>,
    /// The event's position in the log.
    position: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VersionsView {
    items: Vec<VersionView>,
}

/// A read of the environment's values: who, which version, which names, when, from where.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ReadView {
    credential_id: String,
    kind: String,
    version: u64,
    names: Vec<String>,
    ip: String,
    user_agent: Option<String>,
    #[serde(with = "credledger_domain::time_format")]
    #[schema(value_type = String, format = DateTime)]
    at: chrono::DateTime<chrono::Utc>,
    position: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadsView {
    items: Vec<ReadView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// The environment a route names, once the caller may use it.
struct Environment {
    org: OrgId,
    project: ProjectId,
    name: Slug,
    stream: String,
}

fn environment(
    app: &AppState,
    caller: &Caller,
    (org, project, environment): (String, String, String),
    access: Access,
) -> Result<Environment, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    if !caller.view.kind.is_machine() && caller.role(app, org)?.is_none() {
        return Err(Problem::not_found("organization"));
    }
    let projects = app.projections.projects(org)?;
    let row = projects
        .iter()
        .find(|row| row.project_id == project || row.name == project)
        .ok_or_else(|| Problem::not_found("project"))?;
    let project: ProjectId = path_id("project", &row.project_id)?;
    if !row.environments.contains(&environment) {
        return Err(Problem::not_found("environment"));
    }
    let name = Slug::parse(&environment)?;
    authorize(app, caller, org, project, &name, access)?;
    Ok(Environment { org, project, stream: secrets::stream(project, &name), name })
}

fn authorize(
    app: &AppState,
    caller: &Caller,
    org: OrgId,
    project: ProjectId,
    environment: &Slug,
    access: Access,
) -> Result<(), Problem> {
    let view = &caller.view;
    match view.kind {
        CredentialKind::Machine => {
            if access == Access::Write {
                return Err(Problem::forbidden(
                    "pull_only",
                    "machine identities only read the secrets of their own environment",
                ));
            }
            if view.project_id != Some(project) || view.environment_hint.as_deref() != Some(environment.as_str()) {
                return Err(Problem::forbidden(
                    "secrets_forbidden",
                    "a machine identity reads only the secrets of its own project and environment",
                ));
            }
        }
        CredentialKind::MachineToken => {
            if view.project_id != Some(project) {
                return Err(Problem::forbidden(
                    "secrets_forbidden",
                    "a machine token reads and writes only the secrets of the project it is scoped to (projectId)",
                ));
            }
        }
        // Its scopes were checked against the method already.
        CredentialKind::ServiceCredential => {}
        CredentialKind::PersonalToken => {
            if access == Access::Write && !caller.role(app, org)?.is_some_and(Role::is_admin) {
                return Err(Problem::forbidden("insufficient_role", "only owners and admins change secrets"));
            }
        }
    }
    Ok(())
}

fn master_key(app: &AppState) -> Result<&SecretsKey, Problem> {
    app.secrets_key.as_deref().ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "secrets_unavailable",
            "this server has no secrets key",
        )
    })
}

fn names(set: &BTreeMap<String, String>) -> Result<BTreeMap<SecretName, String>, Problem> {
    set.iter()
        .map(|(name, value)| {
            let parsed = SecretName::parse(name).map_err(|error| {
                Problem::invalid(
                    &format!("secrets.{}", name.chars().take(64).collect::<String>()),
                    error.code(),
                    error.to_string(),
                )
            })?;
            Ok((parsed, value.clone()))
        })
        .collect()
}

fn checked(set: &BTreeMap<SecretName, String>) -> Result<(), Problem> {
    secrets::check_set(set).map_err(|error| {
        let field = match &error {
            secrets::SecretError::ValueTooLong(name) | secrets::SecretError::InvalidName(name) => {
                format!("secrets.{name}")
            }
            secrets::SecretError::TooManyNames => "secrets".to_owned(),
        };
        Problem::invalid(&field, error.code(), error.to_string())
    })
}

/// Every version of an environment, oldest first, with its position and author.
async fn history(
    app: &AppState,
    stream: &str,
) -> Result<Vec<(VersionCreated, credledger_store::RecordedEvent)>, Problem> {
    let recorded = app.store.read_stream(stream, 0).await?;
    recorded
        .into_iter()
        .map(|event| {
            let tagged = serde_json::json!({ "type": event.event_type, "payload": event.payload });
            let secrets::Event::SecretsVersionCreated(created) = serde_json::from_value(tagged)
                .map_err(|error| Problem::internal("a recorded version of secrets does not decode", &error))?;
            Ok((created, event))
        })
        .collect()
}

/// Applies `edit` to the current set and stores the result as a new version.
async fn change(
    app: &AppState,
    caller: &Caller,
    environment: &Environment,
    expected: Option<u64>,
    message: Option<String>,
    edit: impl Fn(&mut BTreeMap<SecretName, String>),
) -> Result<ChangeView, Problem> {
    let key = master_key(app)?;
    let stream = &environment.stream;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (state, _) = command::load::<command::Secrets>(app, stream).await?;
        let (data_key, wrapped, current, mut set) = match &state {
            secrets::State::Absent => {
                let (data_key, wrapped) = key.new_data_key(stream)?;
                (data_key, wrapped, 0, BTreeMap::new())
            }
            secrets::State::Present(present) => {
                let data_key = key.unwrap(&present.data_key, stream)?;
                let set = data_key.open(&present.sealed, stream)?;
                (data_key, present.data_key.clone(), present.version, set)
            }
        };
        edit(&mut set);
        checked(&set)?;
        let digests = set.iter().map(|(name, value)| (name.clone(), data_key.digest(name, value))).collect();
        let sealed = data_key.seal(&set, stream)?;
        let command = secrets::Command::CreateVersion {
            org_id: environment.org,
            project_id: environment.project,
            environment: environment.name.clone(),
            // Always based on what was read, so a concurrent change is never overwritten.
            expected_version: Some(expected.unwrap_or(current)),
            digests,
            sealed,
            data_key: wrapped,
            message: message.clone(),
        };
        match command::execute::<command::Secrets>(app, stream, Some(environment.org), &caller.origin(), command).await
        {
            Ok(outcome) => {
                let (version, names) = match outcome.state {
                    secrets::State::Present(present) => {
                        (present.version, present.digests.keys().map(ToString::to_string).collect())
                    }
                    secrets::State::Absent => (0, Vec::new()),
                };
                return Ok(ChangeView { version, names });
            }
            Err(problem) if problem.code == "stale_version" && expected.is_none() && attempt < ATTEMPTS => {}
            Err(problem) => return Err(problem),
        }
    }
}

/// Replaces the environment's whole set with a new version.
#[utoipa::path(put, path = "/v1/secrets/{orgId}/{project}/{environment}", tag = TAG,
    params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("project" = String, Path, description = "The project's id or name"), ("environment" = String, Path, description = "The environment")),
    request_body = ReplaceRequest,
    responses((status = 200, body = ChangeView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn replace(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
    Body(body): Body<ReplaceRequest>,
) -> Result<Json<ChangeView>, Problem> {
    let environment = environment(&app, &caller, path, Access::Write)?;
    let new = names(&body.secrets)?;
    checked(&new)?;
    let changed =
        change(&app, &caller, &environment, body.expected_version, body.message, |set| set.clone_from(&new)).await?;
    Ok(Json(changed))
}

/// Sets some names and removes others, as a new version.
#[utoipa::path(patch, path = "/v1/secrets/{orgId}/{project}/{environment}", tag = TAG,
    params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("project" = String, Path, description = "The project's id or name"), ("environment" = String, Path, description = "The environment")),
    request_body = PatchRequest,
    responses((status = 200, body = ChangeView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn patch(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
    Body(body): Body<PatchRequest>,
) -> Result<Json<ChangeView>, Problem> {
    let environment = environment(&app, &caller, path, Access::Write)?;
    let set = names(&body.set)?;
    let unset = body
        .unset
        .iter()
        .enumerate()
        .map(|(i, name)| {
            SecretName::parse(name)
                .map_err(|error| Problem::invalid(&format!("unset[{i}]"), error.code(), error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let changed = change(&app, &caller, &environment, body.expected_version, body.message, |current| {
        for name in &unset {
            current.remove(name);
        }
        current.extend(set.iter().map(|(name, value)| (name.clone(), value.clone())));
    })
    .await?;
    Ok(Json(changed))
}

/// The values of the latest (or a past) version. The read is recorded (SecretsRead) and durable
/// before the values are sent.
#[utoipa::path(get, path = "/v1/secrets/{orgId}/{project}/{environment}", tag = TAG,
    params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("project" = String, Path, description = "The project's id or name"), ("environment" = String, Path, description = "The environment"), ReadQuery),
    responses((status = 200, body = SecretsView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn read(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<SecretsView>, Problem> {
    let environment = environment(&app, &caller, path, Access::Read)?;
    let key = master_key(&app)?;
    let versions = history(&app, &environment.stream).await?;
    let chosen = match query.version {
        Some(wanted) => Some(
            versions
                .iter()
                .find(|(created, _)| created.version == wanted)
                .ok_or_else(|| Problem::not_found("version").with_field("version"))?,
        ),
        None => versions.last(),
    };
    let (version, values) = match chosen {
        None => (0, BTreeMap::new()),
        Some((created, _)) => {
            let wrapped = versions
                .first()
                .and_then(|(first, _)| first.data_key.clone())
                .ok_or_else(|| Problem::internal("reading secrets", &"the first version has no data key"))?;
            let data_key = key.unwrap(&wrapped, &environment.stream)?;
            (created.version, data_key.open(&created.sealed, &environment.stream)?)
        }
    };
    let at = app.clock.now();
    let read = usage::Event::SecretsRead(SecretsRead {
        credential_id: caller.view.id,
        kind: caller.view.kind,
        org_id: Some(environment.org),
        project_id: environment.project,
        environment: environment.name.to_string(),
        version,
        names: values.keys().map(ToString::to_string).collect(),
        ip: caller.request.ip.clone().unwrap_or_default(),
        user_agent: caller.request.user_agent.clone(),
        at,
    });
    app.usage.record(&caller.view, &read, at, caller.request.clone(), caller.seen).await?;
    let view =
        SecretsView { version, secrets: values.into_iter().map(|(name, value)| (name.to_string(), value)).collect() };
    Ok(Json(view))
}

/// Every version, newest first: who changed which names when (never values).
#[utoipa::path(get, path = "/v1/secrets/{orgId}/{project}/{environment}/versions", tag = TAG,
    params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("project" = String, Path, description = "The project's id or name"), ("environment" = String, Path, description = "The environment")),
    responses((status = 200, body = VersionsView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn versions(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<VersionsView>, Problem> {
    let environment = environment(&app, &caller, path, Access::Read)?;
    let mut items: Vec<VersionView> = history(&app, &environment.stream)
        .await?
        .into_iter()
        .map(|(created, event)| VersionView {
            version: created.version,
            names: created.digests.keys().map(ToString::to_string).collect(),
            changed: created.changed.iter().map(ToString::to_string).collect(),
            removed: created.removed.iter().map(ToString::to_string).collect(),
            message: created.message,
            author: serde_json::json!({ "kind": event.actor.kind.as_str(), "id": event.actor.id }),
            at: created.at,
            position: event.position,
        })
        .collect();
    items.reverse();
    Ok(Json(VersionsView { items }))
}

/// Every read of the environment's values, newest first: who read which version when.
#[utoipa::path(get, path = "/v1/secrets/{orgId}/{project}/{environment}/reads", tag = TAG,
    params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("project" = String, Path, description = "The project's id or name"), ("environment" = String, Path, description = "The environment")),
    responses((status = 200, body = ReadsView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn reads(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<ReadsView>, Problem> {
    let environment = environment(&app, &caller, path, Access::Read)?;
    let rows =
        app.projections.secret_reads(environment.org, environment.project, environment.name.as_str(), None, 500)?;
    let items = rows
        .into_iter()
        .map(|row| ReadView {
            credential_id: row.credential_id,
            kind: row.kind,
            version: row.version,
            names: row.names,
            ip: row.ip,
            user_agent: row.user_agent,
            at: chrono::DateTime::from_timestamp_millis(row.at).unwrap_or(chrono::DateTime::UNIX_EPOCH),
            position: row.position,
        })
        .collect();
    Ok(Json(ReadsView { items }))
}
