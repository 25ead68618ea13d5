//! The verifiable ledger (DESIGN.md §7): the Merkle tree over the log's leaf hashes, its proofs,
//! and the signed checkpoints that commit to it.
//!
//! Proofs never read the whole log. The roots of full 256-leaf tiles are cached (in memory and in
//! the read-model file, where they survive restarts); a perfect subtree of 256 leaves or more is
//! joined from tile roots (and memoized: it never changes), a smaller one is hashed from at most
//! one tile's leaves read from the log. A proof or a root then costs two tile reads at most plus
//! `O(n / 256)` cached hashes once, `O(log n)` afterwards.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use credledger_domain::ledger::{CHECKPOINT_SIGNED, CheckpointSigned, STREAM};
use credledger_domain::{Actor, EventId};
use credledger_projections::Projections;
use credledger_store::checkpoint::LedgerKey;
use credledger_store::merkle::{self, Subtree};
use credledger_store::{EventStore, ExpectedVersion, NewEvent};
use time::OffsetDateTime;

use crate::problem::Problem;

/// Leaves per cached tile: `2^TILE_HEIGHT`.
const TILE_HEIGHT: u32 = 8;
const TILE: u64 = 1 << TILE_HEIGHT;
/// Tiles hashed per read of the log while the cache catches up.
const TILES_PER_READ: u64 = 64;

/// Why the ledger key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerKeyError {
    #[error("ledger key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("ledger key file {path}: {reason}")]
    Damaged { path: String, reason: String },
}

/// Loads the ledger's signing key from `path` (`PRIVATE+KEY+<origin>+<id>+<base64>`), creating
/// it (mode 0600) for a ledger named `origin` on first start.
pub fn load_or_create_key(path: &Path, origin: &str) -> Result<LedgerKey, LedgerKeyError> {
    let shown = path.display().to_string();
    let io = |source| LedgerKeyError::Io { path: shown.clone(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => LedgerKey::from_secret(&text)
            .map_err(|error| LedgerKeyError::Damaged { path: shown.clone(), reason: error.to_string() }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = LedgerKey::generate(origin)
                .map_err(|error| LedgerKeyError::Damaged { path: shown.clone(), reason: error.to_string() })?;
            let temporary = path.with_extension("tmp");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary).map_err(io)?;
            std::io::Write::write_all(&mut file, format!("{}\n", key.secret()).as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            // Never replace a key another node wrote meanwhile: that one is the ledger's key.
            let linked = std::fs::hard_link(&temporary, path);
            let _ = std::fs::remove_file(&temporary);
            match linked {
                Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(error)),
                _ => {}
            }
            let text = std::fs::read_to_string(path).map_err(io)?;
            LedgerKey::from_secret(&text)
                .map_err(|error| LedgerKeyError::Damaged { path: shown.clone(), reason: error.to_string() })
        }
        Err(source) => Err(LedgerKeyError::Io { path: shown, source }),
    }
}

/// The last checkpoint this node knows of: its tree size and the position of its event.
#[derive(Debug, Clone, Copy)]
struct Signed {
    tree_size: u64,
    position: u64,
}

/// The Merkle tree over the log, its tile cache, and the ledger key.
pub struct Ledger {
    key: LedgerKey,
    store: Arc<dyn EventStore>,
    projections: Projections,
    /// Roots of full tiles, tile 0 first.
    tiles: RwLock<Vec<[u8; 32]>>,
    /// Roots of perfect subtrees above tile height, computed once.
    joined: Mutex<HashMap<Subtree, [u8; 32]>>,
    /// One catch-up of the tile cache at a time.
    syncing: tokio::sync::Mutex<()>,
    last_signed: Mutex<Option<Signed>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Leaves of the tiles a request has read, so that the proofs of neighbouring entries (an export
/// walks the log in order) read each tile once.
#[derive(Debug, Default)]
pub struct LeafCache {
    tiles: HashMap<u64, Vec<[u8; 32]>>,
}

impl Ledger {
    pub fn new(key: LedgerKey, store: Arc<dyn EventStore>, projections: Projections) -> Result<Self, Problem> {
        let tiles = projections.ledger_tiles()?;
        let last_signed = projections
            .latest_checkpoint()?
            .map(|checkpoint| Signed { tree_size: checkpoint.tree_size, position: checkpoint.position });
        Ok(Self {
            key,
            store,
            projections,
            tiles: RwLock::new(tiles),
            joined: Mutex::default(),
            syncing: tokio::sync::Mutex::default(),
            last_signed: Mutex::new(last_signed),
        })
    }

    pub fn key(&self) -> &LedgerKey {
        &self.key
    }

    fn cached_tiles(&self) -> u64 {
        self.tiles.read().map_or(0, |tiles| tiles.len() as u64)
    }

    /// Brings the tile cache up to the full tiles of the first `size` leaves.
    async fn sync_tiles(&self, size: u64) -> Result<(), Problem> {
        let wanted = size / TILE;
        if self.cached_tiles() >= wanted {
            return Ok(());
        }
        let _one_at_a_time = self.syncing.lock().await;
        loop {
            let have = self.cached_tiles();
            if have >= wanted {
                return Ok(());
            }
            let count = (wanted - have).min(TILES_PER_READ);
            let leaves = self.store.read_leaf_hashes(have * TILE + 1, (count * TILE) as usize).await?;
            let roots: Vec<[u8; 32]> =
                leaves.chunks_exact(TILE as usize).take(count as usize).map(merkle::root).collect();
            if roots.is_empty() {
                return Err(Problem::internal(
                    "hashing the ledger's tiles",
                    &format!("the log ends before position {}", have * TILE + TILE),
                ));
            }
            let projections = self.projections.clone();
            let saved = roots.clone();
            tokio::task::spawn_blocking(move || projections.save_ledger_tiles(have, &saved))
                .await
                .map_err(|error| Problem::internal("saving the ledger's tiles", &error))??;
            if let Ok(mut tiles) = self.tiles.write()
                && tiles.len() as u64 == have
            {
                tiles.extend(roots);
            }
        }
    }

    /// The root of a perfect subtree within the first `size` leaves (tiles already synced).
    async fn subtree_root(&self, subtree: Subtree, cache: &mut LeafCache) -> Result<[u8; 32], Problem> {
        if subtree.height() >= TILE_HEIGHT {
            return self.joined_root(subtree);
        }
        let tile = subtree.start() / TILE;
        if !cache.tiles.contains_key(&tile) {
            if cache.tiles.len() >= 16 {
                cache.tiles.clear();
            }
            let leaves = self.store.read_leaf_hashes(tile * TILE + 1, TILE as usize).await?;
            cache.tiles.insert(tile, leaves);
        }
        let leaves = &cache.tiles[&tile];
        let offset = (subtree.start() % TILE) as usize;
        leaves
            .get(offset..offset + subtree.len() as usize)
            .map(merkle::root)
            .ok_or_else(|| Problem::internal("hashing a subtree", &format!("the log ends before {}", subtree.start())))
    }

    /// The root of a perfect subtree of at least one tile, from the cached tile roots.
    fn joined_root(&self, subtree: Subtree) -> Result<[u8; 32], Problem> {
        if subtree.height() == TILE_HEIGHT {
            let tiles = self.tiles.read().map_err(|_| Problem::internal("reading the tile cache", &"poisoned"))?;
            return tiles
                .get((subtree.start() / TILE) as usize)
                .copied()
                .ok_or_else(|| Problem::internal("reading the tile cache", &"a tile is missing"));
        }
        if let Some(root) = self.joined.lock().ok().and_then(|joined| joined.get(&subtree).copied()) {
            return Ok(root);
        }
        let half = subtree.len() / 2;
        let left = Subtree::new(subtree.start(), subtree.height() - 1).expect("halves of a subtree are aligned");
        let right = Subtree::new(subtree.start() + half, subtree.height() - 1).expect("halves of a subtree are aligned");
        let root = merkle::join_subtree_roots(&[self.joined_root(left)?, self.joined_root(right)?]);
        if let Ok(mut joined) = self.joined.lock() {
            joined.insert(subtree, root);
        }
        Ok(root)
    }

    /// The root of a node of the tree (a proof's range, or a prefix `0..n`).
    async fn range_root(&self, range: std::ops::Range<u64>, cache: &mut LeafCache) -> Result<[u8; 32], Problem> {
        let pieces = Subtree::decompose(range.clone())
            .ok_or_else(|| Problem::internal("decomposing a range", &format!("{range:?} is not a node")))?;
        let mut roots = Vec::with_capacity(pieces.len());
        for piece in pieces {
            roots.push(self.subtree_root(piece, cache).await?);
        }
        Ok(merkle::join_subtree_roots(&roots))
    }

    /// The Merkle root over the first `size` events.
    pub async fn root(&self, size: u64) -> Result<[u8; 32], Problem> {
        if size == 0 {
            return Ok(merkle::empty_root());
        }
        self.sync_tiles(size).await?;
        self.range_root(0..size, &mut LeafCache::default()).await
    }

    /// The inclusion proof of the leaf at `index` (position − 1) in the tree of `size` leaves.
    pub async fn inclusion_proof(&self, index: u64, size: u64, cache: &mut LeafCache) -> Result<Vec<[u8; 32]>, Problem> {
        let ranges = merkle::inclusion_proof_ranges(index, size).map_err(|error| proof_problem(&error))?;
        self.sync_tiles(size).await?;
        let mut proof = Vec::with_capacity(ranges.len());
        for range in ranges {
            proof.push(self.range_root(range, cache).await?);
        }
        Ok(proof)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new` leaves.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<[u8; 32]>, Problem> {
        let ranges = merkle::consistency_proof_ranges(old, new).map_err(|error| proof_problem(&error))?;
        self.sync_tiles(new).await?;
        let mut cache = LeafCache::default();
        let mut proof = Vec::with_capacity(ranges.len());
        for range in ranges {
            proof.push(self.range_root(range, &mut cache).await?);
        }
        Ok(proof)
    }

    /// Signs a checkpoint of the whole log and appends it as CheckpointSigned, if events other
    /// than the last checkpoint's own have been recorded since. Returns the tree size signed.
    pub async fn sign_checkpoint(&self, now: OffsetDateTime) -> Result<Option<u64>, Problem> {
        let head = self.store.head().await?;
        let last = *self.last_signed.lock().map_err(|_| Problem::internal("the last checkpoint", &"poisoned"))?;
        if let Some(last) = last {
            if head <= last.position {
                return Ok(None);
            }
            if head < last.tree_size {
                tracing::error!(head, signed = last.tree_size, "the log is shorter than its last signed checkpoint");
                return Err(Problem::internal(
                    "signing a checkpoint",
                    &format!("the log ends at {head} but a checkpoint of {} events was signed", last.tree_size),
                ));
            }
        }
        if head == 0 {
            return Ok(None);
        }
        let root = self.root(head).await?;
        let note = self.key.sign(head, root, now).map_err(|error| Problem::internal("signing a checkpoint", &error))?;
        let payload = CheckpointSigned {
            origin: self.key.origin().to_owned(),
            tree_size: head,
            root_hash: hex::encode(root),
            signed_at: now.replace_nanosecond(0).unwrap_or(now),
            note,
        };
        let event = NewEvent {
            event_id: EventId::from_uuid(uuid::Uuid::now_v7()),
            event_type: CHECKPOINT_SIGNED.to_owned(),
            schema_version: credledger_domain::event::SCHEMA_VERSION,
            org_id: None,
            occurred_at: now,
            actor: Actor::system("ledger"),
            request: None,
            payload: serde_json::to_value(&payload).map_err(|error| Problem::internal("encoding a checkpoint", &error))?,
        };
        let appended = self.store.append(STREAM, ExpectedVersion::Any, vec![event]).await?;
        if let Ok(mut last) = self.last_signed.lock() {
            *last = Some(Signed { tree_size: head, position: appended.last_position });
        }
        tracing::debug!(tree_size = head, root = %hex::encode(root), "checkpoint signed");
        Ok(Some(head))
    }
}

fn proof_problem(error: &merkle::ProofError) -> Problem {
    Problem::bad_request("invalid_tree_size", error.to_string())
}

/// Signs a checkpoint every `every` while new events arrive (DESIGN.md §7: at most once a second).
pub async fn run_checkpoint_signer(app: crate::AppState, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(problem) = app.ledger.sign_checkpoint(app.clock.now()).await {
            tracing::warn!(code = problem.code, detail = %problem.detail, "signing a checkpoint failed");
        }
    }
}
