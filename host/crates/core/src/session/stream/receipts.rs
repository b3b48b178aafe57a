//! Receipts of stanzas sent from storage to a client without stream management (offline
//! messages, and messages another cluster node keeps until its recipient has them). The
//! client reads in order, so its answer to a XEP-0199 ping sent after such stanzas shows
//! it read them, and their receipts are confirmed then. At a clean end every receipt of a
//! stanza written is confirmed; otherwise those the last answered ping did not cover are
//! dropped (the stanzas stay stored, or go back to their sender).
//!
//! One ping is out at a time, and pings are spaced [`SPACING`] apart: a session that
//! receives a steady flow of such stanzas would otherwise ping (and parse the answer) for
//! nearly every one. The first ping after a quiet spell goes at once. An iq request from
//! the client sends a waiting ping at once, before the request is answered, so a client
//! that waits for the answer to its own request has been sent every ping due before it.

use tokio::time::{Duration, Instant};

use crate::router::Receipt;
use crate::xml::Element;

/// The least time between two receipt pings of a session.
pub const SPACING: Duration = Duration::from_millis(50);

/// The receipts of one session (see the module docs).
#[derive(Default)]
pub struct Receipts {
    /// Receipts of stanzas sent, oldest first, with each stanza's fingerprint.
    pending: Vec<(u64, Receipt)>,
    /// The ping out (its id) and how many of `pending` it covers.
    out: Option<(String, usize)>,
    /// When the next ping goes: receipts wait that no ping covers.
    due: Option<Instant>,
    /// When the last ping went.
    last: Option<Instant>,
}

impl Receipts {
    /// Keeps the receipt of `stanza`, just sent. `true`: a ping should go now. `now`
    /// (the clock) is read only when no ping is out or waiting.
    pub fn push(
        &mut self,
        stanza: &Element,
        receipt: Receipt,
        now: impl FnOnce() -> Instant,
    ) -> bool {
        self.pending.push((fingerprint(stanza), receipt));
        self.out.is_none() && self.due.is_none() && self.schedule(now())
    }

    /// Sets when the next ping goes: now (`true`) unless one went less than
    /// [`SPACING`] before `now`.
    fn schedule(&mut self, now: Instant) -> bool {
        match self.last.map(|last| last + SPACING).filter(|at| *at > now) {
            Some(at) => {
                self.due = Some(at);
                false
            }
            None => true,
        }
    }

    /// A ping with `id` was sent at `now`: it covers every receipt kept so far.
    pub fn ping_sent(&mut self, id: String, now: Instant) {
        self.out = Some((id, self.pending.len()));
        self.due = None;
        self.last = Some(now);
    }

    /// No ping could be sent (the stream carries none now): none waits any more; the
    /// next receipt kept tries again.
    pub fn ping_unsent(&mut self) {
        self.due = None;
    }

    /// The client answered the ping `id`: if it is the one out, the receipts it covers
    /// are confirmed, and `Some(true)` says the next ping should go now (receipts wait
    /// and the spacing is over). `None`: not the receipt ping.
    pub fn answered(&mut self, id: Option<&str>, now: impl FnOnce() -> Instant) -> Option<bool> {
        let (_, covered) = self.out.take_if(|(out, _)| id == Some(out.as_str()))?;
        let covered = covered.min(self.pending.len());
        for (_, receipt) in self.pending.drain(..covered) {
            receipt.confirm();
        }
        Some(!self.pending.is_empty() && self.schedule(now()))
    }

    /// When a ping is to go, if one waits for the spacing.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// A ping waits (for the spacing, or for `now`: `due_by(now)`).
    pub fn waiting(&self) -> bool {
        self.due.is_some()
    }

    /// The waiting ping's time has come.
    pub fn due_by(&self, now: Instant) -> bool {
        self.due.is_some_and(|at| at <= now)
    }

    /// The end of the session: the receipts of the stanzas in `unsent` (never written)
    /// are dropped and those stanzas taken out (they stay stored, not routed again); the
    /// receipts of the others are confirmed if the session ended cleanly (`clean`),
    /// dropped otherwise.
    pub fn settle(&mut self, unsent: Vec<Element>, clean: bool) -> Vec<Element> {
        if self.pending.is_empty() {
            return unsent;
        }
        let mut pending = std::mem::take(&mut self.pending);
        self.out = None;
        self.due = None;
        let mut rest = Vec::with_capacity(unsent.len());
        for el in unsent {
            let print = fingerprint(&el);
            match pending.iter().position(|(p, _)| *p == print) {
                // Never written: its receipt goes unconfirmed.
                Some(at) => drop(pending.swap_remove(at)),
                None => rest.push(el),
            }
        }
        if clean {
            for (_, receipt) in pending {
                receipt.confirm();
            }
        }
        rest
    }
}

/// Tells a stanza from others in the rescue: a hash of its tree (names, namespaces,
/// attributes, text), taken without serializing it.
fn fingerprint(el: &Element) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::default().build_hasher();
    hash_tree(el, &mut h);
    h.finish()
}

fn hash_tree(el: &Element, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    el.name().hash(h);
    el.ns().hash(h);
    el.attrs().count().hash(h);
    for (name, value) in el.attrs() {
        name.hash(h);
        value.hash(h);
    }
    el.nodes().len().hash(h);
    for node in el.nodes() {
        match node {
            crate::xml::Node::Element(child) => {
                1u8.hash(h);
                hash_tree(child, h);
            }
            crate::xml::Node::Text(text) => {
                2u8.hash(h);
                text.hash(h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn stanza(body: &str) -> Element {
        Element::new("message", "jabber:client")
            .with_child(Element::new("body", "jabber:client").with_text(body))
    }

    /// A receipt whose confirmation shows as its number on the channel.
    fn receipt(n: u64, tx: &mpsc::UnboundedSender<u64>) -> Receipt {
        Receipt::new(n, tx.clone())
    }

    fn confirmed(rx: &mut mpsc::UnboundedReceiver<u64>) -> Vec<u64> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn the_first_ping_goes_at_once_and_the_next_after_the_spacing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let mut r = Receipts::default();
        assert!(
            r.push(&stanza("a"), receipt(1, &tx), || t0),
            "after a quiet spell"
        );
        r.ping_sent("p1".into(), t0);
        // Sent while the ping is out: covered by the next one.
        let never = || panic!("no clock read while a ping is out");
        assert!(!r.push(&stanza("b"), receipt(2, &tx), never));
        assert!(!r.push(&stanza("c"), receipt(3, &tx), never));
        assert_eq!(
            r.answered(Some("other"), never),
            None,
            "not the receipt ping"
        );
        let t1 = t0 + SPACING / 2;
        assert_eq!(r.answered(Some("p1"), || t1), Some(false), "too soon");
        assert_eq!(confirmed(&mut rx), vec![1]);
        assert_eq!(r.due(), Some(t0 + SPACING));
        assert!(r.waiting() && !r.due_by(t1));
        let t2 = t0 + SPACING;
        assert!(r.due_by(t2));
        r.ping_sent("p2".into(), t2);
        assert!(!r.waiting() && r.due().is_none());
        assert_eq!(r.answered(Some("p2"), || t2), Some(false), "nothing waits");
        assert_eq!(confirmed(&mut rx), vec![2, 3]);
        assert!(r.pending.is_empty() && !r.waiting());
        // Soon after: the next waits; a quiet spell later, it goes at once.
        assert!(!r.push(&stanza("d"), receipt(4, &tx), || t2 + SPACING / 2));
        assert_eq!(r.due(), Some(t2 + SPACING));
        let mut r = Receipts::default();
        r.push(&stanza("e"), receipt(5, &tx), || t0);
        r.ping_sent("p3".into(), t0);
        assert_eq!(r.answered(Some("p3"), || t0), Some(false));
        assert!(r.push(&stanza("f"), receipt(6, &tx), || t0 + SPACING));
    }

    #[test]
    fn an_answer_after_the_spacing_asks_for_the_next_ping_at_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let mut r = Receipts::default();
        assert!(r.push(&stanza("a"), receipt(1, &tx), || t0));
        r.ping_sent("p1".into(), t0);
        assert!(!r.push(&stanza("b"), receipt(2, &tx), || t0));
        assert_eq!(r.answered(Some("p1"), || t0 + SPACING * 2), Some(true));
        assert_eq!(confirmed(&mut rx), vec![1]);
        assert!(!r.waiting(), "it goes now, not later");
    }

    #[test]
    fn the_end_confirms_what_was_written_only_when_clean() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        for clean in [true, false] {
            let mut r = Receipts::default();
            r.push(&stanza("written"), receipt(1, &tx), || t0);
            r.ping_sent("p1".into(), t0);
            r.push(&stanza("unsent"), receipt(2, &tx), || t0);
            let rest = r.settle(vec![stanza("unsent"), stanza("other")], clean);
            assert_eq!(rest, vec![stanza("other")], "the unsent one stays stored");
            let expected: Vec<u64> = if clean { vec![1] } else { vec![] };
            assert_eq!(confirmed(&mut rx), expected, "clean: {clean}");
            assert!(r.pending.is_empty() && !r.waiting());
            assert_eq!(r.answered(Some("p1"), || t0), None, "the ping is forgotten");
        }
    }
}
