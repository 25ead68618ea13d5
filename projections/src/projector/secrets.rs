//! Reads of secrets, from SecretsRead: who read which version of an environment, for the
//! environment's history and a credential's incident trace.

use credledger_domain::{DomainEvent, usage};
use credledger_store::RecordedEvent;
use rusqlite::{Transaction, params};

use super::{Effects, Projector, exec, millis};
use crate::ProjectionError;

#[derive(Debug)]
pub(crate) struct SecretReads;

impl Projector for SecretReads {
    fn name(&self) -> &'static str {
        "secret_reads"
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &RecordedEvent,
        decoded: Option<&DomainEvent>,
        _effects: &mut Effects,
    ) -> Result<(), ProjectionError> {
        let Some(DomainEvent::Usage(usage::Event::SecretsRead(read))) = decoded else { return Ok(()) };
        let names = serde_json::to_string(&read.names).map_err(|error| ProjectionError::Decode(error.to_string()))?;
        exec(
            tx,
            "INSERT INTO secret_reads (position, org_id, project_id, environment, credential_id, kind, version, \
             names, ip, user_agent, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                event.position as i64,
                read.org_id.map(|org| org.to_string()).unwrap_or_default(),
                read.project_id.to_string(),
                read.environment,
                read.credential_id.to_string(),
                read.kind.as_str(),
                read.version as i64,
                names,
                read.ip,
                read.user_agent,
                millis(read.at)
            ],
        )?;
        Ok(())
    }
}
