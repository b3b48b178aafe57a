//! The per-session stanza shaper: a token bucket. A session that exceeds its tenant's
//! stanza rate is slowed down (its reader waits for tokens) rather than losing data.

use std::time::{Duration, Instant};

/// A token bucket refilled continuously at `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `None` when `rate` is 0 (unlimited).
    pub fn new(rate: u32, burst: u32, now: Instant) -> Option<TokenBucket> {
        if rate == 0 {
            return None;
        }
        let burst = if burst == 0 {
            rate.saturating_mul(2)
        } else {
            burst
        }
        .max(1);
        Some(TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token. Returns how long the caller must wait before reading more (zero
    /// when a token was available). The token is taken either way (the debt is repaid by
    /// waiting), so the long-run rate never exceeds `rate`.
    pub fn take(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_is_none() {
        assert!(TokenBucket::new(0, 10, Instant::now()).is_none());
    }

    #[test]
    fn burst_then_paced() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0).unwrap();
        for _ in 0..5 {
            assert_eq!(b.take(t0), Duration::ZERO);
        }
        // Sixth stanza at the same instant: wait 1/10 s.
        let w = b.take(t0);
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-9, "{w:?}");
        // After waiting that long, the debt is repaid; the next one waits another 0.1 s.
        let w = b.take(t0 + Duration::from_millis(100));
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-9, "{w:?}");
        // A long pause refills up to the burst only.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..5 {
            assert_eq!(b.take(later), Duration::ZERO);
        }
        assert!(b.take(later) > Duration::ZERO);
    }

    #[test]
    fn sustained_rate_is_bounded() {
        // 1000 stanzas as fast as possible at 100/s with burst 10 need about 9.9 s of waiting.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0).unwrap();
        let mut now = t0;
        for _ in 0..1000 {
            now += b.take(now);
        }
        let secs = now.duration_since(t0).as_secs_f64();
        assert!((9.8..=10.0).contains(&secs), "{secs}");
    }
}
