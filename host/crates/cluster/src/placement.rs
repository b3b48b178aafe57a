//! Rendezvous hashing of keyed hosted entities (MUC rooms) over the live nodes: each key
//! lives on the node with the highest score for it, so every node that sees the same
//! live nodes picks the same one, and a node joining or leaving moves only the keys it
//! wins or held.
//!
//! [`ClusterPlacement`] is the core's [`Placement`] in a cluster: the live nodes it hashes
//! over are the membership the heartbeat task last published (the same list the layers
//! above move rooms by), and a forwarded stanza goes to the owner's subject through the
//! node's one publisher, in order with the stanzas for that node's sessions.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::core::router::Placement;
use crate::outbox::Outgoing;
use crate::wire::Direct;
use crate::xml::Element;

/// The score of `node` for `key` (FNV-1a over both, then a final mix): stable across
/// processes and versions.
pub fn score(node: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for similar inputs: finish as splitmix64 does.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The node among `nodes` that owns `key` (ties, which need equal scores, go to the
/// greater name); `None` for no nodes.
pub fn owner_of<'a>(nodes: impl IntoIterator<Item = &'a str>, key: &str) -> Option<&'a str> {
    nodes
        .into_iter()
        .max_by(|a, b| score(a, key).cmp(&score(b, key)).then(a.cmp(b)))
}

/// The cluster's placement (installed in the core at startup).
pub struct ClusterPlacement {
    node: String,
    members: watch::Receiver<Arc<Vec<String>>>,
    out: mpsc::Sender<Outgoing>,
}

impl ClusterPlacement {
    pub(crate) fn new(
        node: String,
        members: watch::Receiver<Arc<Vec<String>>>,
        out: mpsc::Sender<Outgoing>,
    ) -> ClusterPlacement {
        ClusterPlacement { node, members, out }
    }
}

impl Placement for ClusterPlacement {
    fn owner(&self, key: &str) -> Option<String> {
        let members = self.members.borrow().clone();
        match owner_of(members.iter().map(String::as_str), key) {
            Some(n) if n != self.node => Some(n.to_string()),
            _ => None,
        }
    }

    fn forward(&self, node: &str, stanza: Element) {
        let msg = Outgoing::Direct {
            node: node.into(),
            msg: Direct::Hosted { stanza },
        };
        if self.out.try_send(msg).is_err() {
            tracing::warn!(
                node,
                "cluster: outgoing queue full; stanza for a room dropped"
            );
        }
    }

    fn live_nodes(&self) -> Vec<String> {
        self.members.borrow().as_ref().clone()
    }

    fn this_node(&self) -> &str {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_of_a_leaving_node_move() {
        let three = ["n1", "n2", "n3"];
        let two = ["n1", "n2"];
        let keys: Vec<String> = (0..3000).map(|i| format!("room{i}@conference.x")).collect();
        let mut per_node = std::collections::HashMap::new();
        for k in &keys {
            let before = owner_of(three, k).unwrap();
            *per_node.entry(before).or_insert(0) += 1;
            let after = owner_of(two, k).unwrap();
            if before != "n3" {
                assert_eq!(before, after, "{k} moved although its node stayed");
            }
        }
        // Spread: each node gets a fair share (1000 expected).
        for n in three {
            let got = per_node[n];
            assert!((800..1200).contains(&got), "{n} owns {got} of 3000");
        }
        assert_eq!(owner_of(Vec::<&str>::new(), "x"), None);
    }
}
