//! Organizations, their members and the members' personal access tokens (PATs). These routes
//! manage humans: machine credentials never reach them (the policy answers 403 first).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use credledger_domain::names::{Email, Slug};
use credledger_domain::personal_token::{self, NewPersonalToken};
use credledger_domain::token::SecretToken;
use credledger_domain::values::{Role, TokenName};
use credledger_domain::{CredentialId, CredentialKind, MemberId, OrgId, organization};
use credledger_projections::Credential;
use credledger_projections::queries::CredentialFilter;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::as_of::{self, AsOfQuery};
use crate::auth::Caller;
use crate::extract::{Body, OptionalBody, Query, path_id};
use crate::problem::{Problem, ProblemDocument};
use crate::views::{MemberView, Page, PersonalTokenView, WithSecret};
use crate::{AppState, random_bytes};
use crate::{background, command};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org))
        .routes(routes!(show_org))
        .routes(routes!(list_members, add_member))
        .routes(routes!(remove_member, change_role))
        .routes(routes!(list_pats, create_pat))
        .routes(routes!(show_pat, revoke_pat))
}

const TAG: &str = "organizations";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateOrgRequest {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    owner_email: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct OrgView {
    #[schema(value_type = String, format = Uuid)]
    id: OrgId,
    name: String,
    #[serde(with = "credledger_domain::time_format")]
    created_at: DateTime<Utc>,
    owner: Option<MemberView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_token: Option<String>,
}

#[utoipa::path(post, path = "/v1/orgs", tag = TAG, request_body = CreateOrgRequest,
    responses((status = 201, description = "Created; `ownerToken` is the owner's PAT, shown once", body = OrgView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn create_org(
    State(app): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateOrgRequest>,
) -> Result<(StatusCode, Json<OrgView>), Problem> {
    if !caller.is_server_admin() {
        return Err(Problem::forbidden("server_admin_only", "only the server-admin token creates organizations"));
    }
    let name = Slug::parse(&body.name)?;
    let owner_email = Email::parse(&body.owner_email).map_err(|e| Problem::from(e).with_field("ownerEmail"))?;
    let org = OrgId::from_uuid(uuid::Uuid::now_v7());
    let owner_id = MemberId::from_uuid(uuid::Uuid::now_v7());
    let command = organization::Command::Create { id: org, name, owner_id, owner_email };
    let created = command::execute_present::<command::Organization>(
        &app,
        &organization::stream(org),
        Some(org),
        &caller.origin(),
        command,
    )
    .await?;
    let (_, secret) = issue_pat(&app, &caller, org, owner_id, TokenName::parse("owner token")?, None).await?;
    let owner = app.projections.member(org, owner_id)?.map(MemberView::from);
    let view = OrgView {
        id: org,
        name: created.name.to_string(),
        created_at: created.created_at,
        owner,
        owner_token: Some(secret.expose().to_owned()),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/v1/orgs/{orgId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization")), responses((status = 200, body = OrgView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn show_org(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<OrgView>, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    if caller.role(&app, org)?.is_none() {
        return Err(Problem::not_found("organization"));
    }
    let row = app.projections.organization(org)?.ok_or_else(|| Problem::not_found("organization"))?;
    let owner = app.projections.members(org)?.into_iter().find(|m| m.role == "owner" && !m.removed);
    Ok(Json(OrgView {
        id: org,
        name: row.name,
        created_at: row.created_at,
        owner: owner.map(MemberView::from),
        owner_token: None,
    }))
}

#[utoipa::path(get, path = "/v1/orgs/{orgId}/members", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), AsOfQuery), responses((status = 200, body = Page<MemberView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn list_members(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<Page<MemberView>>, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    let as_of = query.parse()?;
    if caller.role(&app, org)?.is_none() {
        return Err(Problem::not_found("organization"));
    }
    if let Some(as_of) = as_of {
        let past = as_of::organization(&app, org, as_of)
            .await?
            .ok_or_else(|| Problem::not_found("organization at that time"))?;
        let mut items: Vec<MemberView> =
            past.organization.members.iter().map(|(id, member)| MemberView::of(*id, member)).collect();
        // The order of the current list.
        items.sort_by(|a, b| (&a.email, &a.id).cmp(&(&b.email, &b.id)));
        return Ok(Json(Page { items, next_cursor: None }));
    }
    let items = app.projections.members(org)?.into_iter().map(MemberView::from).collect();
    Ok(Json(Page { items, next_cursor: None }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddMemberRequest {
    email: String,
    #[serde(default = "default_role")]
    #[schema(pattern = "^(owner|admin|member)$")]
    role: String,
}

fn default_role() -> String {
    "member".to_owned()
}

#[utoipa::path(post, path = "/v1/orgs/{orgId}/members", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization")), request_body = AddMemberRequest,
    responses((status = 201, description = "Added; `initialToken` is the member's first PAT, shown once", body = AddedMember), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn add_member(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Body(body): Body<AddMemberRequest>,
) -> Result<(StatusCode, Json<AddedMember>), Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    let email = Email::parse(&body.email)?;
    let role = Role::parse(&body.role)?;
    let caller_role = caller.require_admin(&app, org)?;
    if role == Role::Owner && caller_role != Role::Owner {
        return Err(Problem::forbidden("insufficient_role", "only owners may add owners"));
    }
    let member_id = MemberId::from_uuid(uuid::Uuid::now_v7());
    let command = organization::Command::AddMember { member_id, email, role };
    command::execute::<command::Organization>(&app, &organization::stream(org), Some(org), &caller.origin(), command)
        .await?;
    // The new member's first credential, for the person who invites it to hand over. It is
    // short-lived: the member should create its own PATs and revoke this one.
    let name = TokenName::parse("initial token")?;
    let (_, secret) = issue_pat(&app, &caller, org, member_id, name, Some(INITIAL_TOKEN_DAYS)).await?;
    let member = app.projections.member(org, member_id)?.ok_or_else(|| Problem::not_found("member"))?;
    Ok((StatusCode::CREATED, Json(AddedMember { member: member.into(), initial_token: secret.expose().to_owned() })))
}

/// How long a new member's initial PAT lives.
const INITIAL_TOKEN_DAYS: u32 = 7;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AddedMember {
    #[serde(flatten)]
    member: MemberView,
    /// A PAT for the new member, valid 7 days, shown once.
    initial_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangeRoleRequest {
    #[schema(pattern = "^(owner|admin|member)$")]
    role: String,
}

#[utoipa::path(patch, path = "/v1/orgs/{orgId}/members/{memberId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("memberId" = uuid::Uuid, Path, description = "The member")), request_body = ChangeRoleRequest,
    responses((status = 200, body = MemberView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn change_role(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, member)): Path<(String, String)>,
    Body(body): Body<ChangeRoleRequest>,
) -> Result<Json<MemberView>, Problem> {
    let (org, member_id) = member_ids(&org, &member)?;
    let role = Role::parse(&body.role)?;
    let caller_role = caller.require_admin(&app, org)?;
    let current = current_member(&app, org, member_id)?;
    if (role == Role::Owner || current.role == "owner") && caller_role != Role::Owner {
        return Err(Problem::forbidden("insufficient_role", "only owners may grant or take the owner role"));
    }
    let command = organization::Command::ChangeRole { member_id, role };
    command::execute::<command::Organization>(&app, &organization::stream(org), Some(org), &caller.origin(), command)
        .await?;
    Ok(Json(current_member(&app, org, member_id)?.into()))
}

#[utoipa::path(delete, path = "/v1/orgs/{orgId}/members/{memberId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("memberId" = uuid::Uuid, Path, description = "The member")),
    responses((status = 200, description = "Removed; the member's credentials get flagged and its PATs revoked", body = MemberView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn remove_member(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, member)): Path<(String, String)>,
) -> Result<Json<MemberView>, Problem> {
    let (org, member_id) = member_ids(&org, &member)?;
    let caller_role = caller.require_admin(&app, org)?;
    let current = current_member(&app, org, member_id)?;
    if current.role == "owner" && caller_role != Role::Owner {
        return Err(Problem::forbidden("insufficient_role", "only owners may remove owners"));
    }
    let command = organization::Command::RemoveMember { member_id };
    let outcome = command::execute::<command::Organization>(
        &app,
        &organization::stream(org),
        Some(org),
        &caller.origin(),
        command,
    )
    .await?;
    // Revoke the member's PATs and flag its credentials before answering, so the removal is
    // effective at once here; the process manager does the same for removals appended by other
    // nodes, and its event ids, derived from the removal, make the two write it once.
    if let Some(position) = outcome.position
        && let Some(removal) = app.store.read_all(position, 1).await?.pop()
    {
        background::flag_credentials_of(&app, org, member_id, position, &removal.event_id.to_string()).await?;
    }
    let member = app.projections.member(org, member_id)?.ok_or_else(|| Problem::not_found("member"))?;
    Ok(Json(member.into()))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatePatRequest {
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 100)]
    name: Option<String>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
}

/// A member creates its own PATs, and nobody else does: a PAT acts as its member, so one minted
/// by someone else would let them act (and be recorded) as that member.
#[utoipa::path(post, path = "/v1/orgs/{orgId}/members/{memberId}/tokens", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("memberId" = uuid::Uuid, Path, description = "The member")), request_body(content = Option<CreatePatRequest>),
    responses((status = 201, description = "Created; `token` is the plaintext, shown once", body = WithSecret<PersonalTokenView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn create_pat(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, member)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<CreatePatRequest>,
) -> Result<(StatusCode, Json<WithSecret<PersonalTokenView>>), Problem> {
    let (org, member_id) = member_ids(&org, &member)?;
    current_member(&app, org, member_id)?;
    if caller.member_id() != Some(member_id) || caller.view.kind.is_machine() {
        return Err(Problem::forbidden("not_your_token", "members create their own personal tokens"));
    }
    let name = TokenName::parse(body.name.as_deref().unwrap_or("personal token"))?;
    let (token, secret) = issue_pat(&app, &caller, org, member_id, name, body.expires_in_days).await?;
    let view = PersonalTokenView::new(&token, app.clock.now());
    Ok((StatusCode::CREATED, Json(WithSecret { view, token: secret.expose().to_owned() })))
}

#[utoipa::path(get, path = "/v1/orgs/{orgId}/members/{memberId}/tokens", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("memberId" = uuid::Uuid, Path, description = "The member"), AsOfQuery), responses((status = 200, body = Page<PersonalTokenView>), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn list_pats(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, member)): Path<(String, String)>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<Page<PersonalTokenView>>, Problem> {
    let (org, member_id) = member_ids(&org, &member)?;
    let as_of = query.parse()?;
    caller.require_manager_of(&app, org, member_id)?;
    if let Some(as_of) = as_of {
        let past = as_of::credentials::<command::PersonalToken>(&app, org, as_of).await?;
        let items = past
            .credentials
            .values()
            .filter(|(token, _)| token.member_id == Some(member_id))
            .map(|(token, _)| PersonalTokenView::new(token, past.then))
            .collect();
        return Ok(Json(Page { items, next_cursor: None }));
    }
    let filter = CredentialFilter {
        kind: Some(CredentialKind::PersonalToken),
        owner: Some(member_id),
        ..CredentialFilter::default()
    };
    let now = app.clock.now();
    let items = app
        .projections
        .credentials(org, &filter, now, None, 1000)?
        .into_iter()
        .filter_map(|record| match record.credential {
            Credential::PersonalToken(token) => Some(PersonalTokenView::new(&token, now)),
            _ => None,
        })
        .collect();
    Ok(Json(Page { items, next_cursor: None }))
}

#[utoipa::path(get, path = "/v1/orgs/{orgId}/members/{memberId}/tokens/{tokenId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("memberId" = uuid::Uuid, Path, description = "The member"), ("tokenId" = uuid::Uuid, Path, description = "The PAT"), AsOfQuery),
    responses((status = 200, body = PersonalTokenView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn show_pat(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, member, token)): Path<(String, String, String)>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<PersonalTokenView>, Problem> {
    let (org, member_id) = member_ids(&org, &member)?;
    let id: CredentialId = path_id("tokenId", &token)?;
    let as_of = query.parse()?;
    caller.require_manager_of(&app, org, member_id)?;
    if let Some(as_of) = as_of {
        let past = as_of::credentials::<command::PersonalToken>(&app, org, as_of).await?;
        let (token, _) = past
            .credentials
            .get(&id)
            .filter(|(token, _)| token.member_id == Some(member_id))
            .ok_or_else(|| Problem::not_found("personal token at that time"))?;
        return Ok(Json(PersonalTokenView::new(token, past.then)));
    }
    match app.projections.credential(org, id)?.map(|record| record.credential) {
        Some(Credential::PersonalToken(token)) if token.member_id == Some(member_id) => {
            Ok(Json(PersonalTokenView::new(&token, app.clock.now())))
        }
        _ => Err(Problem::not_found("personal token")),
    }
}

#[utoipa::path(delete, path = "/v1/orgs/{orgId}/members/{memberId}/tokens/{tokenId}", tag = TAG, params(("orgId" = uuid::Uuid, Path, description = "The organization"), ("memberId" = uuid::Uuid, Path, description = "The member"), ("tokenId" = uuid::Uuid, Path, description = "The PAT")),
    responses((status = 200, body = PersonalTokenView), (status = "4XX", description = "Refused", body = ProblemDocument, content_type = "application/problem+json")))]
async fn revoke_pat(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, member, token)): Path<(String, String, String)>,
) -> Result<Json<PersonalTokenView>, Problem> {
    let (org, member_id) = member_ids(&org, &member)?;
    let id: CredentialId = path_id("tokenId", &token)?;
    let role = app.projections.member(org, member_id)?.map(|row| row.role).unwrap_or_default();
    require_pat_manager(&app, &caller, org, member_id, &role)?;
    let belongs = matches!(
        app.projections.credential(org, id)?.map(|record| record.credential),
        Some(Credential::PersonalToken(token)) if token.member_id == Some(member_id)
    );
    if !belongs {
        return Err(Problem::not_found("personal token"));
    }
    let command = personal_token::Command::Revoke { reason: None };
    let token = command::execute_present::<command::PersonalToken>(
        &app,
        &personal_token::stream(id),
        Some(org),
        &caller.origin(),
        command,
    )
    .await?;
    Ok(Json(PersonalTokenView::new(&token, app.clock.now())))
}

/// Creates a PAT for a member and returns its state and plaintext.
async fn issue_pat(
    app: &AppState,
    caller: &Caller,
    org: OrgId,
    member: MemberId,
    name: TokenName,
    expires_in_days: Option<u32>,
) -> Result<(Box<personal_token::PersonalToken>, SecretToken), Problem> {
    let secret = SecretToken::personal_token(random_bytes()?);
    let id = CredentialId::from_uuid(uuid::Uuid::now_v7());
    let command = personal_token::Command::Create(Box::new(NewPersonalToken {
        id,
        owner: Some((org, member)),
        name,
        secret_hash: secret.digest(),
        token_prefix: secret.prefix(),
        expires_in_days,
    }));
    let token = command::execute_present::<command::PersonalToken>(
        app,
        &personal_token::stream(id),
        Some(org),
        &caller.origin(),
        command,
    )
    .await?;
    Ok((token, secret))
}

/// A member manages its own PATs; owners and admins those of others, but an owner's PATs only
/// owners: a PAT carries its member's role, so an admin minting one would become an owner.
fn require_pat_manager(
    app: &AppState,
    caller: &Caller,
    org: OrgId,
    member: MemberId,
    member_role: &str,
) -> Result<(), Problem> {
    caller.require_manager_of(app, org, member)?;
    if member_role == "owner" && caller.member_id() != Some(member) {
        caller.require_owner(app, org)?;
    }
    Ok(())
}

fn member_ids(org: &str, member: &str) -> Result<(OrgId, MemberId), Problem> {
    Ok((path_id("orgId", org)?, path_id("memberId", member)?))
}

fn current_member(
    app: &AppState,
    org: OrgId,
    member: MemberId,
) -> Result<credledger_projections::queries::MemberRow, Problem> {
    app.projections.member(org, member)?.filter(|row| !row.removed).ok_or_else(|| Problem::not_found("member"))
}
