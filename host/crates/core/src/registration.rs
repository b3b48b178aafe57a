//! How many accounts each client address registered in-band (XEP-0077) in the current
//! hour, per tenant: the limit `profiles.registrations_per_hour` is checked against it.
//! Bounded: past [`MAX_TRACKED`] entries, those of earlier hours are dropped.

use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Entries kept before old ones are swept.
pub const MAX_TRACKED: usize = 100_000;
const WINDOW: Duration = Duration::from_secs(3600);

/// Registrations per (tenant, address) in fixed one-hour windows.
#[derive(Default)]
pub struct RegistrationRate {
    windows: DashMap<(String, String), (Instant, u32)>,
}

impl RegistrationRate {
    /// Counts one registration of `address` for `tenant` if fewer than `per_hour` were
    /// counted in its current hour; false (nothing counted) otherwise.
    pub fn try_take(&self, tenant: &str, address: &str, per_hour: u32) -> bool {
        let now = Instant::now();
        if self.windows.len() >= MAX_TRACKED {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let mut entry = self
            .windows
            .entry((tenant.to_string(), address.to_string()))
            .or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= per_hour {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_per_tenant_and_address() {
        let r = super::RegistrationRate::default();
        assert!(r.try_take("acme", "10.0.0.1", 2));
        assert!(r.try_take("acme", "10.0.0.1", 2));
        assert!(!r.try_take("acme", "10.0.0.1", 2));
        assert!(r.try_take("acme", "10.0.0.2", 2));
        assert!(r.try_take("other", "10.0.0.1", 2));
    }
}
