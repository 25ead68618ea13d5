//! `GET /v1/whoami`: the credential making the request, so clients (the CLI) can default to its
//! organization and show who they act as.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{Problem, ProblemDocument};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(whoami))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Identity {
    /// The credential's id.
    id: String,
    /// `personal_token`, `machine_token`, `service_credential` or `machine`.
    kind: &'static str,
    org_id: Option<String>,
    /// The member the credential belongs to (a PAT's member, a machine credential's owner).
    member_id: Option<String>,
    /// The member's role in the organization, for humans.
    role: Option<&'static str>,
    scopes: Vec<String>,
    server_admin: bool,
    project_id: Option<String>,
    environment: Option<String>,
}

#[utoipa::path(get, path = "/v1/whoami", tag = "operations",
    responses((status = 200, body = Identity), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn whoami(State(app): State<AppState>, caller: Caller) -> Result<Json<Identity>, Problem> {
    let view = &caller.view;
    let role = match (view.kind.is_machine(), view.org_id) {
        (false, Some(org)) => caller.role(&app, org)?.map(credledger_domain::values::Role::as_str),
        _ => None,
    };
    Ok(Json(Identity {
        id: view.id.to_string(),
        kind: view.kind.as_str(),
        org_id: view.org_id.map(|org| org.to_string()),
        member_id: view.owner.map(|member| member.to_string()),
        role,
        scopes: view.scopes.iter().map(|scope| scope.as_str().to_owned()).collect(),
        server_admin: view.server_admin,
        project_id: view.project_id.map(|project| project.to_string()),
        environment: view.environment_hint.clone(),
    }))
}
