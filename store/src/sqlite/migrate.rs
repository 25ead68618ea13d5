//! Versioned migrations of the log file (`migrations/sqlite/log`), applied at open and recorded
//! in `schema_migrations`. A file migrated by a newer release is refused rather than guessed at.

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "events", include_str!("../../../migrations/sqlite/log/0001_events.sql"))];

/// The newest schema version this release knows.
pub(crate) const SUPPORTED: i64 = 1;

pub(crate) fn apply(connection: &mut Connection) -> Result<(), StoreError> {
    connection.execute_batch(include_str!("schema_migrations.sql"))?;
    let current: i64 =
        connection.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |row| row.get(0))?;
    if current > SUPPORTED {
        return Err(StoreError::SchemaTooNew { found: current, supported: SUPPORTED });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version > current) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)", (version, name))?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_is_the_last_migration() {
        assert_eq!(MIGRATIONS.last().map(|(version, _, _)| *version), Some(SUPPORTED));
    }

    #[test]
    fn applying_twice_changes_nothing() {
        let mut connection = Connection::open_in_memory().unwrap();
        apply(&mut connection).unwrap();
        apply(&mut connection).unwrap();
        let rows: i64 = connection.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1);
    }
}
