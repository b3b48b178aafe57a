//! [`OfflineStore`] on PostgreSQL: `offline_messages`, one row per message, ordered by its
//! `id` within the account. Taking is one `DELETE … RETURNING`: a message is returned only
//! by the call whose delete removed it, so two nodes taking at once never both get it.

use heliograph_storage::{Account, OfflineMessage, OfflineStore, QueuedMessage, StorageResult};

use super::{PgStore, account, to_i64, to_u64};

impl OfflineStore for PgStore {
    fn push(&self, a: &Account, msg: &OfflineMessage) -> StorageResult<usize> {
        let (d, l) = account(a)?;
        let stanza = msg.stanza.clone();
        let stamp = to_i64(msg.stamp_ms);
        self.call("storing an offline message", move |c| async move {
            let st = c
                .prepare_cached(
                    "WITH stored AS (\
                       INSERT INTO offline_messages (domain, local, stanza, stamp_ms) \
                       VALUES ($1, $2, $3, $4) RETURNING 1) \
                     SELECT count(*) + (SELECT count(*) FROM stored) FROM offline_messages \
                     WHERE domain = $1 AND local = $2",
                )
                .await?;
            let n: i64 = c.query_one(&st, &[&d, &l, &stanza, &stamp]).await?.get(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn take_all(&self, a: &Account) -> StorageResult<Vec<OfflineMessage>> {
        let (d, l) = account(a)?;
        self.call("taking offline messages", move |c| async move {
            let st = c
                .prepare_cached(
                    "DELETE FROM offline_messages WHERE domain = $1 AND local = $2 \
                     RETURNING id, stanza, stamp_ms",
                )
                .await?;
            let mut rows: Vec<(i64, OfflineMessage)> = c
                .query(&st, &[&d, &l])
                .await?
                .into_iter()
                .map(|r| {
                    let msg = OfflineMessage {
                        stanza: r.get(1),
                        stamp_ms: to_u64(r.get(2)),
                    };
                    (r.get(0), msg)
                })
                .collect();
            rows.sort_by_key(|(id, _)| *id);
            Ok(rows.into_iter().map(|(_, m)| m).collect())
        })
    }

    fn peek(
        &self,
        a: &Account,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<QueuedMessage>> {
        let (d, l) = account(a)?;
        let after = after.map(to_i64).unwrap_or(-1);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call("reading offline messages", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT id, stanza, stamp_ms FROM offline_messages \
                     WHERE domain = $1 AND local = $2 AND id > $3 ORDER BY id LIMIT $4",
                )
                .await?;
            Ok(c.query(&st, &[&d, &l, &after, &limit])
                .await?
                .into_iter()
                .map(|r| QueuedMessage {
                    id: to_u64(r.get(0)),
                    message: OfflineMessage {
                        stanza: r.get(1),
                        stamp_ms: to_u64(r.get(2)),
                    },
                })
                .collect())
        })
    }

    fn remove(&self, a: &Account, ids: &[u64]) -> StorageResult<usize> {
        let (d, l) = account(a)?;
        let ids: Vec<i64> = ids.iter().map(|id| to_i64(*id)).collect();
        self.call("removing offline messages", move |c| async move {
            let st = c
                .prepare_cached(
                    "DELETE FROM offline_messages \
                     WHERE domain = $1 AND local = $2 AND id = ANY($3)",
                )
                .await?;
            let n = c.execute(&st, &[&d, &l, &ids]).await?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn count(&self, a: &Account) -> StorageResult<usize> {
        let (d, l) = account(a)?;
        self.call("counting offline messages", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT count(*) FROM offline_messages WHERE domain = $1 AND local = $2",
                )
                .await?;
            let n: i64 = c.query_one(&st, &[&d, &l]).await?.get(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }
}
