//! Instance reuse: when an instance may serve more than one call, and the bounded set of
//! idle instances waiting for their next call.
//!
//! A fresh instance per call is the default and the strongest isolation: nothing one call
//! leaves in the guest's memory reaches the next. An interpreter inside a component
//! (componentize-py's CPython, componentize-js's SpiderMonkey) makes that expensive (a
//! Python instance takes about 0.6 ms to create, and its first call pays for warming the
//! interpreter), so a plugin may instead keep its instance for several calls, under these
//! rules:
//!
//! 1. An instance serves only the (tenant, slot, version) it was created for: the key of
//!    an idle instance is all three (and an id unique to the loaded version), so no state
//!    crosses tenants, slots or versions.
//! 2. It goes back to the idle set only after a call that returned normally and passed the
//!    host's checks (an allow or a deny alike). A trap, a deadline, the memory cap, an
//!    invalid result, or any output on stdout/stderr (a traceback, a panic message)
//!    discards it.
//! 3. It serves at most N calls (the policy `calls:N`) and lives at most
//!    `reuse_max_age_s` seconds.
//! 4. Never across a hot swap: an install, rollback or removal drops the slot's idle
//!    instances, and an instance whose version is no longer the active one when its call
//!    ends is dropped (checked under the same lock).
//! 5. At most `max_idle_instances` idle instances in the whole host, least recently used
//!    dropped first, and never so many that calls could find the instance pool empty.
//!
//! Each call still gets fresh per-call state: deadline, key-value write budget, log line
//! budget, captured output. What a reused instance keeps is its own memory: globals and
//! caches the plugin keeps between calls of the same tenant and version.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use wasmtime::Store;

use super::bindings::{
    authenticator::Authenticator, component::Component, room_policy::RoomPolicy,
};
use super::state::CallState;

/// Components at least this large get [`ReusePolicy::Auto`]'s reuse: they carry an
/// interpreter (Python: 18-21 MiB, JavaScript: 9-12 MiB), where compiled Rust plugins are
/// 0.1-0.3 MiB and instantiate in microseconds.
pub const AUTO_REUSE_MIN_BYTES: u64 = 4 << 20;
/// Calls per instance under [`ReusePolicy::Auto`] for such a component.
pub const AUTO_REUSE_CALLS: u32 = 1000;

/// How many calls one instance of a plugin may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum ReusePolicy {
    /// `"auto"`: `calls:1000` for components of 4 MiB or more (an interpreter inside),
    /// `never` for smaller ones.
    #[default]
    Auto,
    /// `"never"`: a fresh instance for every call.
    Never,
    /// `"calls:N"`: one instance serves up to N calls (N = 1 is `never`).
    Calls(u32),
}

impl ReusePolicy {
    /// Calls one instance may serve for a component of `size` bytes (1: no reuse).
    pub fn calls_for(self, size: u64) -> u32 {
        match self {
            ReusePolicy::Auto if size >= AUTO_REUSE_MIN_BYTES => AUTO_REUSE_CALLS,
            ReusePolicy::Auto | ReusePolicy::Never => 1,
            ReusePolicy::Calls(n) => n.max(1),
        }
    }
}

impl TryFrom<String> for ReusePolicy {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for ReusePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(ReusePolicy::Auto),
            "never" => Ok(ReusePolicy::Never),
            other => other
                .strip_prefix("calls:")
                .and_then(|n| n.trim().parse::<u32>().ok())
                .filter(|&n| n >= 1)
                .map(ReusePolicy::Calls)
                .ok_or_else(|| {
                    format!("instance reuse must be \"auto\", \"never\" or \"calls:N\" (N >= 1), not {s:?}")
                }),
        }
    }
}

impl fmt::Display for ReusePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReusePolicy::Auto => f.write_str("auto"),
            ReusePolicy::Never => f.write_str("never"),
            ReusePolicy::Calls(n) => write!(f, "calls:{n}"),
        }
    }
}

/// An instance of one of the worlds.
pub(crate) enum WorldInstance {
    Authenticator(Authenticator),
    RoomPolicy(RoomPolicy),
    Component(Component),
}

/// Whose instance it is: the only calls it may serve. `load` is unique to one loaded
/// version in this process, so even a slot removed and installed again (whose versions
/// start at 1 again) never meets an instance of its predecessor.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ReuseKey {
    pub tenant: Arc<str>,
    pub slot: Arc<str>,
    pub version: u32,
    pub load: u64,
}

/// A new [`ReuseKey::load`].
pub(crate) fn next_load_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A store and its instance, between or during calls.
pub(crate) struct Lease {
    pub store: Store<CallState>,
    pub instance: WorldInstance,
    /// Calls it has served before this one.
    pub calls: u32,
    pub created: Instant,
}

struct Idle {
    key: ReuseKey,
    lease: Lease,
}

/// The idle instances of the whole host, least recently used first.
pub(crate) struct IdleInstances {
    entries: Mutex<VecDeque<Idle>>,
    capacity: usize,
    max_age: Duration,
}

impl IdleInstances {
    pub(crate) fn new(capacity: usize, max_age: Duration) -> IdleInstances {
        IdleInstances {
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            max_age,
        }
    }

    pub(crate) fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The most recently used idle instance of `key` that is not too old, if any.
    pub(crate) fn take(&self, key: &ReuseKey) -> Option<Lease> {
        if self.capacity == 0 {
            return None;
        }
        let mut expired = Vec::new();
        let found = {
            let mut entries = self.entries.lock().unwrap();
            let mut found = None;
            let mut i = entries.len();
            while i > 0 {
                i -= 1;
                if entries[i].key != *key {
                    continue;
                }
                let idle = entries.remove(i).expect("index in range");
                if idle.lease.created.elapsed() >= self.max_age {
                    expired.push(idle);
                } else {
                    found = Some(idle.lease);
                    break;
                }
            }
            found
        };
        drop(expired); // outside the lock: dropping a store returns its slot to the pool
        found
    }

    /// Keeps `lease` for the next call of `key` if `still_active()` (evaluated under the
    /// lock that [`purge`](Self::purge) takes, so an instance of a version swapped out
    /// meanwhile is dropped); the least recently used idle instance makes room if needed.
    pub(crate) fn put(&self, key: ReuseKey, lease: Lease, still_active: impl FnOnce() -> bool) {
        if self.capacity == 0 {
            return;
        }
        let mut dropped = None;
        {
            let mut entries = self.entries.lock().unwrap();
            if !still_active() {
                dropped = Some(lease);
            } else {
                if entries.len() >= self.capacity {
                    dropped = entries.pop_front().map(|i| i.lease);
                }
                entries.push_back(Idle { key, lease });
            }
        }
        drop(dropped);
    }

    /// Drops every idle instance of (tenant, slot): after an install, rollback or removal.
    pub(crate) fn purge(&self, tenant: &str, slot: &str) {
        let dropped: Vec<Idle> = {
            let mut entries = self.entries.lock().unwrap();
            let (gone, kept): (VecDeque<Idle>, VecDeque<Idle>) = entries
                .drain(..)
                .partition(|i| &*i.key.tenant == tenant && &*i.key.slot == slot);
            *entries = kept;
            gone.into_iter().collect()
        };
        drop(dropped);
    }

    /// Idle instances now.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_resolve_by_size() {
        assert_eq!("auto".parse(), Ok(ReusePolicy::Auto));
        assert_eq!("never".parse(), Ok(ReusePolicy::Never));
        assert_eq!("calls:50".parse(), Ok(ReusePolicy::Calls(50)));
        assert!("calls:0".parse::<ReusePolicy>().is_err());
        assert!("always".parse::<ReusePolicy>().is_err());
        assert_eq!(ReusePolicy::Auto.calls_for(200 << 10), 1);
        assert_eq!(ReusePolicy::Auto.calls_for(18 << 20), AUTO_REUSE_CALLS);
        assert_eq!(ReusePolicy::Never.calls_for(18 << 20), 1);
        assert_eq!(ReusePolicy::Calls(7).calls_for(1), 7);
        assert_eq!(ReusePolicy::Calls(7).to_string(), "calls:7");
    }
}
