//! [`RosterStore`] on PostgreSQL: items in `roster_items`, the version in
//! `roster_versions`. A change and its version bump are one statement; the version row's
//! lock orders writers from every node.

use heliograph_storage::{Account, Roster, RosterItem, RosterStore, StorageResult, key_part};

use super::{PgStore, account, json, parse, to_u64};

/// Bumps the version (creating it at 1) after the statement's change; returns it.
const BUMP: &str = "INSERT INTO roster_versions (domain, local, version) VALUES ($1, $2, 1) \
     ON CONFLICT (domain, local) DO UPDATE SET version = roster_versions.version + 1 \
     RETURNING version";

impl RosterStore for PgStore {
    fn roster(&self, a: &Account) -> StorageResult<Roster> {
        let (d, l) = account(a)?;
        self.call("reading a roster", move |c| async move {
            // One statement, one snapshot: the version matches the items.
            let st = c
                .prepare_cached(
                    "SELECT coalesce((SELECT version FROM roster_versions \
                                      WHERE domain = $1 AND local = $2), 0), \
                            i.item::text \
                     FROM (SELECT 1) AS one \
                     LEFT JOIN roster_items i ON i.domain = $1 AND i.local = $2 \
                     ORDER BY i.contact",
                )
                .await?;
            let rows = c.query(&st, &[&d, &l]).await?;
            let mut roster = Roster::default();
            for row in rows {
                roster.version = to_u64(row.get(0));
                if let Some(text) = row.get::<_, Option<&str>>(1) {
                    roster
                        .items
                        .push(parse(text, &format!("roster of {l}@{d}"))?);
                }
            }
            Ok(roster)
        })
    }

    fn item(&self, a: &Account, contact: &str) -> StorageResult<Option<RosterItem>> {
        let (d, l) = account(a)?;
        let contact = key_part(contact, "JID")?.to_string();
        self.call("reading a roster item", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT item::text FROM roster_items \
                     WHERE domain = $1 AND local = $2 AND contact = $3",
                )
                .await?;
            match c.query_opt(&st, &[&d, &l, &contact]).await? {
                Some(row) => Ok(Some(parse(row.get(0), &format!("roster of {l}@{d}"))?)),
                None => Ok(None),
            }
        })
    }

    fn put_item(&self, a: &Account, item: &RosterItem) -> StorageResult<u64> {
        let (d, l) = account(a)?;
        let contact = key_part(&item.jid, "JID")?.to_string();
        let item = json(item)?;
        self.call("updating a roster", move |c| async move {
            let sql = format!(
                "WITH changed AS (\
                   INSERT INTO roster_items (domain, local, contact, item) \
                   VALUES ($1, $2, $3, CAST($4::text AS jsonb)) \
                   ON CONFLICT (domain, local, contact) DO UPDATE SET item = EXCLUDED.item) \
                 {BUMP}"
            );
            let st = c.prepare_cached(&sql).await?;
            let v: i64 = c.query_one(&st, &[&d, &l, &contact, &item]).await?.get(0);
            Ok(to_u64(v))
        })
    }

    fn remove_item(&self, a: &Account, contact: &str) -> StorageResult<u64> {
        let (d, l) = account(a)?;
        let contact = key_part(contact, "JID")?.to_string();
        self.call("updating a roster", move |c| async move {
            let sql = format!(
                "WITH changed AS (\
                   DELETE FROM roster_items WHERE domain = $1 AND local = $2 AND contact = $3) \
                 {BUMP}"
            );
            let st = c.prepare_cached(&sql).await?;
            let v: i64 = c.query_one(&st, &[&d, &l, &contact]).await?.get(0);
            Ok(to_u64(v))
        })
    }
}
