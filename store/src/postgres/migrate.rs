//! Versioned migrations of the log's database (`migrations/postgres`), applied at open and
//! recorded in `schema_migrations`, one process at a time (a transaction-level advisory lock), so
//! that several servers starting together migrate once. A database migrated by a newer release is
//! refused rather than guessed at.

use crate::StoreError;

const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "events", include_str!("../../../migrations/postgres/0001_events.sql")),
    (2, "leader_lease", include_str!("../../../migrations/postgres/0002_leader_lease.sql")),
];

/// The newest schema version this release knows.
pub(crate) const SUPPORTED: i32 = 2;

pub(crate) async fn apply(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::MIGRATE_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .await?;
    let current: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?.get(0);
    if current > SUPPORTED {
        return Err(StoreError::SchemaTooNew { found: i64::from(current), supported: i64::from(SUPPORTED) });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version > current) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[version, name]).await?;
        tracing::info!(version, name, "event store migrated");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_is_the_last_migration() {
        assert_eq!(MIGRATIONS.last().map(|(version, _, _)| *version), Some(SUPPORTED));
    }
}
