//! [`BlockStore`] on PostgreSQL: `blocks`, one row per blocked JID. A call's JIDs are all
//! checked before its transaction starts, so an invalid one changes nothing.

use heliograph_storage::{Account, BlockStore, StorageResult, key_part};

use super::{PgStore, account};

fn checked(jids: &[String]) -> StorageResult<Vec<String>> {
    jids.iter()
        .map(|j| Ok(key_part(j, "JID")?.to_string()))
        .collect()
}

impl BlockStore for PgStore {
    fn blocked(&self, a: &Account) -> StorageResult<Vec<String>> {
        let (d, l) = account(a)?;
        self.call("reading a block list", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT jid FROM blocks WHERE domain = $1 AND local = $2 ORDER BY jid",
                )
                .await?;
            Ok(c.query(&st, &[&d, &l])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn block(&self, a: &Account, jids: &[String]) -> StorageResult<Vec<String>> {
        let (d, l) = account(a)?;
        let jids = checked(jids)?;
        self.call("blocking", move |mut c| async move {
            let tx = c.transaction().await?;
            let st = tx
                .prepare_cached(
                    "INSERT INTO blocks (domain, local, jid) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            let mut added = Vec::new();
            for jid in jids {
                if tx.execute(&st, &[&d, &l, &jid]).await? > 0 {
                    added.push(jid);
                }
            }
            tx.commit().await?;
            Ok(added)
        })
    }

    fn unblock(&self, a: &Account, jids: &[String]) -> StorageResult<Vec<String>> {
        let (d, l) = account(a)?;
        let jids = checked(jids)?;
        self.call("unblocking", move |mut c| async move {
            let tx = c.transaction().await?;
            let st = tx
                .prepare_cached("DELETE FROM blocks WHERE domain = $1 AND local = $2 AND jid = $3")
                .await?;
            let mut removed = Vec::new();
            for jid in jids {
                if tx.execute(&st, &[&d, &l, &jid]).await? > 0 {
                    removed.push(jid);
                }
            }
            tx.commit().await?;
            Ok(removed)
        })
    }

    fn unblock_all(&self, a: &Account) -> StorageResult<Vec<String>> {
        let (d, l) = account(a)?;
        self.call("unblocking", move |c| async move {
            let st = c
                .prepare_cached("DELETE FROM blocks WHERE domain = $1 AND local = $2 RETURNING jid")
                .await?;
            let mut removed: Vec<String> = c
                .query(&st, &[&d, &l])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            removed.sort();
            Ok(removed)
        })
    }
}
