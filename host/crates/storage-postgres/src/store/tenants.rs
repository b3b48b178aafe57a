//! [`TenantStore`] on PostgreSQL: `tenants` maps a name to its JSON record.

use heliograph_storage::{StorageError, StorageResult, TenantRecord, TenantStore, key_part};

use super::{PgStore, json, parse};

impl TenantStore for PgStore {
    fn tenant_records(&self) -> StorageResult<Vec<TenantRecord>> {
        self.call("reading tenants", |c| async move {
            let st = c
                .prepare_cached("SELECT name, record::text FROM tenants ORDER BY name")
                .await?;
            c.query(&st, &[])
                .await?
                .iter()
                .map(|r| parse(r.get(1), &format!("tenant {}", r.get::<_, &str>(0))))
                .collect()
        })
    }

    fn tenant_record(&self, name: &str) -> StorageResult<Option<TenantRecord>> {
        let name = key_part(name, "tenant")?.to_string();
        self.call("reading a tenant", move |c| async move {
            let st = c
                .prepare_cached("SELECT record::text FROM tenants WHERE name = $1")
                .await?;
            match c.query_opt(&st, &[&name]).await? {
                Some(r) => Ok(Some(parse(r.get(0), &format!("tenant {name}"))?)),
                None => Ok(None),
            }
        })
    }

    fn put_tenant_record(&self, record: &TenantRecord) -> StorageResult<()> {
        let name = key_part(&record.name, "tenant")?.to_string();
        let value = json(record)?;
        self.call("storing a tenant", move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO tenants (name, record) VALUES ($1, CAST($2::text AS jsonb)) \
                     ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
                )
                .await?;
            c.execute(&st, &[&name, &value]).await?;
            Ok(())
        })
    }

    fn create_tenant_record(&self, record: &TenantRecord) -> StorageResult<()> {
        let name = key_part(&record.name, "tenant")?.to_string();
        let value = json(record)?;
        let inserted = self.call("creating a tenant", move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO tenants (name, record) VALUES ($1, CAST($2::text AS jsonb)) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            Ok(c.execute(&st, &[&name, &value]).await?)
        })?;
        if inserted == 0 {
            return Err(StorageError::AlreadyExists);
        }
        Ok(())
    }

    fn delete_tenant_record(&self, name: &str) -> StorageResult<()> {
        let name = key_part(name, "tenant")?.to_string();
        self.call("deleting a tenant", move |c| async move {
            let st = c
                .prepare_cached("DELETE FROM tenants WHERE name = $1")
                .await?;
            c.execute(&st, &[&name]).await?;
            Ok(())
        })
    }
}
