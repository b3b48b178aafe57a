//! [`PluginStore`] on sled. Trees (see `keys.rs` for the separator rules):
//!
//! | tree               | key                     | value                          |
//! |--------------------|-------------------------|--------------------------------|
//! | `plugin_kv`        | `tenant \0 slot \0 key` | the value                      |
//! | `plugin_kv_usage`  | `tenant \0 slot`        | bytes used, u64 BE             |
//! | `plugin_blobs`     | `sha256 hex`            | the Wasm bytes                 |
//! | `plugin_slots`     | `tenant \0 slot`        | JSON [`SlotRecord`]            |
//!
//! A value write and its usage update are one transaction, so the quota holds under
//! concurrent writers. Tenant and slot may not be empty or contain NUL, so a plugin's keys
//! (whatever bytes they hold) stay inside its own `tenant \0 slot \0` prefix.

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::{Context, SledStore, decode, encode, keys, scan};
use crate::plugins::{KvWrite, PluginStore, SlotRecord, kv_entry_size};
use crate::{StorageError, StorageResult};

impl PluginStore for SledStore {
    fn kv_get(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<Option<Vec<u8>>> {
        let k = keys::plugin_kv_key(tenant, slot, key)?;
        Ok(self
            .plugin_kv
            .get(k)
            .context("reading plugin_kv")?
            .map(|v| v.to_vec()))
    }

    fn kv_set(
        &self,
        tenant: &str,
        slot: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> StorageResult<KvWrite> {
        let k = keys::plugin_kv_key(tenant, slot, key)?;
        let usage_key = keys::plugin_scope_key(tenant, slot)?;
        let outcome = (&self.plugin_kv, &self.plugin_kv_usage)
            .transaction(|(kv, usage)| {
                let used = usage.get(&usage_key)?.map_or(0, |v| read_u64(&v));
                let old = kv.get(&k)?.map_or(0, |v| kv_entry_size(key, &v));
                let new_used = used.saturating_sub(old) + kv_entry_size(key, value);
                if new_used > quota {
                    return Ok(KvWrite::OverQuota);
                }
                kv.insert(k.as_slice(), value)?;
                usage.insert(usage_key.as_slice(), &new_used.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(KvWrite::Stored)
            })
            .context("writing plugin_kv")?;
        if outcome == KvWrite::Stored {
            self.flush()?;
        }
        Ok(outcome)
    }

    fn kv_delete(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<bool> {
        let k = keys::plugin_kv_key(tenant, slot, key)?;
        let usage_key = keys::plugin_scope_key(tenant, slot)?;
        let existed = (&self.plugin_kv, &self.plugin_kv_usage)
            .transaction(|(kv, usage)| {
                let Some(old) = kv.remove(k.as_slice())? else {
                    return Ok(false);
                };
                let used = usage.get(&usage_key)?.map_or(0, |v| read_u64(&v));
                let new_used = used.saturating_sub(kv_entry_size(key, &old));
                usage.insert(usage_key.as_slice(), &new_used.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(true)
            })
            .context("deleting from plugin_kv")?;
        if existed {
            self.flush()?;
        }
        Ok(existed)
    }

    fn kv_list_keys(
        &self,
        tenant: &str,
        slot: &str,
        prefix: &str,
        limit: usize,
    ) -> StorageResult<Vec<String>> {
        let scope = keys::plugin_kv_prefix(tenant, slot)?;
        let mut start = scope.clone();
        start.extend_from_slice(prefix.as_bytes());
        let mut out = Vec::new();
        for entry in self.plugin_kv.scan_prefix(&start).keys().take(limit) {
            let key = entry.context("reading plugin_kv")?;
            let rest = &key[scope.len()..];
            out.push(String::from_utf8(rest.to_vec()).map_err(|_| {
                StorageError::Corrupt(format!("plugin key is not UTF-8: {}", keys::describe(&key)))
            })?);
        }
        Ok(out)
    }

    fn kv_usage(&self, tenant: &str, slot: &str) -> StorageResult<u64> {
        let usage_key = keys::plugin_scope_key(tenant, slot)?;
        Ok(self
            .plugin_kv_usage
            .get(usage_key)
            .context("reading plugin_kv_usage")?
            .map_or(0, |v| read_u64(&v)))
    }

    fn kv_purge(&self, tenant: &str, slot: &str) -> StorageResult<()> {
        super::remove_prefix(&self.plugin_kv, &keys::plugin_kv_prefix(tenant, slot)?)?;
        self.plugin_kv_usage
            .remove(keys::plugin_scope_key(tenant, slot)?)
            .context("removing plugin_kv_usage")?;
        self.flush()
    }

    fn put_blob(&self, sha256: &str, wasm: &[u8]) -> StorageResult<()> {
        self.plugin_blobs
            .insert(sha256.as_bytes(), wasm)
            .context("writing plugin_blobs")?;
        self.flush()
    }

    fn blob(&self, sha256: &str) -> StorageResult<Option<Vec<u8>>> {
        Ok(self
            .plugin_blobs
            .get(sha256.as_bytes())
            .context("reading plugin_blobs")?
            .map(|v| v.to_vec()))
    }

    fn delete_blob(&self, sha256: &str) -> StorageResult<()> {
        self.plugin_blobs
            .remove(sha256.as_bytes())
            .context("removing from plugin_blobs")?;
        self.flush()
    }

    fn put_slot(&self, record: &SlotRecord) -> StorageResult<()> {
        let key = keys::plugin_scope_key(&record.tenant, &record.slot)?;
        self.plugin_slots
            .insert(key, encode(record)?)
            .context("writing plugin_slots")?;
        self.flush()
    }

    fn delete_slot(&self, tenant: &str, slot: &str) -> StorageResult<()> {
        self.plugin_slots
            .remove(keys::plugin_scope_key(tenant, slot)?)
            .context("removing from plugin_slots")?;
        self.flush()
    }

    fn slots(&self) -> StorageResult<Vec<SlotRecord>> {
        scan(&self.plugin_slots, b"")?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
