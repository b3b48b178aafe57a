//! How often a BOSH client may ask, and how long it may stay away: the polling rule
//! (XEP-0124 §12: two empty requests closer than `polling` when the first got nothing
//! back), the inactivity limit (§7, counted while the server holds no request) and
//! `pause` (§10, a longer inactivity limit until the next request). Pure: time is
//! passed in.

use std::time::{Duration, Instant};

/// A pacing rule the client broke; each terminates the session with `policy-violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacingError {
    #[error("empty requests more often than every {0:?}")]
    Polling(Duration),
    #[error("pause of {0}s is longer than maxpause")]
    PauseTooLong(u64),
}

/// Pacing state of one session.
#[derive(Debug)]
pub struct Pacing {
    polling: Duration,
    inactivity: Duration,
    max_pause: Duration,
    /// The previous new request, if it was empty: its rid, arrival and whether its
    /// response carried payloads.
    last_empty: Option<(u64, Instant, bool)>,
    /// Since when the server holds no request of this session.
    idle_since: Option<Instant>,
    /// A client-requested pause in force.
    pause: Option<Duration>,
}

impl Pacing {
    pub fn new(polling: Duration, inactivity: Duration, max_pause: Duration, now: Instant) -> Self {
        Pacing {
            polling,
            inactivity,
            max_pause,
            last_empty: None,
            idle_since: Some(now),
            pause: None,
        }
    }

    /// A new request `rid` arrived; `empty` means no payload and no restart, pause or
    /// terminate.
    pub fn on_request(&mut self, rid: u64, empty: bool, now: Instant) -> Result<(), PacingError> {
        self.pause = None;
        if !empty {
            self.last_empty = None;
            return Ok(());
        }
        if let Some((_, at, got_payload)) = self.last_empty
            && !got_payload
            && now.saturating_duration_since(at) < self.polling
        {
            return Err(PacingError::Polling(self.polling));
        }
        self.last_empty = Some((rid, now, false));
        Ok(())
    }

    /// The response to `rid` was sent.
    pub fn on_response(&mut self, rid: u64, had_payload: bool) {
        if let Some((r, _, got)) = &mut self.last_empty
            && *r == rid
        {
            *got |= had_payload;
        }
    }

    /// The client asks for a pause of `secs` seconds.
    pub fn pause(&mut self, secs: u64) -> Result<(), PacingError> {
        if Duration::from_secs(secs) > self.max_pause {
            return Err(PacingError::PauseTooLong(secs));
        }
        self.pause = Some(Duration::from_secs(secs));
        Ok(())
    }

    /// Whether the server holds requests now (`held > 0`); inactivity counts from the
    /// moment the last one was answered.
    pub fn set_held(&mut self, held: usize, now: Instant) {
        if held > 0 {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    /// When the session expires if nothing arrives, `None` while a request is held.
    pub fn expires_at(&self) -> Option<Instant> {
        self.idle_since
            .map(|t| t + self.pause.unwrap_or(self.inactivity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(t0: Instant) -> Pacing {
        Pacing::new(
            Duration::from_secs(2),
            Duration::from_secs(30),
            Duration::from_secs(120),
            t0,
        )
    }

    #[test]
    fn two_quick_empty_requests_without_payload_violate_polling() {
        let t0 = Instant::now();
        let mut p = pacing(t0);
        p.on_request(10, true, t0).unwrap();
        p.on_response(10, false);
        assert_eq!(
            p.on_request(11, true, t0 + Duration::from_millis(500)),
            Err(PacingError::Polling(Duration::from_secs(2)))
        );
    }

    #[test]
    fn empty_requests_are_fine_when_spaced_or_answered_with_data() {
        let t0 = Instant::now();
        let mut p = pacing(t0);
        p.on_request(10, true, t0).unwrap();
        p.on_response(10, false);
        p.on_request(11, true, t0 + Duration::from_secs(3)).unwrap();
        // The response carried a stanza: asking again at once is expected.
        p.on_response(11, true);
        p.on_request(12, true, t0 + Duration::from_millis(3100))
            .unwrap();
        // A request with payload in between resets the rule.
        p.on_response(12, false);
        p.on_request(13, false, t0 + Duration::from_millis(3200))
            .unwrap();
        p.on_request(14, true, t0 + Duration::from_millis(3300))
            .unwrap();
    }

    #[test]
    fn inactivity_counts_only_while_nothing_is_held() {
        let t0 = Instant::now();
        let mut p = pacing(t0);
        assert_eq!(p.expires_at(), Some(t0 + Duration::from_secs(30)));
        p.set_held(1, t0 + Duration::from_secs(5));
        assert_eq!(p.expires_at(), None);
        let t1 = t0 + Duration::from_secs(50);
        p.set_held(0, t1);
        assert_eq!(p.expires_at(), Some(t1 + Duration::from_secs(30)));
        // Staying idle does not move the deadline.
        p.set_held(0, t1 + Duration::from_secs(10));
        assert_eq!(p.expires_at(), Some(t1 + Duration::from_secs(30)));
    }

    #[test]
    fn pause_extends_inactivity_until_the_next_request() {
        let t0 = Instant::now();
        let mut p = pacing(t0);
        assert_eq!(p.pause(500), Err(PacingError::PauseTooLong(500)));
        p.pause(90).unwrap();
        p.set_held(0, t0);
        assert_eq!(p.expires_at(), Some(t0 + Duration::from_secs(90)));
        let t1 = t0 + Duration::from_secs(60);
        p.on_request(20, false, t1).unwrap();
        p.set_held(1, t1);
        p.set_held(0, t1);
        assert_eq!(p.expires_at(), Some(t1 + Duration::from_secs(30)));
    }
}
