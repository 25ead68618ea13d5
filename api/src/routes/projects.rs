//! `/v1/projects/:orgId`: an organization's projects and their environments. Every credential
//! of the organization may read them; owners and admins create them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use credledger_domain::names::Slug;
use credledger_domain::{OrgId, ProjectId, organization};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::as_of::{self, AsOfQuery};
use crate::auth::Caller;
use crate::command;
use crate::extract::{Body, Query, path_id};
use crate::problem::{Problem, ProblemDocument};
use crate::views::{Page, ProjectView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(add_environment))
}

const TAG: &str = "projects";

#[utoipa::path(get, path = "/v1/projects/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), AsOfQuery), responses((status = 200, body = Page<ProjectView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<Page<ProjectView>>, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    let as_of = query.parse()?;
    if !caller.view.kind.is_machine() && caller.role(&app, org)?.is_none() {
        return Err(Problem::not_found("organization"));
    }
    // A machine sees its own project only.
    let own = (caller.view.kind == credledger_domain::CredentialKind::Machine).then(|| caller.view.project_id);
    if let Some(as_of) = as_of {
        let past = as_of::organization(&app, org, as_of)
            .await?
            .ok_or_else(|| Problem::not_found("organization at that time"))?;
        let mut items: Vec<ProjectView> = past
            .organization
            .projects
            .iter()
            .filter(|(id, _)| own.is_none_or(|own| own == Some(**id)))
            .map(|(id, project)| {
                let created_at = past.project_created_at.get(id).copied().unwrap_or(past.organization.created_at);
                ProjectView::of(*id, project, created_at)
            })
            .collect();
        // The order of the current list.
        items.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        return Ok(Json(Page { items, next_cursor: None }));
    }
    let items = app
        .projections
        .projects(org)?
        .into_iter()
        .filter(|project| own.is_none_or(|own| own.is_some_and(|id| id.to_string() == project.project_id)))
        .map(ProjectView::from)
        .collect();
    Ok(Json(Page { items, next_cursor: None }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateProjectRequest {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    #[serde(default)]
    #[schema(value_type = Vec<crate::input::SlugName>)]
    environments: Vec<String>,
}

#[utoipa::path(post, path = "/v1/projects/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization")), request_body = CreateProjectRequest,
    responses((status = 201, body = ProjectView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Body(body): Body<CreateProjectRequest>,
) -> Result<(StatusCode, Json<ProjectView>), Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    let name = Slug::parse(&body.name)?;
    let environments = body
        .environments
        .iter()
        .enumerate()
        .map(|(i, env)| Slug::parse(env).map_err(|e| Problem::from(e).with_field(format!("environments[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    caller.require_admin(&app, org)?;
    let project_id = ProjectId::from_uuid(uuid::Uuid::now_v7());
    let command = organization::Command::CreateProject { project_id, name, environments };
    run(&app, &caller, org, command).await?;
    Ok((StatusCode::CREATED, Json(project(&app, org, project_id)?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvironmentRequest {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
}

#[utoipa::path(post, path = "/v1/projects/{orgId}/{projectId}/environments", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("projectId" = uuid::Uuid, Path, description = "The project")), request_body = EnvironmentRequest,
    responses((status = 201, body = ProjectView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn add_environment(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project_id)): Path<(String, String)>,
    Body(body): Body<EnvironmentRequest>,
) -> Result<(StatusCode, Json<ProjectView>), Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    let project_id: ProjectId = path_id("projectId", &project_id)?;
    let name = Slug::parse(&body.name)?;
    caller.require_admin(&app, org)?;
    run(&app, &caller, org, organization::Command::AddEnvironment { project_id, name }).await?;
    Ok((StatusCode::CREATED, Json(project(&app, org, project_id)?)))
}

async fn run(app: &AppState, caller: &Caller, org: OrgId, command: organization::Command) -> Result<(), Problem> {
    command::execute::<command::Organization>(app, &organization::stream(org), Some(org), &caller.origin(), command)
        .await?;
    Ok(())
}

fn project(app: &AppState, org: OrgId, id: ProjectId) -> Result<ProjectView, Problem> {
    let id = id.to_string();
    app.projections
        .projects(org)?
        .into_iter()
        .find(|project| project.project_id == id)
        .map(ProjectView::from)
        .ok_or_else(|| Problem::not_found("project"))
}
