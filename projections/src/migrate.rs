//! Versioned migrations of the read-model file (`migrations/sqlite/read`), applied at open.

use std::path::Path;

use rusqlite::Connection;

use crate::ProjectionError;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "read_models", include_str!("../../migrations/sqlite/read/0001_read_models.sql")),
    (2, "job_checkpoints", include_str!("../../migrations/sqlite/read/0002_job_checkpoints.sql")),
    (3, "audit_usage", include_str!("../../migrations/sqlite/read/0003_audit_usage.sql")),
    (4, "ledger", include_str!("../../migrations/sqlite/read/0004_ledger.sql")),
    (5, "projected_tip", include_str!("../../migrations/sqlite/read/0005_projected_tip.sql")),
    (6, "secret_reads", include_str!("../../migrations/sqlite/read/0006_secret_reads.sql")),
    (7, "audit_indexes", include_str!("../../migrations/sqlite/read/0007_audit_indexes.sql")),
];

pub(crate) fn connect(path: &Path) -> Result<Connection, ProjectionError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // Read models are derived: a crash loses at most the last batch, which is replayed from the
    // checkpoint, so the log's `FULL` durability is not needed here.
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "busy_timeout", 5000)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

pub(crate) fn apply(connection: &mut Connection) -> Result<(), ProjectionError> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    )?;
    let current: i64 =
        connection.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    let supported = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if current > supported {
        return Err(ProjectionError::SchemaTooNew { found: current, supported });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version > current) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)", (version, name))?;
        tx.commit()?;
    }
    Ok(())
}
