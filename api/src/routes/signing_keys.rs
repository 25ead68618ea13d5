//! `/v1/signing-keys`: rotation of the key that signs access tokens. Server admin only.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{Problem, ProblemDocument};
use crate::signing::Jwks;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(rotate))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Rotated {
    /// The new current key.
    kid: String,
    /// Every published key: the new one, and older ones until their last token has expired.
    jwks: Jwks,
}

/// Makes a new signing key current. Tokens signed with the old key keep verifying until they
/// expire, and the JWKS lists both keys meanwhile.
#[utoipa::path(post, path = "/v1/signing-keys/rotate", tag = "oauth2",
    responses((status = 200, body = Rotated), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn rotate(State(app): State<AppState>, caller: Caller) -> Result<Json<Rotated>, Problem> {
    if !caller.is_server_admin() {
        return Err(Problem::forbidden("server_admin_only", "only the server-admin token rotates signing keys"));
    }
    let kid =
        app.keys.rotate(app.clock.now()).map_err(|error| Problem::internal("rotating the signing key", &error))?;
    tracing::info!(%kid, "access-token signing key rotated");
    Ok(Json(Rotated { kid, jwks: app.keys.jwks() }))
}
