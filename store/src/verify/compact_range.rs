//! The Merkle root of a growing prefix of the log in one pass and constant memory: a compact range
//! (the roots of the perfect subtrees the prefix splits into), and a bounded window of recent
//! prefixes, because a `CheckpointSigned` event lands a little after the tree size it signs.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};

use crate::merkle::join_subtree_roots;

/// The roots of the perfect subtrees that the first `size` leaves split into, largest (leftmost)
/// first: one per set bit of `size`, so at most 64 hashes whatever the log's length.
#[derive(Debug, Clone, Default)]
pub struct CompactRange {
    size: u64,
    roots: Vec<[u8; 32]>,
}

impl CompactRange {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the next leaf: it merges with every subtree of its own size to its left, as the
    /// carry of a binary increment.
    pub fn push(&mut self, leaf: [u8; 32]) {
        let mut node = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            // One root per set bit: a set bit always has its root on the stack.
            if let Some(left) = self.roots.pop() {
                node = node_hash(&left, &node);
            }
            size >>= 1;
        }
        self.roots.push(node);
        self.size += 1;
    }

    /// The RFC 6962 root of the first `size` leaves.
    pub fn root(&self) -> [u8; 32] {
        join_subtree_roots(&self.roots)
    }
}

/// How many of the latest prefixes [`RecentPrefixes`] can give the root of. A checkpoint is
/// signed over the head it read, and its event is committed right after: only the appends that
/// raced it lie in between, far fewer than this.
pub(super) const WINDOW: u64 = 1 << 16;

/// A snapshot of the compact range is kept every this many leaves.
const SNAPSHOT_EVERY: u64 = 256;

/// The current prefix, and enough of the recent past to give the root of any of the last
/// [`WINDOW`] prefixes: the leaf hashes of the window (32 bytes each) and a snapshot of the
/// compact range every [`SNAPSHOT_EVERY`] leaves. Asking for an old root costs at most
/// `SNAPSHOT_EVERY` hashes; keeping the window costs one copy per leaf.
#[derive(Debug)]
pub(super) struct RecentPrefixes {
    current: CompactRange,
    /// The leaf hashes of positions `current.size - leaves.len() + 1 ..= current.size`.
    leaves: VecDeque<[u8; 32]>,
    /// Compact ranges at sizes that are multiples of `SNAPSHOT_EVERY`, oldest first.
    snapshots: VecDeque<CompactRange>,
}

impl RecentPrefixes {
    pub(super) fn new() -> Self {
        Self {
            current: CompactRange::default(),
            leaves: VecDeque::new(),
            snapshots: VecDeque::from([CompactRange::default()]),
        }
    }

    /// How many leaves have been pushed.
    pub(super) fn size(&self) -> u64 {
        self.current.size()
    }

    pub(super) fn push(&mut self, leaf: [u8; 32]) {
        self.current.push(leaf);
        self.leaves.push_back(leaf);
        // One snapshot interval more than the window, so that a prefix at the window's far end
        // still has a snapshot at or below it with every leaf after that snapshot.
        if self.leaves.len() as u64 > WINDOW + SNAPSHOT_EVERY {
            self.leaves.pop_front();
        }
        if self.current.size().is_multiple_of(SNAPSHOT_EVERY) {
            self.snapshots.push_back(self.current.clone());
            if self.snapshots.len() as u64 > WINDOW / SNAPSHOT_EVERY + 1 {
                self.snapshots.pop_front();
            }
        }
    }

    /// The root of the current prefix.
    pub(super) fn root(&self) -> [u8; 32] {
        self.current.root()
    }

    /// The root of the first `size` leaves, if `size` is the current size or one of the
    /// [`WINDOW`] sizes before it (sometimes a little further); `None` when it lies further back
    /// or ahead.
    pub(super) fn root_at(&self, size: u64) -> Option<[u8; 32]> {
        if size == self.current.size() {
            return Some(self.current.root());
        }
        if size > self.current.size() {
            return None;
        }
        let first_leaf = self.current.size() - self.leaves.len() as u64 + 1;
        let snapshot = self.snapshots.iter().rev().find(|snapshot| snapshot.size() <= size)?;
        if snapshot.size() + 1 < first_leaf {
            return None;
        }
        let mut range = snapshot.clone();
        let from = usize::try_from(snapshot.size() + 1 - first_leaf).ok()?;
        let to = usize::try_from(size + 1 - first_leaf).ok()?;
        for leaf in self.leaves.range(from..to) {
            range.push(*leaf);
        }
        Some(range.root())
    }
}

/// SHA-256(0x01 ‖ left ‖ right), the interior node of RFC 6962, as in [`crate::merkle`].
fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut input = [0x01; 65];
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    Sha256::digest(input).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{leaf_hash, merkle};

    fn leaves(n: u64) -> Vec<[u8; 32]> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn the_compact_range_root_is_the_tree_root_of_every_prefix() {
        let all = leaves(600);
        let mut range = CompactRange::default();
        assert_eq!(range.root(), merkle::empty_root());
        for (n, leaf) in all.iter().enumerate() {
            range.push(*leaf);
            assert_eq!(range.root(), merkle::root(&all[..=n]), "{} leaves", n + 1);
            assert_eq!(range.roots.len() as u32, range.size().count_ones());
        }
    }

    #[test]
    fn recent_prefixes_give_every_root_in_the_window_and_none_outside() {
        let total = WINDOW + 3 * SNAPSHOT_EVERY + 17;
        let all = leaves(total);
        let mut prefixes = RecentPrefixes::new();
        for (n, leaf) in all.iter().enumerate() {
            prefixes.push(*leaf);
            let size = n as u64 + 1;
            // Early on, every prefix so far is in reach.
            if size == 300 {
                for old in [1, 2, 255, 256, 257, 299, 300] {
                    assert_eq!(prefixes.root_at(old), Some(merkle::root(&all[..old as usize])), "{old} of {size}");
                }
            }
        }
        assert_eq!(prefixes.size(), total);
        assert_eq!(prefixes.root(), merkle::root(&all));
        for old in [total, total - 1, total - 255, total - 256, total - 1000, total - WINDOW + 1, total - WINDOW] {
            assert_eq!(prefixes.root_at(old), Some(merkle::root(&all[..old as usize])), "{old} of {total}");
        }
        assert_eq!(prefixes.root_at(total + 1), None);
        assert_eq!(prefixes.root_at(1), None);
        assert_eq!(prefixes.root_at(total - WINDOW - 2 * SNAPSHOT_EVERY), None);
    }
}
