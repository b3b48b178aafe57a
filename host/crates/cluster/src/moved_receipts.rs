//! Receipts that move with a session (docs/CLUSTER.md, "Stream management across
//! nodes", item 7). A session that leaves node A for node B may hold stanzas its client has not
//! acknowledged whose receipts are still open: kept in offline storage, or kept in flight
//! by the node that routed them. A does not confirm those receipts when the session
//! leaves; it keeps them ([`HeldMoves`]) and B stands in for them with receipts of its
//! own ([`receipts_for`]): when B's client acknowledges such a stanza, or B's session ends
//! without it, B tells A (a [`ReceiptNotice`] on A's handoff subject, batched), and A
//! confirms the receipt or drops it (its holder then routes the stanza again). If B dies,
//! or says nothing for far longer than its session could wait, A drops what it still
//! keeps for B: the stanzas may arrive twice, never zero times.
//!
//! Only a node whose heartbeat says it reads [`crate::core::session::handoff::HeldReceipts`]
//! is handed receipts ([`crate::readers::Readers::carries_receipts`]); for an older node A
//! confirms them when the session leaves, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::core::router::Receipt;
use crate::core::session::handoff::HeldReceipts;

/// Told by the node a session moved to, about stanzas whose receipts the node it left
/// keeps: the client has those at `confirmed`, and may not have those at `returned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptNotice {
    /// The move's number ([`HeldReceipts::id`]).
    pub id: u64,
    /// The node telling.
    pub from: String,
    #[serde(default)]
    pub confirmed: Vec<u32>,
    #[serde(default)]
    pub returned: Vec<u32>,
}

/// The receipts of one move, kept until the new node tells.
struct Move {
    node: String,
    receipts: HashMap<u32, Receipt>,
}

/// The receipts this node keeps for sessions that left it (A's side).
#[derive(Default)]
pub struct HeldMoves {
    moves: Mutex<HashMap<u64, Move>>,
}

impl HeldMoves {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Move>> {
        self.moves.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `receipts` (by place) for a session leaving for `to`; returns what the session
    /// tells `to` (`me` is this node). Nothing is kept for an empty list.
    pub fn keep(&self, me: &str, to: &str, receipts: Vec<(u32, Receipt)>) -> Option<HeldReceipts> {
        if receipts.is_empty() {
            return None;
        }
        let places = receipts.iter().map(|(place, _)| *place).collect();
        let mut moves = self.lock();
        let id = loop {
            let id = rand::random::<u64>();
            if !moves.contains_key(&id) {
                break id;
            }
        };
        moves.insert(
            id,
            Move {
                node: to.to_string(),
                receipts: receipts.into_iter().collect(),
            },
        );
        Some(HeldReceipts {
            node: me.to_string(),
            id,
            places,
        })
    }

    /// What the node a session moved to said. A notice from another node than the one
    /// the move went to changes nothing.
    pub fn apply(&self, notice: ReceiptNotice) {
        let mut moves = self.lock();
        let Some(m) = moves.get_mut(&notice.id) else {
            return;
        };
        if m.node != notice.from {
            tracing::warn!(
                id = notice.id,
                from = notice.from,
                "cluster: receipt notice from the wrong node"
            );
            return;
        }
        let mut settled = Vec::new();
        for place in &notice.confirmed {
            if let Some(receipt) = m.receipts.remove(place) {
                settled.push((receipt, true));
            }
        }
        for place in &notice.returned {
            if let Some(receipt) = m.receipts.remove(place) {
                settled.push((receipt, false));
            }
        }
        if m.receipts.is_empty() {
            moves.remove(&notice.id);
        }
        drop(moves);
        for (receipt, confirmed) in settled {
            if confirmed {
                receipt.confirm();
            }
            // Dropped unconfirmed otherwise: its holder routes the stanza again.
        }
    }

    /// Drops what is kept for nodes no longer alive.
    pub fn forget_dead(&self, alive: &[String]) {
        let gone: Vec<Move> = {
            let mut moves = self.lock();
            let dead: Vec<u64> = moves
                .iter()
                .filter(|(_, m)| !alive.contains(&m.node))
                .map(|(id, _)| *id)
                .collect();
            dead.iter().filter_map(|id| moves.remove(id)).collect()
        };
        for m in gone {
            tracing::warn!(
                node = m.node,
                stanzas = m.receipts.len(),
                "cluster: a session moved to a dead node: its unacknowledged stanzas are routed again"
            );
        }
    }

    /// Drops what is still kept for move `id` (the new node said nothing for too long).
    pub fn expire(&self, id: u64) {
        if let Some(m) = self.lock().remove(&id) {
            tracing::warn!(
                node = m.node,
                stanzas = m.receipts.len(),
                "cluster: no word on a moved session's stanzas: they are routed again"
            );
        }
    }

    /// Receipts kept, all moves together.
    pub fn len(&self) -> usize {
        self.lock().values().map(|m| m.receipts.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long after a move its receipts are kept at most, for a session that may wait
/// `resume_timeout` for its client on the new node (and move on from there).
pub fn keep_at_most(resume_timeout: Duration) -> Duration {
    resume_timeout * 2 + Duration::from_secs(60)
}

/// Receipts standing for those `held` names (B's side), one per place, in order: each
/// confirmed or dropped is told to the node keeping the real ones, through `tell`
/// (batched: what is settled together goes in one notice). The task sending the notices
/// ends when every receipt is gone.
pub fn receipts_for(
    held: &HeldReceipts,
    me: &str,
    tell: Arc<dyn Fn(ReceiptNotice) + Send + Sync>,
) -> Vec<Receipt> {
    let (confirmed_tx, mut confirmed) = mpsc::unbounded_channel::<u64>();
    let (returned_tx, mut returned) = mpsc::unbounded_channel::<u64>();
    let receipts = held
        .places
        .iter()
        .map(|place| {
            Receipt::returning(u64::from(*place), confirmed_tx.clone(), returned_tx.clone())
        })
        .collect();
    drop((confirmed_tx, returned_tx));
    let (id, from) = (held.id, me.to_string());
    tokio::spawn(async move {
        let (mut confirmed_open, mut returned_open) = (true, true);
        while confirmed_open || returned_open {
            let mut notice = ReceiptNotice {
                id,
                from: from.clone(),
                confirmed: Vec::new(),
                returned: Vec::new(),
            };
            // Wait for one, then take whatever else is ready.
            tokio::select! {
                p = confirmed.recv(), if confirmed_open => match p {
                    Some(p) => notice.confirmed.push(p as u32),
                    None => confirmed_open = false,
                },
                p = returned.recv(), if returned_open => match p {
                    Some(p) => notice.returned.push(p as u32),
                    None => returned_open = false,
                },
            }
            while let Ok(p) = confirmed.try_recv() {
                notice.confirmed.push(p as u32);
            }
            while let Ok(p) = returned.try_recv() {
                notice.returned.push(p as u32);
            }
            if !notice.confirmed.is_empty() || !notice.returned.is_empty() {
                tell(notice);
            }
        }
    });
    receipts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(
        id: u64,
    ) -> (
        Receipt,
        mpsc::UnboundedReceiver<u64>,
        mpsc::UnboundedReceiver<u64>,
    ) {
        let (c, cr) = mpsc::unbounded_channel();
        let (r, rr) = mpsc::unbounded_channel();
        (Receipt::returning(id, c, r), cr, rr)
    }

    #[test]
    fn kept_receipts_are_confirmed_or_returned_as_the_new_node_says_and_only_it() {
        let held = HeldMoves::default();
        let (r0, mut c0, mut ret0) = receipt(10);
        let (r2, mut c2, mut ret2) = receipt(12);
        let info = held.keep("n1", "n2", vec![(0, r0), (2, r2)]).unwrap();
        assert_eq!(info.node, "n1");
        assert_eq!(info.places, [0, 2]);
        assert_eq!(held.len(), 2);
        // Another node cannot settle them.
        held.apply(ReceiptNotice {
            id: info.id,
            from: "n3".into(),
            confirmed: vec![0],
            returned: vec![],
        });
        assert_eq!(held.len(), 2);
        held.apply(ReceiptNotice {
            id: info.id,
            from: "n2".into(),
            confirmed: vec![0],
            returned: vec![],
        });
        assert_eq!(c0.try_recv(), Ok(10));
        assert!(ret0.try_recv().is_err());
        held.apply(ReceiptNotice {
            id: info.id,
            from: "n2".into(),
            confirmed: vec![],
            returned: vec![2],
        });
        assert!(c2.try_recv().is_err());
        assert_eq!(ret2.try_recv(), Ok(12));
        assert!(held.is_empty());
        assert!(held.keep("n1", "n2", Vec::new()).is_none());
    }

    #[test]
    fn a_dead_nodes_moves_and_expired_ones_are_returned() {
        let held = HeldMoves::default();
        let (r, _c, mut ret) = receipt(1);
        held.keep("n1", "n2", vec![(0, r)]).unwrap();
        let (r, _c3, mut ret3) = receipt(3);
        let to_n3 = held.keep("n1", "n3", vec![(0, r)]).unwrap();
        held.forget_dead(&["n1".into(), "n3".into()]);
        assert_eq!(ret.try_recv(), Ok(1), "n2 is dead");
        assert!(ret3.try_recv().is_err(), "n3 is alive");
        held.expire(to_n3.id);
        assert_eq!(ret3.try_recv(), Ok(3));
        assert!(held.is_empty());
    }

    #[tokio::test]
    async fn standing_receipts_tell_the_keeping_node_in_batches_until_all_are_gone() {
        let told: Arc<Mutex<Vec<ReceiptNotice>>> = Arc::default();
        let held = HeldReceipts {
            node: "n1".into(),
            id: 7,
            places: vec![1, 4, 5],
        };
        let sink = told.clone();
        let mut receipts =
            receipts_for(&held, "n2", Arc::new(move |n| sink.lock().unwrap().push(n)));
        assert_eq!(receipts.len(), 3);
        let last = receipts.pop().unwrap();
        // Two confirmed together, then one dropped.
        for r in receipts {
            r.confirm();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while told
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.confirmed.len())
            .sum::<usize>()
            < 2
        {
            assert!(std::time::Instant::now() < deadline, "never told");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(last);
        while !told.lock().unwrap().iter().any(|n| n.returned == [5]) {
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped one never told"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let told = told.lock().unwrap();
        assert!(told.iter().all(|n| n.id == 7 && n.from == "n2"));
        let confirmed: Vec<u32> = told.iter().flat_map(|n| n.confirmed.clone()).collect();
        assert_eq!(confirmed, [1, 4]);
    }
}
