//! Whether a version has served well, for rollback and eviction: a version is
//! `untried` until it answers a call while active, `good` once it has answered calls
//! without a single failure, and `failed` from its first failed call on (a trap, the
//! deadline, the memory cap, an answer the host refused, an instance that could not be
//! created; a denial is an answer, not a failure). `failed` is final.
//!
//! The state is kept beside the plugin's own data in the store, under a scope no plugin
//! can name (`SLOT/host`: slot names have no `/`), and written only when it changes (at
//! most twice per version), so it survives restarts without a write per call.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

use heliograph_storage::PluginStore;

/// How a version has served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionHealth {
    /// It has not answered a call yet.
    Untried,
    /// It has answered calls, none failed.
    Good,
    /// At least one call failed while it was active.
    Failed,
}

impl VersionHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionHealth::Untried => "untried",
            VersionHealth::Good => "good",
            VersionHealth::Failed => "failed",
        }
    }

    fn from_u8(v: u8) -> VersionHealth {
        match v {
            1 => VersionHealth::Good,
            2 => VersionHealth::Failed,
            _ => VersionHealth::Untried,
        }
    }

    fn from_stored(bytes: &[u8]) -> VersionHealth {
        match bytes {
            b"good" => VersionHealth::Good,
            b"failed" => VersionHealth::Failed,
            _ => VersionHealth::Untried,
        }
    }
}

/// The health of one loaded version.
pub(crate) struct Health(AtomicU8);

impl Health {
    pub(crate) fn new(initial: VersionHealth) -> Health {
        Health(AtomicU8::new(initial as u8))
    }

    pub(crate) fn get(&self) -> VersionHealth {
        VersionHealth::from_u8(self.0.load(Ordering::Relaxed))
    }

    /// An answered call: `Some(Good)` when this made the version good.
    pub(crate) fn answered(&self) -> Option<VersionHealth> {
        self.0
            .compare_exchange(
                VersionHealth::Untried as u8,
                VersionHealth::Good as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| VersionHealth::Good)
    }

    /// A failed call: `Some(Failed)` when this made the version failed.
    pub(crate) fn failed(&self) -> Option<VersionHealth> {
        let before = self.0.swap(VersionHealth::Failed as u8, Ordering::Relaxed);
        (before != VersionHealth::Failed as u8).then_some(VersionHealth::Failed)
    }
}

/// The store scope of a slot's version health (a slot name never contains `/`).
fn scope(slot: &str) -> String {
    format!("{slot}/host")
}

fn key(version: u32) -> String {
    format!("health/v{version}")
}

/// The stored health of `version` (untried when nothing is stored or storage fails).
pub(crate) fn load(store: &dyn PluginStore, tenant: &str, slot: &str, version: u32) -> Health {
    let stored = store
        .kv_get(tenant, &scope(slot), &key(version))
        .ok()
        .flatten();
    Health::new(stored.map_or(VersionHealth::Untried, |b| VersionHealth::from_stored(&b)))
}

/// Records a change of `version`'s health; a storage failure is logged (the state in
/// memory is right, a restart would forget the change).
pub(crate) fn store(
    store: &dyn PluginStore,
    tenant: &str,
    slot: &str,
    version: u32,
    health: VersionHealth,
) {
    let value = health.as_str().as_bytes();
    if let Err(e) = store.kv_set(tenant, &scope(slot), &key(version), value, u64::MAX) {
        tracing::error!(
            tenant,
            plugin = slot,
            version,
            health = health.as_str(),
            "plugin: cannot store the version's health: {e}"
        );
    }
}

/// Forgets the health of versions no longer kept.
pub(crate) fn forget(store: &dyn PluginStore, tenant: &str, slot: &str, version: u32) {
    let _ = store.kv_delete(tenant, &scope(slot), &key(version));
}

/// Forgets every version's health of a removed slot.
pub(crate) fn purge(store: &dyn PluginStore, tenant: &str, slot: &str) {
    if let Err(e) = store.kv_purge(tenant, &scope(slot)) {
        tracing::error!(
            tenant,
            plugin = slot,
            "plugin: cannot delete version health: {e}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_storage::MemPluginStore;

    #[test]
    fn transitions_and_persistence() {
        let h = Health::new(VersionHealth::Untried);
        assert_eq!(h.answered(), Some(VersionHealth::Good));
        assert_eq!(h.answered(), None, "reported once");
        assert_eq!(h.failed(), Some(VersionHealth::Failed));
        assert_eq!(h.failed(), None);
        assert_eq!(h.answered(), None, "failed is final");
        assert_eq!(h.get(), VersionHealth::Failed);

        let s = MemPluginStore::default();
        assert_eq!(load(&s, "t", "auth", 1).get(), VersionHealth::Untried);
        store(&s, "t", "auth", 1, VersionHealth::Good);
        store(&s, "t", "auth", 2, VersionHealth::Failed);
        assert_eq!(load(&s, "t", "auth", 1).get(), VersionHealth::Good);
        assert_eq!(load(&s, "t", "auth", 2).get(), VersionHealth::Failed);
        assert!(
            s.kv_get("t", "auth", "health/v1").unwrap().is_none(),
            "not in the plugin's own data"
        );
        forget(&s, "t", "auth", 1);
        assert_eq!(load(&s, "t", "auth", 1).get(), VersionHealth::Untried);
        purge(&s, "t", "auth");
        assert_eq!(load(&s, "t", "auth", 2).get(), VersionHealth::Untried);
    }
}
