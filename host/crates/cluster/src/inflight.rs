//! Messages on their way to another node's sessions, kept until that node says the client
//! has them, so that a node killed (or cut off) first does not lose them: when it is
//! counted dead, what it never confirmed is routed again here (the user's other
//! sessions, or offline storage). Delivered twice at worst, never zero times.
//!
//! The publisher numbers the `message` frames it sends to each node (`N` frames, see
//! `wire`); the receiver hands each to its session with a returning receipt and answers
//! `delivered` once the client has it (stream management acknowledged it, or the client
//! answered a ping sent after it), or `returned` when the session ended first (the
//! message is routed again here at once). Numbers start at the node's incarnation
//! (microseconds since the epoch), so an answer meant for this node's previous run never
//! settles a message of this one.
//!
//! Earlier, each batch ends with `S<node> <last number>` and the receiver answers
//! `received` once it has queued the batch: the message is then *taken* (it no longer
//! depends on this node's memory), and the sender's share of its wait
//! ([`Settle`]) is let go, so the sending client's stream management acknowledges it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::core::session::settle::Settle;

/// Messages kept per node at most; past that the oldest are given up (not routed again).
pub const MAX_PER_NODE: usize = 200_000;

/// The unconfirmed messages, by destination node.
pub struct InFlight {
    /// The number before the first one given to each node.
    start: u64,
    nodes: Mutex<HashMap<String, Pending>>,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight::starting_at(0)
    }
}

struct Pending {
    /// The node reads numbered frames (its heartbeat said so); otherwise it is sent
    /// plain frames, and what it has taken is all the confirmation it gives.
    numbered: bool,
    /// The last number given.
    last: u64,
    /// The last number the node said it has taken.
    taken: u64,
    /// Encoded frames by number, with the sending client's wait until taken.
    frames: BTreeMap<u64, Kept>,
}

/// A message frame kept.
struct Kept {
    frame: Vec<u8>,
    settle: Option<Settle>,
}

/// A message to route again: its frame, and the sending client's wait if not taken yet.
pub type Unconfirmed = (Vec<u8>, Option<Settle>);

impl InFlight {
    /// Numbers messages from `start + 1` on (see the module's doc).
    pub fn starting_at(start: u64) -> InFlight {
        InFlight {
            start,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `node` reads numbered frames, as its last heartbeat said.
    pub fn set_numbered(&self, node: &str, numbered: bool) {
        let mut nodes = self.lock();
        self.pending(&mut nodes, node).numbered = numbered;
    }

    fn pending<'a>(&self, nodes: &'a mut HashMap<String, Pending>, node: &str) -> &'a mut Pending {
        let start = self.start;
        nodes.entry(node.to_string()).or_insert_with(|| Pending {
            numbered: false,
            last: start,
            taken: start,
            frames: BTreeMap::new(),
        })
    }

    /// Numbers a message for `node`, keeps the frame `encode` makes of it with its
    /// number and whether the node reads numbered frames (and `settle` until taken), and
    /// returns the number and the frame to send.
    pub fn keep(
        &self,
        node: &str,
        settle: Option<Settle>,
        encode: impl FnOnce(u64, bool) -> Vec<u8>,
    ) -> (u64, Vec<u8>) {
        let mut nodes = self.lock();
        let p = self.pending(&mut nodes, node);
        p.last += 1;
        if p.frames.len() >= MAX_PER_NODE {
            p.frames.pop_first();
            metrics::counter!("heliograph_cluster_inflight_given_up_total").increment(1);
        }
        let frame = encode(p.last, p.numbered);
        let kept = Kept {
            frame: frame.clone(),
            settle,
        };
        p.frames.insert(p.last, kept);
        (p.last, frame)
    }

    /// `node`'s clients have the messages numbered `seqs`.
    pub fn confirmed(&self, node: &str, seqs: &[u64]) {
        let mut gone = Vec::new();
        {
            let mut nodes = self.lock();
            if let Some(p) = nodes.get_mut(node) {
                gone.extend(seqs.iter().filter_map(|seq| p.frames.remove(seq)));
            }
        }
        drop(gone);
    }

    /// `node` has taken (queued for its sessions) every message up to `upto`: the
    /// sending clients need not wait for them any more. A node that does not read
    /// numbered frames gives no other confirmation: its messages are forgotten then.
    pub fn taken_upto(&self, node: &str, upto: u64) {
        let mut settled = Vec::new();
        let mut gone = BTreeMap::new();
        {
            let mut nodes = self.lock();
            let Some(p) = nodes.get_mut(node) else {
                return;
            };
            if upto <= p.taken {
                return;
            }
            if p.numbered {
                for (_, kept) in p.frames.range_mut(p.taken + 1..=upto) {
                    settled.extend(kept.settle.take());
                }
            } else {
                let rest = p.frames.split_off(&(upto + 1));
                gone = std::mem::replace(&mut p.frames, rest);
            }
            p.taken = upto;
        }
        // Let go outside the lock: the last share tells its session.
        drop(settled);
        drop(gone);
    }

    /// `node` gives the messages numbered `seqs` back: to route again.
    pub fn returned(&self, node: &str, seqs: &[u64]) -> Vec<Unconfirmed> {
        let mut nodes = self.lock();
        let Some(p) = nodes.get_mut(node) else {
            return Vec::new();
        };
        seqs.iter()
            .filter_map(|seq| p.frames.remove(seq))
            .map(|k| (k.frame, k.settle))
            .collect()
    }

    /// Takes what nodes not in `live` never confirmed (they are dead), oldest first. Their
    /// numbering goes on: a late answer from a node that comes back settles nothing new.
    pub fn take_dead(&self, live: &[String]) -> Vec<Unconfirmed> {
        let mut nodes = self.lock();
        let mut out = Vec::new();
        for (_, p) in nodes.iter_mut().filter(|(n, _)| !live.contains(n)) {
            p.taken = p.last;
            let frames = std::mem::take(&mut p.frames);
            out.extend(frames.into_values().map(|k| (k.frame, k.settle)));
        }
        out
    }

    /// Messages waiting for a confirmation (all nodes).
    pub fn len(&self) -> usize {
        self.lock().values().map(|p| p.frames.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(f: &InFlight, node: &str, body: &str) -> u64 {
        f.keep(node, None, |_, _| body.as_bytes().to_vec()).0
    }

    fn frames(list: Vec<Unconfirmed>) -> Vec<Vec<u8>> {
        list.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn confirmed_messages_go_returned_ones_come_back_and_a_dead_nodes_rest_too() {
        let f = InFlight::starting_at(1000);
        f.set_numbered("n2", true);
        f.set_numbered("n3", true);
        assert_eq!(keep(&f, "n2", "a"), 1001);
        assert_eq!(keep(&f, "n2", "b"), 1002);
        assert_eq!(keep(&f, "n2", "c"), 1003);
        assert_eq!(keep(&f, "n3", "d"), 1001);
        // Settled out of order: the client of "b" acknowledged first.
        f.confirmed("n2", &[1002]);
        assert_eq!(f.len(), 3);
        assert_eq!(
            frames(f.returned("n2", &[1003, 1003, 77])),
            vec![b"c".to_vec()]
        );
        // An answer for another run's number settles nothing.
        f.confirmed("n2", &[2]);
        assert_eq!(f.len(), 2);
        let live = vec!["n1".to_string(), "n3".to_string()];
        assert_eq!(frames(f.take_dead(&live)), vec![b"a".to_vec()]);
        assert_eq!(f.len(), 1);
        assert!(f.take_dead(&live).is_empty());
        // n2 comes back: its numbers go on after those it was given before.
        assert_eq!(keep(&f, "n2", "e"), 1004);
        f.confirmed("n2", &[1004]);
        f.confirmed("n3", &[1001]);
        assert!(f.is_empty());
    }

    #[tokio::test]
    async fn the_senders_wait_ends_when_the_node_takes_the_message() {
        use crate::core::router::SessionMsg;
        let (tx, mut session) = tokio::sync::mpsc::channel(4);
        let f = InFlight::starting_at(0);
        f.set_numbered("n2", true);
        let settle = Settle::new(3, tx);
        let (first, _) = f.keep("n2", Some(settle.clone()), |_, _| b"a".to_vec());
        let (second, _) = f.keep("n2", Some(settle), |_, _| b"b".to_vec());
        f.taken_upto("n2", first);
        assert!(session.try_recv().is_err(), "the second is not taken yet");
        f.taken_upto("n2", second);
        assert!(matches!(
            session.try_recv().map(|m| *m),
            Ok(SessionMsg::Settled(3))
        ));
        // Taken is not delivered: both are still kept for the client's acknowledgement.
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn a_node_that_reads_no_numbered_frames_gets_plain_ones_forgotten_once_taken() {
        let f = InFlight::starting_at(0);
        let (n, frame) = f.keep("old", None, |seq, numbered| {
            format!("{seq} {numbered}").into_bytes()
        });
        assert_eq!(frame, b"1 false".to_vec());
        f.taken_upto("old", n);
        assert!(f.is_empty());
    }
}
