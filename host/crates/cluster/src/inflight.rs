//! Messages on their way to another node, kept until that node confirms it has taken
//! them, so that a node killed (or cut off) before it took them does not lose them: when
//! it is counted dead, what it never confirmed is routed again here (the user's other
//! sessions, or offline storage).
//!
//! The publisher numbers the `message` frames it sends to each node and ends a batch that
//! holds some with `S<this node> <number>`; the receiver, having queued the batch's
//! stanzas for its sessions, answers with a `received` control message. What a dead node
//! had taken but not yet written to its clients is still lost; what was in flight to it
//! or sent after it died is not.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Messages kept per node at most; past that the oldest are given up (not routed again).
pub const MAX_PER_NODE: usize = 200_000;

/// The unconfirmed messages, by destination node.
#[derive(Default)]
pub struct InFlight {
    nodes: Mutex<HashMap<String, Pending>>,
}

#[derive(Default)]
struct Pending {
    /// The last number given.
    last: u64,
    /// (number, encoded `D` frame), oldest first.
    frames: VecDeque<(u64, Vec<u8>)>,
}

impl InFlight {
    /// Keeps a message frame sent to `node`; returns its number.
    pub fn keep(&self, node: &str, frame: Vec<u8>) -> u64 {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let p = nodes.entry(node.to_string()).or_default();
        p.last += 1;
        if p.frames.len() >= MAX_PER_NODE {
            p.frames.pop_front();
            metrics::counter!("heliograph_cluster_inflight_given_up_total").increment(1);
        }
        p.frames.push_back((p.last, frame));
        p.last
    }

    /// `node` took every message up to `upto`.
    pub fn confirmed(&self, node: &str, upto: u64) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = nodes.get_mut(node) {
            while p.frames.front().is_some_and(|(n, _)| *n <= upto) {
                p.frames.pop_front();
            }
        }
    }

    /// Takes what nodes not in `live` never confirmed (they are dead).
    pub fn take_dead(&self, live: &[String]) -> Vec<Vec<u8>> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let dead: Vec<String> = nodes
            .keys()
            .filter(|n| !live.contains(n))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for n in dead {
            if let Some(p) = nodes.remove(&n) {
                out.extend(p.frames.into_iter().map(|(_, f)| f));
            }
        }
        out
    }

    /// Messages waiting for a confirmation (all nodes).
    pub fn len(&self) -> usize {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.values().map(|p| p.frames.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_messages_go_and_a_dead_nodes_rest_comes_back() {
        let f = InFlight::default();
        assert_eq!(f.keep("n2", b"a".to_vec()), 1);
        assert_eq!(f.keep("n2", b"b".to_vec()), 2);
        assert_eq!(f.keep("n3", b"c".to_vec()), 1);
        f.confirmed("n2", 1);
        assert_eq!(f.len(), 2);
        let live = vec!["n1".to_string(), "n3".to_string()];
        assert_eq!(f.take_dead(&live), vec![b"b".to_vec()]);
        assert_eq!(f.len(), 1);
        assert!(f.take_dead(&live).is_empty());
    }
}
