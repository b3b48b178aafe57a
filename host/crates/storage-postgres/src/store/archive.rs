//! [`ArchiveStore`] on PostgreSQL: `archive` (one row per message, keyed by owner and
//! id, indexed by owner, party and id) and `archive_prefs`.
//!
//! A query is two statements pipelined on one connection: the count of the matching
//! messages (with, for an `<after/>` or `<before/>` anchor, how many come before it and
//! whether it matches at all), and the page itself (`ORDER BY id … LIMIT max` on either
//! side of the anchor). From these the page's position and `complete` flag follow the
//! shared rules of [`heliograph_storage::archive::paginate`] exactly; the conformance
//! suite compares every page with the in-memory reference. Each filter shape has its own
//! statement text (prepared once per connection), so every plan uses the index that
//! fits: the primary key without `with`, `archive_conversation` with it.

use std::collections::HashMap;

use heliograph_storage::archive::{
    ArchiveId, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore, ArchivedMessage, PageAt,
    PageIds, RETRACT_WITHIN, page_of,
};
use heliograph_storage::{Account, StorageError, StorageResult, key_part};
use tokio_postgres::types::ToSql;

use super::{PgStore, account, json, parse, to_i64};

type Param = Box<dyn ToSql + Sync + Send>;

/// An id as stored (`bigint`): ids are microseconds since 1970, far below `i64::MAX`.
fn stored_id(id: ArchiveId) -> StorageResult<i64> {
    i64::try_from(id.0)
        .map_err(|_| StorageError::Backend(format!("archive id {id} is out of range")))
}

/// The `WHERE` clause of a query's filters and its parameters.
fn filters(d: String, l: String, q: &ArchiveQuery) -> (String, Vec<Param>) {
    let (lo, hi) = q.id_range();
    let mut sql = String::from("domain = $1 AND local = $2 AND id BETWEEN $3 AND $4");
    let mut params: Vec<Param> = vec![
        Box::new(d),
        Box::new(l),
        Box::new(to_i64(lo.0)),
        Box::new(to_i64(hi.0)),
    ];
    if let Some(with) = &q.with {
        params.push(Box::new(with.clone()));
        sql.push_str(&format!(" AND with_jid = ${}", params.len()));
    }
    if let Some(resource) = &q.with_resource {
        params.push(Box::new(resource.clone()));
        sql.push_str(&format!(" AND with_resource = ${}", params.len()));
    }
    if let Some(ids) = &q.ids {
        let ids: Vec<i64> = ids.iter().filter_map(|id| stored_id(*id).ok()).collect();
        params.push(Box::new(ids));
        sql.push_str(&format!(" AND id = ANY(${})", params.len()));
    }
    (sql, params)
}

const COLUMNS: &str = "id, with_jid, with_resource, outgoing, origin_id, stanza";

/// The message in the row's columns from `at` on (in [`COLUMNS`] order).
fn message(r: &tokio_postgres::Row, at: usize) -> ArchivedMessage {
    ArchivedMessage {
        id: ArchiveId(u64::try_from(r.get::<_, i64>(at)).unwrap_or(0)),
        with: r.get(at + 1),
        with_resource: r.get(at + 2),
        outgoing: r.get(at + 3),
        origin_id: r.get(at + 4),
        stanza: r.get(at + 5),
    }
}

fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

impl ArchiveStore for PgStore {
    fn append(&self, entries: &[(Account, ArchivedMessage)]) -> StorageResult<()> {
        // One row per (owner, id), the last given winning as with every backend (one
        // INSERT may not update a row twice).
        let mut rows: HashMap<(String, String, i64), &ArchivedMessage> = HashMap::new();
        let mut order = Vec::with_capacity(entries.len());
        for (owner, m) in entries {
            let (d, l) = account(owner)?;
            let key = (d, l, stored_id(m.id)?);
            if rows.insert(key.clone(), m).is_none() {
                order.push(key);
            }
        }
        if order.is_empty() {
            return Ok(());
        }
        let mut cols: (Vec<String>, Vec<String>, Vec<i64>) = Default::default();
        let mut with: Vec<String> = Vec::with_capacity(order.len());
        let mut resource: Vec<Option<String>> = Vec::with_capacity(order.len());
        let mut outgoing: Vec<bool> = Vec::with_capacity(order.len());
        let mut origin: Vec<Option<String>> = Vec::with_capacity(order.len());
        let mut stanza: Vec<String> = Vec::with_capacity(order.len());
        for key in order {
            let m = rows[&key];
            with.push(m.with.clone());
            resource.push(m.with_resource.clone());
            outgoing.push(m.outgoing);
            origin.push(m.origin_id.clone());
            stanza.push(m.stanza.clone());
            cols.0.push(key.0);
            cols.1.push(key.1);
            cols.2.push(key.2);
        }
        self.call("archiving messages", move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO archive \
                       (domain, local, id, with_jid, with_resource, outgoing, origin_id, stanza) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], \
                       $5::text[], $6::boolean[], $7::text[], $8::text[]) \
                     ON CONFLICT (domain, local, id) DO UPDATE SET \
                       with_jid = EXCLUDED.with_jid, with_resource = EXCLUDED.with_resource, \
                       outgoing = EXCLUDED.outgoing, origin_id = EXCLUDED.origin_id, \
                       stanza = EXCLUDED.stanza",
                )
                .await?;
            c.execute(
                &st,
                &[
                    &cols.0, &cols.1, &cols.2, &with, &resource, &outgoing, &origin, &stanza,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn query(&self, owner: &Account, q: &ArchiveQuery) -> StorageResult<ArchivePage> {
        let (d, l) = account(owner)?;
        let (lo, hi) = q.id_range();
        let max = q.page.max;
        let anchor = match q.page.at {
            PageAt::After(id) | PageAt::Before(id) => Some(id),
            PageAt::First | PageAt::Last => None,
        };
        // Nothing can match: the bounds are empty, or the anchor is beyond any stored id.
        if lo > hi || anchor.is_some_and(|a| stored_id(a).is_err()) {
            let empty = heliograph_storage::archive::paginate(&[], &q.page);
            return Ok(page_of(empty, |_| None));
        }
        let (filter, mut params) = filters(d, l, q);
        let (counts, cmp, dir) = match (&q.page.at, anchor) {
            (PageAt::After(_), Some(a)) | (PageAt::Before(_), Some(a)) => {
                params.push(Box::new(to_i64(a.0)));
                let k = params.len();
                let (cmp, dir) = if matches!(q.page.at, PageAt::After(_)) {
                    (format!(" AND id > ${k}"), "")
                } else {
                    (format!(" AND id < ${k}"), "DESC")
                };
                let counts =
                    format!("count(*) FILTER (WHERE id < ${k}), count(*) FILTER (WHERE id = ${k})");
                (counts, cmp, dir)
            }
            (at, _) => (
                "0::bigint, 0::bigint".to_string(),
                String::new(),
                if *at == PageAt::Last { "DESC" } else { "" },
            ),
        };
        // One statement, so one snapshot: the counts and the page always agree. The
        // counts come with every row (and alone, in one row, when the page is empty).
        let sql = format!(
            "SELECT n.total, n.before, n.anchor, {page_columns} FROM \
               (SELECT count(*) AS total, {counts} FROM archive WHERE {filter}) \
                 AS n (total, before, anchor) \
             LEFT JOIN LATERAL \
               (SELECT {COLUMNS} FROM archive WHERE {filter}{cmp} \
                ORDER BY id {dir} LIMIT {max}) AS p ON true \
             ORDER BY p.id",
            page_columns = COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let at = q.page.at.clone();
        self.call("querying the archive", move |c| async move {
            let st = c.prepare_cached(&sql).await?;
            let params: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let rows = c.query(&st, &params).await?;
            let Some(first) = rows.first() else {
                return Err(
                    StorageError::Backend("the archive count returned no row".into()).into(),
                );
            };
            let (total, before, present) = (
                count(first.get(0)),
                count(first.get(1)),
                first.get::<_, i64>(2) > 0,
            );
            if anchor.is_some() && !present {
                let missing = PageIds {
                    count: total,
                    anchor_missing: true,
                    ..Default::default()
                };
                return Ok(page_of(missing, |_| None));
            }
            let messages: Vec<ArchivedMessage> = rows
                .iter()
                .filter(|r| r.get::<_, Option<i64>>(3).is_some())
                .map(|r| message(r, 3))
                .collect();
            let len = messages.len();
            let (first_index, complete) = match at {
                PageAt::First => (0, len == total),
                PageAt::Last => (total.saturating_sub(len), total <= len),
                PageAt::After(_) => (before + 1, before + 1 + len >= total),
                PageAt::Before(_) => (before.saturating_sub(len), before <= len),
            };
            let ids = PageIds {
                ids: messages.iter().map(|m| m.id).collect(),
                complete,
                count: total,
                first_index,
                anchor_missing: false,
            };
            let mut loaded = messages.into_iter();
            Ok(page_of(ids, |_| loaded.next()))
        })
    }

    fn retract(
        &self,
        owner: &Account,
        with: &str,
        origin_id: &str,
        outgoing: bool,
        tombstone: &str,
    ) -> StorageResult<bool> {
        let (d, l) = account(owner)?;
        let (with, origin_id, tombstone) = (
            with.to_string(),
            origin_id.to_string(),
            tombstone.to_string(),
        );
        let within = to_i64(RETRACT_WITHIN as u64);
        self.call("retracting an archived message", move |c| async move {
            // A message without an origin-id is named by its archive id (16 hex digits).
            let st = c
                .prepare_cached(
                    "UPDATE archive a SET stanza = $6 FROM ( \
                       SELECT id FROM ( \
                         SELECT id, outgoing, origin_id FROM archive \
                         WHERE domain = $1 AND local = $2 AND with_jid = $3 \
                         ORDER BY id DESC LIMIT $7) newest \
                       WHERE outgoing = $4 \
                         AND coalesce(origin_id, lpad(to_hex(id), 16, '0')) = $5 \
                       ORDER BY id DESC LIMIT 1) found \
                     WHERE a.domain = $1 AND a.local = $2 AND a.id = found.id",
                )
                .await?;
            let n = c
                .execute(
                    &st,
                    &[&d, &l, &with, &outgoing, &origin_id, &tombstone, &within],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn remove_before(&self, domain: &str, before: ArchiveId) -> StorageResult<usize> {
        let d = key_part(domain, "domain")?.to_string();
        let before = to_i64(before.0);
        self.call("removing old archived messages", move |c| async move {
            let st = c
                .prepare_cached("DELETE FROM archive WHERE domain = $1 AND id < $2")
                .await?;
            Ok(usize::try_from(c.execute(&st, &[&d, &before]).await?).unwrap_or(usize::MAX))
        })
    }

    fn delete_owner(&self, owner: &Account) -> StorageResult<()> {
        let (d, l) = account(owner)?;
        self.call("deleting an archive", move |mut c| async move {
            let tx = c.transaction().await?;
            for table in ["archive", "archive_prefs"] {
                let sql = format!("DELETE FROM {table} WHERE domain = $1 AND local = $2");
                tx.execute(&sql, &[&d, &l]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn prefs(&self, owner: &Account) -> StorageResult<Option<ArchivePrefs>> {
        let (d, l) = account(owner)?;
        self.call("reading archive preferences", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT prefs::text FROM archive_prefs WHERE domain = $1 AND local = $2",
                )
                .await?;
            match c.query_opt(&st, &[&d, &l]).await? {
                Some(r) => Ok(Some(parse(r.get(0), &format!("archive_prefs {l}@{d}"))?)),
                None => Ok(None),
            }
        })
    }

    fn set_prefs(&self, owner: &Account, prefs: &ArchivePrefs) -> StorageResult<()> {
        let (d, l) = account(owner)?;
        let value = json(prefs)?;
        self.call("storing archive preferences", move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO archive_prefs (domain, local, prefs) \
                     VALUES ($1, $2, CAST($3::text AS jsonb)) \
                     ON CONFLICT (domain, local) DO UPDATE SET prefs = EXCLUDED.prefs",
                )
                .await?;
            c.execute(&st, &[&d, &l, &value]).await?;
            Ok(())
        })
    }
}
