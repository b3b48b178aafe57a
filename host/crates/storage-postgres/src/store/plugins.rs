//! [`PluginStore`] on PostgreSQL: `plugin_kv` with `plugin_kv_usage` (bytes per tenant and
//! slot), `plugin_blobs` by SHA-256, `plugin_slots`. A key-value write or delete locks the
//! pair's usage row first, so the quota holds with writers on several nodes and a set and
//! a delete of one key cannot deadlock.

use heliograph_storage::plugins::{KvWrite, PluginStore, SlotRecord, kv_entry_size};
use heliograph_storage::{StorageResult, key_part};

use super::{PgStore, json, parse, to_i64, to_u64};

fn scope(tenant: &str, slot: &str) -> StorageResult<(String, String)> {
    Ok((
        key_part(tenant, "tenant")?.to_string(),
        key_part(slot, "plugin slot")?.to_string(),
    ))
}

/// Creates the pair's usage row if needed, locks it and returns the bytes used.
const LOCK_USAGE: [&str; 2] = [
    "INSERT INTO plugin_kv_usage (tenant, slot, bytes) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
    "SELECT bytes FROM plugin_kv_usage WHERE tenant = $1 AND slot = $2 FOR UPDATE",
];

impl PluginStore for PgStore {
    fn kv_get(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<Option<Vec<u8>>> {
        let (t, s) = scope(tenant, slot)?;
        let key = key.to_string();
        self.call("reading plugin data", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT value FROM plugin_kv WHERE tenant = $1 AND slot = $2 AND key = $3",
                )
                .await?;
            Ok(c.query_opt(&st, &[&t, &s, &key]).await?.map(|r| r.get(0)))
        })
    }

    fn kv_set(
        &self,
        tenant: &str,
        slot: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> StorageResult<KvWrite> {
        let (t, s) = scope(tenant, slot)?;
        let (key, value) = (key.to_string(), value.to_vec());
        self.call("writing plugin data", move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute(LOCK_USAGE[0], &[&t, &s]).await?;
            let used: i64 = tx.query_one(LOCK_USAGE[1], &[&t, &s]).await?.get(0);
            let old = tx
                .query_opt(
                    "SELECT value FROM plugin_kv WHERE tenant = $1 AND slot = $2 AND key = $3",
                    &[&t, &s, &key],
                )
                .await?
                .map_or(0, |r| kv_entry_size(&key, r.get::<_, &[u8]>(0)));
            let new_used = to_u64(used).saturating_sub(old) + kv_entry_size(&key, &value);
            if new_used > quota {
                return Ok(KvWrite::OverQuota);
            }
            let st = tx
                .prepare_cached(
                    "INSERT INTO plugin_kv (tenant, slot, key, value) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant, slot, key) DO UPDATE SET value = EXCLUDED.value",
                )
                .await?;
            tx.execute(&st, &[&t, &s, &key, &value]).await?;
            tx.execute(
                "UPDATE plugin_kv_usage SET bytes = $3 WHERE tenant = $1 AND slot = $2",
                &[&t, &s, &to_i64(new_used)],
            )
            .await?;
            tx.commit().await?;
            Ok(KvWrite::Stored)
        })
    }

    fn kv_delete(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<bool> {
        let (t, s) = scope(tenant, slot)?;
        let key = key.to_string();
        self.call("deleting plugin data", move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute(LOCK_USAGE[0], &[&t, &s]).await?;
            let used: i64 = tx.query_one(LOCK_USAGE[1], &[&t, &s]).await?.get(0);
            let Some(old) = tx
                .query_opt(
                    "DELETE FROM plugin_kv WHERE tenant = $1 AND slot = $2 AND key = $3 \
                     RETURNING value",
                    &[&t, &s, &key],
                )
                .await?
            else {
                return Ok(false);
            };
            let freed = kv_entry_size(&key, old.get::<_, &[u8]>(0));
            tx.execute(
                "UPDATE plugin_kv_usage SET bytes = $3 WHERE tenant = $1 AND slot = $2",
                &[&t, &s, &to_i64(to_u64(used).saturating_sub(freed))],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn kv_list_keys(
        &self,
        tenant: &str,
        slot: &str,
        prefix: &str,
        limit: usize,
    ) -> StorageResult<Vec<String>> {
        let (t, s) = scope(tenant, slot)?;
        let prefix = prefix.to_string();
        let limit = to_i64(limit as u64);
        self.call("listing plugin keys", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT key FROM plugin_kv \
                     WHERE tenant = $1 AND slot = $2 AND key >= $3 AND starts_with(key, $3) \
                     ORDER BY key LIMIT $4",
                )
                .await?;
            Ok(c.query(&st, &[&t, &s, &prefix, &limit])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn kv_usage(&self, tenant: &str, slot: &str) -> StorageResult<u64> {
        let (t, s) = scope(tenant, slot)?;
        self.call("reading plugin data usage", move |c| async move {
            let st = c
                .prepare_cached("SELECT bytes FROM plugin_kv_usage WHERE tenant = $1 AND slot = $2")
                .await?;
            Ok(c.query_opt(&st, &[&t, &s])
                .await?
                .map_or(0, |r| to_u64(r.get(0))))
        })
    }

    fn kv_purge(&self, tenant: &str, slot: &str) -> StorageResult<()> {
        let (t, s) = scope(tenant, slot)?;
        self.call("purging plugin data", move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM plugin_kv_usage WHERE tenant = $1 AND slot = $2",
                &[&t, &s],
            )
            .await?;
            tx.execute(
                "DELETE FROM plugin_kv WHERE tenant = $1 AND slot = $2",
                &[&t, &s],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn put_blob(&self, sha256: &str, wasm: &[u8]) -> StorageResult<()> {
        let sha = key_part(sha256, "blob hash")?.to_string();
        let wasm = wasm.to_vec();
        self.call("storing a plugin blob", move |c| async move {
            c.execute(
                "INSERT INTO plugin_blobs (sha256, wasm) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&sha, &wasm],
            )
            .await?;
            Ok(())
        })
    }

    fn blob(&self, sha256: &str) -> StorageResult<Option<Vec<u8>>> {
        let sha = key_part(sha256, "blob hash")?.to_string();
        self.call("reading a plugin blob", move |c| async move {
            let st = c
                .prepare_cached("SELECT wasm FROM plugin_blobs WHERE sha256 = $1")
                .await?;
            Ok(c.query_opt(&st, &[&sha]).await?.map(|r| r.get(0)))
        })
    }

    fn delete_blob(&self, sha256: &str) -> StorageResult<()> {
        let sha = key_part(sha256, "blob hash")?.to_string();
        self.call("deleting a plugin blob", move |c| async move {
            c.execute("DELETE FROM plugin_blobs WHERE sha256 = $1", &[&sha])
                .await?;
            Ok(())
        })
    }

    fn put_slot(&self, record: &SlotRecord) -> StorageResult<()> {
        let (t, s) = scope(&record.tenant, &record.slot)?;
        let value = json(record)?;
        self.call("storing a plugin slot", move |c| async move {
            c.execute(
                "INSERT INTO plugin_slots (tenant, slot, record) \
                 VALUES ($1, $2, CAST($3::text AS jsonb)) \
                 ON CONFLICT (tenant, slot) DO UPDATE SET record = EXCLUDED.record",
                &[&t, &s, &value],
            )
            .await?;
            Ok(())
        })
    }

    fn delete_slot(&self, tenant: &str, slot: &str) -> StorageResult<()> {
        let (t, s) = scope(tenant, slot)?;
        self.call("deleting a plugin slot", move |c| async move {
            c.execute(
                "DELETE FROM plugin_slots WHERE tenant = $1 AND slot = $2",
                &[&t, &s],
            )
            .await?;
            Ok(())
        })
    }

    fn slots(&self) -> StorageResult<Vec<SlotRecord>> {
        self.call("reading plugin slots", |c| async move {
            let st = c
                .prepare_cached("SELECT record::text FROM plugin_slots ORDER BY tenant, slot")
                .await?;
            c.query(&st, &[])
                .await?
                .iter()
                .map(|r| parse(r.get(0), "plugin_slots"))
                .collect()
        })
    }
}
