//! Usage events: every use of a credential and every denied attempt. They go to a stream per
//! credential (`usage-{id}`), apart from the lifecycle stream, so heavy use never conflicts with
//! lifecycle commands. Usage is a recorded fact, not a decision: there is no decider.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::credential::CredentialKind;
use crate::policy::DenyReason;
use crate::values::Scopes;
use crate::{CredentialId, OrgId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    CredentialUsed(CredentialUsed),
    CredentialAccessDenied(CredentialAccessDenied),
    AccessTokenIssued(AccessTokenIssued),
    SecretsRead(SecretsRead),
}

impl Event {
    pub const TYPES: [&'static str; 4] =
        ["CredentialUsed", "CredentialAccessDenied", "AccessTokenIssued", "SecretsRead"];
}

pub fn stream(id: CredentialId) -> String {
    format!("usage-{id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialUsed {
    pub credential_id: CredentialId,
    pub kind: CredentialKind,
    pub org_id: Option<OrgId>,
    pub method: String,
    /// The route template (`/v1/machine-tokens/:orgId`), not the concrete path.
    pub route: String,
    pub ip: String,
    pub user_agent: Option<String>,
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
    /// The log position of the view the use was judged on: every event of the credential's
    /// lifecycle up to here was known, and none after it had been recorded when the use was
    /// (absent in uses recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub based_on: Option<u64>,
}

/// Denials are coalesced: at most one event per credential, reason and second, with a count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialAccessDenied {
    pub credential_id: CredentialId,
    pub kind: CredentialKind,
    pub org_id: Option<OrgId>,
    pub reason: DenyReason,
    pub count: u32,
    pub method: String,
    pub route: String,
    pub ip: String,
    pub user_agent: Option<String>,
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenIssued {
    pub credential_id: CredentialId,
    pub kind: CredentialKind,
    pub org_id: Option<OrgId>,
    pub jti: String,
    /// The `jti` of the assertion exchanged for the token (jwt-bearer grant), so that a replayed
    /// assertion is recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_jti: Option<String>,
    pub scopes: Scopes,
    #[serde(with = "crate::time_format")]
    pub expires_at: DateTime<Utc>,
    pub ip: String,
    pub user_agent: Option<String>,
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
    /// The log position of the view the use was judged on: every event of the credential's
    /// lifecycle up to here was known, and none after it had been recorded when the use was
    /// (absent in uses recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub based_on: Option<u64>,
}

impl Event {
    pub fn credential_id(&self) -> CredentialId {
        match self {
            Self::CredentialUsed(e) => e.credential_id,
            Self::CredentialAccessDenied(e) => e.credential_id,
            Self::AccessTokenIssued(e) => e.credential_id,
            Self::SecretsRead(e) => e.credential_id,
        }
    }
}

/// A credential read the values of an environment's secrets: recorded, durably, before the values
/// are sent, so the trail of a credential says which secrets it read, by version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretsRead {
    pub credential_id: CredentialId,
    pub kind: CredentialKind,
    pub org_id: Option<OrgId>,
    pub project_id: crate::ProjectId,
    pub environment: String,
    pub version: u64,
    /// The names whose values were sent.
    pub names: Vec<String>,
    pub ip: String,
    pub user_agent: Option<String>,
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
}
