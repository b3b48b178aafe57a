//! A per-tenant rate for plugin log output (issue 22, item 4). The per-call cap (64
//! lines) bounds one call, not a flood of calls: a tenant whose plugin logs on every call
//! under a login flood could fill the server's log, and the disk and the log pipeline
//! behind it, for everyone. Each tenant gets a token bucket of log lines; lines over it
//! are dropped, and a warning (at most one per [`WARN_EVERY`] per tenant) says how many.
//! The rate and the burst are `[plugins] log_lines_per_second` and `log_burst`
//! ([`LogLimit`]); a rate of 0 turns plugin log output off (every line dropped, no
//! warning).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default log lines per second a tenant's plugins may write, in the long run.
pub const DEFAULT_LINES_PER_SECOND: u32 = 100;
/// Default lines a tenant may write at once after a quiet time.
pub const DEFAULT_BURST: u32 = 500;
/// How often, at most, a tenant's dropped lines are reported.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why a log rate setting was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogLimitError {
    /// A positive rate with a bucket too small to ever write a line.
    #[error(
        "plugins.log_burst must be at least 1 when plugins.log_lines_per_second is above 0 \
         (0 lines a second turns plugin log output off)"
    )]
    NoBurst,
}

/// Each tenant's allowance of plugin log lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogLimit {
    /// Lines a second in the long run; 0: no plugin log output at all.
    per_second: f64,
    /// Lines at once after a quiet time.
    burst: f64,
}

impl LogLimit {
    /// `per_second` lines a second with bursts of `burst`; a rate of 0 is "off" (the burst
    /// is then ignored), a positive rate needs a burst of at least 1.
    pub fn new(per_second: u32, burst: u32) -> Result<LogLimit, LogLimitError> {
        if per_second > 0 && burst == 0 {
            return Err(LogLimitError::NoBurst);
        }
        Ok(LogLimit {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
        })
    }

    /// Plugin log output is off.
    pub fn is_off(&self) -> bool {
        self.per_second == 0.0
    }

    /// Lines a second in the long run.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit {
            per_second: f64::from(DEFAULT_LINES_PER_SECOND),
            burst: f64::from(DEFAULT_BURST),
        }
    }
}

/// The buckets, one per tenant, all with the same limit.
#[derive(Default)]
pub(crate) struct LogRates {
    limit: LogLimit,
    tenants: Mutex<HashMap<Arc<str>, Arc<LogRate>>>,
}

impl LogRates {
    pub(crate) fn new(limit: LogLimit) -> LogRates {
        LogRates {
            limit,
            tenants: Mutex::default(),
        }
    }

    /// `tenant`'s bucket.
    pub(crate) fn of(&self, tenant: &Arc<str>) -> Arc<LogRate> {
        let mut map = self.tenants.lock().unwrap();
        map.entry(tenant.clone())
            .or_insert_with(|| Arc::new(LogRate::new(self.limit, Instant::now())))
            .clone()
    }
}

/// One tenant's bucket of log lines.
pub(crate) struct LogRate {
    limit: LogLimit,
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
    fn new(limit: LogLimit, now: Instant) -> LogRate {
        LogRate {
            limit,
            state: Mutex::new(Bucket {
                tokens: limit.burst,
                at: now,
                dropped: 0,
                reported: None,
            }),
        }
    }

    /// The limit of this bucket.
    pub(crate) fn limit(&self) -> LogLimit {
        self.limit
    }

    /// Takes one line from the bucket at `now`.
    pub(crate) fn line(&self, now: Instant) -> Line {
        if self.limit.is_off() {
            return Line::Drop;
        }
        let mut b = self.state.lock().unwrap();
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
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

    const BURST: f64 = DEFAULT_BURST as f64;
    const LINES_PER_SECOND: f64 = DEFAULT_LINES_PER_SECOND as f64;

    #[test]
    fn a_burst_then_the_rate_with_one_report_per_interval() {
        let t0 = Instant::now();
        let rate = LogRate::new(LogLimit::default(), t0);
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

    #[test]
    fn a_configured_rate_and_burst_apply() {
        let t0 = Instant::now();
        let rates = LogRates::new(LogLimit::new(10, 20).unwrap());
        let rate = rates.of(&Arc::from("a"));
        let written = |at: Instant| (0..1000).filter(|_| rate.line(at) == Line::Write).count();
        assert_eq!(written(t0), 20);
        assert_eq!(written(t0 + Duration::from_millis(500)), 5);
        // Never more than the burst, however long the quiet time.
        assert_eq!(written(t0 + Duration::from_secs(3600)), 20);
    }

    #[test]
    fn a_rate_of_zero_is_no_output_and_no_warning() {
        let limit = LogLimit::new(0, 0).unwrap();
        assert!(limit.is_off());
        let rate = LogRate::new(limit, Instant::now());
        let t = Instant::now() + WARN_EVERY * 3;
        assert!((0..100).all(|_| rate.line(t) == Line::Drop));
    }

    #[test]
    fn a_positive_rate_needs_a_burst() {
        assert_eq!(LogLimit::new(10, 0), Err(LogLimitError::NoBurst));
        assert!(LogLimit::new(1, 1).is_ok());
    }
}
