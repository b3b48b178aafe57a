//! XEP-0352 Client State Indication: while a client says it is inactive (a phone in a
//! pocket), what it need not see at once is held back so the radio can sleep, and sent
//! in one burst when it matters.
//!
//! Held: presence updates (only the latest per sender is kept: an older one says nothing
//! the newer does not), chat states, receipts, markers and other body-less messages.
//! Sent at once, after everything held before it, in order: messages with a body, call
//! proposals (XEP-0353), presence subscription requests and answers, errors and iq
//! stanzas (replies the client waits for). The buffer is bounded: past its limit it is
//! flushed, so a client inactive for hours costs bounded memory and loses nothing.

use std::collections::HashMap;

use crate::stanza;
use crate::xml::{Element, ns};

/// The namespace of the `<active/>` and `<inactive/>` nonzas and the stream feature.
pub const NS: &str = ns::CSI;
/// The feature name tenants switch CSI by.
pub const FEATURE: &str = "csi";

/// Stanzas held while inactive before the buffer is flushed anyway.
const MAX_HELD: usize = 500;
/// Bytes held (approximately) before the buffer is flushed anyway.
const MAX_HELD_BYTES: usize = 256 * 1024;

/// One session's CSI state and held stanzas.
#[derive(Debug, Default)]
pub struct CsiBuffer {
    inactive: bool,
    /// Held stanzas in arrival order; a presence superseded by a newer one from the same
    /// sender leaves a hole.
    held: Vec<Option<Element>>,
    /// Where the latest held presence of each sender is in `held`.
    presence_at: HashMap<String, usize>,
    bytes: usize,
}

impl CsiBuffer {
    /// The client said `<inactive/>`.
    pub fn set_inactive(&mut self) {
        self.inactive = true;
    }

    /// The client said `<active/>`: everything held, in order.
    pub fn set_active(&mut self) -> Vec<Element> {
        self.inactive = false;
        self.flush()
    }

    pub fn is_inactive(&self) -> bool {
        self.inactive
    }

    /// Stanzas held now.
    pub fn held(&self) -> usize {
        self.held.iter().filter(|s| s.is_some()).count()
    }

    /// Takes a stanza for the client: what to send now (nothing when it is held;
    /// everything held before it and then itself when it is important).
    pub fn push(&mut self, el: Element) -> Vec<Element> {
        if !self.inactive {
            return vec![el];
        }
        if is_important(&el) {
            let mut out = self.flush();
            out.push(el);
            return out;
        }
        self.bytes += el.approx_size();
        if el.name() == "presence"
            && let Some(from) = el.attr("from")
        {
            let from = from.to_string();
            if let Some(old) = self.presence_at.insert(from, self.held.len())
                && let Some(prev) = self.held[old].take()
            {
                self.bytes = self.bytes.saturating_sub(prev.approx_size());
            }
        }
        self.held.push(Some(el));
        if self.held.len() >= MAX_HELD || self.bytes >= MAX_HELD_BYTES {
            return self.flush();
        }
        Vec::new()
    }

    /// Everything held, in order (the buffer is left empty, the state unchanged).
    pub fn flush(&mut self) -> Vec<Element> {
        self.presence_at.clear();
        self.bytes = 0;
        std::mem::take(&mut self.held)
            .into_iter()
            .flatten()
            .collect()
    }
}

/// What an inactive client still gets at once.
fn is_important(el: &Element) -> bool {
    match el.name() {
        "message" => {
            stanza::stanza_type(el) == "error"
                || el.has_child("body", ns::CLIENT)
                || el.children().any(|c| c.ns() == ns::JINGLE_MESSAGE)
                // A carbon of a message with a body, or of a call message.
                || el
                    .children()
                    .filter(|c| c.ns() == ns::CARBONS)
                    .filter_map(|c| c.child("forwarded", ns::FORWARD))
                    .filter_map(|f| f.child("message", ns::CLIENT))
                    .any(is_important)
        }
        // Availability updates wait; subscription requests and answers, errors, probes do not.
        "presence" => !matches!(el.attr("type"), None | Some("unavailable")),
        // iq: a reply the client waits for, or a request it must answer.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(from: &str, show: &str) -> Element {
        Element::new("presence", ns::CLIENT)
            .with_attr("from", from)
            .with_child(Element::new("show", ns::CLIENT).with_text(show))
    }

    fn chat_state(from: &str) -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("from", from)
            .with_attr("type", "chat")
            .with_child(Element::new("composing", ns::CHAT_STATES))
    }

    fn body(from: &str, text: &str) -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("from", from)
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text(text))
    }

    fn shows(out: &[Element]) -> Vec<String> {
        out.iter()
            .map(|e| {
                e.child_text("show", ns::CLIENT)
                    .or_else(|| e.child_text("body", ns::CLIENT))
                    .unwrap_or_else(|| {
                        e.children()
                            .next()
                            .map(|c| c.name().to_string())
                            .unwrap_or_default()
                    })
            })
            .collect()
    }

    #[test]
    fn an_active_client_gets_everything_at_once() {
        let mut b = CsiBuffer::default();
        assert_eq!(b.push(presence("a@x/1", "away")).len(), 1);
        assert_eq!(b.push(chat_state("a@x/1")).len(), 1);
    }

    #[test]
    fn presence_and_chat_states_wait_and_only_the_latest_presence_per_sender_is_kept() {
        let mut b = CsiBuffer::default();
        b.set_inactive();
        assert!(b.push(presence("a@x/1", "away")).is_empty());
        assert!(b.push(presence("b@x/1", "dnd")).is_empty());
        assert!(b.push(chat_state("b@x/1")).is_empty());
        assert!(b.push(presence("a@x/1", "xa")).is_empty());
        assert_eq!(b.held(), 3);
        assert_eq!(shows(&b.set_active()), ["dnd", "composing", "xa"]);
        assert!(!b.is_inactive());
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn a_message_with_a_body_flushes_what_was_held_before_it_in_order() {
        let mut b = CsiBuffer::default();
        b.set_inactive();
        b.push(presence("a@x/1", "away"));
        b.push(chat_state("a@x/1"));
        let out = b.push(body("a@x/1", "hi"));
        assert_eq!(shows(&out), ["away", "composing", "hi"]);
        // Still inactive: the next presence waits again.
        assert!(b.push(presence("a@x/1", "dnd")).is_empty());
    }

    #[test]
    fn call_proposals_iqs_subscriptions_and_errors_go_at_once() {
        let propose = Element::new("message", ns::CLIENT)
            .with_child(Element::new("propose", ns::JINGLE_MESSAGE).with_attr("id", "c1"));
        let iq = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        let subscribe = Element::new("presence", ns::CLIENT)
            .with_attr("from", "a@x")
            .with_attr("type", "subscribe");
        let error = Element::new("message", ns::CLIENT).with_attr("type", "error");
        for el in [propose, iq, subscribe, error] {
            let mut b = CsiBuffer::default();
            b.set_inactive();
            b.push(presence("a@x/1", "away"));
            assert_eq!(b.push(el.clone()).len(), 2, "{}", el);
        }
    }

    #[test]
    fn a_carbon_of_a_message_with_a_body_is_important() {
        let carbon = Element::new("message", ns::CLIENT)
            .with_child(Element::new("received", ns::CARBONS).with_child(
                Element::new("forwarded", ns::FORWARD).with_child(body("a@x/1", "hi")),
            ));
        let mut b = CsiBuffer::default();
        b.set_inactive();
        assert_eq!(b.push(carbon).len(), 1);
    }

    #[test]
    fn the_buffer_is_bounded_and_flushes_rather_than_drops() {
        let mut b = CsiBuffer::default();
        b.set_inactive();
        let mut sent = 0;
        for i in 0..10 * MAX_HELD {
            sent += b.push(chat_state(&format!("u{i}@x/1"))).len();
            assert!(b.held() < MAX_HELD);
        }
        sent += b.flush().len();
        assert_eq!(sent, 10 * MAX_HELD, "nothing dropped");
    }

    #[test]
    fn toggling_costs_nothing_and_loses_nothing() {
        let mut b = CsiBuffer::default();
        let mut sent = 0;
        for i in 0..10_000 {
            b.set_inactive();
            sent += b.push(presence(&format!("u{}@x/1", i % 7), "away")).len();
            sent += b.set_active().len();
        }
        assert_eq!(sent, 10_000);
        assert_eq!(b.held(), 0);
    }
}
