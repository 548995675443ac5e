//! The engine's nodes by name: what faults target, what the simulator builds and what
//! events name (`coordinator`, `state`, `fast-1`, `deep-2`).

use crate::probe::Role;
use crate::task::Path;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// One node of a deployment. Workers are numbered from 1 per path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeName {
    Coordinator,
    State,
    Worker(Path, u32),
}

impl NodeName {
    /// The nodes of a topology, in the order faults draw them from: coordinator, state,
    /// the fast workers, the deep workers.
    pub fn all(fast: u32, deep: u32) -> Vec<NodeName> {
        let mut nodes = vec![NodeName::Coordinator, NodeName::State];
        nodes.extend((1..=fast).map(|i| NodeName::Worker(Path::Fast, i)));
        nodes.extend((1..=deep).map(|i| NodeName::Worker(Path::Deep, i)));
        nodes
    }

    /// The role this node runs.
    pub fn role(self) -> Role {
        match self {
            NodeName::Coordinator => Role::Coordinator,
            NodeName::State => Role::State,
            NodeName::Worker(path, _) => Role::worker(path),
        }
    }

    /// Parses a node's name; `None` for anything else (a worker numbered 0 included).
    pub fn parse(name: &str) -> Option<NodeName> {
        match name {
            "coordinator" => Some(NodeName::Coordinator),
            "state" => Some(NodeName::State),
            _ => {
                // Digits without a leading zero: one spelling per node.
                let (path, digits) = name.split_once('-')?;
                if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(NodeName::Worker(Path::parse(path)?, digits.parse().ok()?))
            }
        }
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeName::Coordinator => f.write_str("coordinator"),
            NodeName::State => f.write_str("state"),
            NodeName::Worker(path, replica) => write!(f, "{}-{replica}", path.as_str()),
        }
    }
}

/// Ordered as their names are (`deep-1` < `fast-1` < `fast-10` < `fast-2`), so that maps
/// and sets of nodes iterate as they did when nodes were strings.
impl Ord for NodeName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for NodeName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        NodeName::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown node {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_as_strings() {
        let nodes = NodeName::all(10, 2);
        for node in &nodes {
            assert_eq!(NodeName::parse(&node.to_string()), Some(*node));
        }
        let mut by_node = nodes.clone();
        by_node.sort();
        let mut by_name: Vec<String> = nodes.iter().map(NodeName::to_string).collect();
        by_name.sort();
        assert_eq!(by_node.iter().map(NodeName::to_string).collect::<Vec<_>>(), by_name);
        assert_eq!(serde_json::to_string(&NodeName::Worker(Path::Deep, 3)).unwrap(), "\"deep-3\"");
    }

    #[test]
    fn other_names_are_not_nodes() {
        for name in ["fast-0", "fast-01", "fast-+1", "slow-1", "fast", "coordinator-1", ""] {
            assert_eq!(NodeName::parse(name), None, "{name}");
        }
    }
}
