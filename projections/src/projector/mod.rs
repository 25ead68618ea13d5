//! Projectors: each turns events into the rows of one read model. They run inside the runner's
//! transaction, which also moves their checkpoints, so rows and checkpoints never disagree.

mod audit;
mod credentials;
mod ledger;
mod organizations;
mod secrets;
mod usage;

use credledger_domain::DomainEvent;
use credledger_store::RecordedEvent;
use rusqlite::Transaction;

use crate::ProjectionError;
use crate::credential::Credential;

pub(crate) use audit::Audit;
pub(crate) use credentials::Credentials;
pub(crate) use ledger::Ledger;
pub(crate) use organizations::Organizations;
pub(crate) use secrets::SecretReads;
pub(crate) use usage::Usage;

/// What a projector may change outside its rows: credentials the hot index must learn about
/// once the transaction has committed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub credentials: Vec<Credential>,
}

pub(crate) trait Projector: Send + Sync {
    /// The checkpoint name; never changes once released, or the model is rebuilt.
    fn name(&self) -> &'static str;

    /// Applies one event. `decoded` is `None` for event types the domain does not know (e.g.
    /// ledger checkpoints), which only the audit trail records.
    fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &RecordedEvent,
        decoded: Option<&DomainEvent>,
        effects: &mut Effects,
    ) -> Result<(), ProjectionError>;
}

pub(crate) fn all() -> Vec<Box<dyn Projector>> {
    vec![
        Box::new(Organizations),
        Box::new(Credentials),
        Box::new(Usage),
        Box::new(Audit),
        Box::new(Ledger),
        Box::new(SecretReads),
    ]
}

/// Runs a statement through the connection's cache of prepared statements: projectors run the
/// same few statements for every event, and preparing one costs more than running it.
pub(crate) fn exec(tx: &Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// Unix milliseconds: read models store times as integers so that filters compare numbers.
pub(crate) fn millis(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}
