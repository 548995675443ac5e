//! RFC 6962 Merkle tree hash over event lines (SHA-256, leaf prefix 0x00, node prefix
//! 0x01), computed as the lines stream by in O(log n) memory.
//!
//! The builder keeps the roots of the perfect subtrees of the leaves seen so far (like the
//! digits of a binary counter); folding them from the smallest gives exactly the MTH of
//! RFC 6962, whose split is at the largest power of two below n.

use sha2::{Digest, Sha256};

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Streaming Merkle tree hash.
#[derive(Clone, Debug, Default)]
pub struct MerkleBuilder {
    /// Roots of perfect subtrees, largest first, with their heights.
    stack: Vec<(u32, [u8; 32])>,
    size: u64,
}

impl MerkleBuilder {
    /// An empty tree.
    pub fn new() -> MerkleBuilder {
        MerkleBuilder::default()
    }

    /// Adds a leaf.
    pub fn push(&mut self, leaf: &[u8]) {
        let mut node = (0, leaf_hash(leaf));
        while let Some(&(height, top)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, node_hash(&top, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
        debug_assert_eq!(self.stack.len() as u32, self.size.count_ones());
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle tree hash of the leaves so far (`SHA-256("")` for none).
    pub fn root(&self) -> [u8; 32] {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, mut acc)) = nodes.next() else {
            return Sha256::digest(b"").into();
        };
        for (_, left) in nodes {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The Merkle tree hash of a list of leaves, by the recursive definition of RFC 6962.
pub fn root_of(leaves: &[&[u8]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaf_hash(leaves[0]),
        n => {
            let k = split(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly below `n` (n >= 2): RFC 6962's split point.
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash over leaf hashes already computed (`leaf_hash` of each leaf).
pub fn root_of_hashes(hashes: &[[u8; 32]]) -> [u8; 32] {
    match hashes.len() {
        0 => Sha256::digest(b"").into(),
        1 => hashes[0],
        n => {
            let k = split(n);
            node_hash(&root_of_hashes(&hashes[..k]), &root_of_hashes(&hashes[k..]))
        }
    }
}

/// RFC 6962 2.1.2 `PROOF(m, D[n])`: the nodes that show the tree of the first `m` leaves is
/// a prefix of the tree of all of them (`hashes` are the leaf hashes). Empty for `m` of 0
/// or `m` equal to the size; `m` above the size is a caller's bug.
pub fn consistency_proof(hashes: &[[u8; 32]], m: usize) -> Vec<[u8; 32]> {
    assert!(m <= hashes.len(), "a prefix of {m} leaves of a tree of {}", hashes.len());
    let mut proof = Vec::new();
    if m > 0 {
        subproof(m, hashes, true, &mut proof);
    }
    proof
}

/// RFC 6962's `SUBPROOF(m, D[n], b)`, appending to `proof`.
fn subproof(m: usize, hashes: &[[u8; 32]], whole: bool, proof: &mut Vec<[u8; 32]>) {
    let n = hashes.len();
    if m == n {
        if !whole {
            proof.push(root_of_hashes(hashes));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &hashes[..k], whole, proof);
        proof.push(root_of_hashes(&hashes[k..]));
    } else {
        subproof(m - k, &hashes[k..], false, proof);
        proof.push(root_of_hashes(&hashes[..k]));
    }
}

/// RFC 9162 2.1.4.2: whether `proof` shows that the tree of size `m` with root `old` is a
/// prefix of the tree of size `n` with root `new`, using the two roots and the proof only.
pub fn verify_consistency(m: u64, n: u64, old: &[u8; 32], new: &[u8; 32], proof: &[[u8; 32]]) -> bool {
    if m > n {
        return false;
    }
    if m == 0 {
        // Every tree extends the empty one.
        return proof.is_empty();
    }
    if m == n {
        return proof.is_empty() && old == new;
    }
    let mut path: Vec<[u8; 32]> = Vec::with_capacity(proof.len() + 1);
    if m.is_power_of_two() {
        path.push(*old);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (m - 1, n - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let Some((&first, rest)) = path.split_first() else { return false };
    let (mut fr, mut sr) = (first, first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old && sr == *new && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_roots() {
        // RFC 6962 test vectors (certificate-transparency's merkle_tree_test): the empty
        // tree, and one leaf of the empty string.
        assert_eq!(
            hex::encode(MerkleBuilder::new().root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut one = MerkleBuilder::new();
        one.push(b"");
        assert_eq!(hex::encode(one.root()), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    }

    proptest! {
        #[test]
        fn streaming_equals_the_recursive_definition(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..70)) {
            let mut builder = MerkleBuilder::new();
            for leaf in &leaves {
                builder.push(leaf);
            }
            let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(builder.root(), root_of(&refs));
            prop_assert_eq!(builder.size(), leaves.len() as u64);
        }

        #[test]
        fn any_change_changes_the_root(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 1..40), at in any::<prop::sample::Index>()) {
            let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
            let mut changed = leaves.clone();
            let i = at.index(changed.len());
            changed[i][0] ^= 1;
            let changed_refs: Vec<&[u8]> = changed.iter().map(Vec::as_slice).collect();
            prop_assert_ne!(root_of(&refs), root_of(&changed_refs));
            let dropped: Vec<&[u8]> = refs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, l)| *l).collect();
            prop_assert_ne!(root_of(&refs), root_of(&dropped));
        }

        #[test]
        fn a_prefix_is_proven_consistent_and_nothing_else_is(n in 1usize..70, m_at in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
            let hashes: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect();
            let m = m_at.index(n + 1);
            let (old, new) = (root_of_hashes(&hashes[..m]), root_of_hashes(&hashes));
            let proof = consistency_proof(&hashes, m);
            prop_assert!(verify_consistency(m as u64, n as u64, &old, &new, &proof));
            if m > 0 && m < n {
                // Another old root, another new root, or an altered proof: rejected.
                let mut other = old;
                other[0] ^= 1;
                prop_assert!(!verify_consistency(m as u64, n as u64, &other, &new, &proof));
                prop_assert!(!verify_consistency(m as u64, n as u64, &old, &other, &proof));
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    let i = flip.index(bad.len());
                    bad[i][31] ^= 1;
                    prop_assert!(!verify_consistency(m as u64, n as u64, &old, &new, &bad));
                }
                // A log rewritten after the prefix's leaf m - 1 is not consistent with it.
                let mut rewritten = hashes.clone();
                rewritten[m - 1][0] ^= 1;
                let proof = consistency_proof(&rewritten, m);
                prop_assert!(!verify_consistency(m as u64, n as u64, &old, &root_of_hashes(&rewritten), &proof));
            }
        }
    }
}
