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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use chrono::{DateTime, Utc};
use credledger_domain::ledger::STREAM;
use credledger_projections::Projections;
use credledger_store::checkpoint::LedgerKey;
use credledger_store::merkle::{self, Subtree};
use credledger_store::{EventStore, ExpectedVersion, NewEvent, RawEvent, RecordedEvent, StoreError};
use futures::stream::BoxStream;

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
    let damaged = |error: credledger_store::checkpoint::CheckpointError| LedgerKeyError::Damaged {
        path: shown.clone(),
        reason: error.to_string(),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => LedgerKey::from_secret(&text).map_err(damaged),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = LedgerKey::generate(origin).map_err(damaged)?;
            let temporary =
                crate::signing::write_private_sibling(path, format!("{}\n", key.secret()).as_bytes()).map_err(io)?;
            // Never replace a key another node wrote meanwhile: that one is the ledger's key.
            let linked = std::fs::hard_link(&temporary, path);
            let _ = std::fs::remove_file(&temporary);
            match linked {
                Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(error)),
                _ => {}
            }
            LedgerKey::from_secret(&std::fs::read_to_string(path).map_err(io)?).map_err(damaged)
        }
        Err(source) => Err(io(source)),
    }
}

/// The last checkpoint this node knows of: its tree size and the position of its event.
#[derive(Debug, Clone, Copy)]
struct Signed {
    tree_size: u64,
    position: u64,
}

impl Signed {
    /// The last position the checkpoint leaves nothing unsigned before: its own event's, when
    /// that event came right after the tree it signs. When another event was committed between
    /// the head the signer read and its append (another node's, or a request's), that event is
    /// in no checkpoint yet: only the tree counts, so the next round signs again.
    fn covered(&self) -> u64 {
        if self.position == self.tree_size + 1 { self.position } else { self.tree_size }
    }
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
    /// Every envelope up to this position was rehashed from its stored bytes and matched its
    /// leaf hash: nothing beyond it is signed before it has been rehashed too.
    verified: AtomicU64,
    /// Why the ledger stopped signing and writing: the stored log no longer matches what it
    /// signed. Never cleared while the process runs; an operator verifies the log and restores it.
    halted: Arc<OnceLock<String>>,
    /// The last append through [`Ledger::guard`] that failed for a storage fault, while no
    /// later one has succeeded.
    storage_fault: Arc<Mutex<Option<StorageFault>>>,
}

/// An append that failed because the storage under the log did.
#[derive(Debug, Clone)]
pub struct StorageFault {
    pub at: std::time::Instant,
    pub cause: String,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("key", &self.key).finish_non_exhaustive()
    }
}

/// The tiles a request has read, each with every node hash inside it, so that the proofs of
/// neighbouring entries (an export walks the log in order) read and hash each tile once.
#[derive(Debug, Default)]
pub struct LeafCache {
    tiles: HashMap<u64, Vec<Vec<[u8; 32]>>>,
}

/// A tile's node hashes by height: its leaves, then each level of complete pairs above them.
fn tile_levels(leaves: Vec<[u8; 32]>) -> Vec<Vec<[u8; 32]>> {
    let mut levels = vec![leaves];
    while let Some(below) = levels.last().filter(|level| level.len() > 1) {
        let above = below.chunks_exact(2).map(merkle::join_subtree_roots).collect();
        levels.push(above);
    }
    levels
}

impl Ledger {
    pub fn new(key: LedgerKey, store: Arc<dyn EventStore>, projections: Projections) -> Result<Self, Problem> {
        let tiles = projections.ledger_tiles()?;
        let last_signed = projected_checkpoint(&projections)?;
        Ok(Self {
            key,
            store,
            projections,
            tiles: RwLock::new(tiles),
            joined: Mutex::default(),
            syncing: tokio::sync::Mutex::default(),
            last_signed: Mutex::new(last_signed),
            verified: AtomicU64::new(0),
            halted: Arc::default(),
            storage_fault: Arc::default(),
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
            cache.tiles.insert(tile, tile_levels(leaves));
        }
        let offset = ((subtree.start() % TILE) >> subtree.height()) as usize;
        cache.tiles[&tile]
            .get(subtree.height() as usize)
            .and_then(|level| level.get(offset))
            .copied()
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
        let right =
            Subtree::new(subtree.start() + half, subtree.height() - 1).expect("halves of a subtree are aligned");
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
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
        cache: &mut LeafCache,
    ) -> Result<Vec<[u8; 32]>, Problem> {
        let ranges = merkle::inclusion_proof_ranges(index, size).map_err(proof_problem)?;
        self.sync_tiles(size).await?;
        let mut proof = Vec::with_capacity(ranges.len());
        for range in ranges {
            proof.push(self.range_root(range, cache).await?);
        }
        Ok(proof)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new` leaves.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<[u8; 32]>, Problem> {
        let ranges = merkle::consistency_proof_ranges(old, new).map_err(proof_problem)?;
        self.sync_tiles(new).await?;
        let mut cache = LeafCache::default();
        let mut proof = Vec::with_capacity(ranges.len());
        for range in ranges {
            proof.push(self.range_root(range, &mut cache).await?);
        }
        Ok(proof)
    }

    /// Why the ledger stopped signing checkpoints, if it did.
    pub fn halted(&self) -> Option<String> {
        self.halted.get().cloned()
    }

    fn halt(&self, reason: String) {
        tracing::error!(%reason, "the stored log failed an integrity check: the ledger is read-only and signs nothing until an operator restores the log or accepts it; run `credledger audit verify` on a ledger export");
        let _ = self.halted.set(reason);
    }

    /// The store the API writes through: the ledger's log, refusing appends once the ledger has
    /// found its history altered, so nothing is ever written on top of a rewritten log.
    pub fn guard(&self) -> Arc<dyn EventStore> {
        Arc::new(GuardedStore {
            inner: self.store.clone(),
            halted: self.halted.clone(),
            storage_fault: self.storage_fault.clone(),
        })
    }

    /// The storage fault the last append met, if no append has succeeded since.
    pub fn storage_fault(&self) -> Option<StorageFault> {
        self.storage_fault.lock().ok().and_then(|fault| fault.clone())
    }

    /// Checks, before the server accepts requests, that the stored log still is what the last
    /// checkpoint signed (long enough, positions without a gap, the same root over the recorded
    /// leaf hashes, the cached tiles too), that it still holds every event this node's read
    /// models applied, and that every event after the last checkpoint still hashes, from its
    /// stored bytes, to the leaf hash recorded when it was appended. Reads 32 bytes per signed
    /// event and the unsigned tail in full. On a mismatch the ledger turns read-only and stops
    /// signing (see [`Ledger::halted`]), so a log altered or rolled back while the server was
    /// down never gets new events or a new signature on top.
    pub async fn check_at_start(&self) -> Result<(), Problem> {
        self.check_signed_prefix(false).await?;
        let head = self.store.head().await?;
        self.check_holds_projected(head);
        self.check_projected_tip(head).await?;
        let signed = self.projections.latest_checkpoint()?.map_or(0, |latest| latest.tree_size);
        // The signed prefix is rehashed in the background (`check_envelopes`); the tail before
        // the first write.
        self.verified.fetch_max(signed.min(head), Ordering::AcqRel);
        self.rehash_through(head).await?;
        Ok(())
    }

    /// Turns the ledger read-only when the log ends before the last event this node's read
    /// models applied: acknowledged events were lost (the log was restored from an older copy,
    /// or its last writes did not survive), and new events must never take their positions.
    /// Going on from the shorter log is an operator's decision (`credledger accept-rollback`).
    pub fn check_holds_projected(&self, head: u64) {
        let projected = self.projections.position();
        if projected > head && self.halted().is_none() {
            self.halt(format!(
                "the log ends at position {head}, but this node's read models applied events up to position \
                 {projected}: positions {}..={projected} were lost (the log was restored from an older copy or \
                 lost its last writes); to go on from the shorter log, run `credledger accept-rollback`",
                head + 1
            ));
        }
    }

    /// Turns the ledger read-only when the log no longer holds, at the position of the last
    /// event this node's read models applied, that very event: the log was replaced, or rolled
    /// back and written again by another node, and the read models must not be continued on it.
    async fn check_projected_tip(&self, head: u64) -> Result<(), Problem> {
        let Some((position, applied)) = self.projections.projected_tip()? else { return Ok(()) };
        if position > head || self.halted().is_some() {
            return Ok(());
        }
        let stored = self.store.read_leaf_hashes(position, 1).await?;
        if stored.first() != Some(&applied) {
            self.halt(format!(
                "the log's event at position {position} is not the one this node's read models applied: the log \
                 was replaced, or rolled back and written again; to go on from the log as it is, run \
                 `credledger accept-rollback`"
            ));
        }
        Ok(())
    }

    /// Rehashes the stored envelopes after the last verified position through `through`, and
    /// turns the ledger read-only at the first one that no longer hashes to its recorded leaf
    /// hash, or at a missing position. Returns whether everything through `through` verified.
    async fn rehash_through(&self, through: u64) -> Result<bool, Problem> {
        let mut next = self.verified.load(Ordering::Acquire) + 1;
        while next <= through {
            if self.halted().is_some() {
                return Ok(false);
            }
            let page = (TILES_PER_READ * TILE).min(through - next + 1) as usize;
            let rows = self.store.read_raw(next, page).await?;
            if rows.is_empty() {
                self.halt(format!("the log ends before position {next}, which was committed"));
                return Ok(false);
            }
            for row in rows.iter().take_while(|row| row.position <= through) {
                if row.position != next {
                    self.halt(format!("position {next} is missing: position {} is stored in its place", row.position));
                    return Ok(false);
                }
                if row.leaf_hash.as_slice() != credledger_store::leaf_hash(&row.envelope) {
                    self.halt(format!(
                        "the event at position {next} no longer hashes to the leaf hash recorded when it was appended"
                    ));
                    return Ok(false);
                }
                next += 1;
            }
            self.verified.fetch_max(next - 1, Ordering::AcqRel);
        }
        Ok(self.halted().is_none())
    }

    /// The same check, rehashing every envelope too (a byte changed without its recorded leaf
    /// hash): run in the background after the start, as it reads the whole log once.
    pub async fn check_envelopes(&self) -> Result<(), Problem> {
        self.check_signed_prefix(true).await
    }

    async fn check_signed_prefix(&self, envelopes: bool) -> Result<(), Problem> {
        if self.halted().is_some() {
            return Ok(());
        }
        let Some(latest) = self.projections.latest_checkpoint()? else { return Ok(()) };
        let size = latest.tree_size;
        let head = self.store.head().await?;
        if head < size {
            self.halt(format!("the log ends at position {head}, but a checkpoint of {size} events was signed: events {}..{size} are gone", head + 1));
            return Ok(());
        }
        let tiles = self.tiles.read().map(|tiles| tiles.clone()).unwrap_or_default();
        let mut range = credledger_store::verify::CompactRange::default();
        let mut tile = Vec::with_capacity(TILE as usize);
        let mut next = 1;
        while next <= size {
            let page = (TILES_PER_READ * TILE).min(size - next + 1) as usize;
            let mut rows: Vec<(u64, [u8; 32])> = Vec::with_capacity(page);
            for row in self.store.read_raw(next, page).await? {
                let recorded = <[u8; 32]>::try_from(row.leaf_hash.as_slice()).ok();
                let Some(recorded) =
                    recorded.filter(|recorded| !envelopes || *recorded == credledger_store::leaf_hash(&row.envelope))
                else {
                    self.halt(format!(
                        "the event at position {} no longer hashes to the leaf hash recorded when it was appended",
                        row.position
                    ));
                    return Ok(());
                };
                rows.push((row.position, recorded));
            }
            if rows.is_empty() {
                self.halt(format!("the log ends before position {next}, inside the checkpoint of {size} events"));
                return Ok(());
            }
            for &(position, leaf) in rows.iter().take_while(|(position, _)| *position <= size) {
                if position != next {
                    self.halt(format!("position {next} is missing: position {position} is stored in its place"));
                    return Ok(());
                }
                range.push(leaf);
                tile.push(leaf);
                if tile.len() == TILE as usize {
                    let index = ((next - 1) / TILE) as usize;
                    if tiles.get(index).is_some_and(|cached| *cached != merkle::root(&tile)) {
                        self.halt(format!(
                            "positions {}..={next} no longer match the tree hashed before",
                            next + 1 - TILE
                        ));
                        return Ok(());
                    }
                    tile.clear();
                }
                next += 1;
            }
        }
        if range.root() != latest.root_hash {
            self.halt(format!(
                "the first {size} events no longer have the root signed at {} (checkpoint at position {})",
                latest.signed_at, latest.position
            ));
        }
        Ok(())
    }

    /// The `ledger` stream version of the checkpoint event at `position`, read from the log (one
    /// point read per signing).
    async fn checkpoint_version(&self, position: u64) -> Result<u64, Problem> {
        let event = self.store.read_all(position, 1).await?.into_iter().next().filter(|event| event.stream == STREAM);
        event.map(|event| event.version).ok_or_else(|| {
            Problem::internal("the last checkpoint", &format!("no `{STREAM}` event at position {position}"))
        })
    }

    /// Whether every event of the `ledger` stream after the checkpoint at `position`, up to
    /// version `actual`, is an operator's acceptance of a rolled-back log (no checkpoint).
    async fn only_rollbacks_after(&self, position: u64, actual: u64) -> Result<bool, Problem> {
        let version = self.checkpoint_version(position).await?;
        if actual <= version {
            return Ok(false);
        }
        let later = self.store.read_stream(STREAM, version + 1).await?;
        Ok(!later.is_empty()
            && later.iter().all(|event| event.event_type == credledger_domain::ledger::LOG_ROLLBACK_ACCEPTED))
    }

    /// Signs a checkpoint of the whole log and appends it as CheckpointSigned, if events other
    /// than the last checkpoint's own have been recorded since. Returns the tree size signed.
    pub async fn sign_checkpoint(&self, now: DateTime<Utc>) -> Result<Option<u64>, Problem> {
        if self.halted().is_some() {
            return Ok(None);
        }
        let head = self.store.head().await?;
        // Another node may have signed since (several servers on one ledger): its checkpoint, once
        // projected, counts as the last one here too.
        let projected = projected_checkpoint(&self.projections)?;
        let last = {
            let mut last =
                self.last_signed.lock().map_err(|_| Problem::internal("the last checkpoint", &"poisoned"))?;
            if let Some(projected) =
                projected.filter(|projected| last.is_none_or(|last| projected.position > last.position))
            {
                *last = Some(projected);
            }
            *last
        };
        if let Some(last) = last {
            if head <= last.covered() {
                return Ok(None);
            }
            if head < last.tree_size {
                self.halt(format!(
                    "the log ends at position {head}, but a checkpoint of {} events was signed",
                    last.tree_size
                ));
                return Ok(None);
            }
        }
        if head == 0 {
            return Ok(None);
        }
        // Only what was rehashed from its stored bytes is signed.
        if !self.rehash_through(head).await? {
            return Ok(None);
        }
        let root = self.root(head).await?;
        let event = self
            .key
            .checkpoint_event(head, root, now)
            .map_err(|error| Problem::internal("signing a checkpoint", &error))?;
        // The ledger stream's version fences signers: a node that has not seen the last checkpoint
        // (a new leader whose view lags, an old one whose append was still queued) is refused
        // instead of recording a checkpoint out of order, and tries again once it has caught up.
        let expected = match last {
            None => ExpectedVersion::NoStream,
            Some(last) => ExpectedVersion::Exact(self.checkpoint_version(last.position).await?),
        };
        let mut appended = self.store.append(STREAM, expected, vec![event.clone()]).await;
        if let (Err(StoreError::WrongExpectedVersion { actual: Some(actual), .. }), Some(last)) = (&appended, last)
            && self.only_rollbacks_after(last.position, *actual).await?
        {
            // An operator's acceptance of a rolled-back log follows the last checkpoint in the
            // stream: it is covered by this one, which follows it.
            appended = self.store.append(STREAM, ExpectedVersion::Exact(*actual), vec![event]).await;
        }
        let appended = match appended {
            Ok(appended) => appended,
            Err(StoreError::WrongExpectedVersion { .. }) => {
                tracing::debug!(tree_size = head, "another checkpoint was recorded first; signing again later");
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        if let Ok(mut last) = self.last_signed.lock() {
            *last = Some(Signed { tree_size: head, position: appended.last_position });
        }
        tracing::debug!(tree_size = head, root = %hex::encode(root), "checkpoint signed");
        Ok(Some(head))
    }
}

/// The last checkpoint the read models hold.
fn projected_checkpoint(projections: &Projections) -> Result<Option<Signed>, Problem> {
    Ok(projections.latest_checkpoint()?.map(|latest| Signed { tree_size: latest.tree_size, position: latest.position }))
}

/// The log as the API writes to it: appends are refused once the ledger is read-only.
#[derive(Debug)]
struct GuardedStore {
    inner: Arc<dyn EventStore>,
    halted: Arc<OnceLock<String>>,
    storage_fault: Arc<Mutex<Option<StorageFault>>>,
}

impl GuardedStore {
    /// Notes whether an append met a storage fault (or succeeded, which clears the last one).
    fn noted<T>(&self, appended: Result<T, StoreError>) -> Result<T, StoreError> {
        let fault = match &appended {
            Err(error) if error.is_storage_fault() => {
                Some(StorageFault { at: std::time::Instant::now(), cause: error.to_string() })
            }
            _ => None,
        };
        if let Ok(mut last) = self.storage_fault.lock() {
            *last = fault;
        }
        appended
    }
}

#[async_trait::async_trait]
impl EventStore for GuardedStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<credledger_store::AppendResult, StoreError> {
        if let Some(reason) = self.halted.get() {
            return Err(StoreError::ReadOnly(reason.clone()));
        }
        self.noted(self.inner.append(stream, expected, events).await)
    }

    async fn append_on_basis(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        basis: credledger_store::Basis,
    ) -> Result<credledger_store::AppendResult, StoreError> {
        if let Some(reason) = self.halted.get() {
            return Err(StoreError::ReadOnly(reason.clone()));
        }
        self.noted(self.inner.append_on_basis(stream, expected, events, basis).await)
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from_version).await
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(from_position, limit).await
    }

    async fn read_raw(&self, from_position: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError> {
        self.inner.read_raw(from_position, limit).await
    }

    async fn read_leaf_hashes(&self, from_position: u64, limit: usize) -> Result<Vec<[u8; 32]>, StoreError> {
        self.inner.read_leaf_hashes(from_position, limit).await
    }

    fn subscribe(&self, from_position: u64) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        self.inner.subscribe(from_position)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        self.inner.head().await
    }

    async fn import(&self, rows: Vec<RawEvent>) -> Result<u64, StoreError> {
        if let Some(reason) = self.halted.get() {
            return Err(StoreError::ReadOnly(reason.clone()));
        }
        self.inner.import(rows).await
    }

    fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.leadership()
    }

    fn head_checks(&self) -> Option<tokio::sync::watch::Receiver<credledger_store::HeadCheck>> {
        self.inner.head_checks()
    }

    fn leads_now(&self) -> bool {
        self.inner.leads_now()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(proof_problem)`
fn proof_problem(error: merkle::ProofError) -> Problem {
    Problem::bad_request("invalid_tree_size", error.to_string())
}

/// Signs a checkpoint every `every` while new events arrive (DESIGN.md §7: at most once a second).
pub async fn run_checkpoint_signer(app: crate::AppState, every: std::time::Duration) {
    let ledger = app.ledger.clone();
    tokio::spawn(async move {
        if let Err(problem) = ledger.check_envelopes().await {
            tracing::warn!(code = problem.code, detail = %problem.detail, "rehashing the log against its last checkpoint failed");
        }
    });
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A leader that stalled past its lease signs nothing: another node signs now.
        if !app.store.leads_now() {
            continue;
        }
        if let Err(problem) = app.ledger.sign_checkpoint(app.clock.now()).await {
            tracing::warn!(code = problem.code, detail = %problem.detail, "signing a checkpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use credledger_domain::{Actor, EventId};
    use credledger_store::merkle;
    use credledger_store::{ExpectedVersion, NewEvent};

    use super::{LeafCache, Ledger};

    /// The `n`th event of a test log.
    fn tree_event(n: u64) -> NewEvent {
        NewEvent {
            event_id: EventId::from_uuid(uuid::Uuid::now_v7()),
            event_type: "TreeChecked".to_owned(),
            schema_version: 1,
            org_id: None,
            occurred_at: DateTime::UNIX_EPOCH,
            actor: Actor::system("test"),
            request: None,
            payload: serde_json::json!({ "n": n }),
        }
    }

    async fn ledger_of(size: u64, dir: &std::path::Path) -> (Ledger, Vec<[u8; 32]>) {
        let store = credledger_store::open(&format!("sqlite://{}", dir.join("events.db").display())).await.unwrap();
        let mut appended = 0;
        while appended < size {
            let batch = (size - appended).min(500);
            let events = (0..batch).map(|n| tree_event(appended + n)).collect();
            store.append("tree", ExpectedVersion::Any, events).await.unwrap();
            appended += batch;
        }
        let leaves = store.read_leaf_hashes(1, size as usize).await.unwrap();
        let projections = credledger_projections::Projections::open(&dir.join("read.db")).unwrap();
        let key = credledger_store::checkpoint::LedgerKey::from_seed("test.example/credledger", &[3; 32]).unwrap();
        (Ledger::new(key, store, projections).unwrap(), leaves)
    }

    /// The tile cache, its memo and the per-request tile levels give exactly the roots and
    /// proofs computed from all the leaves, at tile boundaries and between them, and after a
    /// restart that reloads the cached tiles.
    #[tokio::test]
    async fn cached_roots_and_proofs_equal_those_from_every_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, leaves) = ledger_of(1300, dir.path()).await;
        for size in [1, 2, 255, 256, 257, 511, 512, 513, 768, 1024, 1025, 1299, 1300] {
            let expected = merkle::root(&leaves[..size as usize]);
            assert_eq!(ledger.root(size).await.unwrap(), expected, "root of {size}");
            let mut cache = LeafCache::default();
            for index in [0, size / 3, size / 2, size - 1] {
                let proof = ledger.inclusion_proof(index, size, &mut cache).await.unwrap();
                assert_eq!(
                    proof,
                    merkle::inclusion_proof(&leaves, index, size).unwrap(),
                    "inclusion {index} in {size}"
                );
                merkle::verify_inclusion(&leaves[index as usize], index, size, &proof, &expected).unwrap();
            }
            for old in [1, size / 2, size].into_iter().filter(|&old| old >= 1) {
                let proof = ledger.consistency_proof(old, size).await.unwrap();
                assert_eq!(proof, merkle::consistency_proof(&leaves, old, size).unwrap(), "consistency {old}→{size}");
            }
        }
        assert!(ledger.inclusion_proof(5, 5, &mut LeafCache::default()).await.is_err());
        drop(ledger);
        // Reopened: the tiles come from the read models, not from the log.
        let projections = credledger_projections::Projections::open(&dir.path().join("read.db")).unwrap();
        assert_eq!(projections.ledger_tiles().unwrap().len(), 1300 / 256);
    }

    /// A checkpoint is signed only when events other than the last checkpoint's own exist, and
    /// its note verifies with the ledger key and states the log's root.
    #[tokio::test]
    async fn a_checkpoint_is_signed_once_per_batch_of_new_events() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, leaves) = ledger_of(300, dir.path()).await;
        let now = Utc::now();
        assert_eq!(ledger.sign_checkpoint(now).await.unwrap(), Some(300));
        assert_eq!(ledger.sign_checkpoint(now).await.unwrap(), None, "only the checkpoint itself is new");
        let checkpoint = ledger.store.read_all(301, 1).await.unwrap().remove(0);
        let payload: credledger_domain::ledger::CheckpointSigned = serde_json::from_value(checkpoint.payload).unwrap();
        let verifier = credledger_store::checkpoint::CheckpointVerifier::new(ledger.key().verifier_key()).unwrap();
        let signed = verifier.verify(&payload.note).unwrap();
        assert_eq!((signed.tree_size, signed.root_hash), (300, merkle::root(&leaves)));
        assert_eq!(payload.root_hash, hex::encode(merkle::root(&leaves)));
    }

    /// An event altered between its append and the next checkpoint is never signed: the
    /// signer rehashes the stored bytes first and turns the ledger read-only instead.
    #[tokio::test]
    async fn an_event_altered_before_its_checkpoint_is_not_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _) = ledger_of(20, dir.path()).await;
        let now = Utc::now();
        assert_eq!(ledger.sign_checkpoint(now).await.unwrap(), Some(20));
        let appended = ledger.store.append("tree", ExpectedVersion::Any, vec![tree_event(21)]).await.unwrap();
        let position = appended.last_position;
        let connection = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
        let triggers: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for trigger in triggers {
            connection.execute_batch(&format!("DROP TRIGGER {trigger}")).unwrap();
        }
        connection
            .execute(
                "UPDATE events SET envelope = CAST(REPLACE(CAST(envelope AS TEXT), '\"n\":21', '\"n\":31') AS BLOB) \
                 WHERE position = ?1",
                [position as i64],
            )
            .unwrap();
        assert_eq!(ledger.sign_checkpoint(now).await.unwrap(), None, "nothing is signed over the altered event");
        let reason = ledger.halted().expect("the ledger is read-only");
        assert!(reason.contains(&format!("position {position}")), "{reason}");
        let write = ledger.guard().append("tree", ExpectedVersion::Any, vec![]).await;
        assert!(matches!(write, Err(credledger_store::StoreError::ReadOnly(_))), "{write:?}");
    }

    /// A store whose `head()` lags the log by `lag` events: what a signer sees when another
    /// writer commits between its read of the head and its append.
    #[derive(Debug)]
    struct Lagging {
        inner: std::sync::Arc<dyn credledger_store::EventStore>,
        lag: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait]
    impl credledger_store::EventStore for Lagging {
        async fn append(
            &self,
            stream: &str,
            expected: ExpectedVersion,
            events: Vec<NewEvent>,
        ) -> Result<credledger_store::AppendResult, credledger_store::StoreError> {
            self.inner.append(stream, expected, events).await
        }
        async fn append_on_basis(
            &self,
            stream: &str,
            expected: ExpectedVersion,
            events: Vec<NewEvent>,
            basis: credledger_store::Basis,
        ) -> Result<credledger_store::AppendResult, credledger_store::StoreError> {
            self.inner.append_on_basis(stream, expected, events, basis).await
        }
        async fn read_stream(
            &self,
            stream: &str,
            from: u64,
        ) -> Result<Vec<credledger_store::RecordedEvent>, credledger_store::StoreError> {
            self.inner.read_stream(stream, from).await
        }
        async fn read_all(
            &self,
            from: u64,
            limit: usize,
        ) -> Result<Vec<credledger_store::RecordedEvent>, credledger_store::StoreError> {
            self.inner.read_all(from, limit).await
        }
        async fn read_raw(
            &self,
            from: u64,
            limit: usize,
        ) -> Result<Vec<credledger_store::RawEvent>, credledger_store::StoreError> {
            self.inner.read_raw(from, limit).await
        }
        async fn read_leaf_hashes(
            &self,
            from: u64,
            limit: usize,
        ) -> Result<Vec<[u8; 32]>, credledger_store::StoreError> {
            self.inner.read_leaf_hashes(from, limit).await
        }
        fn subscribe(
            &self,
            from: u64,
        ) -> futures::stream::BoxStream<'static, Result<credledger_store::RecordedEvent, credledger_store::StoreError>>
        {
            self.inner.subscribe(from)
        }
        async fn head(&self) -> Result<u64, credledger_store::StoreError> {
            Ok(self.inner.head().await? - self.lag.load(std::sync::atomic::Ordering::Relaxed))
        }
        async fn import(&self, rows: Vec<credledger_store::RawEvent>) -> Result<u64, credledger_store::StoreError> {
            self.inner.import(rows).await
        }
        async fn close(&self) {
            self.inner.close().await;
        }
    }

    /// An event committed between the signer's read of the head and its append is in no
    /// checkpoint; the next round must sign again even though the log is otherwise idle.
    #[tokio::test]
    async fn an_event_that_slipped_in_before_a_checkpoint_gets_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _) = ledger_of(3, dir.path()).await;
        let lagging = std::sync::Arc::new(Lagging { inner: ledger.store.clone(), lag: 1.into() });
        let projections = credledger_projections::Projections::open(&dir.path().join("read.db")).unwrap();
        let key = credledger_store::checkpoint::LedgerKey::from_seed("test.example/credledger", &[3; 32]).unwrap();
        let ledger = Ledger::new(key, lagging.clone(), projections).unwrap();
        let now = Utc::now();
        // Seen: 2 events; recorded: 3. The checkpoint of 2 lands at position 4.
        assert_eq!(ledger.sign_checkpoint(now).await.unwrap(), Some(2));
        assert_eq!(ledger.store.read_all(4, 1).await.unwrap()[0].event_type, "CheckpointSigned");
        lagging.lag.store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(ledger.sign_checkpoint(now).await.unwrap(), Some(4), "event 3 is signed by the next round");
        assert_eq!(ledger.sign_checkpoint(now).await.unwrap(), None, "then nothing while idle");
    }
}
