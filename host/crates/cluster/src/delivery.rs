//! The receiving side of numbered messages: a message another node numbered is handed to
//! a session here with a returning receipt ([`crate::core::router::Receipt`]), and the
//! sending node hears the outcome — `delivered` once the client has it (stream
//! management acknowledged it, or without stream management the client answered the
//! ping after it), `returned` when the session ended before that (the sender routes its
//! copy again). Outcomes are gathered per sending node and sent in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::core::router::Receipt;
use crate::outbox::Outgoing;
use crate::wire::{Control, Direct};

/// Outcomes gathered into one control message at most.
const BATCH: usize = 512;

/// Messages from other nodes handed to sessions here and not settled yet.
pub struct Deliveries {
    /// By receipt id: the sending node and its number for the message.
    pending: Mutex<HashMap<u64, (Arc<str>, u64)>>,
    next: AtomicU64,
    confirmed: mpsc::UnboundedSender<u64>,
    returned: mpsc::UnboundedSender<u64>,
}

impl Deliveries {
    /// Starts the task that reports outcomes to the sending nodes, as node `me`.
    pub fn start(me: String, out: mpsc::Sender<Outgoing>) -> Arc<Deliveries> {
        let (confirmed, confirmed_rx) = mpsc::unbounded_channel();
        let (returned, returned_rx) = mpsc::unbounded_channel();
        let deliveries = Arc::new(Deliveries {
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            confirmed,
            returned,
        });
        tokio::spawn(report(
            Arc::downgrade(&deliveries),
            me,
            out,
            confirmed_rx,
            returned_rx,
        ));
        deliveries
    }

    /// A receipt for message `seq` of node `from`.
    pub fn receipt(&self, from: &str, seq: u64) -> Receipt {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (from.into(), seq));
        Receipt::returning(id, self.confirmed.clone(), self.returned.clone())
    }

    /// Messages handed to sessions here whose outcome is not known yet.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Arc<str>, u64)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the receipts `ids` out of the pending ones, grouped by sending node.
    fn settle(&self, ids: &[u64]) -> HashMap<Arc<str>, Vec<u64>> {
        let mut pending = self.lock();
        let mut by_node: HashMap<Arc<str>, Vec<u64>> = HashMap::new();
        for id in ids {
            if let Some((node, seq)) = pending.remove(id) {
                by_node.entry(node).or_default().push(seq);
            }
        }
        by_node
    }
}

/// Sends the outcomes as they come, each wake-up's worth (and what one turn of the
/// scheduler adds to it) in one message per node.
async fn report(
    deliveries: std::sync::Weak<Deliveries>,
    me: String,
    out: mpsc::Sender<Outgoing>,
    mut confirmed: mpsc::UnboundedReceiver<u64>,
    mut returned: mpsc::UnboundedReceiver<u64>,
) {
    let (mut delivered_ids, mut returned_ids) = (Vec::new(), Vec::new());
    loop {
        let (delivered, ids) = tokio::select! {
            n = confirmed.recv_many(&mut delivered_ids, BATCH) => (true, (n > 0).then_some(&mut delivered_ids)),
            n = returned.recv_many(&mut returned_ids, BATCH) => (false, (n > 0).then_some(&mut returned_ids)),
        };
        let (Some(ids), Some(deliveries)) = (ids, deliveries.upgrade()) else {
            return;
        };
        if delivered {
            // Let the sessions that are ready run once: the confirmations they give
            // meanwhile go in the same message (one per node and round, not per ping).
            tokio::task::yield_now().await;
            while ids.len() < BATCH {
                match confirmed.try_recv() {
                    Ok(id) => ids.push(id),
                    Err(_) => break,
                }
            }
        }
        let by_node = deliveries.settle(ids);
        ids.clear();
        for (node, seqs) in by_node {
            let node_name = me.clone();
            let msg = if delivered {
                Control::Delivered {
                    node: node_name,
                    seqs,
                }
            } else {
                Control::Returned {
                    node: node_name,
                    seqs,
                }
            };
            let item = Outgoing::Direct {
                node,
                msg: Direct::Control(msg),
            };
            if out.send(item).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn next_control(rx: &mut mpsc::Receiver<Outgoing>) -> (Arc<str>, Control) {
        let item = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an outcome in time")
            .expect("the reporter runs");
        match item {
            Outgoing::Direct {
                node,
                msg: Direct::Control(c),
            } => (node, c),
            _ => panic!("not a control message"),
        }
    }

    #[tokio::test]
    async fn a_confirmed_receipt_is_delivered_and_a_dropped_one_returned() {
        let (out, mut rx) = mpsc::channel(16);
        let d = Deliveries::start("n2".into(), out);
        let first = d.receipt("n1", 7);
        let second = d.receipt("n1", 8);
        assert_eq!(d.len(), 2);
        first.confirm();
        let (to, c) = next_control(&mut rx).await;
        assert_eq!(&*to, "n1");
        assert_eq!(
            c,
            Control::Delivered {
                node: "n2".into(),
                seqs: vec![7]
            }
        );
        drop(second);
        let (_, c) = next_control(&mut rx).await;
        assert_eq!(
            c,
            Control::Returned {
                node: "n2".into(),
                seqs: vec![8]
            }
        );
        assert!(d.is_empty());
    }
}
