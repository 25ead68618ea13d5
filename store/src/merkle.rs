//! The Merkle tree that makes the log verifiable: roots, inclusion proofs and consistency proofs
//! over leaf hashes in position order, with the semantics of RFC 6962 (Certificate Transparency)
//! and the verification algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! A leaf is [`leaf_hash`](crate::leaf_hash) of an event's stored envelope, SHA-256(0x00 ‖ bytes);
//! an interior node is SHA-256(0x01 ‖ left ‖ right); the tree of `n > 1` leaves splits at the
//! largest power of two smaller than `n`. Everything here is pure: no IO, no clock, and no panic
//! on any input — bad indices, sizes and proofs are [`ProofError`]s.
//!
//! # Building proofs without reading the whole log
//!
//! Every hash in a proof is the root of a *node* of the tree: a range of leaves `[s, e)` whose
//! start is a multiple of a power of two at least `e - s` long. [`inclusion_proof_ranges`] and
//! [`consistency_proof_ranges`] name those ranges without touching a leaf;
//! [`inclusion_proof`] and [`consistency_proof`] are nothing but `root(&leaves[range])` over them.
//!
//! A server that caches the roots of full, aligned subtrees of 256 leaves (each one final once
//! its 256th leaf is committed) assembles the same proofs from the cache:
//!
//! 1. split each range with [`Subtree::decompose`] into perfect subtrees of decreasing size;
//! 2. a perfect subtree of `2^k >= 256` leaves has as root [`root`] of the `2^(k-8)` cached roots
//!    of the 256-leaf subtrees inside it (a perfect tree's root is the same whether computed from
//!    its leaves or from the roots of its equal, aligned parts); a smaller one is
//!    [`Subtree::root`] over at most 255 leaves, read from the log;
//! 3. [`join_subtree_roots`] of those roots, in order, is the range's root.
//!
//! A request then reads the leaves of at most two 256-leaf blocks (the one holding the leaf, or
//! the old tree's end, and the unfinished last one) plus `O(n / 256)` cached roots (fewer with a
//! second cache level, built the same way).

use std::ops::Range;

use sha2::{Digest, Sha256};

/// Why a proof cannot be built, or why it does not verify.
///
/// Every variant of a *verification* error means the same thing to a caller: the claim is not
/// proven and must not be trusted. The variants only say where it went wrong, for the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree: `index >= tree_size` (every index is out of range
    /// for an empty tree). A caller asked about a position the checkpoint does not cover.
    #[error("leaf index {index} is outside a tree of {tree_size} leaves")]
    IndexOutOfRange {
        /// The leaf's index (its position - 1).
        index: u64,
        /// The number of leaves in the tree.
        tree_size: u64,
    },
    /// A consistency proof was asked for from the empty tree. Every tree extends the empty one,
    /// so there is nothing to prove; a checkpoint always covers at least one event.
    #[error("a consistency proof needs an old tree of at least one leaf")]
    OldSizeZero,
    /// The old tree is larger than the new one: a log only grows, so this pair of checkpoints is
    /// either given in the wrong order or evidence of a rewritten log.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeLarger {
        /// The size of the tree the proof starts from.
        old_size: u64,
        /// The size of the tree the proof leads to.
        new_size: u64,
    },
    /// A proof was asked for a tree larger than the leaves supplied to build it from.
    #[error("tree size {tree_size} exceeds the {available} leaves given")]
    TreeSizeExceedsLeaves {
        /// The tree size the proof was asked for.
        tree_size: u64,
        /// How many leaves were given.
        available: u64,
    },
    /// The proof has the wrong number of hashes for its index and sizes: it was truncated,
    /// extended, or built for another position or size.
    #[error("proof has {actual} hashes where {expected} are needed")]
    WrongProofLength {
        /// How many hashes a proof for these indices and sizes has.
        expected: usize,
        /// How many the proof given has.
        actual: usize,
    },
    /// The proof is well formed but does not lead to the root (or, for a consistency proof, to
    /// both roots) given: a hash in it, the leaf, or a root was altered, or belongs elsewhere.
    #[error("proof does not lead to the root given")]
    RootMismatch,
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
pub fn empty_root() -> [u8; 32] {
    Sha256::digest([]).into()
}

/// The Merkle tree hash (RFC 6962 MTH) of `leaves`, which are leaf hashes in position order.
///
/// `O(n)` hashes and `O(log n)` stack. The empty tree's root is [`empty_root`].
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let k = split_point(leaves.len() as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof (RFC 6962 PATH) of leaf `index` in the tree of the first `tree_size`
/// `leaves`: the sibling hashes from the leaf up to the root.
pub fn inclusion_proof(leaves: &[[u8; 32]], index: u64, tree_size: u64) -> Result<Vec<[u8; 32]>, ProofError> {
    let ranges = inclusion_proof_ranges(index, tree_size)?;
    roots_of(leaves, tree_size, &ranges)
}

/// The leaf ranges whose roots make up [`inclusion_proof`]`(_, index, tree_size)`, in proof
/// order. Each is a node of the tree (see the module documentation on caching).
pub fn inclusion_proof_ranges(index: u64, tree_size: u64) -> Result<Vec<Range<u64>>, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    // Walk down from the root, always into the subtree holding `index`; the other subtree's root
    // is a proof hash. The walk finds them top-down, the proof lists them bottom-up.
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0, tree_size);
    while hi - lo > 1 {
        let mid = lo + split_point(hi - lo);
        if index < mid {
            ranges.push(mid..hi);
            hi = mid;
        } else {
            ranges.push(lo..mid);
            lo = mid;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// Checks that `leaf` is the leaf hash at `index` in the tree of `tree_size` leaves whose root
/// is `root`, with the algorithm of RFC 9162 §2.1.3.2.
///
/// `root` and `tree_size` must come from the same trusted checkpoint: the proof binds the leaf to
/// the pair, not to either alone.
pub fn verify_inclusion(
    leaf: &[u8; 32],
    index: u64,
    tree_size: u64,
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let expected = inclusion_proof_len(index, tree_size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength { expected, actual: proof.len() });
    }
    let (mut f_n, mut s_n) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength { expected, actual: proof.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongProofLength { expected, actual: proof.len() });
    }
    if r == *root { Ok(()) } else { Err(ProofError::RootMismatch) }
}

/// The consistency proof (RFC 6962 PROOF) that the tree of the first `old_size` `leaves` is a
/// prefix of the tree of the first `new_size`. Empty when the sizes are equal.
pub fn consistency_proof(leaves: &[[u8; 32]], old_size: u64, new_size: u64) -> Result<Vec<[u8; 32]>, ProofError> {
    let ranges = consistency_proof_ranges(old_size, new_size)?;
    roots_of(leaves, new_size, &ranges)
}

/// The leaf ranges whose roots make up [`consistency_proof`]`(_, old_size, new_size)`, in proof
/// order. Each is a node of the new tree (see the module documentation on caching).
pub fn consistency_proof_ranges(old_size: u64, new_size: u64) -> Result<Vec<Range<u64>>, ProofError> {
    check_consistency_sizes(old_size, new_size)?;
    // RFC 6962 SUBPROOF, walked top-down. `whole` is its flag b: true while the old tree is still
    // the whole left part of the current subtree, whose root the verifier already knows.
    let mut ranges = Vec::new();
    let (mut lo, mut hi, mut m) = (0, new_size, old_size);
    let mut whole = true;
    loop {
        let n = hi - lo;
        if m == n {
            if !whole {
                ranges.push(lo..hi);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            ranges.push(lo + k..hi);
            hi = lo + k;
        } else {
            ranges.push(lo..lo + k);
            lo += k;
            m -= k;
            whole = false;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, with the algorithm of RFC 9162 §2.1.4.2.
///
/// Equal sizes need an empty proof and equal roots. An `old_size` of 0 is
/// [`ProofError::OldSizeZero`].
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &[u8; 32],
    new_root: &[u8; 32],
    proof: &[[u8; 32]],
) -> Result<(), ProofError> {
    check_consistency_sizes(old_size, new_size)?;
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength { expected, actual: proof.len() });
    }
    if old_size == new_size {
        return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    // When the old tree is a perfect subtree of the new one, its root is the first hash of the
    // path and the proof leaves it out.
    let (seed, path) = match proof {
        _ if old_size.is_power_of_two() => (*old_root, proof),
        [first, rest @ ..] => (*first, rest),
        [] => return Err(ProofError::WrongProofLength { expected, actual: 0 }),
    };
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (seed, seed);
    for c in path {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength { expected, actual: proof.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongProofLength { expected, actual: proof.len() });
    }
    if f_r == *old_root && s_r == *new_root { Ok(()) } else { Err(ProofError::RootMismatch) }
}

/// A perfect, aligned subtree: the `2^height` leaves from index `start`, a multiple of
/// `2^height`. Its root never changes once its last leaf is committed, which makes it the unit
/// to cache (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subtree {
    start: u64,
    height: u32,
}

impl Subtree {
    /// The subtree of `2^height` leaves from `start`; `None` unless `start` is a multiple of
    /// `2^height` and the subtree ends at or before index `u64::MAX`.
    pub fn new(start: u64, height: u32) -> Option<Self> {
        let len = 1u64.checked_shl(height)?;
        (start.is_multiple_of(len) && start.checked_add(len).is_some()).then_some(Self { start, height })
    }

    /// The index of its first leaf.
    pub fn start(self) -> u64 {
        self.start
    }

    /// Its height: it holds `2^height` leaves.
    pub fn height(self) -> u32 {
        self.height
    }

    /// The number of leaves it holds, `2^height`.
    pub fn len(self) -> u64 {
        1 << self.height
    }

    /// Whether it holds no leaves: never, a subtree holds at least one.
    pub fn is_empty(self) -> bool {
        false
    }

    /// The indices of its leaves.
    pub fn range(self) -> Range<u64> {
        self.start..self.start + self.len()
    }

    /// Its root, from the log's `leaves` (all of them from index 0, or at least up to the
    /// subtree's end); `None` if there are too few.
    pub fn root(self, leaves: &[[u8; 32]]) -> Option<[u8; 32]> {
        let start = usize::try_from(self.start).ok()?;
        let end = usize::try_from(self.start + self.len()).ok()?;
        leaves.get(start..end).map(root)
    }

    /// Splits a node of the tree — a range whose start is a multiple of a power of two at least
    /// as long as the range, as every range of a proof and every prefix `0..n` is — into perfect
    /// subtrees of decreasing size, left to right (the binary digits of its length).
    /// [`join_subtree_roots`] of their roots is the range's root. `None` for an empty range or
    /// one that is not a node.
    pub fn decompose(range: Range<u64>) -> Option<Vec<Subtree>> {
        let len = range.end.checked_sub(range.start).filter(|&len| len > 0)?;
        let span = len.checked_next_power_of_two();
        // A start of 0 is aligned to every power of two, even one past u64::MAX.
        if range.start != 0 && span.is_none_or(|span| !range.start.is_multiple_of(span)) {
            return None;
        }
        let mut pieces = Vec::with_capacity(len.count_ones() as usize);
        let mut start = range.start;
        for height in (0..u64::BITS).rev().filter(|&h| (len >> h) & 1 == 1) {
            pieces.push(Subtree { start, height });
            start += 1 << height;
        }
        Some(pieces)
    }
}

/// The root of a node of the tree from the roots of the perfect subtrees
/// [`Subtree::decompose`] splits it into, in order: `H(r0, H(r1, … H(r_last-1, r_last)))`.
/// One root is returned as is; none gives [`empty_root`].
pub fn join_subtree_roots(roots: &[[u8; 32]]) -> [u8; 32] {
    let Some((last, rest)) = roots.split_last() else {
        return empty_root();
    };
    rest.iter().rev().fold(*last, |right, left| node_hash(left, &right))
}

/// SHA-256(0x01 ‖ left ‖ right).
fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut input = [0x01; 65];
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    Sha256::digest(input).into()
}

/// The largest power of two smaller than `n`, for `n >= 2`: where the tree of `n` leaves splits.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// The length of an inclusion proof, for `index < tree_size`: one hash per level below the
/// point where the leaf's path leaves the right border ("inner"), plus one per left sibling on
/// the border above it.
fn inclusion_proof_len(index: u64, tree_size: u64) -> usize {
    let inner = u64::BITS - (index ^ (tree_size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// The length of a consistency proof, for `0 < old_size <= new_size`: the inclusion proof of
/// the old tree's last leaf, minus the levels inside the old tree's last perfect subtree, plus
/// that subtree's root unless it is the whole old tree.
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == new_size {
        return 0;
    }
    let shift = old_size.trailing_zeros() as usize;
    let seed = usize::from(!old_size.is_power_of_two());
    inclusion_proof_len(old_size - 1, new_size) - shift + seed
}

fn check_consistency_sizes(old_size: u64, new_size: u64) -> Result<(), ProofError> {
    if old_size == 0 {
        return Err(ProofError::OldSizeZero);
    }
    if old_size > new_size {
        return Err(ProofError::OldSizeLarger { old_size, new_size });
    }
    Ok(())
}

/// The roots of `ranges`, all inside the first `tree_size` of `leaves`.
fn roots_of(leaves: &[[u8; 32]], tree_size: u64, ranges: &[Range<u64>]) -> Result<Vec<[u8; 32]>, ProofError> {
    let available = leaves.len() as u64;
    if tree_size > available {
        return Err(ProofError::TreeSizeExceedsLeaves { tree_size, available });
    }
    // Every range ends at or before tree_size <= leaves.len(), so the casts and slices are exact.
    Ok(ranges.iter().map(|range| root(&leaves[range.start as usize..range.end as usize])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<[u8; 32]> {
        (0..n).map(|i| leaf_hash(format!("event {i}").as_bytes())).collect()
    }

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        sha256(&[&[0x01], left, right])
    }

    /// RFC 6962 §2.1, transcribed literally on slices: the reference the fast code is held to.
    fn reference_root(d: &[[u8; 32]]) -> [u8; 32] {
        match d.len() {
            0 => sha256(&[]),
            1 => d[0],
            n => {
                let k = (1..n).rev().find(|k| k.is_power_of_two()).unwrap();
                node(&reference_root(&d[..k]), &reference_root(&d[k..]))
            }
        }
    }

    fn reference_path(m: usize, d: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let n = d.len();
        if n == 1 {
            return Vec::new();
        }
        let k = (1..n).rev().find(|k| k.is_power_of_two()).unwrap();
        let (mut path, sibling) =
            if m < k { (reference_path(m, &d[..k]), &d[k..]) } else { (reference_path(m - k, &d[k..]), &d[..k]) };
        path.push(reference_root(sibling));
        path
    }

    fn reference_subproof(m: usize, d: &[[u8; 32]], whole: bool) -> Vec<[u8; 32]> {
        let n = d.len();
        if m == n {
            return if whole { Vec::new() } else { vec![reference_root(d)] };
        }
        let k = (1..n).rev().find(|k| k.is_power_of_two()).unwrap();
        let (mut proof, other) = if m <= k {
            (reference_subproof(m, &d[..k], whole), &d[k..])
        } else {
            (reference_subproof(m - k, &d[k..], false), &d[..k])
        };
        proof.push(reference_root(other));
        proof
    }

    /// A log and the root of each of its prefixes, computed once per test: debug builds hash
    /// slowly, and the checks below would otherwise spend their time recomputing roots.
    struct Log {
        leaves: Vec<[u8; 32]>,
        roots: Vec<[u8; 32]>,
    }

    impl Log {
        fn new(n: u64) -> Self {
            let leaves = leaves(n);
            let roots = (0..=leaves.len()).map(|k| root(&leaves[..k])).collect();
            Self { leaves, roots }
        }

        fn root(&self, size: u64) -> [u8; 32] {
            self.roots[size as usize]
        }

        fn len(&self) -> u64 {
            self.leaves.len() as u64
        }
    }

    /// Checks the honest proof of `index` in a tree of `size` (against the reference
    /// implementation if `compare_reference`) and tampering with it: with one byte of each proof
    /// hash, or every byte if `flip_every_byte`.
    fn check_inclusion(log: &Log, index: u64, size: u64, compare_reference: bool, flip_every_byte: bool) {
        let all = &log.leaves[..];
        let root = log.root(size);
        let leaf = all[index as usize];
        let proof = inclusion_proof(all, index, size).unwrap();
        if compare_reference {
            assert_eq!(proof, reference_path(index as usize, &all[..size as usize]), "index {index} size {size}");
        }
        assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()), "index {index} size {size}");

        let mut altered = proof.clone();
        for i in 0..proof.len() {
            let bytes: Vec<usize> =
                if flip_every_byte { (0..32).collect() } else { vec![(i * 7 + index as usize) % 32] };
            for b in bytes {
                altered[i][b] ^= 0x01;
                assert!(verify_inclusion(&leaf, index, size, &altered, &root).is_err());
                altered[i][b] ^= 0x01;
            }
        }
        let mut other_leaf = leaf;
        other_leaf[31] ^= 0x80;
        assert_eq!(verify_inclusion(&other_leaf, index, size, &proof, &root), Err(ProofError::RootMismatch));
        for wrong_index in [index.wrapping_sub(1), index + 1, index ^ 1, size] {
            if wrong_index != index {
                assert!(verify_inclusion(&leaf, wrong_index, size, &proof, &root).is_err());
            }
        }
        // A wrong size paired with that size's true root: the checkpoint binds size and root.
        for wrong_size in [size - 1, size + 1, size * 2].into_iter().filter(|&s| s > index && s <= log.len()) {
            if wrong_size != size {
                let wrong_root = log.root(wrong_size);
                assert!(verify_inclusion(&leaf, index, wrong_size, &proof, &wrong_root).is_err());
                assert!(verify_inclusion(&leaf, index, size, &proof, &wrong_root).is_err());
            }
        }
        if let Some((_, shorter)) = proof.split_last() {
            assert!(matches!(
                verify_inclusion(&leaf, index, size, shorter, &root),
                Err(ProofError::WrongProofLength { .. })
            ));
        }
        for extra in [root, leaf, [0; 32]] {
            let mut longer = proof.clone();
            longer.push(extra);
            assert!(matches!(
                verify_inclusion(&leaf, index, size, &longer, &root),
                Err(ProofError::WrongProofLength { .. })
            ));
            longer.pop();
            longer.insert(0, extra);
            assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
        }
    }

    /// Checks the honest consistency proof from `old` to `new` (against the reference
    /// implementation if `compare_reference`) and tampering with it, as [`check_inclusion`].
    fn check_consistency(log: &Log, old: u64, new: u64, compare_reference: bool, flip_every_byte: bool) {
        let all = &log.leaves[..];
        let (old_root, new_root) = (log.root(old), log.root(new));
        let proof = consistency_proof(all, old, new).unwrap();
        if compare_reference {
            assert_eq!(proof, reference_subproof(old as usize, &all[..new as usize], true), "{old} -> {new}");
        }
        assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()), "{old} -> {new}");

        let mut altered = proof.clone();
        for i in 0..proof.len() {
            let bytes: Vec<usize> = if flip_every_byte { (0..32).collect() } else { vec![(i * 5 + old as usize) % 32] };
            for b in bytes {
                altered[i][b] ^= 0x01;
                assert!(verify_consistency(old, new, &old_root, &new_root, &altered).is_err(), "{old} -> {new}");
                altered[i][b] ^= 0x01;
            }
        }
        if old != new {
            assert!(verify_consistency(old, new, &new_root, &old_root, &proof).is_err(), "swapped roots");
        }
        for (i, root) in [old_root, new_root].into_iter().enumerate() {
            let mut altered_root = root;
            altered_root[0] ^= 0x01;
            let (o, n) = if i == 0 { (altered_root, new_root) } else { (old_root, altered_root) };
            assert_eq!(verify_consistency(old, new, &o, &n, &proof), Err(ProofError::RootMismatch));
        }
        // Wrong sizes, each paired with its true root.
        for wrong_old in [old - 1, old + 1].into_iter().filter(|&s| s > 0 && s <= new && s != old) {
            let wrong_root = log.root(wrong_old);
            assert!(verify_consistency(wrong_old, new, &wrong_root, &new_root, &proof).is_err(), "{wrong_old}->{new}");
        }
        for wrong_new in [new - 1, new + 1].into_iter().filter(|&s| s >= old && s <= log.len() && s != new) {
            let wrong_root = log.root(wrong_new);
            assert!(verify_consistency(old, wrong_new, &old_root, &wrong_root, &proof).is_err(), "{old}->{wrong_new}");
        }
        if let Some((_, shorter)) = proof.split_last() {
            assert!(matches!(
                verify_consistency(old, new, &old_root, &new_root, shorter),
                Err(ProofError::WrongProofLength { .. })
            ));
        }
        let mut longer = proof.clone();
        longer.push(new_root);
        assert!(matches!(
            verify_consistency(old, new, &old_root, &new_root, &longer),
            Err(ProofError::WrongProofLength { .. })
        ));
    }

    /// The indices (or old sizes) from `from` up to `size` sampled for a tree: both ends, the
    /// middle, and both sides of the largest power of two, where the tree's shape changes.
    fn sampled(size: u64, from: u64) -> Vec<u64> {
        let mut picks = vec![from, size / 2, size.saturating_sub(1), size];
        if size > 0 {
            let power = 1 << (u64::BITS - 1 - size.leading_zeros());
            picks.extend([power - 1, power]);
        }
        picks.sort_unstable();
        picks.dedup();
        picks.retain(|&i| i >= from && i <= size);
        picks
    }

    #[test]
    fn known_roots_and_proofs_of_three_and_seven_leaves() {
        let l: Vec<[u8; 32]> = (0..7u8).map(|i| sha256(&[&[0x00], &[b'a' + i]])).collect();
        assert_eq!(l[0], leaf_hash(b"a"));
        let h = |left: [u8; 32], right: [u8; 32]| sha256(&[&[0x01], &left, &right]);

        let root3 = h(h(l[0], l[1]), l[2]);
        assert_eq!(root(&l[..3]), root3);
        assert_eq!(inclusion_proof(&l, 2, 3).unwrap(), vec![h(l[0], l[1])]);
        assert_eq!(inclusion_proof(&l, 0, 3).unwrap(), vec![l[1], l[2]]);

        let (left4, right3) = (h(h(l[0], l[1]), h(l[2], l[3])), h(h(l[4], l[5]), l[6]));
        let root7 = h(left4, right3);
        assert_eq!(root(&l), root7);
        assert_eq!(inclusion_proof(&l, 6, 7).unwrap(), vec![h(l[4], l[5]), left4]);
        assert_eq!(inclusion_proof(&l, 3, 7).unwrap(), vec![l[2], h(l[0], l[1]), right3]);
        // RFC 6962 §2.1.3's worked examples: PROOF(3, D[7]) = [c, d, g, l], PROOF(4, D[7]) = [l],
        // PROOF(6, D[7]) = [i, j, k].
        assert_eq!(consistency_proof(&l, 3, 7).unwrap(), vec![l[2], l[3], h(l[0], l[1]), right3]);
        assert_eq!(consistency_proof(&l, 4, 7).unwrap(), vec![right3]);
        assert_eq!(consistency_proof(&l, 6, 7).unwrap(), vec![h(l[4], l[5]), l[6], left4]);
        assert_eq!(verify_consistency(3, 7, &root3, &root7, &consistency_proof(&l, 3, 7).unwrap()), Ok(()));
    }

    #[test]
    fn roots_match_the_certificate_transparency_test_vectors() {
        // The leaf inputs and roots of the reference tests of RFC 6962 implementations
        // (certificate-transparency, transparency-dev/merkle).
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let l: Vec<[u8; 32]> = inputs.iter().map(|input| leaf_hash(input)).collect();
        for (n, expected) in roots.iter().enumerate() {
            assert_eq!(hex::encode(root(&l[..=n])), *expected, "{} leaves", n + 1);
        }
        assert_eq!(hex::encode(root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn inclusion_proofs_verify_and_resist_tampering_for_every_size_to_300() {
        let log = Log::new(300);
        for size in 1..=300u64 {
            let small = size <= 64;
            let indices = if small { (0..size).collect() } else { sampled(size - 1, 0) };
            for index in indices {
                check_inclusion(&log, index, size, small, size <= 16);
            }
        }
        // Every index, honest proofs only, in a tree too large for the exhaustive checks.
        for index in 0..129 {
            let proof = inclusion_proof(&log.leaves, index, 129).unwrap();
            assert_eq!(verify_inclusion(&log.leaves[index as usize], index, 129, &proof, &log.root(129)), Ok(()));
        }
    }

    #[test]
    fn consistency_proofs_verify_and_resist_tampering_for_every_size_to_300() {
        let log = Log::new(300);
        for new in 1..=300u64 {
            let small = new <= 64;
            let olds = if small { (1..=new).collect() } else { sampled(new, 1) };
            for old in olds {
                check_consistency(&log, old, new, small, new <= 16);
            }
        }
        // Every old size, honest proofs only, in a tree too large for the exhaustive checks.
        for old in 1..=129 {
            let proof = consistency_proof(&log.leaves, old, 129).unwrap();
            assert_eq!(verify_consistency(old, 129, &log.root(old), &log.root(129), &proof), Ok(()));
        }
    }

    #[test]
    fn a_proof_for_another_index_never_verifies() {
        let all = leaves(40);
        for size in 1..=40u64 {
            let root = root(&all[..size as usize]);
            for index in 0..size {
                let proof = inclusion_proof(&all, index, size).unwrap();
                for other in (0..size).filter(|&other| other != index) {
                    assert!(verify_inclusion(&all[index as usize], other, size, &proof, &root).is_err());
                    assert!(verify_inclusion(&all[other as usize], other, size, &proof, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn bad_indices_and_sizes_are_errors() {
        let all = leaves(10);
        let some = [0u8; 32];
        assert_eq!(inclusion_proof(&all, 3, 3), Err(ProofError::IndexOutOfRange { index: 3, tree_size: 3 }));
        assert_eq!(inclusion_proof(&all, 0, 0), Err(ProofError::IndexOutOfRange { index: 0, tree_size: 0 }));
        assert_eq!(
            inclusion_proof(&all, 0, 11),
            Err(ProofError::TreeSizeExceedsLeaves { tree_size: 11, available: 10 })
        );
        assert_eq!(
            verify_inclusion(&some, 5, 5, &[], &some),
            Err(ProofError::IndexOutOfRange { index: 5, tree_size: 5 })
        );
        assert_eq!(consistency_proof(&all, 0, 4), Err(ProofError::OldSizeZero));
        assert_eq!(consistency_proof(&all, 5, 4), Err(ProofError::OldSizeLarger { old_size: 5, new_size: 4 }));
        assert_eq!(
            consistency_proof(&all, 4, 11),
            Err(ProofError::TreeSizeExceedsLeaves { tree_size: 11, available: 10 })
        );
        assert_eq!(verify_consistency(0, 4, &some, &some, &[]), Err(ProofError::OldSizeZero));
        assert_eq!(
            verify_consistency(5, 4, &some, &some, &[]),
            Err(ProofError::OldSizeLarger { old_size: 5, new_size: 4 })
        );
        // Equal sizes: an empty proof, and the roots must be equal.
        let r = root(&all[..4]);
        assert_eq!(consistency_proof(&all, 4, 4), Ok(Vec::new()));
        assert_eq!(verify_consistency(4, 4, &r, &r, &[]), Ok(()));
        assert_eq!(verify_consistency(4, 4, &r, &some, &[]), Err(ProofError::RootMismatch));
        assert_eq!(
            verify_consistency(4, 4, &r, &r, &[r]),
            Err(ProofError::WrongProofLength { expected: 0, actual: 1 })
        );
        // Sizes at the top of the range: the ranges are computed without overflow.
        // The last leaf of a tree of 2^64 - 1 leaves has a sibling in each of the 63 other
        // perfect subtrees; the first leaf one per level.
        assert_eq!(inclusion_proof_ranges(u64::MAX - 1, u64::MAX).unwrap().len(), 63);
        assert_eq!(inclusion_proof_ranges(0, u64::MAX).unwrap().len(), 64);
        assert_eq!(consistency_proof_ranges(u64::MAX - 1, u64::MAX).unwrap().len(), 64);
        for (index, size) in [(u64::MAX - 1, u64::MAX), (0, u64::MAX), (1 << 63, u64::MAX), (5, 1 << 40)] {
            let len = inclusion_proof_ranges(index, size).unwrap().len();
            assert_eq!(len, inclusion_proof_len(index, size));
        }
        for (old, new) in [(u64::MAX - 1, u64::MAX), (1, u64::MAX), (1 << 63, u64::MAX), (3, 1 << 40)] {
            assert_eq!(consistency_proof_ranges(old, new).unwrap().len(), consistency_proof_len(old, new));
        }
    }

    #[test]
    fn subtrees_are_aligned_and_decompose_nodes_only() {
        assert_eq!(Subtree::new(512, 8).map(Subtree::range), Some(512..768));
        assert_eq!(Subtree::new(256, 9), None);
        assert_eq!(Subtree::new(0, 64), None);
        assert_eq!(Subtree::new(1 << 62, 62).map(Subtree::len), Some(1 << 62));
        assert_eq!(Subtree::new(1 << 63, 63), None, "would end past u64::MAX");
        assert_eq!(Subtree::new(u64::MAX, 0), None);
        assert_eq!(Subtree::new(0, 3).unwrap().root(&leaves(7)), None);
        assert_eq!(Subtree::decompose(3..3), None);
        assert_eq!(Subtree::decompose(2..5), None);
        assert_eq!(Subtree::decompose(0..u64::MAX).map(|p| p.len()), Some(64));
        let pieces = Subtree::decompose(256..300).unwrap();
        assert_eq!(pieces.iter().map(|s| s.range()).collect::<Vec<_>>(), vec![256..288, 288..296, 296..300]);
        assert_eq!(join_subtree_roots(&[]), empty_root());
    }

    /// What a server with a cache of aligned subtree roots of `2^chunk_height` leaves does: the
    /// root of a proof's range from cached roots plus the leaves of subtrees smaller than a chunk.
    fn range_root_from_cache(range: Range<u64>, all: &[[u8; 32]], cache: &[[u8; 32]], chunk_height: u32) -> [u8; 32] {
        let pieces = Subtree::decompose(range).unwrap();
        let roots: Vec<[u8; 32]> = pieces
            .iter()
            .map(|piece| {
                if piece.height() >= chunk_height {
                    let first = (piece.start() >> chunk_height) as usize;
                    root(&cache[first..first + (1 << (piece.height() - chunk_height))])
                } else {
                    piece.root(all).unwrap()
                }
            })
            .collect();
        join_subtree_roots(&roots)
    }

    #[test]
    fn proofs_assembled_from_cached_subtree_roots_equal_proofs_from_leaves() {
        for (chunk_height, sizes) in [(2u32, (1..=70u64).collect::<Vec<_>>()), (8, vec![255, 256, 257, 1000, 2049])] {
            let max = *sizes.iter().max().unwrap();
            let all = leaves(max);
            let cache: Vec<[u8; 32]> = (0..max >> chunk_height)
                .map(|i| Subtree::new(i << chunk_height, chunk_height).unwrap().root(&all).unwrap())
                .collect();
            for size in sizes {
                let from_cache = |ranges: Vec<Range<u64>>| -> Vec<[u8; 32]> {
                    ranges.into_iter().map(|r| range_root_from_cache(r, &all, &cache, chunk_height)).collect()
                };
                assert_eq!(range_root_from_cache(0..size, &all, &cache, chunk_height), root(&all[..size as usize]));
                for index in sampled(size - 1, 0) {
                    let expected = inclusion_proof(&all, index, size).unwrap();
                    assert_eq!(from_cache(inclusion_proof_ranges(index, size).unwrap()), expected);
                }
                for old in sampled(size, 1) {
                    let expected = consistency_proof(&all, old, size).unwrap();
                    assert_eq!(from_cache(consistency_proof_ranges(old, size).unwrap()), expected);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn proofs_verify_in_larger_trees(size in 1..=5000u64, index_seed: u64, old_seed: u64) {
            let all = leaves(size);
            let (index, old) = (index_seed % size, old_seed % size + 1);
            let new_root = root(&all);
            let leaf = all[index as usize];
            let proof = inclusion_proof(&all, index, size).unwrap();
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &new_root), Ok(()));
            let old_root = root(&all[..old as usize]);
            let proof = consistency_proof(&all, old, size).unwrap();
            prop_assert_eq!(verify_consistency(old, size, &old_root, &new_root, &proof), Ok(()));
        }

        #[test]
        fn any_altered_bit_breaks_a_proof(
            size in 2..=600u64, index_seed: u64, old_seed: u64, pick: usize, bit in 0..8u32,
        ) {
            let all = leaves(size);
            let new_root = root(&all);
            let index = index_seed % size;
            let mut proof = inclusion_proof(&all, index, size).unwrap();
            let at = pick % (proof.len() * 32);
            proof[at / 32][at % 32] ^= 1 << bit;
            prop_assert!(verify_inclusion(&all[index as usize], index, size, &proof, &new_root).is_err());

            let old = old_seed % (size - 1) + 1;
            let old_root = root(&all[..old as usize]);
            let mut proof = consistency_proof(&all, old, size).unwrap();
            let at = pick % (proof.len() * 32);
            proof[at / 32][at % 32] ^= 1 << bit;
            prop_assert!(verify_consistency(old, size, &old_root, &new_root, &proof).is_err());
        }

        #[test]
        fn arbitrary_inputs_never_panic(
            a: u64, b: u64, small_a in 0..70u64, small_b in 0..70u64,
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
            r1: [u8; 32], r2: [u8; 32],
        ) {
            let all = leaves(8);
            for (x, y) in [(a, b), (small_a, small_b), (small_a, b), (a, small_b), (u64::MAX, u64::MAX)] {
                let _ = verify_inclusion(&r1, x, y, &proof, &r2);
                let _ = verify_consistency(x, y, &r1, &r2, &proof);
                let _ = inclusion_proof(&all, x, y);
                let _ = consistency_proof(&all, x, y);
                let _ = Subtree::new(x, (y % 70) as u32);
                let _ = Subtree::decompose(x..y);
            }
        }
    }
}
