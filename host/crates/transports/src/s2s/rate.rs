//! The per-peer stanza rate (`[s2s] rate`, `burst`): one token bucket per remote domain,
//! shared by every incoming stream from it. A peer over its rate is not cut off and
//! loses nothing: the stream that carried the stanza waits before reading the next one,
//! so TCP flow control slows the peer down.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use heliograph_tenants::rate::TokenBucket;

/// The buckets of the remote domains that sent stanzas (see the module docs).
#[derive(Default)]
pub struct PeerRates {
    buckets: DashMap<String, Limited>,
}

/// A domain's bucket and the settings it was made with (a changed configuration makes a
/// new one).
struct Limited {
    rate: u32,
    burst: u32,
    bucket: TokenBucket,
}

impl PeerRates {
    /// Takes a token for one stanza from `domain`; returns how long its stream must
    /// wait before reading on (zero within the rate, always zero when `rate` is 0).
    pub fn take(&self, domain: &str, rate: u32, burst: u32) -> Duration {
        let now = Instant::now();
        if rate == 0 {
            self.buckets.remove(domain);
            return Duration::ZERO;
        }
        let mut entry = self
            .buckets
            .entry(domain.to_string())
            .or_insert_with(|| Limited::new(rate, burst, now));
        if entry.rate != rate || entry.burst != burst {
            *entry = Limited::new(rate, burst, now);
        }
        entry.bucket.take(now)
    }
}

impl Limited {
    fn new(rate: u32, burst: u32, now: Instant) -> Limited {
        Limited {
            rate,
            burst,
            bucket: TokenBucket::new(rate, burst, now).expect("rate is not 0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let rates = PeerRates::default();
        for _ in 0..1000 {
            assert_eq!(rates.take("a.example", 0, 0), Duration::ZERO);
        }
    }

    #[test]
    fn a_domain_over_its_burst_waits_and_others_do_not() {
        let rates = PeerRates::default();
        for _ in 0..5 {
            assert_eq!(rates.take("a.example", 10, 5), Duration::ZERO);
        }
        assert!(rates.take("a.example", 10, 5) > Duration::ZERO);
        assert_eq!(rates.take("b.example", 10, 5), Duration::ZERO);
    }

    #[test]
    fn a_changed_rate_starts_a_new_bucket() {
        let rates = PeerRates::default();
        for _ in 0..5 {
            rates.take("a.example", 10, 5);
        }
        assert!(rates.take("a.example", 10, 5) > Duration::ZERO);
        assert_eq!(rates.take("a.example", 100, 50), Duration::ZERO);
    }
}
