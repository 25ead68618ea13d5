//! The one error type of the domain boundary: why a command was refused.

use crate::values::ValueError;

/// Why a decider refused a command. Each variant has a stable `code` the API turns into a
/// problem+json response; none of them is the caller's server failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The aggregate's lifecycle does not allow this command in its current state (DESIGN.md §3);
    /// a revoked credential refuses every command. The caller should re-read the state.
    #[error("cannot {command} a {state} {aggregate}")]
    InvalidTransition { aggregate: &'static str, state: &'static str, command: &'static str },
    /// A create command for an aggregate that already exists; the caller should pick a new id.
    #[error("{aggregate} already exists")]
    AlreadyExists { aggregate: &'static str },
    /// A command for an aggregate that was never created.
    #[error("{aggregate} not found")]
    NotFound { aggregate: &'static str },
    /// The named member is not (or no longer) a member of the organization.
    #[error("member not found")]
    MemberNotFound,
    /// An active member with this email already exists in the organization.
    #[error("a member with this email already exists")]
    MemberExists,
    /// The command would leave the organization without an owner.
    #[error("an organization must keep at least one owner")]
    LastOwner,
    /// A project with this name already exists in the organization.
    #[error("a project with this name already exists")]
    ProjectExists,
    /// The project does not exist in the organization.
    #[error("project not found")]
    ProjectNotFound,
    /// The environment already exists in the project.
    #[error("environment already exists in the project")]
    EnvironmentExists,
    /// An expiry command for a credential whose expiry time has not passed.
    #[error("the credential has not reached its expiry time")]
    NotYetExpired,
    /// The expiry is outside the allowed range.
    #[error("expiresInDays must be between 1 and {max_days}")]
    InvalidExpiry { max_days: u32 },
    /// The roll grace period is longer than the ledger allows.
    #[error("the grace period may be at most {max_seconds} seconds")]
    GracePeriodTooLong { max_seconds: i64 },
    /// A grace period only makes sense when the old value still authenticates.
    #[error("a grace period applies only to an active credential")]
    GraceNotApplicable,
    /// An update command that changes nothing.
    #[error("the update names no field to change")]
    NothingToUpdate,
    /// The set of secrets changed since the version the caller based its change on.
    #[error("the secrets are at version {actual}, not {expected}: read them again and reapply the change")]
    StaleVersion { expected: u64, actual: u64 },
    /// A value of the command failed to parse.
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl DomainError {
    /// A stable, snake_case code for clients and problem+json.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::AlreadyExists { .. } => "already_exists",
            Self::NotFound { .. } => "not_found",
            Self::MemberNotFound => "member_not_found",
            Self::MemberExists => "member_exists",
            Self::LastOwner => "last_owner",
            Self::ProjectExists => "project_exists",
            Self::ProjectNotFound => "project_not_found",
            Self::EnvironmentExists => "environment_exists",
            Self::NotYetExpired => "not_yet_expired",
            Self::InvalidExpiry { .. } => "invalid_expiry",
            Self::GracePeriodTooLong { .. } => "grace_period_too_long",
            Self::GraceNotApplicable => "grace_not_applicable",
            Self::NothingToUpdate => "nothing_to_update",
            Self::StaleVersion { .. } => "stale_version",
            Self::Value(e) => e.code(),
        }
    }
}
