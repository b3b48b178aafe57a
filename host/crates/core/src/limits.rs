//! Connection limits in front of the session core: connections per listener and per
//! source address, unauthenticated connections (slowloris) and the bytes they buffer
//! together, and the login attempt rate per source address. Addresses are the real client addresses (after PROXY protocol).
//!
//! Permits are RAII guards: dropping one gives the slot back, so a connection task that
//! ends for any reason cannot leak a slot.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::tenants::rate::TokenBucket;

/// The SASL2 namespace (XEP-0388): its `<authenticate/>` is a login attempt too.
const SASL2: &str = "urn:xmpp:sasl:2";

/// Beyond this many tracked addresses, idle login buckets are forgotten (memory bound).
const MAX_TRACKED_LOGIN_ADDRESSES: usize = 100_000;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Listener,
    Address,
    Unauthenticated,
    Draining,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Listener => "listener_limit",
            Refusal::Address => "address_limit",
            Refusal::Unauthenticated => "unauthenticated_limit",
            Refusal::Draining => "draining",
        }
    }
}

/// Counters shared by every listener of the server.
#[derive(Default)]
pub struct Limits {
    per_address: DashMap<IpAddr, usize>,
    unauthenticated: Arc<AtomicUsize>,
    /// Bytes of unfinished stanzas held for unauthenticated connections, all together.
    unauth_buffered: Arc<AtomicUsize>,
    logins: DashMap<IpAddr, TokenBucket>,
}

/// A connection slot (listener and address); released on drop.
pub struct ConnPermit {
    limits: Arc<Limits>,
    listener: Arc<AtomicUsize>,
    ip: IpAddr,
}

/// An unauthenticated-connection slot; dropped once the session is bound.
pub struct UnauthPermit {
    count: Arc<AtomicUsize>,
    /// Set when the permit goes: the connection's [`UnauthBuffer`] stops counting.
    gone: Arc<AtomicBool>,
}

impl UnauthPermit {
    /// A count of what the connection's transport buffers of unfinished stanzas while
    /// the connection holds this permit, against the server-wide `max` (0: none).
    pub fn buffer(&self, limits: &Limits, max: usize) -> UnauthBuffer {
        UnauthBuffer {
            total: limits.unauth_buffered.clone(),
            held: AtomicUsize::new(0),
            max,
            permit_gone: self.gone.clone(),
        }
    }
}

/// What one unauthenticated connection holds of unfinished stanzas, counted in a
/// server-wide total (`[limits] max_unauthenticated_buffered`), so that many connections
/// that never authenticate cannot make the server hold much, however they share it out.
/// Counting stops once the connection's [`UnauthPermit`] is gone (it authenticated);
/// what it held is given back then, and when this is dropped.
#[derive(Debug)]
pub struct UnauthBuffer {
    total: Arc<AtomicUsize>,
    held: AtomicUsize,
    max: usize,
    permit_gone: Arc<AtomicBool>,
}

impl UnauthBuffer {
    /// The connection holds `bytes` now. False when that would grow the total past the
    /// limit: the growth is not counted, and the connection is to be refused.
    pub fn hold(&self, bytes: usize) -> bool {
        let bytes = if self.permit_gone.load(Ordering::Relaxed) {
            0
        } else {
            bytes
        };
        // After login (and whenever nothing changed) the shared total is left alone:
        // this runs on every read, and the total is one cache line for all cores.
        if self.held.load(Ordering::Relaxed) == bytes {
            return true;
        }
        let before = self.held.swap(bytes, Ordering::Relaxed);
        if bytes <= before {
            self.total.fetch_sub(before - bytes, Ordering::Relaxed);
            return true;
        }
        let grown = bytes - before;
        let total = self.total.fetch_add(grown, Ordering::Relaxed) + grown;
        if self.max > 0 && total > self.max {
            self.total.fetch_sub(grown, Ordering::Relaxed);
            self.held.store(before, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl UnauthBuffer {
    /// True once the connection's permit is gone (it authenticated): from the next
    /// [`UnauthBuffer::hold`] on, nothing is counted, and the buffer may be dropped.
    pub fn authenticated(&self) -> bool {
        self.permit_gone.load(Ordering::Relaxed)
    }
}

impl Drop for UnauthBuffer {
    fn drop(&mut self) {
        self.total
            .fetch_sub(*self.held.get_mut(), Ordering::Relaxed);
    }
}

impl Limits {
    /// Takes a slot for a connection from `ip` on a listener whose live count is
    /// `listener` (limits of 0 mean none).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        listener: &Arc<AtomicUsize>,
        max_listener: usize,
        max_per_address: usize,
    ) -> Result<ConnPermit, Refusal> {
        let n = listener.fetch_add(1, Ordering::SeqCst) + 1;
        if max_listener > 0 && n > max_listener {
            listener.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Listener);
        }
        let mut entry = self.per_address.entry(ip).or_insert(0);
        if max_per_address > 0 && *entry >= max_per_address {
            drop(entry);
            listener.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Address);
        }
        *entry += 1;
        drop(entry);
        Ok(ConnPermit {
            limits: self.clone(),
            listener: listener.clone(),
            ip,
        })
    }

    /// Takes an unauthenticated slot (limit 0 = none).
    pub fn admit_unauthenticated(&self, max: usize) -> Result<UnauthPermit, Refusal> {
        let n = self.unauthenticated.fetch_add(1, Ordering::SeqCst) + 1;
        if max > 0 && n > max {
            self.unauthenticated.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Unauthenticated);
        }
        Ok(UnauthPermit {
            count: self.unauthenticated.clone(),
            gone: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A count of bytes buffered for something unauthenticated that has no permit of its
    /// own (a BOSH request body being read), against the server-wide `max`.
    pub fn unauth_buffer(&self, max: usize) -> UnauthBuffer {
        UnauthBuffer {
            total: self.unauth_buffered.clone(),
            held: AtomicUsize::new(0),
            max,
            permit_gone: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Bytes buffered for unauthenticated connections now, all together.
    pub fn unauth_buffered(&self) -> usize {
        self.unauth_buffered.load(Ordering::Relaxed)
    }

    /// Connections not yet authenticated, on every listener.
    pub fn unauthenticated(&self) -> usize {
        self.unauthenticated.load(Ordering::SeqCst)
    }

    /// Records a login attempt from `ip`; returns how long the connection must wait before
    /// the attempt is processed (zero within the rate). Attempts over the rate are slowed
    /// down, so a flood from one address costs that address time, not other clients.
    pub fn login_attempt(&self, ip: IpAddr, rate: u32, burst: u32) -> Duration {
        let now = Instant::now();
        if self.logins.len() > MAX_TRACKED_LOGIN_ADDRESSES {
            self.logins.clear();
        }
        let mut entry = match self.logins.get_mut(&ip) {
            Some(e) => e,
            None => match TokenBucket::new(rate, burst, now) {
                Some(b) => self.logins.entry(ip).or_insert(b),
                None => return Duration::ZERO,
            },
        };
        entry.take(now)
    }
}

/// The login attempt rate per client address, for every transport: a SASL `<auth/>` (or
/// SASL2 `<authenticate/>`) over the rate waits before the session core sees it.
pub struct LoginGate {
    pub core: Arc<crate::context::Core>,
    pub ip: IpAddr,
}

impl LoginGate {
    /// Waits if `ev` is a login attempt on a stream not yet bound and the address is over
    /// its rate.
    pub async fn before(&self, bound: bool, ev: &crate::xml::StreamEvent) {
        if !bound
            && let crate::xml::StreamEvent::Stanza(el) = ev
            && (el.is("auth", crate::xml::ns::SASL) || el.is("authenticate", SASL2))
        {
            self.wait().await;
        }
    }

    /// Waits if the address is over its login rate (counting this attempt).
    pub async fn wait(&self) {
        let cfg = self.core.config();
        let wait = self.core.limits.login_attempt(
            self.ip,
            cfg.limits.login_rate_per_address,
            cfg.limits.login_burst_per_address,
        );
        if !wait.is_zero() {
            metrics::counter!("heliograph_login_attempts_delayed_total").increment(1);
            // Bounded: the negotiation timeout ends the connection soon after anyway.
            tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
        }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::SeqCst);
        if let dashmap::mapref::entry::Entry::Occupied(mut e) =
            self.limits.per_address.entry(self.ip)
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

impl Drop for UnauthPermit {
    fn drop(&mut self) {
        self.gone.store(true, Ordering::Relaxed);
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_and_listener_limits() {
        let limits = Arc::new(Limits::default());
        let listener = Arc::new(AtomicUsize::new(0));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limits.admit(a, &listener, 3, 2).unwrap();
        let _p2 = limits.admit(a, &listener, 3, 2).unwrap();
        assert_eq!(
            limits.admit(a, &listener, 3, 2).err(),
            Some(Refusal::Address)
        );
        let _p3 = limits.admit(b, &listener, 3, 2).unwrap();
        assert_eq!(
            limits.admit(b, &listener, 3, 2).err(),
            Some(Refusal::Listener)
        );
        drop(p1);
        let p4 = limits.admit(a, &listener, 4, 2).unwrap();
        assert_eq!(listener.load(Ordering::SeqCst), 3);
        drop(p4);
        assert_eq!(listener.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn unauthenticated_slots_come_back() {
        let limits = Limits::default();
        let p = limits.admit_unauthenticated(1).unwrap();
        assert!(limits.admit_unauthenticated(1).is_err());
        drop(p);
        assert!(limits.admit_unauthenticated(1).is_ok());
    }

    #[test]
    fn unauthenticated_bytes_are_bounded_together_until_authentication() {
        let limits = Limits::default();
        let a = limits.admit_unauthenticated(0).unwrap();
        let b = limits.admit_unauthenticated(0).unwrap();
        let (ba, bb) = (a.buffer(&limits, 100), b.buffer(&limits, 100));
        assert!(ba.hold(60));
        assert!(!bb.hold(50), "110 held together");
        assert_eq!(
            limits.unauth_buffered(),
            60,
            "a refused growth is not counted"
        );
        assert!(bb.hold(40));
        assert!(ba.hold(10), "shrinking is always fine");
        assert_eq!(limits.unauth_buffered(), 50);
        // Authenticated: a's bytes no longer count.
        drop(a);
        assert!(ba.hold(1000));
        assert_eq!(limits.unauth_buffered(), 40);
        drop(bb);
        assert_eq!(limits.unauth_buffered(), 0);
        let body = limits.unauth_buffer(100);
        assert!(!body.hold(101));
        drop(body);
        assert_eq!(limits.unauth_buffered(), 0);
    }

    #[test]
    fn login_rate_is_per_address() {
        let limits = Limits::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(limits.login_attempt(a, 1, 2), Duration::ZERO);
        assert_eq!(limits.login_attempt(a, 1, 2), Duration::ZERO);
        assert!(limits.login_attempt(a, 1, 2) > Duration::ZERO);
        assert_eq!(limits.login_attempt(b, 1, 2), Duration::ZERO);
    }
}
