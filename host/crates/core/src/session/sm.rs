//! XEP-0198 stream management for one client stream: the counters (wrapping at 2^32), the
//! queue of stanzas the client has not acknowledged, and the protocol's elements. Pure
//! state; the client stream ([`super::StreamCore`]) drives it and the session driver
//! keeps a resumable session alive while its link is gone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::router::Receipt;
use crate::xml::{Element, ns};

/// `urn:xmpp:sm:3`
pub const NS: &str = "urn:xmpp:sm:3";

/// The client acknowledged more stanzas than the server sent (XEP-0198 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client acknowledged {h} stanzas, {sent} were sent")]
pub struct HandledTooHigh {
    pub h: u32,
    pub sent: u32,
}

/// The server's side of the bargain (`[c2s]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmLimits {
    /// Ask for an acknowledgement after this many stanzas (0: never unprompted).
    pub ack_request_interval: u32,
    /// Unacknowledged stanzas allowed: at this many the session sends the client nothing
    /// more until it acknowledges (its senders wait), and answers to the client's own
    /// requests may take it to twice as many before the stream ends.
    pub max_unacked: usize,
    /// How long a resumable session waits for its client.
    pub resume_timeout: Duration,
}

impl Default for SmLimits {
    fn default() -> Self {
        SmLimits {
            ack_request_interval: 5,
            max_unacked: 1000,
            resume_timeout: Duration::from_secs(300),
        }
    }
}

/// What sending a stanza calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Nothing more.
    Queued,
    /// Time to ask the client for an acknowledgement.
    AskAck,
    /// Far more stanzas are unacknowledged than allowed (see [`SmLimits::max_unacked`]):
    /// the stream must end.
    TooMany,
}

/// A stanza sent and not acknowledged yet.
#[derive(Debug)]
struct Unacked {
    /// Serialized (one allocation, far cheaper than keeping a copy of the element tree);
    /// read back only to resend or rescue it.
    stanza: Arc<str>,
    /// When it was first sent.
    at: SystemTime,
    /// For a stanza still held in storage: confirmed when the client acknowledges it.
    receipt: Option<Receipt>,
}

/// Stream management of one stream.
#[derive(Debug, Default)]
pub struct StreamManagement {
    limits: SmLimits,
    /// Stanzas handled from the client.
    handled: u32,
    /// The numbers (the count after each) of the client's stanzas handled but not safe
    /// yet (see `session::settle`), oldest first: what the server acknowledges stops
    /// before the first of them.
    unsettled: VecDeque<u32>,
    /// A request was answered with less than everything handled: an `<a/>` is owed when
    /// more is safe.
    ack_owed: bool,
    /// Stanzas sent to the client.
    sent: u32,
    /// Stanzas sent and not acknowledged, oldest first.
    unacked: VecDeque<Unacked>,
    /// Stanzas sent since the server last asked for an acknowledgement.
    since_request: u32,
    /// The server asked and the client has not answered yet: no new request until it
    /// does (a slow client is not flooded with `<r/>`).
    awaiting_ack: bool,
    /// The resumption id, when the client asked for resumption.
    resume_id: Option<String>,
}

/// True for the elements stream management counts: stanzas.
pub fn counts(el: &Element) -> bool {
    el.ns() == ns::CLIENT && matches!(el.name(), "message" | "presence" | "iq")
}

impl StreamManagement {
    /// Stream management enabled with these limits, resumable under `resume_id` if given.
    pub fn enabled(resume_id: Option<String>, limits: SmLimits) -> Self {
        StreamManagement {
            resume_id,
            limits,
            ..Default::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> SmLimits {
        self.limits
    }

    /// The resumption id, if the stream is resumable.
    pub fn resume_id(&self) -> Option<&str> {
        self.resume_id.as_deref()
    }

    /// Stanzas sent to the client so far.
    pub fn sent_count(&self) -> u32 {
        self.sent
    }

    /// Stanzas handled from the client so far, as far as they are safe (the server's
    /// `h`): up to the first stanza not settled yet.
    pub fn handled(&self) -> u32 {
        match self.unsettled.front() {
            Some(first) => first.wrapping_sub(1),
            None => self.handled,
        }
    }

    /// A stanza from the client was handled.
    pub fn on_handled(&mut self) {
        self.handled = self.handled.wrapping_add(1);
    }

    /// A stanza from the client was handled, but is not safe until settled
    /// ([`StreamManagement::on_settled`] with the number returned).
    pub fn on_handled_unsettled(&mut self) -> u32 {
        self.on_handled();
        self.unsettled.push_back(self.handled);
        self.handled
    }

    /// The answer to the client's `<r/>`; when it does not cover everything handled, an
    /// `<a/>` is owed once more is safe.
    pub fn answer_request(&mut self) -> Element {
        let h = self.handled();
        self.ack_owed = h != self.handled;
        ack(h)
    }

    /// Stanza `number` is safe: returns the `<a/>` owed if this moved the count on.
    pub fn on_settled(&mut self, number: u32) -> Option<Element> {
        let before = self.handled();
        let at = self.unsettled.iter().position(|n| *n == number)?;
        self.unsettled.remove(at);
        let now = self.handled();
        if !self.ack_owed || now == before {
            return None;
        }
        self.ack_owed = now != self.handled;
        Some(ack(now))
    }

    /// A stanza goes to the client at `at`: it is kept until acknowledged, as `xml` (the
    /// stanza serialized in a `jabber:client` stream's context; see [`serialize`]).
    pub fn on_sent(&mut self, xml: Arc<str>, at: SystemTime) -> Sent {
        self.sent = self.sent.wrapping_add(1);
        self.unacked.push_back(Unacked {
            stanza: xml,
            at,
            receipt: None,
        });
        if self.unacked.len() > self.limits.max_unacked.saturating_mul(2) {
            return Sent::TooMany;
        }
        self.since_request += 1;
        let interval = self.limits.ack_request_interval;
        let due = interval > 0 && self.since_request >= interval;
        if (due || self.at_bound()) && !self.awaiting_ack {
            self.since_request = 0;
            self.awaiting_ack = true;
            return Sent::AskAck;
        }
        Sent::Queued
    }

    /// The stanza just sent (see [`StreamManagement::on_sent`]) is still held in storage:
    /// `receipt` is confirmed when the client acknowledges it.
    pub fn hold_receipt(&mut self, receipt: Receipt) {
        if let Some(last) = self.unacked.back_mut() {
            last.receipt = Some(receipt);
        }
    }

    /// Stanzas sent and not acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// As many stanzas are unacknowledged as allowed: nothing more goes to the client
    /// until it acknowledges some.
    pub fn at_bound(&self) -> bool {
        self.unacked.len() >= self.limits.max_unacked
    }

    /// After an acknowledgement that left the session at its bound: true if a new
    /// request is to be sent (none is outstanding), which is then counted as sent.
    pub fn ask_again_at_bound(&mut self) -> bool {
        if self.at_bound() && !self.awaiting_ack {
            self.awaiting_ack = true;
            self.since_request = 0;
            return true;
        }
        false
    }

    /// The client's `h`: drops what it acknowledged. An `h` beyond what was sent is an
    /// error (the stream ends with `undefined-condition`); one behind an earlier `h` (an
    /// ack that crossed a newer one) changes nothing.
    pub fn on_ack(&mut self, h: u32) -> Result<(), HandledTooHigh> {
        let acked_before = self.sent.wrapping_sub(self.unacked.len() as u32);
        let newly = h.wrapping_sub(acked_before);
        if newly as usize > self.unacked.len() {
            if acked_before.wrapping_sub(h) < 1 << 31 {
                return Ok(());
            }
            return Err(HandledTooHigh { h, sent: self.sent });
        }
        for acked in self.unacked.drain(..newly as usize) {
            if let Some(receipt) = acked.receipt {
                receipt.confirm();
            }
        }
        self.awaiting_ack = false;
        Ok(())
    }

    /// Copies of the unacknowledged stanzas, in order, to send again on a resumed stream
    /// (they keep their numbers: the client counts them as it receives them).
    pub fn replay(&self) -> Vec<Element> {
        self.unacked
            .iter()
            .filter_map(|u| read_back(&u.stanza))
            .collect()
    }

    /// Stream management as another node left it (a session resumed across the cluster):
    /// `handled` and `sent` go on from there, and `unacked` (serialized, oldest first) are
    /// the last stanzas sent, kept until acknowledged.
    pub fn restored(
        resume_id: String,
        limits: SmLimits,
        handled: u32,
        sent: u32,
        unacked: Vec<Arc<str>>,
    ) -> Self {
        let at = SystemTime::now();
        StreamManagement {
            resume_id: Some(resume_id),
            limits,
            handled,
            sent,
            unacked: unacked
                .into_iter()
                .map(|stanza| Unacked {
                    stanza,
                    at,
                    receipt: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The unacknowledged stanzas as kept (serialized), in order, for a session moving to
    /// another node, which takes them over; with the receipts of those still held by
    /// someone (storage, another node), by place in the list. Whoever takes the receipts
    /// confirms them once the other node says the client has the stanzas.
    pub fn take_for_move(&mut self) -> (Vec<Arc<str>>, Vec<(u32, Receipt)>) {
        let mut receipts = Vec::new();
        let stanzas = self
            .unacked
            .drain(..)
            .enumerate()
            .map(|(place, u)| {
                if let Some(receipt) = u.receipt {
                    receipts.push((place as u32, receipt));
                }
                u.stanza
            })
            .collect();
        (stanzas, receipts)
    }

    /// Attaches `receipt` to the unacknowledged stanza at `place` (0: the oldest), for a
    /// session restored from another node that keeps the stanza's receipt there. False if
    /// there is no such stanza (the receipt is dropped).
    pub fn hold_receipt_at(&mut self, place: usize, receipt: Receipt) -> bool {
        match self.unacked.get_mut(place) {
            Some(u) => {
                u.receipt = Some(receipt);
                true
            }
            None => false,
        }
    }

    /// Like [`StreamManagement::replay`], with each stanza's kept bytes (written as they
    /// are, and not counted again).
    pub fn replay_kept(&self) -> Vec<(Element, Arc<str>)> {
        self.unacked
            .iter()
            .filter_map(|u| Some((read_back(&u.stanza)?, u.stanza.clone())))
            .collect()
    }

    /// Takes the unacknowledged stanzas (the session is over), with when each was sent.
    /// Those still held in storage are left out: they stay stored for the next session
    /// (their receipts are dropped unconfirmed).
    pub fn take_unacked(&mut self) -> Vec<(Element, SystemTime)> {
        self.unacked
            .drain(..)
            .filter(|u| u.receipt.is_none())
            .filter_map(|u| Some((read_back(&u.stanza)?, u.at)))
            .collect()
    }
}

/// A stanza as stream management keeps it: serialized once, in a `jabber:client` stream's
/// context; the link of such a stream writes these very bytes.
pub fn serialize(el: &Element) -> Arc<str> {
    // Written into a per-thread scratch buffer, then copied once into an allocation of
    // the exact size: no reallocation while the stanza grows, nothing wasted kept.
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        el.write_to(scratch, ns::CLIENT);
        let kept = Arc::from(scratch.as_str());
        if scratch.capacity() > SCRATCH_KEPT {
            *scratch = String::new();
        }
        kept
    })
}

/// Capacity of the serialization scratch buffer kept between stanzas.
const SCRATCH_KEPT: usize = 16 * 1024;

/// Parses a stanza this server serialized (trusted: no size or depth limit applies).
pub(crate) fn read_back(serialized: &str) -> Option<Element> {
    let limits = crate::xml::ParserLimits {
        max_stanza_bytes: usize::MAX,
        max_depth: usize::MAX,
    };
    match crate::xml::parser::parse_element(serialized.as_bytes(), ns::CLIENT, limits) {
        Ok(el) => Some(el),
        Err(e) => {
            tracing::error!(error = %e, "an unacknowledged stanza could not be read back");
            None
        }
    }
}

/// `<enabled/>`, with the resumption id and the longest time a resumption is kept.
pub fn enabled(resume_id: Option<&str>, max: Duration) -> Element {
    let el = Element::new("enabled", NS);
    match resume_id {
        Some(id) => el
            .with_attr("id", id)
            .with_attr("resume", "true")
            .with_attr("max", max.as_secs().to_string()),
        None => el,
    }
}

/// `<a h='…'/>`
pub fn ack(h: u32) -> Element {
    Element::new("a", NS).with_attr("h", h.to_string())
}

/// `<r/>`
pub fn request() -> Element {
    Element::new("r", NS)
}

/// `<resumed/>`
pub fn resumed(h: u32, previd: &str) -> Element {
    Element::new("resumed", NS)
        .with_attr("h", h.to_string())
        .with_attr("previd", previd)
}

/// `<failed/>` with a stanza error condition, and the `h` of the session when known.
pub fn failed(condition: &str, h: Option<u32>) -> Element {
    let mut el = Element::new("failed", NS).with_child(Element::new(condition, ns::STANZAS_ERRORS));
    if let Some(h) = h {
        el.set_attr("h", h.to_string());
    }
    el
}

/// The `<handled-count-too-high/>` child of the stream error (XEP-0198 §6).
pub fn too_high(e: HandledTooHigh) -> Element {
    Element::new("handled-count-too-high", NS)
        .with_attr("h", e.h.to_string())
        .with_attr("send-count", e.sent.to_string())
}

/// The `h` attribute of `<a/>` or `<resume/>`.
pub fn h_of(el: &Element) -> Option<u32> {
    el.attr("h")?.trim().parse().ok()
}

/// A fresh, unguessable resumption id.
pub fn new_resume_id() -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u32) -> Element {
        Element::new("message", ns::CLIENT).with_attr("id", i.to_string())
    }

    #[test]
    fn the_count_acknowledged_stops_before_the_first_stanza_not_settled() {
        let mut sm = StreamManagement::enabled(None, SmLimits::default());
        sm.on_handled();
        let second = sm.on_handled_unsettled();
        let third = sm.on_handled_unsettled();
        sm.on_handled();
        assert_eq!(sm.handled(), 1);
        assert_eq!(sm.answer_request().attr("h"), Some("1"));
        // The third settles first: nothing more is safe in order, nothing is owed yet.
        assert_eq!(sm.on_settled(third), None);
        let owed = sm.on_settled(second).expect("an <a/> is owed");
        assert_eq!(owed.attr("h"), Some("4"));
        assert_eq!(sm.handled(), 4);
        // Everything was acknowledged: a later settlement owes nothing.
        let fifth = sm.on_handled_unsettled();
        assert_eq!(sm.on_settled(fifth), None);
        assert_eq!(sm.answer_request().attr("h"), Some("5"));
    }

    #[test]
    fn acks_drop_what_they_cover_and_refuse_too_much() {
        let mut sm = StreamManagement::enabled(None, SmLimits::default());
        for i in 0..5 {
            sm.on_sent(serialize(&msg(i)), SystemTime::now());
        }
        sm.on_ack(2).unwrap();
        assert_eq!(sm.unacked(), 3);
        assert_eq!(sm.replay()[0].attr("id"), Some("2"));
        // An old h again, or an older one, changes nothing; h may not exceed what was sent.
        sm.on_ack(2).unwrap();
        sm.on_ack(1).unwrap();
        assert_eq!(sm.unacked(), 3);
        assert_eq!(sm.on_ack(6), Err(HandledTooHigh { h: 6, sent: 5 }));
        sm.on_ack(5).unwrap();
        assert_eq!(sm.unacked(), 0);
    }

    #[test]
    fn stored_stanzas_are_confirmed_by_acks_and_never_rescued() {
        let (tx, mut confirmed) = tokio::sync::mpsc::unbounded_channel();
        let mut sm = StreamManagement::enabled(None, SmLimits::default());
        for i in 0..4 {
            sm.on_sent(serialize(&msg(i)), SystemTime::now());
            if i % 2 == 0 {
                sm.hold_receipt(Receipt::new(u64::from(i), tx.clone()));
            }
        }
        sm.on_ack(1).unwrap();
        assert_eq!(confirmed.try_recv(), Ok(0));
        assert!(confirmed.try_recv().is_err(), "2 is not acknowledged yet");
        assert_eq!(sm.replay().len(), 3, "replayed all the same");
        // The session ends: 2 stays stored (no confirmation), 1 and 3 are rescued.
        let rescued: Vec<_> = sm.take_unacked().into_iter().map(|(el, _)| el).collect();
        let ids: Vec<_> = rescued.iter().map(|el| el.attr("id").unwrap()).collect();
        assert_eq!(ids, ["1", "3"]);
        drop(tx);
        assert_eq!(
            confirmed.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn a_moved_session_goes_on_counting_where_it_left_off() {
        let mut old = StreamManagement::enabled(Some("n1~x".into()), SmLimits::default());
        for i in 0..10 {
            old.on_sent(serialize(&msg(i)), SystemTime::now());
        }
        old.on_ack(7).unwrap();
        let (unacked, receipts) = old.take_for_move();
        assert_eq!(unacked.len(), 3);
        assert!(receipts.is_empty());
        let mut new = StreamManagement::restored(
            "n1~x".into(),
            SmLimits::default(),
            old.handled(),
            10,
            unacked,
        );
        let replay = new.replay_kept();
        assert_eq!(replay.len(), 3);
        assert_eq!(replay[0].0, msg(7));
        assert_eq!(&*replay[2].1, &*serialize(&msg(9)));
        new.on_ack(9).unwrap();
        assert_eq!(new.unacked(), 1);
        assert!(new.on_ack(11).is_err());
        new.on_sent(serialize(&msg(10)), SystemTime::now());
        new.on_ack(11).unwrap();
        assert_eq!(new.unacked(), 0);
    }

    #[test]
    fn receipts_move_with_their_stanzas_and_are_confirmed_by_the_new_sessions_acks() {
        let (tx, mut confirmed) = tokio::sync::mpsc::unbounded_channel();
        let mut old = StreamManagement::enabled(Some("n1~x".into()), SmLimits::default());
        for i in 0..6u64 {
            old.on_sent(serialize(&msg(i as u32)), SystemTime::now());
            if i % 2 == 1 {
                old.hold_receipt(Receipt::new(i, tx.clone()));
            }
        }
        old.on_ack(2).unwrap();
        assert_eq!(confirmed.try_recv(), Ok(1), "acknowledged before the move");
        // Moving confirms nothing: the receipts of 3 and 5 go along, by place.
        let (unacked, receipts) = old.take_for_move();
        assert!(confirmed.try_recv().is_err());
        let places: Vec<u32> = receipts.iter().map(|(p, _)| *p).collect();
        assert_eq!(places, [1, 3]);
        let mut new = StreamManagement::restored("n1~x".into(), SmLimits::default(), 0, 6, unacked);
        for (place, receipt) in receipts {
            assert!(new.hold_receipt_at(place as usize, receipt));
        }
        new.on_ack(4).unwrap();
        assert_eq!(confirmed.try_recv(), Ok(3));
        assert!(confirmed.try_recv().is_err(), "5 is not acknowledged yet");
        // The new session ends: 5 is left to its holder, not rescued.
        let rescued = new.take_unacked();
        assert_eq!(rescued.len(), 1, "4 only");
        assert!(!new.hold_receipt_at(0, Receipt::new(9, tx.clone())));
    }

    #[test]
    fn counters_wrap_at_two_to_the_32() {
        let mut sm = StreamManagement::enabled(None, SmLimits::default());
        sm.sent = u32::MAX - 1;
        sm.handled = u32::MAX;
        sm.on_handled();
        assert_eq!(sm.handled(), 0);
        for i in 0..4 {
            sm.on_sent(serialize(&msg(i)), SystemTime::now());
        }
        assert_eq!(sm.sent, 2, "wrapped");
        // The client's h wrapped too: 0 and 1 of the new round.
        sm.on_ack(u32::MAX).unwrap();
        assert_eq!(sm.unacked(), 3);
        assert_eq!(sm.replay()[0].attr("id"), Some("1"));
        sm.on_ack(1).unwrap();
        assert_eq!(sm.unacked(), 1);
        assert!(sm.on_ack(3).is_err());
        sm.on_ack(2).unwrap();
        assert_eq!(sm.unacked(), 0);
    }

    #[test]
    fn the_server_asks_for_acks_every_interval_and_bounds_the_queue() {
        let limits = SmLimits {
            ack_request_interval: 3,
            max_unacked: 8,
            ..SmLimits::default()
        };
        let mut sm = StreamManagement::enabled(None, limits);
        let mut asks: Vec<bool> = (0..3)
            .map(|i| sm.on_sent(serialize(&msg(i)), SystemTime::now()) == Sent::AskAck)
            .collect();
        // Answered: the next request comes after another interval.
        sm.on_ack(0).unwrap();
        asks.extend(
            (3..7).map(|i| sm.on_sent(serialize(&msg(i)), SystemTime::now()) == Sent::AskAck),
        );
        assert_eq!(asks, [false, false, true, false, false, true, false]);
        // Unanswered: no new request however many stanzas follow.
        assert_eq!(
            sm.on_sent(serialize(&msg(7)), SystemTime::now()),
            Sent::Queued
        );
        assert!(sm.at_bound(), "8 unacknowledged, 8 allowed");
        assert!(!sm.ask_again_at_bound(), "a request is outstanding");
        // Answers to the client's own requests may go past the bound, up to twice it.
        for i in 8..16 {
            assert_eq!(
                sm.on_sent(serialize(&msg(i)), SystemTime::now()),
                Sent::Queued
            );
        }
        assert_eq!(
            sm.on_sent(serialize(&msg(16)), SystemTime::now()),
            Sent::TooMany,
            "17 unacknowledged, 8 allowed"
        );
        // An acknowledgement that leaves the session at its bound asks again.
        sm.on_ack(2).unwrap();
        assert!(sm.at_bound());
        assert!(sm.ask_again_at_bound());
        assert!(!sm.ask_again_at_bound(), "once until answered");
        sm.on_ack(17).unwrap();
        assert!(!sm.at_bound());
        // Reaching the bound asks for an acknowledgement even between intervals.
        let mut bounded = StreamManagement::enabled(
            None,
            SmLimits {
                ack_request_interval: 0,
                max_unacked: 3,
                ..limits
            },
        );
        let asks: Vec<Sent> = (0..3)
            .map(|i| bounded.on_sent(serialize(&msg(i)), SystemTime::now()))
            .collect();
        assert_eq!(asks, [Sent::Queued, Sent::Queued, Sent::AskAck]);
        let mut quiet = StreamManagement::enabled(
            None,
            SmLimits {
                ack_request_interval: 0,
                ..limits
            },
        );
        assert!(
            (0..5).all(|i| quiet.on_sent(serialize(&msg(i)), SystemTime::now()) == Sent::Queued)
        );
    }
}
