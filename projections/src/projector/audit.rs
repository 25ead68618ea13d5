//! The audit trail: one indexed row per event of the log, with a human summary and the leaf
//! hash, so a trail entry can be checked against the verifiable ledger.

use credledger_domain::{
    DomainEvent, machine_identity, machine_token, organization, personal_token, secrets, service_credential, usage,
};
use credledger_store::RecordedEvent;
use rusqlite::{Transaction, params};

use super::{Effects, Projector, exec, millis};
use crate::ProjectionError;

#[derive(Debug)]
pub(crate) struct Audit;

/// The route of the token endpoint, where every AccessTokenIssued comes from.
const TOKEN_ROUTE: &str = "/oauth2/token";
/// The route that reads secrets; SecretsRead does not repeat it.
const SECRETS_ROUTE: &str = "/v1/secrets/{orgId}/{project}/{environment}";

/// The request of a usage event, for incident response; empty for every other event.
#[derive(Debug, Default)]
struct UsageDetail {
    method: Option<String>,
    route: Option<String>,
    reason: Option<&'static str>,
    /// How many requests the row stands for: a coalesced denial's count, 1 for a use.
    count: Option<i64>,
}

impl Projector for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &RecordedEvent,
        decoded: Option<&DomainEvent>,
        _effects: &mut Effects,
    ) -> Result<(), ProjectionError> {
        // Usage events name their credential (some live in per-assertion streams); lifecycle
        // streams are named after theirs.
        let credential_id = match decoded {
            Some(DomainEvent::Usage(usage)) => Some(usage.credential_id().to_string()),
            _ => event
                .stream
                .split_once('-')
                .filter(|(prefix, _)| ["pat", "mt", "sc", "mi"].contains(prefix))
                .map(|(_, id)| id.to_owned()),
        };
        let (mut ip, mut user_agent) =
            event.request.as_ref().map_or((None, None), |request| (request.ip.clone(), request.user_agent.clone()));
        let mut detail = UsageDetail::default();
        let outcome = match decoded {
            Some(DomainEvent::Usage(usage::Event::CredentialAccessDenied(denied))) => {
                ip = Some(denied.ip.clone());
                user_agent.clone_from(&denied.user_agent);
                detail = UsageDetail {
                    method: Some(denied.method.clone()),
                    route: Some(denied.route.clone()),
                    reason: Some(denied.reason.as_str()),
                    count: Some(i64::from(denied.count)),
                };
                "denied"
            }
            Some(DomainEvent::Usage(usage::Event::CredentialUsed(used))) => {
                ip = Some(used.ip.clone());
                user_agent.clone_from(&used.user_agent);
                detail = UsageDetail {
                    method: Some(used.method.clone()),
                    route: Some(used.route.clone()),
                    reason: None,
                    count: Some(1),
                };
                "success"
            }
            Some(DomainEvent::Usage(usage::Event::SecretsRead(read))) => {
                ip = Some(read.ip.clone());
                user_agent.clone_from(&read.user_agent);
                detail = UsageDetail {
                    method: Some("GET".to_owned()),
                    route: Some(SECRETS_ROUTE.to_owned()),
                    reason: None,
                    count: Some(1),
                };
                "success"
            }
            Some(DomainEvent::Usage(usage::Event::AccessTokenIssued(_))) => {
                // Tokens are issued by one endpoint only; the event does not repeat it.
                detail = UsageDetail {
                    method: Some("POST".to_owned()),
                    route: Some(TOKEN_ROUTE.to_owned()),
                    reason: None,
                    count: Some(1),
                };
                "success"
            }
            _ => "success",
        };
        exec(
            tx,
            "INSERT INTO audit_trail (position, recorded_at, org_id, credential_id, event_type, actor_kind, \
             actor_id, ip, user_agent, outcome, summary, leaf_hash, method, route, reason, count) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            params![
                event.position as i64,
                millis(event.recorded_at),
                event.org_id.map(|id| id.to_string()),
                credential_id,
                event.event_type,
                event.actor.kind.as_str(),
                event.actor.id,
                ip,
                user_agent,
                outcome,
                summary(event, decoded),
                hex::encode(event.leaf_hash),
                detail.method,
                detail.route,
                detail.reason,
                detail.count,
            ],
        )?;
        Ok(())
    }
}

/// One line a human reads in the trail.
fn summary(event: &RecordedEvent, decoded: Option<&DomainEvent>) -> String {
    use machine_identity::Event as Mi;
    use machine_token::Event as Mt;
    use organization::Event as Org;
    use service_credential::Event as Sc;
    match decoded {
        Some(DomainEvent::Organization(e)) => match e {
            Org::OrgCreated(c) => format!("organization {} created", c.name),
            Org::MemberAdded(m) => format!("{} added as {}", m.email, m.role.as_str()),
            Org::MemberRoleChanged(m) => {
                format!("member {} changed from {} to {}", m.member_id, m.from.as_str(), m.to.as_str())
            }
            Org::MemberRemoved(m) => format!("{} removed", m.email),
            Org::ProjectCreated(p) => format!("project {} created", p.name),
            Org::EnvironmentAdded(env) => format!("environment {} added", env.name),
        },
        Some(DomainEvent::PersonalToken(e)) => match e {
            personal_token::Event::PersonalTokenCreated(c) => {
                format!("personal token {} ({}) created", c.name, c.token_prefix)
            }
            personal_token::Event::PersonalTokenRevoked(_) => "personal token revoked".to_owned(),
        },
        Some(DomainEvent::MachineToken(e)) => match e {
            Mt::MachineTokenCreated(c) => format!("machine token {} ({}) created", c.name, c.token_prefix),
            Mt::MachineTokenUpdated(_) => "machine token updated".to_owned(),
            Mt::MachineTokenDisabled(_) => "machine token disabled".to_owned(),
            Mt::MachineTokenEnabled(_) => "machine token enabled".to_owned(),
            Mt::MachineTokenRolled(r) => match r.previous_valid_until {
                Some(until) => format!("machine token rolled to {}; old value valid until {until}", r.token_prefix),
                None => format!("machine token rolled to {}; old value revoked", r.token_prefix),
            },
            Mt::MachineTokenTransferred(t) => format!("machine token transferred to {}", t.to),
            Mt::MachineTokenFlagged(f) => format!("machine token flagged: {}", f.reason.as_str()),
            Mt::MachineTokenExpired(_) => "machine token expired".to_owned(),
            Mt::MachineTokenRevoked(_) => "machine token revoked".to_owned(),
        },
        Some(DomainEvent::ServiceCredential(e)) => match e {
            Sc::ServiceCredentialCreated(c) => format!("service credential {} ({}) created", c.name, c.client_id),
            Sc::ServiceCredentialSecretRotated(r) => match r.previous_valid_until {
                Some(until) => {
                    format!("service credential secret rotated to {}; old secret valid until {until}", r.secret_prefix)
                }
                None => format!("service credential secret rotated to {}; old secret revoked", r.secret_prefix),
            },
            Sc::ServiceCredentialTransferred(t) => format!("service credential transferred to {}", t.to),
            Sc::ServiceCredentialFlagged(f) => format!("service credential flagged: {}", f.reason.as_str()),
            Sc::ServiceCredentialRevoked(_) => "service credential revoked".to_owned(),
        },
        Some(DomainEvent::Machine(e)) => match e {
            Mi::MachineCreated(c) => {
                format!("machine {} created for {} (key {})", c.name, c.environment, c.public_key.to_base64url())
            }
            Mi::MachineKeyRotated(r) => format!("machine key rotated to {}", r.public_key.to_base64url()),
            Mi::MachineTransferred(t) => format!("machine transferred to {}", t.to),
            Mi::MachineFlagged(f) => format!("machine flagged: {}", f.reason.as_str()),
            Mi::MachineRevoked(_) => "machine revoked".to_owned(),
        },
        Some(DomainEvent::Usage(e)) => match e {
            usage::Event::CredentialUsed(u) => format!("{} {} from {}", u.method, u.route, u.ip),
            usage::Event::CredentialAccessDenied(d) => {
                format!("denied {} {} from {}: {} (x{})", d.method, d.route, d.ip, d.reason.as_str(), d.count)
            }
            usage::Event::AccessTokenIssued(i) => format!("access token issued to {}", i.ip),
            usage::Event::SecretsRead(r) => {
                format!("read {} secrets of {} version {} from {}", r.names.len(), r.environment, r.version, r.ip)
            }
        },
        Some(DomainEvent::Secrets(secrets::Event::SecretsVersionCreated(v))) => format!(
            "secrets of {} version {}: {} changed, {} removed",
            v.environment,
            v.version,
            v.changed.len(),
            v.removed.len()
        ),
        None => event.event_type.clone(),
    }
}
