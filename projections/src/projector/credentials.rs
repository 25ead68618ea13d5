//! The credential inventory. Each row holds the aggregate's state as the domain's `evolve` left
//! it, so the projector folds the next event with the domain's own rules, plus the columns that
//! lists filter on. Revoked and expired credentials stay listed: nothing vanishes.

use credledger_domain::{
    CredentialId, DomainEvent, machine_identity, machine_token, personal_token, service_credential,
};
use credledger_store::RecordedEvent;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Effects, Projector, exec, millis};
use crate::ProjectionError;
use crate::credential::Credential;

#[derive(Debug)]
pub(crate) struct Credentials;

impl Projector for Credentials {
    fn name(&self) -> &'static str {
        "credentials"
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &RecordedEvent,
        decoded: Option<&DomainEvent>,
        effects: &mut Effects,
    ) -> Result<(), ProjectionError> {
        let credential = match decoded {
            Some(DomainEvent::MachineToken(mt_event)) => {
                let state = match load(tx, credential_id(event)?)? {
                    Some(Credential::MachineToken(token)) => machine_token::State::Present(token),
                    _ => machine_token::State::Absent,
                };
                Credential::from_machine_token(machine_token::evolve(state, mt_event))
            }
            Some(DomainEvent::PersonalToken(pat_event)) => {
                let state = match load(tx, credential_id(event)?)? {
                    Some(Credential::PersonalToken(token)) => personal_token::State::Present(token),
                    _ => personal_token::State::Absent,
                };
                Credential::from_personal_token(personal_token::evolve(state, pat_event))
            }
            Some(DomainEvent::ServiceCredential(sc_event)) => {
                let state = match load(tx, credential_id(event)?)? {
                    Some(Credential::ServiceCredential(credential)) => service_credential::State::Present(credential),
                    _ => service_credential::State::Absent,
                };
                Credential::from_service_credential(service_credential::evolve(state, sc_event))
            }
            Some(DomainEvent::Machine(mi_event)) => {
                let state = match load(tx, credential_id(event)?)? {
                    Some(Credential::Machine(machine)) => machine_identity::State::Present(machine),
                    _ => machine_identity::State::Absent,
                };
                Credential::from_machine(machine_identity::evolve(state, mi_event))
            }
            _ => return Ok(()),
        };
        let Some(credential) = credential else { return Ok(()) };
        save(tx, &credential, event)?;
        effects.credentials.push(credential);
        Ok(())
    }
}

/// The credential a lifecycle stream (`mt-{id}`, `pat-{id}`) belongs to.
fn credential_id(event: &RecordedEvent) -> Result<CredentialId, ProjectionError> {
    event
        .stream
        .split_once('-')
        .and_then(|(_, id)| CredentialId::parse(id).ok())
        .ok_or_else(|| ProjectionError::corrupt(event.position, "stream names no credential"))
}

fn load(tx: &Transaction<'_>, id: CredentialId) -> Result<Option<Credential>, ProjectionError> {
    let state: Option<String> = tx
        .query_row("SELECT state FROM credentials WHERE credential_id = ?1", [id.to_string()], |row| row.get(0))
        .optional()?;
    state.map(|json| serde_json::from_str(&json)).transpose().map_err(|e| ProjectionError::Decode(e.to_string()))
}

fn save(tx: &Transaction<'_>, credential: &Credential, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let state = serde_json::to_string(credential).map_err(|e| ProjectionError::Decode(e.to_string()))?;
    let view = credential.view();
    let (name, environment_hint, prefix, created_at, flagged) = match credential {
        Credential::MachineToken(t) => (
            t.name.as_str().to_owned(),
            Some(t.environment_hint.as_str().to_owned()),
            t.token_prefix.as_str().to_owned(),
            t.created_at,
            t.flagged,
        ),
        Credential::PersonalToken(t) => {
            (t.name.as_str().to_owned(), None, t.token_prefix.as_str().to_owned(), t.created_at, None)
        }
        Credential::ServiceCredential(c) => {
            (c.name.as_str().to_owned(), None, c.secret_prefix.as_str().to_owned(), c.created_at, c.flagged)
        }
        Credential::Machine(m) => (
            m.name.as_str().to_owned(),
            Some(m.environment.as_str().to_owned()),
            format!("ed25519:{}", &m.public_key.to_base64url()[..8]),
            m.created_at,
            m.flagged,
        ),
    };
    let scopes = serde_json::to_string(&view.scopes).map_err(|e| ProjectionError::Decode(e.to_string()))?;
    let conditions = serde_json::to_string(&view.conditions).map_err(|e| ProjectionError::Decode(e.to_string()))?;
    exec(
        tx,
        include_str!("upsert_credential.sql"),
        params![
            view.id.to_string(),
            view.kind.as_str(),
            view.org_id.map(|id| id.to_string()),
            name,
            environment_hint,
            view.project_id.map(|id| id.to_string()),
            view.owner.map(|id| id.to_string()),
            view.status.as_str(),
            scopes,
            conditions,
            prefix,
            credential.current_secret().to_hex(),
            view.server_admin,
            millis(created_at),
            view.expires_at.map(millis),
            flagged.map(|f| f.reason.as_str()),
            flagged.map(|f| millis(f.at)),
            state,
            event.position as i64,
        ],
    )?;
    exec(
        tx,
        "INSERT INTO credential_secrets (secret_hash, credential_id, created_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (secret_hash) DO NOTHING",
        params![credential.current_secret().to_hex(), view.id.to_string(), millis(event.occurred_at)],
    )?;
    exec(
        tx,
        "UPDATE credential_secrets SET replaced_at = ?3 \
         WHERE credential_id = ?1 AND secret_hash <> ?2 AND replaced_at IS NULL",
        params![view.id.to_string(), credential.current_secret().to_hex(), millis(event.occurred_at)],
    )?;
    Ok(())
}
