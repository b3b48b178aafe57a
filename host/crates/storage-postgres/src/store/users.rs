//! [`UserStore`] on PostgreSQL: `users` holds the credentials; deleting an account or a
//! domain clears the other tables in the same transaction (the account's archive,
//! archive preferences and account data included; a domain's rooms' archives too).

use heliograph_storage::credentials::StoredCredentials;
use heliograph_storage::{Account, StorageError, StorageResult, UserStore, key_part};

use super::{PgStore, account, json, parse};

/// What deleting an account removes besides its `users` row.
const ACCOUNT_TABLES: [&str; 8] = [
    "roster_versions",
    "roster_items",
    "offline_messages",
    "blocks",
    "archive",
    "archive_prefs",
    "account_data",
    "pep_nodes",
];

impl UserStore for PgStore {
    fn create_user(&self, a: &Account, creds: &StoredCredentials) -> StorageResult<()> {
        let (d, l) = account(a)?;
        let creds = json(creds)?;
        let inserted = self.call("creating an account", move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO users (domain, local, credentials) \
                     VALUES ($1, $2, CAST($3::text AS jsonb)) ON CONFLICT DO NOTHING",
                )
                .await?;
            Ok(c.execute(&st, &[&d, &l, &creds]).await?)
        })?;
        if inserted == 0 {
            return Err(StorageError::AlreadyExists);
        }
        Ok(())
    }

    fn set_credentials(&self, a: &Account, creds: &StoredCredentials) -> StorageResult<()> {
        let (d, l) = account(a)?;
        let creds = json(creds)?;
        let updated = self.call("replacing credentials", move |c| async move {
            let st = c
                .prepare_cached(
                    "UPDATE users SET credentials = CAST($3::text AS jsonb) \
                     WHERE domain = $1 AND local = $2",
                )
                .await?;
            Ok(c.execute(&st, &[&d, &l, &creds]).await?)
        })?;
        if updated == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    fn credentials(&self, a: &Account) -> StorageResult<Option<StoredCredentials>> {
        let (d, l) = account(a)?;
        self.call("reading credentials", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT credentials::text FROM users WHERE domain = $1 AND local = $2",
                )
                .await?;
            match c.query_opt(&st, &[&d, &l]).await? {
                Some(row) => Ok(Some(parse(row.get(0), &format!("users {l}@{d}"))?)),
                None => Ok(None),
            }
        })
    }

    fn delete_user(&self, a: &Account) -> StorageResult<()> {
        let (d, l) = account(a)?;
        let deleted = self.call("deleting an account", move |mut c| async move {
            let tx = c.transaction().await?;
            let n = tx
                .execute(
                    "DELETE FROM users WHERE domain = $1 AND local = $2",
                    &[&d, &l],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            for table in ACCOUNT_TABLES {
                let sql = format!("DELETE FROM {table} WHERE domain = $1 AND local = $2");
                tx.execute(&sql, &[&d, &l]).await?;
            }
            tx.commit().await?;
            Ok(true)
        })?;
        if !deleted {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    fn list_users(&self, domain: &str) -> StorageResult<Vec<String>> {
        let d = key_part(domain, "domain")?.to_string();
        self.call("listing accounts", move |c| async move {
            let st = c
                .prepare_cached("SELECT local FROM users WHERE domain = $1 ORDER BY local")
                .await?;
            Ok(c.query(&st, &[&d])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn count_users(&self, domain: &str) -> StorageResult<usize> {
        let d = key_part(domain, "domain")?.to_string();
        self.call("counting accounts", move |c| async move {
            let st = c
                .prepare_cached("SELECT count(*) FROM users WHERE domain = $1")
                .await?;
            let n: i64 = c.query_one(&st, &[&d]).await?.get(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn purge_domain(&self, domain: &str) -> StorageResult<()> {
        let d = key_part(domain, "domain")?.to_string();
        self.call("purging a domain", move |mut c| async move {
            let tx = c.transaction().await?;
            for table in ACCOUNT_TABLES
                .iter()
                .chain(&["muc_rooms", "muc_log", "users"])
            {
                let sql = format!("DELETE FROM {table} WHERE domain = $1");
                tx.execute(&sql, &[&d]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
