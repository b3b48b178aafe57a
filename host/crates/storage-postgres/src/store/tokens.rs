//! [`TokenStore`] on PostgreSQL: `token_keys` (a tenant's signing key, created once even
//! when nodes race), `token_revocations` (an account's sequence), `refresh_tokens` and
//! `fast_tokens`. `revoke_all` bumps the sequence and deletes the account's refresh and
//! FAST tokens in one transaction.

use heliograph_storage::tokens::{FastSlots, RefreshRecord, TokenStore};
use heliograph_storage::{Account, StorageResult, key_part};

use super::{PgStore, account, json, parse, to_u64};

impl TokenStore for PgStore {
    fn signing_key(&self, tenant: &str) -> StorageResult<Vec<u8>> {
        let t = key_part(tenant, "tenant")?.to_string();
        let fresh = rand::random::<[u8; 32]>().to_vec();
        self.call("reading a signing key", move |c| async move {
            let get = c
                .prepare_cached("SELECT key FROM token_keys WHERE tenant = $1")
                .await?;
            if let Some(row) = c.query_opt(&get, &[&t]).await? {
                return Ok(row.get(0));
            }
            // Of two nodes creating it at once, both read the one that was inserted.
            c.execute(
                "INSERT INTO token_keys (tenant, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&t, &fresh],
            )
            .await?;
            Ok(c.query_one(&get, &[&t]).await?.get(0))
        })
    }

    fn revocation_seq(&self, a: &Account) -> StorageResult<u64> {
        let (d, l) = account(a)?;
        self.call("reading a revocation sequence", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT seq FROM token_revocations WHERE domain = $1 AND local = $2",
                )
                .await?;
            Ok(c.query_opt(&st, &[&d, &l])
                .await?
                .map_or(0, |r| to_u64(r.get(0))))
        })
    }

    fn put_refresh(&self, a: &Account, record: &RefreshRecord) -> StorageResult<()> {
        let (d, l) = account(a)?;
        let id = record.id.clone();
        let value = json(record)?;
        self.call("storing a refresh token", move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO refresh_tokens (domain, local, id, record) \
                     VALUES ($1, $2, $3, CAST($4::text AS jsonb)) \
                     ON CONFLICT (domain, local, id) DO UPDATE SET record = EXCLUDED.record",
                )
                .await?;
            c.execute(&st, &[&d, &l, &id, &value]).await?;
            Ok(())
        })
    }

    fn refresh(&self, a: &Account, id: &str) -> StorageResult<Option<RefreshRecord>> {
        let (d, l) = account(a)?;
        let id = id.to_string();
        self.call("reading a refresh token", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT record::text FROM refresh_tokens \
                     WHERE domain = $1 AND local = $2 AND id = $3",
                )
                .await?;
            match c.query_opt(&st, &[&d, &l, &id]).await? {
                Some(r) => Ok(Some(parse(r.get(0), "refresh_tokens")?)),
                None => Ok(None),
            }
        })
    }

    fn list_refresh(&self, a: &Account) -> StorageResult<Vec<RefreshRecord>> {
        let (d, l) = account(a)?;
        self.call("listing refresh tokens", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT record::text FROM refresh_tokens \
                     WHERE domain = $1 AND local = $2 ORDER BY id",
                )
                .await?;
            c.query(&st, &[&d, &l])
                .await?
                .iter()
                .map(|r| parse(r.get(0), "refresh_tokens"))
                .collect()
        })
    }

    fn revoke_refresh(&self, a: &Account, id: &str) -> StorageResult<bool> {
        let (d, l) = account(a)?;
        let id = id.to_string();
        self.call("revoking a refresh token", move |c| async move {
            let st = c
                .prepare_cached(
                    "DELETE FROM refresh_tokens WHERE domain = $1 AND local = $2 AND id = $3",
                )
                .await?;
            Ok(c.execute(&st, &[&d, &l, &id]).await? > 0)
        })
    }

    fn revoke_all(&self, a: &Account) -> StorageResult<usize> {
        let (d, l) = account(a)?;
        self.call("revoking tokens", move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO token_revocations (domain, local, seq) VALUES ($1, $2, 1) \
                 ON CONFLICT (domain, local) DO UPDATE SET seq = token_revocations.seq + 1",
                &[&d, &l],
            )
            .await?;
            let removed = tx
                .execute(
                    "DELETE FROM refresh_tokens WHERE domain = $1 AND local = $2",
                    &[&d, &l],
                )
                .await?;
            tx.execute(
                "DELETE FROM fast_tokens WHERE domain = $1 AND local = $2",
                &[&d, &l],
            )
            .await?;
            tx.commit().await?;
            Ok(usize::try_from(removed).unwrap_or(usize::MAX))
        })
    }

    fn purge_tokens(&self, domain: &str) -> StorageResult<()> {
        let d = key_part(domain, "domain")?.to_string();
        self.call("purging tokens", move |mut c| async move {
            let tx = c.transaction().await?;
            for table in ["token_revocations", "refresh_tokens", "fast_tokens"] {
                let sql = format!("DELETE FROM {table} WHERE domain = $1");
                tx.execute(&sql, &[&d]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn fast_slots(&self, a: &Account, client: &str) -> StorageResult<FastSlots> {
        let (d, l) = account(a)?;
        let client = client.to_string();
        self.call("reading FAST tokens", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT slots::text FROM fast_tokens \
                     WHERE domain = $1 AND local = $2 AND client = $3",
                )
                .await?;
            match c.query_opt(&st, &[&d, &l, &client]).await? {
                Some(r) => parse(r.get(0), "fast_tokens"),
                None => Ok(FastSlots::default()),
            }
        })
    }

    fn put_fast_slots(&self, a: &Account, client: &str, slots: &FastSlots) -> StorageResult<()> {
        let (d, l) = account(a)?;
        let client = client.to_string();
        let value = (!slots.is_empty()).then(|| json(slots)).transpose()?;
        self.call("storing FAST tokens", move |c| async move {
            match value {
                None => {
                    let st = c
                        .prepare_cached(
                            "DELETE FROM fast_tokens \
                             WHERE domain = $1 AND local = $2 AND client = $3",
                        )
                        .await?;
                    c.execute(&st, &[&d, &l, &client]).await?;
                }
                Some(value) => {
                    let st = c
                        .prepare_cached(
                            "INSERT INTO fast_tokens (domain, local, client, slots) \
                             VALUES ($1, $2, $3, CAST($4::text AS jsonb)) \
                             ON CONFLICT (domain, local, client) \
                             DO UPDATE SET slots = EXCLUDED.slots",
                        )
                        .await?;
                    c.execute(&st, &[&d, &l, &client, &value]).await?;
                }
            }
            Ok(())
        })
    }

    fn delete_fast(&self, a: &Account) -> StorageResult<()> {
        let (d, l) = account(a)?;
        self.call("deleting FAST tokens", move |c| async move {
            let st = c
                .prepare_cached("DELETE FROM fast_tokens WHERE domain = $1 AND local = $2")
                .await?;
            c.execute(&st, &[&d, &l]).await?;
            Ok(())
        })
    }
}
