//! The ledger's checkpoints and cached tile roots in the read models.

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;

use crate::{ProjectionError, Projections};

/// A signed checkpoint as projected from its CheckpointSigned event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// The position of the CheckpointSigned event in the log.
    pub position: u64,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    pub signed_at: DateTime<Utc>,
    pub origin: String,
    /// The signed note.
    pub note: String,
}

const COLUMNS: &str = "position, tree_size, root_hash, signed_at, origin, note";

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRow> {
    let root: Vec<u8> = row.get(2)?;
    let signed_at: i64 = row.get(3)?;
    Ok(CheckpointRow {
        position: row.get::<_, i64>(0)? as u64,
        tree_size: row.get::<_, i64>(1)? as u64,
        root_hash: root.try_into().unwrap_or([0; 32]),
        signed_at: DateTime::from_timestamp_millis(signed_at).unwrap_or(DateTime::UNIX_EPOCH),
        origin: row.get(4)?,
        note: row.get(5)?,
    })
}

impl Projections {
    /// The most recent checkpoint, if one has been signed.
    pub fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, ProjectionError> {
        let connection = self.reader()?;
        let sql = format!("SELECT {COLUMNS} FROM checkpoints ORDER BY position DESC LIMIT 1");
        Ok(connection.query_row(&sql, [], row).optional()?)
    }

    /// Checkpoints newest first: those recorded before position `before` (a cursor), and only
    /// those of exactly `tree_size` if given.
    pub fn checkpoints(
        &self,
        tree_size: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CheckpointRow>, ProjectionError> {
        let connection = self.reader()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM checkpoints WHERE (?1 IS NULL OR tree_size = ?1) AND (?2 IS NULL OR position < ?2) \
             ORDER BY position DESC LIMIT ?3"
        );
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement
            .query_map(rusqlite::params![tree_size.map(|s| s as i64), before.map(|p| p as i64), limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The cached roots of full 256-leaf tiles, tile 0 first.
    pub fn ledger_tiles(&self) -> Result<Vec<[u8; 32]>, ProjectionError> {
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached("SELECT tile, root FROM ledger_tiles ORDER BY tile")?;
        let mut rows = statement.query([])?;
        let mut tiles = Vec::new();
        while let Some(found) = rows.next()? {
            let tile: i64 = found.get(0)?;
            let root: Vec<u8> = found.get(1)?;
            // Tiles are written in order from 0; stop at a hole rather than misplace a root.
            if tile != tiles.len() as i64 {
                break;
            }
            let Ok(root) = <[u8; 32]>::try_from(root) else { break };
            tiles.push(root);
        }
        Ok(tiles)
    }

    /// Records the roots of tiles `first, first + 1, …` (rewriting a tile with the same root is a no-op).
    pub fn save_ledger_tiles(&self, first: u64, roots: &[[u8; 32]]) -> Result<(), ProjectionError> {
        let mut connection = crate::migrate::connect(self.path())?;
        let tx = connection.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT OR REPLACE INTO ledger_tiles (tile, root) VALUES (?1, ?2)")?;
            for (offset, root) in roots.iter().enumerate() {
                insert.execute(rusqlite::params![(first + offset as u64) as i64, &root[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
