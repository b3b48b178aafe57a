//! Space held by HTTP uploads in progress (XEP-0363 PUTs): the file store counts only
//! committed files, so each PUT reserves its slot's size per user and per tenant before
//! it reads the body, and gives it back when it ends (stored or not). The check of a
//! PUT against the quotas and its reservation happen under one gate, so two PUTs that
//! together exceed a quota cannot both pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bytes reserved by PUTs in progress, by tenant and by (tenant, owner).
#[derive(Default)]
pub struct UploadReservations {
    gate: tokio::sync::Mutex<()>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    tenants: HashMap<String, u64>,
    owners: HashMap<(String, String), u64>,
}

/// Held while a PUT checks the quotas and reserves: one at a time.
pub type Gate<'a> = tokio::sync::MutexGuard<'a, ()>;

impl UploadReservations {
    /// Waits for the gate; measure usage and call [`Self::reserve`] while holding it.
    pub async fn gate(&self) -> Gate<'_> {
        self.gate.lock().await
    }

    /// Bytes reserved for the tenant, or for one owner of it.
    pub fn pending(&self, tenant: &str, owner: Option<&str>) -> u64 {
        let held = self.held.lock().expect("reservations lock");
        match owner {
            Some(o) => held
                .owners
                .get(&(tenant.to_string(), o.to_string()))
                .copied()
                .unwrap_or(0),
            None => held.tenants.get(tenant).copied().unwrap_or(0),
        }
    }

    /// Reserves `size` bytes for the owner and its tenant until the returned
    /// [`Reservation`] is dropped. The caller holds the [`Gate`] and checked the quotas.
    pub fn reserve(
        self: &Arc<Self>,
        _gate: &Gate<'_>,
        tenant: &str,
        owner: &str,
        size: u64,
    ) -> Reservation {
        let mut held = self.held.lock().expect("reservations lock");
        *held.tenants.entry(tenant.to_string()).or_default() += size;
        *held
            .owners
            .entry((tenant.to_string(), owner.to_string()))
            .or_default() += size;
        Reservation {
            ledger: self.clone(),
            tenant: tenant.to_string(),
            owner: owner.to_string(),
            size,
        }
    }

    fn release(&self, tenant: &str, owner: &str, size: u64) {
        let mut held = self.held.lock().expect("reservations lock");
        if let Some(t) = held.tenants.get_mut(tenant) {
            *t = t.saturating_sub(size);
            if *t == 0 {
                held.tenants.remove(tenant);
            }
        }
        let key = (tenant.to_string(), owner.to_string());
        if let Some(o) = held.owners.get_mut(&key) {
            *o = o.saturating_sub(size);
            if *o == 0 {
                held.owners.remove(&key);
            }
        }
    }
}

/// Space one PUT holds; released on drop.
pub struct Reservation {
    ledger: Arc<UploadReservations>,
    tenant: String,
    owner: String,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.ledger.release(&self.tenant, &self.owner, self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_add_up_and_go_away_on_drop() {
        let ledger = Arc::new(UploadReservations::default());
        let gate = ledger.gate().await;
        let a = ledger.reserve(&gate, "t", "alice", 10);
        let b = ledger.reserve(&gate, "t", "bob", 5);
        drop(gate);
        assert_eq!(ledger.pending("t", None), 15);
        assert_eq!(ledger.pending("t", Some("alice")), 10);
        assert_eq!(ledger.pending("other", None), 0);
        drop(a);
        assert_eq!(ledger.pending("t", None), 5);
        assert_eq!(ledger.pending("t", Some("alice")), 0);
        drop(b);
        assert_eq!(ledger.pending("t", None), 0);
    }
}
