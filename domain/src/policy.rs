//! Access policy: may this credential make this request? A pure function of the credential's
//! view and the request, so every rule is a table test and the hot path does no IO.
//!
//! Checks run in a fixed order, and the first failure is the reason: the credential's state, its
//! organization, its conditions (so a caller outside them learns nothing about scopes), the
//! routes machine credentials may never call, and last the scope.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::credential::{CredentialKind, Status};
use crate::values::{Conditions, Scope, Scopes};
use crate::{CredentialId, MemberId, OrgId, ProjectId};

/// Why a request was refused. The wire form is the `code` of the 403 (or 401) problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    IpNotAllowed,
    OutsideTimeWindow,
    UserAgentMismatch,
    Disabled,
    Expired,
    Revoked,
    InsufficientScope,
    MachineCredentialForbidden,
    WrongOrganization,
    /// A known OAuth2 client presented a wrong secret (recorded by the token endpoint, not
    /// decided by [`evaluate`]).
    InvalidSecret,
    /// The client is locked after too many consecutive failed authentications.
    Locked,
}

impl DenyReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::IpNotAllowed => "ip_not_allowed",
            Self::OutsideTimeWindow => "outside_time_window",
            Self::UserAgentMismatch => "user_agent_mismatch",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::InsufficientScope => "insufficient_scope",
            Self::MachineCredentialForbidden => "machine_credential_forbidden",
            Self::WrongOrganization => "wrong_organization",
            Self::InvalidSecret => "invalid_secret",
            Self::Locked => "locked",
        }
    }
}

/// What authentication needs to know about a credential: the value kept in the hot index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialView {
    pub id: CredentialId,
    pub kind: CredentialKind,
    /// `None` only for the server-admin PAT.
    pub org_id: Option<OrgId>,
    pub owner: Option<MemberId>,
    pub project_id: Option<ProjectId>,
    /// The environment hint of a machine token.
    pub environment_hint: Option<String>,
    pub status: Status,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Scopes,
    pub conditions: Conditions,
    pub server_admin: bool,
}

/// Which secret value of the credential the request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// The current value.
    Current,
    /// A value replaced by a roll; it works until `valid_until` (`None`: it stopped at the roll).
    Previous { valid_until: Option<DateTime<Utc>> },
}

/// Routes by who may call them (DESIGN.md §2, blocked routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Routes every credential may call, given the scope.
    Open,
    /// Routes that manage humans or other credential kinds: organizations, members, PATs,
    /// service credentials. Machine credentials never call them.
    HumanOnly,
}

#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The organization named by the route; `None` for routes outside any organization.
    pub org_id: Option<OrgId>,
    pub ip: IpAddr,
    pub user_agent: Option<&'a str>,
    pub at: DateTime<Utc>,
    pub route_class: RouteClass,
    pub required_scope: Scope,
}

impl AccessRequest<'_> {
    /// The scope an HTTP method needs: reads need `read`, everything else `write`.
    pub fn scope_for_method(method: &str) -> Scope {
        match method {
            "GET" | "HEAD" | "OPTIONS" => Scope::Read,
            _ => Scope::Write,
        }
    }
}

/// Allows the request, or says why not.
pub fn evaluate(view: &CredentialView, presented: Presented, request: &AccessRequest<'_>) -> Result<(), DenyReason> {
    if let Presented::Previous { valid_until } = presented
        && valid_until.is_none_or(|until| until <= request.at)
    {
        return Err(DenyReason::Revoked);
    }
    match view.status.effective(view.expires_at, request.at) {
        Status::Active => {}
        Status::Disabled => return Err(DenyReason::Disabled),
        Status::Expired => return Err(DenyReason::Expired),
        Status::Revoked => return Err(DenyReason::Revoked),
    }
    if let Some(route_org) = request.org_id
        && !view.server_admin
        && view.org_id != Some(route_org)
    {
        return Err(DenyReason::WrongOrganization);
    }
    check_conditions(&view.conditions, request)?;
    if view.kind.is_machine() && request.route_class == RouteClass::HumanOnly {
        return Err(DenyReason::MachineCredentialForbidden);
    }
    if !view.scopes.contains(request.required_scope) {
        return Err(DenyReason::InsufficientScope);
    }
    Ok(())
}

fn check_conditions(conditions: &Conditions, request: &AccessRequest<'_>) -> Result<(), DenyReason> {
    if !conditions.ip_allowlist.is_empty() && !conditions.ip_allowlist.iter().any(|cidr| cidr.contains(request.ip)) {
        return Err(DenyReason::IpNotAllowed);
    }
    if !conditions.time_windows.is_empty() && !conditions.time_windows.iter().any(|window| window.contains(request.at))
    {
        return Err(DenyReason::OutsideTimeWindow);
    }
    if let Some(pattern) = &conditions.user_agent_pattern
        && !request.user_agent.is_some_and(|agent| pattern.matches(agent))
    {
        return Err(DenyReason::UserAgentMismatch);
    }
    Ok(())
}
