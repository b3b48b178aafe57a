//! Discussion history (XEP-0045 §7.2.15): the last messages of a room, bounded in
//! number, sent to new occupants with XEP-0203 delay stamps, limited by what the joiner
//! asks for (`maxchars`, `maxstanzas`, `seconds`, `since`).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::ns::MUC;
use crate::time::xep82;
use crate::xml::{Element, ns};

/// One stored message: as broadcast (`from` = occupant JID, no `to`).
#[derive(Debug, Clone)]
struct Entry {
    stanza: Element,
    stamp: SystemTime,
    /// Characters of the serialized stanza, for `maxchars`.
    chars: usize,
}

/// A room's history, oldest first, at most `capacity` messages.
#[derive(Debug, Clone, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    capacity: usize,
}

/// What a joiner asked for in `<history/>`; `None` fields are not limited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    pub maxchars: Option<usize>,
    pub maxstanzas: Option<usize>,
    pub seconds: Option<u64>,
    pub since: Option<SystemTime>,
}

impl HistoryRequest {
    /// Reads `<history/>` from a join's `<x xmlns='…muc'/>` (absent: no limit). Values
    /// that do not parse are ignored.
    pub fn parse(muc_x: Option<&Element>) -> HistoryRequest {
        let Some(h) = muc_x.and_then(|x| x.child("history", MUC)) else {
            return HistoryRequest::default();
        };
        let num = |name: &str| h.attr(name).and_then(|v| v.trim().parse::<u64>().ok());
        HistoryRequest {
            maxchars: num("maxchars").map(|n| n as usize),
            maxstanzas: num("maxstanzas").map(|n| n as usize),
            seconds: num("seconds"),
            since: h
                .attr("since")
                .and_then(|s| humantime::parse_rfc3339_weak(s.trim()).ok()),
        }
    }
}

impl History {
    pub fn new(capacity: usize) -> History {
        History {
            entries: VecDeque::new(),
            capacity,
        }
    }

    /// Changes the bound, dropping the oldest messages if needed.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.entries.len() > capacity {
            self.entries.pop_front();
        }
    }

    /// Records a broadcast message.
    pub fn push(&mut self, stanza: &Element, stamp: SystemTime) {
        if self.capacity == 0 {
            return;
        }
        let mut stanza = stanza.clone();
        stanza.remove_attr("to");
        let chars = stanza.to_string_in(ns::CLIENT).chars().count();
        self.entries.push_back(Entry {
            stanza,
            stamp,
            chars,
        });
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The messages to send a joiner at `now`, oldest first, addressed to `to` and
    /// stamped with a delay from `room`.
    pub fn replay(
        &self,
        req: &HistoryRequest,
        now: SystemTime,
        room: &str,
        to: &str,
    ) -> Vec<Element> {
        let oldest = req.seconds.map(|s| {
            now.checked_sub(Duration::from_secs(s))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        });
        let mut picked = Vec::new();
        let mut chars = 0usize;
        for e in self.entries.iter().rev() {
            if req.maxstanzas.is_some_and(|m| picked.len() >= m)
                || oldest.is_some_and(|o| e.stamp < o)
                || req.since.is_some_and(|s| e.stamp < s)
            {
                break;
            }
            if let Some(max) = req.maxchars {
                if chars + e.chars > max {
                    break;
                }
                chars += e.chars;
            }
            picked.push(e);
        }
        picked
            .into_iter()
            .rev()
            .map(|e| {
                let mut s = e.stanza.clone();
                s.set_attr("to", to);
                s.push_child(
                    Element::new("delay", ns::DELAY)
                        .with_attr("from", room)
                        .with_attr("stamp", xep82(e.stamp)),
                );
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("from", "r@c.test/nick")
            .with_child(Element::new("body", ns::CLIENT).with_text(format!("m{n}")))
    }

    fn bodies(v: &[Element]) -> Vec<String> {
        v.iter()
            .map(|m| m.child_text("body", ns::CLIENT).unwrap())
            .collect()
    }

    #[test]
    fn bounded_and_filtered() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = History::new(5);
        for n in 0..8 {
            h.push(&msg(n), t0 + Duration::from_secs(n as u64 * 10));
        }
        assert_eq!(h.len(), 5);
        let now = t0 + Duration::from_secs(80);
        let all = h.replay(&HistoryRequest::default(), now, "r@c.test", "u@a/x");
        assert_eq!(bodies(&all), ["m3", "m4", "m5", "m6", "m7"]);
        let d = all[0].child("delay", ns::DELAY).unwrap();
        assert_eq!(d.attr("from"), Some("r@c.test"));
        assert_eq!(d.attr("stamp"), Some("1970-01-12T13:47:10Z"));
        assert_eq!(all[0].attr("to"), Some("u@a/x"));

        let two = HistoryRequest {
            maxstanzas: Some(2),
            ..Default::default()
        };
        assert_eq!(bodies(&h.replay(&two, now, "r", "u")), ["m6", "m7"]);
        let none = HistoryRequest {
            maxchars: Some(0),
            ..Default::default()
        };
        assert!(h.replay(&none, now, "r", "u").is_empty());
        let recent = HistoryRequest {
            seconds: Some(25),
            ..Default::default()
        };
        assert_eq!(bodies(&h.replay(&recent, now, "r", "u")), ["m6", "m7"]);
        let since = HistoryRequest {
            since: Some(t0 + Duration::from_secs(50)),
            ..Default::default()
        };
        assert_eq!(bodies(&h.replay(&since, now, "r", "u")), ["m5", "m6", "m7"]);
        h.set_capacity(1);
        assert_eq!(
            bodies(&h.replay(&HistoryRequest::default(), now, "r", "u")),
            ["m7"]
        );
    }

    #[test]
    fn parses_the_history_element() {
        let x = Element::new("x", MUC).with_child(
            Element::new("history", MUC)
                .with_attr("maxstanzas", "3")
                .with_attr("maxchars", "bogus")
                .with_attr("since", "1970-01-12T13:47:10Z"),
        );
        let r = HistoryRequest::parse(Some(&x));
        assert_eq!(r.maxstanzas, Some(3));
        assert_eq!(r.maxchars, None);
        assert_eq!(
            r.since,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + 30))
        );
    }
}
