//! A per-tenant rate for plugin log output (issue 22, item 4). The per-call cap (64
//! lines) bounds one call, not a flood of calls: a tenant whose plugin logs on every call
//! under a login flood could fill the server's log, and the disk and the log pipeline
//! behind it, for everyone. Each tenant gets a token bucket of log lines; lines over it
//! are dropped, and a warning (at most one per [`WARN_EVERY`] per tenant) says how many.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Log lines per second a tenant's plugins may write, in the long run.
pub(crate) const LINES_PER_SECOND: f64 = 100.0;
/// Lines a tenant may write at once after a quiet time.
pub(crate) const BURST: f64 = 500.0;
/// How often, at most, a tenant's dropped lines are reported.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The buckets, one per tenant.
#[derive(Default)]
pub(crate) struct LogRates {
    tenants: Mutex<HashMap<Arc<str>, Arc<LogRate>>>,
}

impl LogRates {
    /// `tenant`'s bucket.
    pub(crate) fn of(&self, tenant: &Arc<str>) -> Arc<LogRate> {
        let mut map = self.tenants.lock().unwrap();
        map.entry(tenant.clone())
            .or_insert_with(|| Arc::new(LogRate::new(Instant::now())))
            .clone()
    }
}

/// One tenant's bucket of log lines.
pub(crate) struct LogRate {
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Lines dropped since the last report.
    dropped: u64,
    reported: Option<Instant>,
}

/// What to do with one log line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    Write,
    /// Drop it, and report this many dropped lines (this one included) now.
    DropAndReport(u64),
    Drop,
}

impl LogRate {
    fn new(now: Instant) -> LogRate {
        LogRate {
            state: Mutex::new(Bucket {
                tokens: BURST,
                at: now,
                dropped: 0,
                reported: None,
            }),
        }
    }

    /// Takes one line from the bucket at `now`.
    pub(crate) fn line(&self, now: Instant) -> Line {
        let mut b = self.state.lock().unwrap();
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * LINES_PER_SECOND).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Line::Write;
        }
        b.dropped += 1;
        if b.reported
            .is_none_or(|at| now.saturating_duration_since(at) >= WARN_EVERY)
        {
            b.reported = Some(now);
            return Line::DropAndReport(std::mem::take(&mut b.dropped));
        }
        Line::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_with_one_report_per_interval() {
        let t0 = Instant::now();
        let rate = LogRate::new(t0);
        for _ in 0..BURST as usize {
            assert_eq!(rate.line(t0), Line::Write);
        }
        assert_eq!(rate.line(t0), Line::DropAndReport(1));
        for _ in 0..99 {
            assert_eq!(rate.line(t0), Line::Drop);
        }
        // A second later, a second's worth of lines again.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..LINES_PER_SECOND as usize {
            assert_eq!(rate.line(t1), Line::Write);
        }
        assert_eq!(rate.line(t1), Line::Drop);
        // The next report counts every line dropped since the last one.
        let t2 = t0 + WARN_EVERY;
        let mut written = 0;
        let mut report = None;
        for _ in 0..2000 {
            match rate.line(t2) {
                Line::Write => written += 1,
                Line::DropAndReport(n) => report = Some(n),
                Line::Drop => {}
            }
        }
        assert_eq!(written, BURST as usize);
        assert_eq!(report, Some(99 + 1 + 1));
    }

    #[test]
    fn tenants_have_buckets_of_their_own() {
        let rates = LogRates::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let now = Instant::now();
        let ra = rates.of(&a);
        while ra.line(now) == Line::Write {}
        assert_eq!(rates.of(&b).line(now), Line::Write);
        assert!(Arc::ptr_eq(&ra, &rates.of(&a)));
    }
}
