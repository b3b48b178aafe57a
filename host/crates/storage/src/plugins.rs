//! Plugin data ([`PluginStore`]): installed plugin versions per (tenant, slot), the Wasm
//! blobs they were built from, and each plugin's private key-value store.
//!
//! Key-value data is scoped by (tenant, slot): every method takes both, and the
//! implementation keeps the pair in the key, so one plugin can never address another's
//! data. Blobs are addressed by the SHA-256 of their bytes (lower-case hex) and shared by
//! every slot that installed the same bytes. [`MemPluginStore`] is an in-memory
//! implementation for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{StorageError, StorageResult};

/// One installed version of a plugin in a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Numbered from 1 per slot, never reused.
    pub version: u32,
    /// SHA-256 of the Wasm bytes (lower-case hex): the blob's key.
    pub sha256: String,
    /// Size of the Wasm bytes.
    pub size: u64,
    /// The plugin configuration (JSON text).
    pub config: String,
    /// Milliseconds since the Unix epoch.
    pub installed_at_ms: u64,
}

/// What a (tenant, slot) has installed: the world, the versions kept and the active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub tenant: String,
    pub slot: String,
    /// The world's name (`authenticator`).
    pub world: String,
    /// The version serving calls.
    pub active: u32,
    /// Kept versions, oldest first.
    pub versions: Vec<VersionRecord>,
}

/// Result of a key-value write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWrite {
    Stored,
    /// Not stored: the pair's total would have exceeded the quota.
    OverQuota,
}

/// Size a key-value entry counts against its pair's quota.
pub fn kv_entry_size(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// Plugin versions, blobs and key-value data.
pub trait PluginStore: Send + Sync {
    /// The value of `key` in the (tenant, slot) store.
    fn kv_get(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<Option<Vec<u8>>>;
    /// Stores `value` under `key` unless the pair's total size (keys plus values, see
    /// [`kv_entry_size`]) would then exceed `quota` bytes.
    fn kv_set(
        &self,
        tenant: &str,
        slot: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> StorageResult<KvWrite>;
    /// Deletes `key`; true if it existed.
    fn kv_delete(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<bool>;
    /// Keys starting with `prefix`, sorted, at most `limit`.
    fn kv_list_keys(
        &self,
        tenant: &str,
        slot: &str,
        prefix: &str,
        limit: usize,
    ) -> StorageResult<Vec<String>>;
    /// Total size of the pair's data (as counted against the quota).
    fn kv_usage(&self, tenant: &str, slot: &str) -> StorageResult<u64>;
    /// Deletes all of the pair's data.
    fn kv_purge(&self, tenant: &str, slot: &str) -> StorageResult<()>;

    /// Stores a Wasm blob under the hex SHA-256 of its bytes (idempotent).
    fn put_blob(&self, sha256: &str, wasm: &[u8]) -> StorageResult<()>;
    /// A stored blob.
    fn blob(&self, sha256: &str) -> StorageResult<Option<Vec<u8>>>;
    /// Deletes a blob (no error if absent).
    fn delete_blob(&self, sha256: &str) -> StorageResult<()>;

    /// Inserts or replaces the record of (record.tenant, record.slot).
    fn put_slot(&self, record: &SlotRecord) -> StorageResult<()>;
    /// Deletes a slot record (no error if absent).
    fn delete_slot(&self, tenant: &str, slot: &str) -> StorageResult<()>;
    /// Every slot record, sorted by (tenant, slot).
    fn slots(&self) -> StorageResult<Vec<SlotRecord>>;
}

/// In-memory [`PluginStore`] for tests.
#[derive(Default)]
pub struct MemPluginStore {
    inner: Mutex<MemInner>,
}

#[derive(Default)]
struct MemInner {
    kv: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    blobs: BTreeMap<String, Vec<u8>>,
    slots: BTreeMap<(String, String), SlotRecord>,
}

fn scope(tenant: &str, slot: &str) -> StorageResult<(String, String)> {
    if tenant.is_empty() || slot.is_empty() || tenant.contains('\0') || slot.contains('\0') {
        return Err(StorageError::Backend(format!(
            "invalid plugin scope {tenant:?}/{slot:?}: empty or containing NUL"
        )));
    }
    Ok((tenant.to_string(), slot.to_string()))
}

impl PluginStore for MemPluginStore {
    fn kv_get(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<Option<Vec<u8>>> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .kv
            .get(&scope(tenant, slot)?)
            .and_then(|m| m.get(key).cloned()))
    }

    fn kv_set(
        &self,
        tenant: &str,
        slot: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> StorageResult<KvWrite> {
        let mut inner = self.inner.lock().unwrap();
        let map = inner.kv.entry(scope(tenant, slot)?).or_default();
        let usage: u64 = map.iter().map(|(k, v)| kv_entry_size(k, v)).sum();
        let old = map.get(key).map_or(0, |v| kv_entry_size(key, v));
        if usage - old + kv_entry_size(key, value) > quota {
            return Ok(KvWrite::OverQuota);
        }
        map.insert(key.to_string(), value.to_vec());
        Ok(KvWrite::Stored)
    }

    fn kv_delete(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<bool> {
        let mut inner = self.inner.lock().unwrap();
        Ok(inner
            .kv
            .get_mut(&scope(tenant, slot)?)
            .is_some_and(|m| m.remove(key).is_some()))
    }

    fn kv_list_keys(
        &self,
        tenant: &str,
        slot: &str,
        prefix: &str,
        limit: usize,
    ) -> StorageResult<Vec<String>> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .kv
            .get(&scope(tenant, slot)?)
            .map(|m| {
                m.keys()
                    .filter(|k| k.starts_with(prefix))
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn kv_usage(&self, tenant: &str, slot: &str) -> StorageResult<u64> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .kv
            .get(&scope(tenant, slot)?)
            .map_or(0, |m| m.iter().map(|(k, v)| kv_entry_size(k, v)).sum()))
    }

    fn kv_purge(&self, tenant: &str, slot: &str) -> StorageResult<()> {
        self.inner.lock().unwrap().kv.remove(&scope(tenant, slot)?);
        Ok(())
    }

    fn put_blob(&self, sha256: &str, wasm: &[u8]) -> StorageResult<()> {
        let mut inner = self.inner.lock().unwrap();
        inner.blobs.insert(sha256.to_string(), wasm.to_vec());
        Ok(())
    }

    fn blob(&self, sha256: &str) -> StorageResult<Option<Vec<u8>>> {
        Ok(self.inner.lock().unwrap().blobs.get(sha256).cloned())
    }

    fn delete_blob(&self, sha256: &str) -> StorageResult<()> {
        self.inner.lock().unwrap().blobs.remove(sha256);
        Ok(())
    }

    fn put_slot(&self, record: &SlotRecord) -> StorageResult<()> {
        let key = scope(&record.tenant, &record.slot)?;
        self.inner.lock().unwrap().slots.insert(key, record.clone());
        Ok(())
    }

    fn delete_slot(&self, tenant: &str, slot: &str) -> StorageResult<()> {
        let key = scope(tenant, slot)?;
        self.inner.lock().unwrap().slots.remove(&key);
        Ok(())
    }

    fn slots(&self) -> StorageResult<Vec<SlotRecord>> {
        Ok(self.inner.lock().unwrap().slots.values().cloned().collect())
    }
}
