//! Authentication of every request: the hot path of DESIGN.md §5.
//!
//! 1. Parse the bearer value by its prefix and check its CRC32 before any lookup.
//! 2. Look its SHA-256 up in the in-memory hot index (no SQL), then let the domain's policy
//!    decide: state, organization, conditions, blocked routes, scope.
//! 3. Record the outcome: an accepted request by a machine credential waits until its
//!    CredentialUsed event is durable; a denial of a known credential is coalesced.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use credledger_domain::policy::{AccessRequest, CredentialView, DenyReason, Presented, RouteClass, evaluate};
use credledger_domain::token::SecretToken;
use credledger_domain::values::{Cidr, Role, Scopes};
use credledger_domain::{Actor, ActorKind, CredentialId, CredentialKind, MemberId, OrgId, ProjectId, RequestMeta};
use credledger_store::StoreError;

use crate::AppState;
use crate::extract::path_id;
use crate::metrics_layer::RequestCredential;
use crate::problem::Problem;
use crate::usage::Use;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub view: Arc<CredentialView>,
    /// Who the request's events are recorded as having been caused by.
    pub actor: Actor,
    /// The request's IP, user agent and id, for the events it causes.
    pub request: RequestMeta,
    /// The log position the caller's credential was judged on: later usage events of the
    /// request are refused if its lifecycle moved past it.
    pub seen: u64,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Problem> {
        let route = parts.extensions.get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let (ip, request) = request_origin(app, peer, &parts.headers);

        let Some(bearer) = bearer(parts).map(str::to_owned) else {
            count("missing");
            return Err(Problem::unauthorized("missing_credentials", "send `Authorization: Bearer <token>`"));
        };
        let bearer = bearer.as_str();
        // A mistyped or fake token is refused before anything else, on any node.
        let secret = if is_jwt(bearer) {
            None
        } else {
            Some(SecretToken::parse(bearer).map_err(|error| {
                count(error.code());
                Problem::unauthorized(error.code(), error.to_string())
            })?)
        };
        // The view is read at `seen` or later; a use recorded on it is refused if the credential's
        // lifecycle moved past `seen` meanwhile, and then judged again on a view that includes it.
        let mut seen = app.fresh_view().await?;
        let mut attempts = 0;
        loop {
            let (view, presented, token_scopes) = if let Some(secret) = &secret {
                let Some((view, presented)) = app.projections.hot_index().lookup(&secret.digest()) else {
                    count("unknown");
                    return Err(Problem::unauthorized("invalid_token", "the token is not known"));
                };
                (view, presented, None)
            } else {
                let (view, scopes) = access_token(app, bearer)?;
                (view, Presented::Current, Some(scopes))
            };
            // Credentials are checked before the path: a caller without them learns nothing, not
            // even which ids are well formed.
            let org_id = route_org(parts, app).await?;
            if let Some(credential) = parts.extensions.get::<RequestCredential>() {
                credential.set(view.kind, view.id);
            }
            let at = app.clock.now();
            let access = AccessRequest {
                org_id,
                ip,
                user_agent: request.user_agent.as_deref(),
                at,
                route_class: route_class(&route),
                required_scope: AccessRequest::scope_for_method(parts.method.as_str()),
            };
            let used =
                Use { method: parts.method.as_str(), route: &route, request: &request, ip: ip.to_string(), at, seen };
            // An access token carries the scopes it was issued with, at most its credential's.
            let decision = evaluate(&view, presented, &access).and_then(|()| match &token_scopes {
                Some(scopes) if !scopes.contains(access.required_scope) => Err(DenyReason::InsufficientScope),
                _ => Ok(()),
            });
            if let Err(reason) = decision {
                count(reason.as_str());
                app.usage.denied(&view, reason, &used);
                return Err(Problem::denied(reason));
            }
            if view.kind.is_machine() {
                match app.usage.used(&view, &used).await {
                    Ok(()) => {}
                    Err(StoreError::Superseded { position, .. }) if attempts < MAX_REJUDGEMENTS => {
                        count("rejudged");
                        attempts += 1;
                        seen = app.view_including(position).await?;
                        continue;
                    }
                    Err(error) => return Err(Problem::from(error)),
                }
            }
            count("allowed");
            let actor = actor_of(&view);
            return Ok(Self { view, actor, request, seen });
        }
    }
}

/// How often one request is judged again after its credential changed under it; more means the
/// credential keeps changing, and the client is told to retry.
const MAX_REJUDGEMENTS: u32 = 3;

/// An access JWT has three dot-separated parts; our opaque tokens have none.
fn is_jwt(bearer: &str) -> bool {
    bearer.bytes().filter(|b| *b == b'.').count() == 2
}

/// Verifies an access JWT (EdDSA only, known `kid`, signature, times, issuer and audience) and
/// returns its credential's *current* view, so that revoking the credential stops its tokens at
/// once, and the scopes the token carries.
fn access_token(app: &AppState, token: &str) -> Result<(Arc<CredentialView>, Scopes), Problem> {
    let claims = app.keys.verify(token, app.clock.now()).map_err(|error| {
        count(error.code());
        Problem::unauthorized(error.code(), error.to_string())
    })?;
    let unknown = || {
        count("unknown");
        Problem::unauthorized("invalid_token", "the access token's credential is not known")
    };
    let id = CredentialId::parse(&claims.sub).map_err(|_| unknown())?;
    let view = app.projections.hot_index().view(id).ok_or_else(unknown)?;
    if view.org_id.map(|org| org.to_string()).as_deref() != Some(claims.org.as_str()) {
        return Err(unknown());
    }
    let scopes = Scopes::parse_space_separated(&claims.scope).map_err(|_| unknown())?;
    Ok((view, scopes))
}

/// The socket peer's address, where the server was started with connect info.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())))
    }
}

/// The client's address and the request's metadata for events: the one place that reads the
/// peer, `X-Forwarded-For` (trusted proxies only), `User-Agent` and `X-Request-Id`.
pub fn request_origin(app: &AppState, peer: Option<IpAddr>, headers: &axum::http::HeaderMap) -> (IpAddr, RequestMeta) {
    let ip = client_ip(
        peer.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        &app.config.trusted_proxies,
    );
    let user_agent = header_text(headers, header::USER_AGENT.as_str());
    let request_id = header_text(headers, "x-request-id");
    (ip, RequestMeta { ip: Some(ip.to_string()), user_agent, request_id })
}

/// Longest header value copied into an event: clients choose these, the log keeps them forever.
const MAX_HEADER_CHARS: usize = 512;

/// A header's text, cut to [`MAX_HEADER_CHARS`].
pub fn header_text(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    Some(value.chars().take(MAX_HEADER_CHARS).collect())
}

fn count(outcome: &str) {
    metrics::counter!("credledger_auth_total", "outcome" => outcome.to_owned()).increment(1);
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The organization the route names, parsed so that a bad id is a 400 before any lookup of it.
async fn route_org(parts: &mut Parts, app: &AppState) -> Result<Option<OrgId>, Problem> {
    let params = RawPathParams::from_request_parts(parts, app).await.map_err(|rejection| {
        // The rejection names the parameter only in its text: "… Invalid UTF-8 in `orgId`".
        let text = rejection.body_text();
        let field = text.rsplit(' ').next().unwrap_or_default().trim_matches('`');
        Problem::bad_request("invalid_id", "a path segment is not valid UTF-8").with_field(field)
    })?;
    params.iter().find(|(name, _)| *name == "orgId").map(|(_, value)| path_id("orgId", value)).transpose()
}

/// Routes machine credentials may never call: those that manage humans or other kinds of
/// credential (DESIGN.md §2, blocked routes).
fn route_class(route: &str) -> RouteClass {
    if route.starts_with("/v1/orgs") || route.starts_with("/v1/service-credentials") {
        RouteClass::HumanOnly
    } else {
        RouteClass::Open
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (DESIGN.md §5, item 4).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(forwarded_for) = forwarded_for else { return peer };
    let mut client = peer;
    for entry in forwarded_for.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

pub(crate) fn actor_of(view: &CredentialView) -> Actor {
    match (view.kind, view.owner) {
        (CredentialKind::PersonalToken, Some(member)) => Actor::member(member),
        (CredentialKind::PersonalToken, None) => Actor::system("server-admin"),
        (CredentialKind::MachineToken, _) => Actor { kind: ActorKind::MachineToken, id: view.id.to_string() },
        (CredentialKind::ServiceCredential, _) => Actor { kind: ActorKind::ServiceCredential, id: view.id.to_string() },
        (CredentialKind::Machine, _) => Actor { kind: ActorKind::Machine, id: view.id.to_string() },
    }
}

impl Caller {
    /// The member the caller acts for: a PAT's member, or a machine credential's owner.
    pub fn member_id(&self) -> Option<MemberId> {
        self.view.owner
    }

    /// The origin of the events this caller's commands append.
    pub fn origin(&self) -> crate::command::Origin {
        crate::command::Origin {
            actor: self.actor.clone(),
            request: Some(self.request.clone()),
            idempotency_seed: None,
        }
    }

    pub fn is_server_admin(&self) -> bool {
        self.view.server_admin
    }

    /// The caller's role in the organization. The server admin has none: it creates
    /// organizations and nothing else (DESIGN.md §2). A machine credential acts with its owner's
    /// role but never above `member`, so that a token handed to an owner cannot act as one.
    pub fn role(&self, app: &AppState, org: OrgId) -> Result<Option<Role>, Problem> {
        if self.is_server_admin() {
            return Ok(None);
        }
        let Some(member) = self.member_id() else { return Ok(None) };
        if self.view.kind.is_machine() {
            let current = app.projections.member(org, member)?.filter(|row| !row.removed);
            return Ok(current.map(|_| Role::Member));
        }
        let row = app.projections.member(org, member)?;
        Ok(row.filter(|row| !row.removed).and_then(|row| Role::parse(&row.role).ok()))
    }

    /// Refuses callers whose role is below owner or admin.
    pub fn require_admin(&self, app: &AppState, org: OrgId) -> Result<Role, Problem> {
        match self.role(app, org)? {
            Some(role) if role.is_admin() => Ok(role),
            _ => Err(Problem::forbidden("insufficient_role", "only owners and admins may do this")),
        }
    }

    pub fn require_owner(&self, app: &AppState, org: OrgId) -> Result<(), Problem> {
        match self.role(app, org)? {
            Some(Role::Owner) => Ok(()),
            _ => Err(Problem::forbidden("insufficient_role", "only owners may do this")),
        }
    }

    /// Refuses machine credentials: some commands change what a credential may do, and a
    /// credential must not be able to lift its own limits (conditions, expiry, scopes) by
    /// minting, updating or re-enabling credentials.
    pub fn require_human(&self) -> Result<(), Problem> {
        if self.view.kind.is_machine() {
            return Err(Problem::denied(DenyReason::MachineCredentialForbidden));
        }
        Ok(())
    }

    /// A machine credential may act on itself (roll, disable, revoke) and on nothing else.
    pub fn require_self_or_human(&self, id: CredentialId) -> Result<(), Problem> {
        if self.view.kind.is_machine() && self.view.id != id {
            return Err(Problem::denied(DenyReason::MachineCredentialForbidden));
        }
        Ok(())
    }

    /// A machine reads only what belongs to its project and environment: anything else is 403
    /// `wrong_scope`. Other callers pass.
    pub fn require_in_scope(&self, project: Option<ProjectId>, environment: Option<&str>) -> Result<(), Problem> {
        if self.view.kind != CredentialKind::Machine {
            return Ok(());
        }
        let in_scope = project.is_some_and(|project| self.view.project_id == Some(project))
            && environment.is_some_and(|environment| self.view.environment_hint.as_deref() == Some(environment));
        if in_scope {
            Ok(())
        } else {
            Err(Problem::forbidden("wrong_scope", "a machine reads only its own project and environment"))
        }
    }

    /// Owners and admins manage every credential of the organization; a member manages the
    /// credentials it owns.
    pub fn require_manager_of(&self, app: &AppState, org: OrgId, owner: MemberId) -> Result<(), Problem> {
        if self.member_id() == Some(owner) && self.role(app, org)?.is_some() {
            return Ok(());
        }
        self.require_admin(app, org).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        assert_eq!(client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("10.0.0.2"), Some("1.2.3.4"), &trusted), ip("1.2.3.4"));
        // A client cannot hide behind a forged left-most entry.
        assert_eq!(client_ip(ip("10.0.0.2"), Some("6.6.6.6, 1.2.3.4, 10.0.0.3"), &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("10.0.0.2"), None, &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), Some("garbage"), &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), Some("1.2.3.4"), &[]), ip("10.0.0.2"));
    }

    #[test]
    fn human_only_routes_are_organizations_members_pats_and_service_credentials() {
        assert_eq!(route_class("/v1/orgs/{orgId}/members"), RouteClass::HumanOnly);
        assert_eq!(route_class("/v1/orgs"), RouteClass::HumanOnly);
        assert_eq!(route_class("/v1/service-credentials/{orgId}"), RouteClass::HumanOnly);
        assert_eq!(route_class("/v1/machine-tokens/{orgId}"), RouteClass::Open);
        assert_eq!(route_class("/v1/projects/{orgId}"), RouteClass::Open);
    }
}
