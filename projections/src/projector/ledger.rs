//! The ledger's signed checkpoints, from the `ledger` stream.

use credledger_domain::DomainEvent;
use credledger_domain::ledger::{CHECKPOINT_SIGNED, CheckpointSigned};
use credledger_store::RecordedEvent;
use rusqlite::{Transaction, params};

use super::{Effects, Projector, exec, millis};
use crate::ProjectionError;

#[derive(Debug)]
pub(crate) struct Ledger;

impl Projector for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &RecordedEvent,
        _decoded: Option<&DomainEvent>,
        _effects: &mut Effects,
    ) -> Result<(), ProjectionError> {
        if event.event_type != CHECKPOINT_SIGNED {
            return Ok(());
        }
        let checkpoint: CheckpointSigned = serde_json::from_value(event.payload.clone())
            .map_err(|error| ProjectionError::Decode(format!("CheckpointSigned at {}: {error}", event.position)))?;
        let root: [u8; 32] = hex::decode(&checkpoint.root_hash)
            .ok()
            .and_then(|root| root.try_into().ok())
            .ok_or(ProjectionError::corrupt(event.position, "a checkpoint's root hash is not 32 bytes of hex"))?;
        exec(
            tx,
            "INSERT INTO checkpoints (position, tree_size, root_hash, signed_at, origin, note) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                event.position as i64,
                checkpoint.tree_size as i64,
                &root[..],
                millis(checkpoint.signed_at),
                checkpoint.origin,
                checkpoint.note
            ],
        )?;
        Ok(())
    }
}
