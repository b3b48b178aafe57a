//! Concurrent BOSH and WebSocket sessions per client address (the address behind trusted
//! proxies), so one client cannot take all the server's sessions.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

/// Counts sessions per address.
pub struct AddressLimiter {
    max: usize,
    counts: DashMap<IpAddr, usize>,
}

/// One counted session; released on drop.
pub struct AddressGuard {
    limiter: Arc<AddressLimiter>,
    ip: IpAddr,
}

impl AddressLimiter {
    /// At most `max` sessions per address; 0 means no limit.
    pub fn new(max: usize) -> Self {
        AddressLimiter {
            max,
            counts: DashMap::new(),
        }
    }

    /// Counts a new session from `ip`, or `None` if the address is at its limit.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<AddressGuard> {
        let mut n = self.counts.entry(ip).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressGuard {
            limiter: self.clone(),
            ip,
        })
    }

    /// Sessions counted for `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts.get(&ip).map(|n| *n).unwrap_or(0)
    }
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        self.limiter.counts.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_releases() {
        let l = Arc::new(AddressLimiter::new(2));
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        let g1 = l.enter(a).unwrap();
        let _g2 = l.enter(a).unwrap();
        assert!(l.enter(a).is_none());
        assert!(l.enter(b).is_some());
        drop(g1);
        assert_eq!(l.count(a), 1);
        assert!(l.enter(a).is_some());
        let unlimited = Arc::new(AddressLimiter::new(0));
        let guards: Vec<_> = (0..50).map(|_| unlimited.enter(a).unwrap()).collect();
        assert_eq!(unlimited.count(a), 50);
        drop(guards);
        assert_eq!(unlimited.count(a), 0);
    }
}
