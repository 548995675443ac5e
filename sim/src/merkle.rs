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
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
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
    }
}
