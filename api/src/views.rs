//! The JSON shapes the API answers with (camelCase). Views show a token's prefix, never its
//! secret; the plaintext appears only in the one response that creates or rolls it.

use chrono::{DateTime, SubsecRound, Utc};
use credledger_domain::machine_token::MachineToken;
use credledger_domain::organization::{Member, Project};
use credledger_domain::personal_token::PersonalToken;
use credledger_domain::values::{Conditions, Scopes};
use credledger_domain::{CredentialId, Flag, MemberId, ProjectId};
use credledger_projections::queries::{MemberRow, ProjectRow, UsageSummary};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineTokenView {
    #[schema(value_type = String, format = Uuid)]
    pub id: CredentialId,
    pub name: String,
    pub environment_hint: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub project_id: Option<ProjectId>,
    #[schema(value_type = String, format = Uuid)]
    pub owner: MemberId,
    /// active, disabled, expired or revoked.
    pub state: &'static str,
    #[schema(value_type = Vec<String>, example = json!(["credledger-api/read", "credledger-api/write"]))]
    pub scopes: Scopes,
    #[schema(value_type = ConditionsDocument)]
    pub conditions: Conditions,
    pub token_prefix: String,
    #[serde(with = "credledger_domain::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "credledger_domain::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "credledger_domain::time_format::option")]
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
    pub last_used_user_agent: Option<String>,
    pub use_count: u64,
    pub denied_count: u64,
    /// Set when the owner was removed; cleared by a transfer.
    #[schema(value_type = Option<FlagDocument>)]
    pub flagged: Option<Flag>,
    /// Until when the value replaced by the last roll keeps working, while it does.
    #[serde(with = "credledger_domain::time_format::option", skip_serializing_if = "Option::is_none")]
    pub previous_value_valid_until: Option<DateTime<Utc>>,
}

impl MachineTokenView {
    pub fn new(token: &MachineToken, usage: &UsageSummary, now: DateTime<Utc>) -> Self {
        Self {
            id: token.id,
            name: token.name.to_string(),
            environment_hint: token.environment_hint.to_string(),
            project_id: token.project_id,
            owner: token.owner,
            state: token.effective_status(now).as_str(),
            scopes: token.scopes.clone(),
            conditions: token.conditions.clone(),
            token_prefix: token.token_prefix.to_string(),
            created_at: token.created_at,
            expires_at: token.expires_at,
            last_used_at: usage.last_used_at,
            last_used_ip: usage.last_used_ip.clone(),
            last_used_user_agent: usage.last_used_user_agent.clone(),
            use_count: usage.use_count,
            denied_count: usage.denied_count,
            flagged: token.flagged,
            previous_value_valid_until: token
                .previous_secret
                .map(|previous| previous.valid_until)
                .filter(|until| *until > now),
        }
    }
}

/// A view together with the plaintext it was just given: the one response that shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WithSecret<V> {
    #[serde(flatten)]
    pub view: V,
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalTokenView {
    #[schema(value_type = String, format = Uuid)]
    pub id: CredentialId,
    pub name: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub member_id: Option<MemberId>,
    pub state: &'static str,
    pub token_prefix: String,
    #[serde(with = "credledger_domain::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "credledger_domain::time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl PersonalTokenView {
    pub fn new(token: &PersonalToken, now: DateTime<Utc>) -> Self {
        Self {
            id: token.id,
            name: token.name.to_string(),
            member_id: token.member_id,
            state: token.status.effective(token.expires_at, now).as_str(),
            token_prefix: token.token_prefix.to_string(),
            created_at: token.created_at,
            expires_at: token.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub id: String,
    pub email: String,
    pub role: String,
    pub removed: bool,
}

impl From<MemberRow> for MemberView {
    fn from(row: MemberRow) -> Self {
        Self { id: row.member_id, email: row.email, role: row.role, removed: row.removed }
    }
}

impl MemberView {
    /// A member as the organization aggregate holds it (a past state folded from the log).
    pub fn of(id: MemberId, member: &Member) -> Self {
        Self {
            id: id.to_string(),
            email: member.email.as_str().to_owned(),
            role: member.role.as_str().to_owned(),
            removed: member.removed,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    pub id: String,
    pub name: String,
    pub environments: Vec<String>,
    #[serde(with = "credledger_domain::time_format")]
    pub created_at: DateTime<Utc>,
}

impl From<ProjectRow> for ProjectView {
    fn from(row: ProjectRow) -> Self {
        Self { id: row.project_id, name: row.name, environments: row.environments, created_at: row.created_at }
    }
}

impl ProjectView {
    /// A project as the organization aggregate holds it (a past state folded from the log).
    /// `created_at` is cut to the millisecond, as the projects read model keeps it, so that a
    /// project shows the same time in the present and in the past.
    pub fn of(id: ProjectId, project: &Project, created_at: DateTime<Utc>) -> Self {
        let created_at = created_at.trunc_subsecs(3);
        Self {
            id: id.to_string(),
            name: project.name.as_str().to_owned(),
            environments: project.environments.iter().map(|env| env.as_str().to_owned()).collect(),
            created_at,
        }
    }
}

/// Conditional access on a machine credential (documentation of the wire shape).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ConditionsDocument {
    /// CIDRs (IPv4 or IPv6); the request IP must match one.
    ip_allowlist: Vec<String>,
    time_windows: Vec<crate::input::TimeWindowInput>,
    /// A glob the User-Agent must match, e.g. `github-actions/*`.
    user_agent_pattern: Option<String>,
}

/// Why and when a credential was flagged.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct FlagDocument {
    /// `owner_removed`.
    reason: String,
    at: DateTime<Utc>,
}
