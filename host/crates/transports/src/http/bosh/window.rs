//! The request-id window of one BOSH session (XEP-0124 §14): requests are processed in
//! `rid` order, early ones (inside the window) wait for the gap to fill, a repeated `rid`
//! gets its cached response again, anything else is refused. Also counts unanswered
//! requests for the overactivity rule (§11) and finds responses the client missed
//! (`report`/`time`, §9.2). Pure: time is passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Why a request is refused; every case terminates the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// `rid` at or beyond the end of the window, or an old `rid` whose response is no
    /// longer cached: `item-not-found`.
    #[error("rid {0} is outside the window")]
    OutOfWindow(u64),
    /// More simultaneous requests than `requests`: `policy-violation`.
    #[error("more than {0} simultaneous requests")]
    Overactive(u64),
}

/// A refused request, given back with the reason.
#[derive(Debug, PartialEq)]
pub struct Refused<T> {
    pub error: WindowError,
    pub item: T,
}

/// What to do with an accepted request.
#[derive(Debug, PartialEq)]
pub enum Offer<T> {
    /// These requests (the offered one and early ones it unblocked) are now in order:
    /// process them in this order.
    Ready(Vec<(u64, T)>),
    /// Early: kept until the gap before it is filled.
    Buffered,
    /// Already answered: send this cached response again (the request is given back).
    Retransmit(Bytes, T),
    /// Already processed and not yet answered: the new copy replaces the old one.
    Repeat(T),
}

#[derive(Debug)]
struct Cached {
    body: Bytes,
    sent: Instant,
}

/// The rid window. `T` is whatever the session keeps per request.
#[derive(Debug)]
pub struct RidWindow<T> {
    /// The next rid to process in order.
    next: u64,
    /// `requests` from the session creation response.
    size: u64,
    early: BTreeMap<u64, T>,
    /// Processed, not yet answered.
    open: BTreeSet<u64>,
    cache: BTreeMap<u64, Cached>,
}

impl<T> RidWindow<T> {
    /// A window after the session creation request `first_rid`, allowing `size`
    /// simultaneous requests.
    pub fn new(first_rid: u64, size: u64) -> Self {
        RidWindow {
            next: first_rid.saturating_add(1),
            size: size.max(1),
            early: BTreeMap::new(),
            open: BTreeSet::new(),
            cache: BTreeMap::new(),
        }
    }

    /// Highest rid processed in order.
    pub fn highest_in_order(&self) -> u64 {
        self.next - 1
    }

    /// Requests received and not answered (processed or early).
    pub fn unanswered(&self) -> usize {
        self.open.len() + self.early.len()
    }

    /// Offers request `rid`. `exempt` marks a pause or terminate request, which may be
    /// one more than `requests`.
    pub fn offer(&mut self, rid: u64, item: T, exempt: bool) -> Result<Offer<T>, Refused<T>> {
        if let Some(c) = self.cache.get(&rid) {
            return Ok(Offer::Retransmit(c.body.clone(), item));
        }
        if self.open.contains(&rid) {
            return Ok(Offer::Repeat(item));
        }
        if let Some(slot) = self.early.get_mut(&rid) {
            *slot = item;
            return Ok(Offer::Buffered);
        }
        if rid < self.next || rid >= self.next.saturating_add(self.size) {
            return Err(Refused {
                error: WindowError::OutOfWindow(rid),
                item,
            });
        }
        let limit = self.size + u64::from(exempt);
        if self.unanswered() as u64 + 1 > limit {
            return Err(Refused {
                error: WindowError::Overactive(self.size),
                item,
            });
        }
        if rid != self.next {
            self.early.insert(rid, item);
            return Ok(Offer::Buffered);
        }
        let mut ready = vec![(rid, item)];
        self.open.insert(rid);
        self.next += 1;
        while let Some(item) = self.early.remove(&self.next) {
            ready.push((self.next, item));
            self.open.insert(self.next);
            self.next += 1;
        }
        Ok(Offer::Ready(ready))
    }

    /// Records the response sent for `rid` so a repeat can get it again. Keeps the last
    /// `size` responses.
    pub fn responded(&mut self, rid: u64, body: Bytes, now: Instant) {
        self.open.remove(&rid);
        self.cache.insert(rid, Cached { body, sent: now });
        while self.cache.len() as u64 > self.size {
            self.cache.pop_first();
        }
    }

    /// The client acknowledged every response up to `ack`: cached responses up to it are
    /// no longer needed. If the response right after `ack` was sent more than `after` ago,
    /// the client has probably lost it: returns `(report, time_ms)` for §9.2.
    pub fn ack(&mut self, ack: u64, now: Instant, after: Duration) -> Option<(u64, u64)> {
        let missing = ack.checked_add(1)?;
        let report = self.cache.get(&missing).and_then(|c| {
            let age = now.saturating_duration_since(c.sent);
            (age >= after).then_some((missing, age.as_millis() as u64))
        });
        if report.is_none() {
            self.cache.retain(|rid, _| *rid > ack);
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(o: Offer<&'static str>) -> Vec<u64> {
        match o {
            Offer::Ready(v) => v.into_iter().map(|(r, _)| r).collect(),
            other => panic!("expected ready, got {other:?}"),
        }
    }

    #[test]
    fn in_order_requests_are_ready() {
        let mut w = RidWindow::new(100, 2);
        assert_eq!(ready(w.offer(101, "a", false).unwrap()), vec![101]);
        assert_eq!(w.highest_in_order(), 101);
        assert_eq!(w.unanswered(), 1);
    }

    #[test]
    fn early_request_waits_for_the_gap() {
        let mut w = RidWindow::new(100, 3);
        assert_eq!(w.offer(102, "b", false).unwrap(), Offer::Buffered);
        assert_eq!(w.highest_in_order(), 100);
        assert_eq!(ready(w.offer(101, "a", false).unwrap()), vec![101, 102]);
        assert_eq!(w.highest_in_order(), 102);
    }

    #[test]
    fn repeated_rid_gets_cached_response() {
        let mut w = RidWindow::new(100, 2);
        ready(w.offer(101, "a", false).unwrap());
        let now = Instant::now();
        w.responded(101, Bytes::from_static(b"<body/>"), now);
        assert_eq!(
            w.offer(101, "again", false).unwrap(),
            Offer::Retransmit(Bytes::from_static(b"<body/>"), "again")
        );
    }

    #[test]
    fn repeated_unanswered_rid_replaces() {
        let mut w = RidWindow::new(100, 2);
        ready(w.offer(101, "a", false).unwrap());
        assert_eq!(w.offer(101, "b", false).unwrap(), Offer::Repeat("b"));
        assert_eq!(w.unanswered(), 1);
    }

    #[test]
    fn out_of_window_and_uncached_are_refused() {
        let mut w = RidWindow::new(100, 2);
        assert_eq!(
            w.offer(103, "x", false).unwrap_err().error,
            WindowError::OutOfWindow(103)
        );
        // The creation request's own rid and older ones are not cached here.
        assert_eq!(
            w.offer(99, "x", false).unwrap_err().error,
            WindowError::OutOfWindow(99)
        );
        // A response pushed out of the cache can no longer be resent.
        let now = Instant::now();
        for rid in 101..=104 {
            ready(w.offer(rid, "a", false).unwrap());
            w.responded(rid, Bytes::from(format!("{rid}")), now);
        }
        assert_eq!(
            w.offer(102, "x", false).unwrap_err().error,
            WindowError::OutOfWindow(102)
        );
        assert!(matches!(
            w.offer(103, "x", false).unwrap(),
            Offer::Retransmit(..)
        ));
    }

    #[test]
    fn overactive_beyond_requests_unless_pause_or_terminate() {
        let mut w = RidWindow::new(100, 2);
        ready(w.offer(101, "a", false).unwrap());
        ready(w.offer(102, "b", false).unwrap());
        // Two unanswered: a third simultaneous one is too many...
        assert_eq!(
            w.offer(103, "c", false).unwrap_err().error,
            WindowError::Overactive(2)
        );
        // ...unless it pauses or terminates,
        assert_eq!(ready(w.offer(103, "t", true).unwrap()), vec![103]);
        // and once one is answered there is room again.
        let mut w = RidWindow::new(100, 2);
        ready(w.offer(101, "a", false).unwrap());
        ready(w.offer(102, "b", false).unwrap());
        w.responded(101, Bytes::new(), Instant::now());
        assert_eq!(ready(w.offer(103, "c", false).unwrap()), vec![103]);
    }

    #[test]
    fn ack_reports_a_lost_response() {
        let mut w = RidWindow::new(100, 2);
        let t0 = Instant::now();
        ready(w.offer(101, "a", false).unwrap());
        w.responded(101, Bytes::from_static(b"r101"), t0);
        ready(w.offer(102, "b", false).unwrap());
        // Soon after: no report yet (the response may be in flight).
        assert_eq!(
            w.ack(100, t0 + Duration::from_millis(100), Duration::from_secs(1)),
            None
        );
        // Much later, the client still acknowledges only 100: 101 was lost.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(w.ack(100, later, Duration::from_secs(1)), Some((101, 3000)));
        // The client can fetch it again.
        assert_eq!(
            w.offer(101, "a", false).unwrap(),
            Offer::Retransmit(Bytes::from_static(b"r101"), "a")
        );
        // Once acknowledged, it is dropped from the cache.
        assert_eq!(w.ack(101, later, Duration::from_secs(1)), None);
        assert_eq!(
            w.offer(101, "a", false).unwrap_err().error,
            WindowError::OutOfWindow(101)
        );
    }
}
