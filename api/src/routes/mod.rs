//! The HTTP routes, one module per resource.

mod assertion;
pub mod audit;
pub mod export;
pub mod incidents;
pub mod ledger;
pub mod machine_tokens;
pub mod machines;
pub mod oauth;
pub mod orgs;
pub mod projects;
pub mod secrets;
pub mod service_credentials;
pub mod signing_keys;
pub mod whoami;

use credledger_domain::{CredentialId, OrgId};
use credledger_projections::Credential;
use credledger_projections::queries::UsageSummary;

use crate::AppState;
use crate::extract::path_id;
use crate::problem::Problem;

/// The organization and credential ids of a credential route, or 400 naming the bad one.
pub(crate) fn credential_ids(org: &str, id: &str, id_field: &str) -> Result<(OrgId, CredentialId), Problem> {
    Ok((path_id("orgId", org)?, path_id(id_field, id)?))
}

/// A credential of the organization as the read models hold it, if `pick` accepts its kind;
/// 404 (named `what`) otherwise.
pub(crate) fn find_credential<T>(
    app: &AppState,
    org: OrgId,
    id: CredentialId,
    what: &str,
    pick: impl FnOnce(Credential) -> Option<T>,
) -> Result<(T, UsageSummary), Problem> {
    app.projections
        .credential(org, id)?
        .and_then(|record| pick(record.credential).map(|credential| (credential, record.usage)))
        .ok_or_else(|| Problem::not_found(what))
}
