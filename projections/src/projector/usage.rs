//! The usage record: last use (time, IP, user agent), counts of uses and denials, and the
//! distinct IPs and user agents each credential was presented from, with first and last seen.
//! An issued access token counts as a use of the credential that obtained it.

use credledger_domain::DomainEvent;
use credledger_domain::usage::Event;
use credledger_store::RecordedEvent;
use rusqlite::{Transaction, params};

use super::{Effects, Projector, exec, millis};
use crate::ProjectionError;

#[derive(Debug)]
pub(crate) struct Usage;

impl Projector for Usage {
    fn name(&self) -> &'static str {
        "usage"
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        _event: &RecordedEvent,
        decoded: Option<&DomainEvent>,
        _effects: &mut Effects,
    ) -> Result<(), ProjectionError> {
        let Some(DomainEvent::Usage(usage)) = decoded else { return Ok(()) };
        let (id, at, ip, user_agent, uses, denials) = match usage {
            Event::CredentialUsed(e) => (e.credential_id, e.at, &e.ip, &e.user_agent, 1, 0),
            Event::AccessTokenIssued(e) => (e.credential_id, e.at, &e.ip, &e.user_agent, 1, 0),
            Event::CredentialAccessDenied(e) => (e.credential_id, e.at, &e.ip, &e.user_agent, 0, i64::from(e.count)),
            // The request that read them is a use of its own (CredentialUsed); the secrets read
            // have their own model.
            Event::SecretsRead(_) => return Ok(()),
        };
        let (id, at) = (id.to_string(), millis(at));
        if let Event::CredentialAccessDenied(denied) = usage {
            exec(
                tx,
                "INSERT INTO credential_usage (credential_id, denied_count, last_denied_at, last_denied_reason) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (credential_id) DO UPDATE SET \
                 denied_count = denied_count + excluded.denied_count, \
                 last_denied_at = excluded.last_denied_at, last_denied_reason = excluded.last_denied_reason",
                params![id, denials, at, denied.reason.as_str()],
            )?;
        } else {
            exec(
                tx,
                "INSERT INTO credential_usage (credential_id, last_used_at, last_used_ip, last_used_user_agent, use_count) \
                 VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (credential_id) DO UPDATE SET \
                 last_used_at = excluded.last_used_at, last_used_ip = excluded.last_used_ip, \
                 last_used_user_agent = excluded.last_used_user_agent, use_count = use_count + 1",
                params![id, at, ip, user_agent],
            )?;
        }
        exec(
            tx,
            "INSERT INTO usage_ips (credential_id, ip, first_seen, last_seen, use_count, denied_count) \
             VALUES (?1, ?2, ?3, ?3, ?4, ?5) ON CONFLICT (credential_id, ip) DO UPDATE SET \
             last_seen = excluded.last_seen, use_count = use_count + excluded.use_count, \
             denied_count = denied_count + excluded.denied_count",
            params![id, ip, at, uses, denials],
        )?;
        if let Some(user_agent) = user_agent {
            exec(
                tx,
                "INSERT INTO usage_user_agents (credential_id, user_agent, first_seen, last_seen, use_count, denied_count) \
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5) ON CONFLICT (credential_id, user_agent) DO UPDATE SET \
                 last_seen = excluded.last_seen, use_count = use_count + excluded.use_count, \
                 denied_count = denied_count + excluded.denied_count",
                params![id, user_agent, at, uses, denials],
            )?;
        }
        Ok(())
    }
}
