//! [`TenantStore`] on sled: the `tenants` tree maps a tenant name to its JSON record.

use super::{Context, SledStore, decode, encode};
use crate::TenantRecord;
use crate::{StorageError, StorageResult, TenantStore};

impl TenantStore for SledStore {
    fn tenant_records(&self) -> StorageResult<Vec<TenantRecord>> {
        self.tenants
            .iter()
            .map(|kv| {
                let (k, v) = kv.context("reading tenants")?;
                decode(&k, &v)
            })
            .collect()
    }

    fn tenant_record(&self, name: &str) -> StorageResult<Option<TenantRecord>> {
        let key = name.as_bytes();
        match self.tenants.get(key).context("reading tenant")? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn put_tenant_record(&self, record: &TenantRecord) -> StorageResult<()> {
        self.tenants
            .insert(record.name.as_bytes(), encode(record)?)
            .context("storing tenant")?;
        self.flush()
    }

    fn create_tenant_record(&self, record: &TenantRecord) -> StorageResult<()> {
        self.tenants
            .compare_and_swap(record.name.as_bytes(), None::<&[u8]>, Some(encode(record)?))
            .context("creating tenant")?
            .map_err(|_| StorageError::AlreadyExists)?;
        self.flush()
    }

    fn delete_tenant_record(&self, name: &str) -> StorageResult<()> {
        if self
            .tenants
            .remove(name.as_bytes())
            .context("deleting tenant")?
            .is_some()
        {
            self.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Storage, TenantRecord};

    #[test]
    fn records_round_trip_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = TenantRecord::new("acme");
        rec.spec = Some(serde_json::json!({"domains": ["acme.test"]}));
        rec.token_sha256 = Some("ab".into());
        {
            let s = Storage::open_sled(dir.path()).unwrap();
            s.tenants.put_tenant_record(&rec).unwrap();
            s.tenants
                .put_tenant_record(&TenantRecord::new("zeta"))
                .unwrap();
            s.tenants.delete_tenant_record("zeta").unwrap();
            s.tenants.delete_tenant_record("never").unwrap();
        }
        let s = Storage::open_sled(dir.path()).unwrap();
        assert_eq!(s.tenants.tenant_records().unwrap(), vec![rec.clone()]);
        assert_eq!(s.tenants.tenant_record("acme").unwrap(), Some(rec));
        assert_eq!(s.tenants.tenant_record("zeta").unwrap(), None);
    }
}
