//! Per-slot counters and latency: calls, successes, denials, failures by cause, and a
//! log-scale latency histogram (4 buckets per power of two of microseconds, so a
//! percentile is within 19% of the true value). Lock-free: every field is an atomic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::error::FailureCause;

const SUB_BUCKETS: u64 = 4;
const BUCKETS: usize = 4 * 40;

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    ok: AtomicU64,
    denied: AtomicU64,
    failed: [AtomicU64; FailureCause::ALL.len()],
    total_ns: AtomicU64,
    max_ns: AtomicU64,
    memory_max: AtomicU64,
    reused: AtomicU64,
}

pub(crate) struct SlotStats {
    counters: Counters,
    histogram: Box<[AtomicU64]>,
}

/// A snapshot of one slot's figures (the admin API shows these).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginStats {
    pub tenant: String,
    pub slot: String,
    /// The version serving calls now.
    pub active_version: u32,
    pub calls: u64,
    /// Calls that authenticated a user.
    pub succeeded: u64,
    /// Calls the plugin answered with a denial (not-authorized, disabled, temporary).
    pub denied: u64,
    /// Calls that failed, by cause (`trap`, `timeout`, `memory`, `invalid-result`, ...).
    pub failed: BTreeMap<&'static str, u64>,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// The most linear memory an instance of this slot had at the end of a call, in
    /// bytes (its memory image plus what it grew; with copy-on-write images most of the
    /// image is shared, not resident per instance).
    pub memory_max_bytes: u64,
    /// Calls served by an instance that had served an earlier call (instance reuse).
    pub reused_instance_calls: u64,
}

/// How a call ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Ok,
    Denied,
    Failed(FailureCause),
}

impl Default for SlotStats {
    fn default() -> Self {
        SlotStats {
            counters: Counters::default(),
            histogram: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB_BUCKETS {
        return us as usize;
    }
    let log = 63 - us.leading_zeros() as u64; // >= 2
    let sub = (us >> (log - 2)) & (SUB_BUCKETS - 1);
    (((log - 1) * SUB_BUCKETS + sub) as usize).min(BUCKETS - 1)
}

/// The upper bound (µs) of bucket `i`.
fn bucket_upper(i: usize) -> f64 {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return (i + 1) as f64;
    }
    let log = i / SUB_BUCKETS + 1;
    let sub = i % SUB_BUCKETS;
    ((SUB_BUCKETS + sub + 1) << (log - 2)) as f64
}

impl SlotStats {
    pub(crate) fn record(&self, outcome: Outcome, elapsed: Duration) {
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ok => c.ok.fetch_add(1, Ordering::Relaxed),
            Outcome::Denied => c.denied.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed(cause) => c.failed[cause.index()].fetch_add(1, Ordering::Relaxed),
        };
        let ns = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        c.total_ns.fetch_add(ns, Ordering::Relaxed);
        c.max_ns.fetch_max(ns, Ordering::Relaxed);
        self.histogram[bucket_of(ns / 1000)].fetch_add(1, Ordering::Relaxed);
    }

    /// Notes an instance's linear memory at the end of a call.
    pub(crate) fn record_reused(&self) {
        self.counters.reused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_memory(&self, bytes: u64) {
        self.counters.memory_max.fetch_max(bytes, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, tenant: &str, slot: &str, active_version: u32) -> PluginStats {
        let c = &self.counters;
        let calls = c.calls.load(Ordering::Relaxed);
        let counts: Vec<u64> = self
            .histogram
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let percentile = |p: f64| -> f64 {
            if total == 0 {
                return 0.0;
            }
            let rank = ((p * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bucket_upper(i);
                }
            }
            bucket_upper(BUCKETS - 1)
        };
        PluginStats {
            tenant: tenant.to_string(),
            slot: slot.to_string(),
            active_version,
            calls,
            succeeded: c.ok.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            failed: FailureCause::ALL
                .iter()
                .map(|cause| {
                    (
                        cause.as_str(),
                        c.failed[cause.index()].load(Ordering::Relaxed),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            mean_us: if calls == 0 {
                0.0
            } else {
                c.total_ns.load(Ordering::Relaxed) as f64 / calls as f64 / 1000.0
            },
            p50_us: percentile(0.50),
            p99_us: percentile(0.99),
            max_us: c.max_ns.load(Ordering::Relaxed) as f64 / 1000.0,
            memory_max_bytes: c.memory_max.load(Ordering::Relaxed),
            reused_instance_calls: c.reused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let b = bucket_of(us);
            assert!(b >= last, "bucket order at {us}");
            last = b;
            assert!(bucket_upper(b) >= us as f64, "{us} above bucket {b} bound");
            assert!(
                bucket_upper(b) <= (us as f64 + 1.0) * 1.25 + 1.0,
                "{us} bucket too wide"
            );
        }
    }

    #[test]
    fn percentiles_and_causes() {
        let s = SlotStats::default();
        for _ in 0..98 {
            s.record(Outcome::Ok, Duration::from_micros(40));
        }
        s.record(Outcome::Denied, Duration::from_micros(45));
        s.record(
            Outcome::Failed(FailureCause::Timeout),
            Duration::from_millis(50),
        );
        let snap = s.snapshot("t", "auth", 1);
        assert_eq!(snap.calls, 100);
        assert_eq!(snap.succeeded, 98);
        assert_eq!(snap.denied, 1);
        assert_eq!(snap.failed.get("timeout"), Some(&1));
        assert!(snap.p50_us >= 40.0 && snap.p50_us <= 48.0, "{snap:?}");
        assert!(snap.p99_us >= 45.0 && snap.p99_us <= 56.0, "{snap:?}");
        assert!(snap.max_us >= 50_000.0);
    }
}
