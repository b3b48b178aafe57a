//! Following changes another node made: in a cluster every node runs its own
//! [`PluginHost`] over the shared plugin store, and a node that installed, reconfigured,
//! rolled back or removed a plugin tells the others, which call
//! [`PluginHost::sync_slot`]. The slot is made what the store says: versions this node
//! already compiled are kept, new ones are loaded from their stored blob (compiled off
//! the runtime, or taken from the compiled cache), and the active version switches.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::stats::SlotStats;
use crate::types::World;
use crate::{InstallError, Loaded, PluginHost, Slot};

/// What [`PluginHost::sync_slot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotSync {
    /// Already as stored.
    Unchanged,
    /// Loaded or switched; the active version now.
    Active(u32),
    /// Not stored any more: removed here.
    Removed,
}

impl PluginHost {
    /// [`sync_slot`](Self::sync_slot) for every slot stored or loaded here (after missed
    /// change notices). A slot that fails is reported and the others go on.
    pub async fn sync_all(&self) -> Vec<(String, String, InstallError)> {
        let mut names: Vec<(String, String)> = match self.inner.store.slots() {
            Ok(records) => records.into_iter().map(|r| (r.tenant, r.slot)).collect(),
            Err(e) => return vec![(String::new(), String::new(), e.into())],
        };
        for info in self.list(None) {
            names.push((info.tenant, info.slot));
        }
        names.sort();
        names.dedup();
        let mut failed = Vec::new();
        for (tenant, slot) in names {
            if let Err(e) = self.sync_slot(&tenant, &slot).await {
                failed.push((tenant, slot, e));
            }
        }
        failed
    }

    /// Makes (tenant, slot) what the plugin store holds (see the module docs).
    pub async fn sync_slot(&self, tenant: &str, slot: &str) -> Result<SlotSync, InstallError> {
        let _admin = self.inner.admin.lock().await;
        let Some(record) = self.stored_record(tenant, slot)? else {
            let removed = {
                let mut slots = self.inner.slots.write().unwrap();
                let removed = slots.get_mut(tenant).and_then(|m| m.remove(slot));
                if slots.get(tenant).is_some_and(|m| m.is_empty()) {
                    slots.remove(tenant);
                }
                removed
            };
            if removed.is_none() {
                return Ok(SlotSync::Unchanged);
            }
            self.inner.idle.purge(tenant, slot);
            tracing::info!(tenant, plugin = slot, "plugin removed on another node");
            return Ok(SlotSync::Removed);
        };
        let world = World::from_name(&record.world).ok_or_else(|| {
            InstallError::Internal(format!("stored world {:?} is unknown", record.world))
        })?;
        let existing = self.slot(tenant, slot).filter(|s| s.world == world);
        let have: Vec<Arc<Loaded>> = existing
            .as_ref()
            .map(|s| s.kept.lock().unwrap().clone())
            .unwrap_or_default();
        if let Some(s) = &existing {
            let active = s.active.load();
            let same_versions = have.len() == record.versions.len()
                && have
                    .iter()
                    .zip(&record.versions)
                    .all(|(l, v)| l.record == *v);
            if same_versions && active.record.version == record.active {
                return Ok(SlotSync::Unchanged);
            }
        }
        let mut kept = Vec::new();
        for v in &record.versions {
            match have.iter().find(|l| l.record == *v) {
                Some(l) => kept.push(l.clone()),
                None => kept.push(Arc::new(self.load_stored(&record, world, v).await?)),
            }
        }
        let active = kept
            .iter()
            .find(|l| l.record.version == record.active)
            .cloned()
            .ok_or_else(|| {
                InstallError::Internal(format!(
                    "active version {} of {tenant}/{slot} is not stored",
                    record.active
                ))
            })?;
        match existing {
            Some(s) => {
                s.active.store(active);
                *s.kept.lock().unwrap() = kept;
            }
            None => {
                let s = Arc::new(Slot {
                    tenant: tenant.into(),
                    slot: slot.into(),
                    world,
                    active: ArcSwap::new(active),
                    kept: Mutex::new(kept),
                    stats: SlotStats::default(),
                });
                self.inner
                    .slots
                    .write()
                    .unwrap()
                    .entry(tenant.into())
                    .or_default()
                    .insert(slot.into(), s);
            }
        }
        self.inner.idle.purge(tenant, slot);
        tracing::info!(
            tenant,
            plugin = slot,
            version = record.active,
            "plugin switched after a change on another node"
        );
        Ok(SlotSync::Active(record.active))
    }
}
