//! [`AccountDataStore`] on PostgreSQL: `account_data`, one row per account and kind;
//! storing an empty value deletes the row. Deleting the account deletes its rows
//! (`users.rs`).

use heliograph_storage::{Account, AccountDataStore, StorageResult, key_part};

use super::{PgStore, account};

impl AccountDataStore for PgStore {
    fn get(&self, a: &Account, kind: &str) -> StorageResult<Option<Vec<u8>>> {
        let (d, l) = account(a)?;
        let kind = key_part(kind, "account data kind")?.to_string();
        self.call("reading account data", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT value FROM account_data WHERE domain = $1 AND local = $2 AND kind = $3",
                )
                .await?;
            Ok(c.query_opt(&st, &[&d, &l, &kind]).await?.map(|r| r.get(0)))
        })
    }

    fn put(&self, a: &Account, kind: &str, value: &[u8]) -> StorageResult<()> {
        let (d, l) = account(a)?;
        let kind = key_part(kind, "account data kind")?.to_string();
        let value = value.to_vec();
        self.call("storing account data", move |c| async move {
            if value.is_empty() {
                let st = c
                    .prepare_cached(
                        "DELETE FROM account_data WHERE domain = $1 AND local = $2 AND kind = $3",
                    )
                    .await?;
                c.execute(&st, &[&d, &l, &kind]).await?;
            } else {
                let st = c
                    .prepare_cached(
                        "INSERT INTO account_data (domain, local, kind, value) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (domain, local, kind) DO UPDATE SET value = EXCLUDED.value",
                    )
                    .await?;
                c.execute(&st, &[&d, &l, &kind, &value]).await?;
            }
            Ok(())
        })
    }
}
