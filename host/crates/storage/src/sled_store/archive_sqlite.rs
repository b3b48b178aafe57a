//! The embedded backend's archived messages, in one SQLite file beside the sled trees
//! (`archive.sqlite3` in the database directory).
//!
//! Why not sled: sled 0.34 keeps an in-memory page-table entry for every page of its
//! trees, whatever its cache size, so a server's memory grew with the size of its archive
//! (about 13% of the archive's bytes on disk, measured by the soak of `tests/load`). The
//! archive is the one store that grows for as long as a server runs; SQLite keeps nothing
//! per stored page but its bounded page cache ([`CACHE_KIB`] per connection).
//!
//! One table, `archive_messages`, with a row per message in the order they were written
//! (SQLite's rowid), a unique index by owner and id, and an index by owner, party and id
//! for `with` queries. Rows go in at the table's end, so a batch of many owners' messages
//! fills fresh pages; only the two indexes take each owner's rows where they belong (a
//! table keyed by owner instead rewrote a page per owner and batch, and the writer
//! could not keep up with a busy server's chat). The stanza is stored as it was
//! serialized, beside the other fields; databases written with the first layout (a table
//! `archive` keyed by owner, each message as the JSON of [`ArchivedMessage`]) are moved
//! to this one when they open ([`migrate`]).
//!
//! Writes go through one connection, queries through another (WAL lets them run side by
//! side); every write commits with `synchronous = FULL`, so an acknowledged append
//! survives a crash, like the sled trees' flush.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, ToSql, params};

use crate::archive::{
    ArchiveId, ArchivePage, ArchiveQuery, ArchivedMessage, RETRACT_WITHIN, page_of, paginate,
};
use crate::{Account, StorageError, StorageResult, key_part};

/// The file's name inside the database directory.
pub(super) const FILE_NAME: &str = "archive.sqlite3";

/// Page cache of the writing connection, KiB: the pages of both indexes that a batch of
/// many owners' messages touches stay cached (with SQLite's default of about 2 MiB, a
/// busy writer read them back from the file for every batch, at about twice the CPU per
/// message).
const WRITE_CACHE_KIB: i64 = 16 * 1024;
/// Page cache of the querying connection, KiB (SQLite's default).
const READ_CACHE_KIB: i64 = 2048;
/// WAL pages written before the writer copies them into the database (SQLite's default
/// is 1,000): an index page that many batches change is copied once per checkpoint, so
/// fewer checkpoints copy fewer pages (11–18% less CPU per message copy in batches of
/// 2,000–16,000, measured alone). The WAL file is cut back to [`WAL_LIMIT_BYTES`] after
/// a checkpoint.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;
const WAL_LIMIT_BYTES: i64 = 64 << 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS archive_messages (
    domain        TEXT    NOT NULL,
    local         TEXT    NOT NULL,
    id            INTEGER NOT NULL,
    with_jid      TEXT    NOT NULL,
    with_resource TEXT,
    outgoing      INTEGER NOT NULL,
    origin_id     TEXT,
    stanza        TEXT    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS archive_owner ON archive_messages (domain, local, id);
CREATE INDEX IF NOT EXISTS archive_with ON archive_messages (domain, local, with_jid, id);
";

/// Moves the messages of the first layout's table (`archive`, each message's JSON in
/// `message`) into `archive_messages`, and drops it, in one transaction: an interrupted
/// move leaves the old table whole, and the next open moves it again.
const MIGRATE_FIRST_LAYOUT: &str = "
INSERT OR REPLACE INTO archive_messages
    (domain, local, id, with_jid, with_resource, outgoing, origin_id, stanza)
SELECT domain, local, id, with_jid, with_resource,
       json_extract(CAST(message AS TEXT), '$.outgoing'),
       json_extract(CAST(message AS TEXT), '$.origin_id'),
       json_extract(CAST(message AS TEXT), '$.stanza')
FROM archive ORDER BY domain, local, id;
DROP TABLE archive;
";

/// The archived messages of every owner (see the module docs).
pub(super) struct SqliteArchive {
    write: Mutex<Connection>,
    read: Mutex<Connection>,
}

/// Adds context to SQLite errors, keeping detected corruption apart from other failures.
trait Context<T> {
    fn context(self, what: &str) -> StorageResult<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, what: &str) -> StorageResult<T> {
        self.map_err(|e| {
            let corrupt = matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            );
            if corrupt {
                StorageError::Corrupt(format!("archive: {what}: {e}"))
            } else {
                StorageError::Backend(format!("archive: {what}: {e}"))
            }
        })
    }
}

/// An id as stored: ids are microseconds since 1970, far below `i64::MAX`.
fn stored(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// The columns a message is read from, in [`read_message`]'s order.
const MESSAGE_COLUMNS: &str = "id, with_jid, with_resource, outgoing, origin_id, stanza";

/// A message from a row of [`MESSAGE_COLUMNS`].
fn read_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<ArchivedMessage> {
    Ok(ArchivedMessage {
        id: ArchiveId(row.get::<_, i64>(0)? as u64),
        with: row.get(1)?,
        with_resource: row.get(2)?,
        outgoing: row.get(3)?,
        origin_id: row.get(4)?,
        stanza: row.get(5)?,
    })
}

fn owner_parts(owner: &Account) -> StorageResult<(&str, &str)> {
    Ok((
        key_part(&owner.domain, "domain")?,
        key_part(&owner.local, "localpart")?,
    ))
}

/// Opens one connection with the archive's settings.
fn connect(path: &Path) -> StorageResult<Connection> {
    let what = format!("opening {}", path.display());
    let db = Connection::open(path).context(&what)?;
    db.pragma_update(None, "journal_mode", "WAL")
        .context(&what)?;
    db.pragma_update(None, "synchronous", "FULL")
        .context(&what)?;
    db.pragma_update(None, "cache_size", -READ_CACHE_KIB)
        .context(&what)?;
    // A checkpoint may hold the other connection for a moment.
    db.busy_timeout(std::time::Duration::from_secs(10))
        .context(&what)?;
    Ok(db)
}

/// Moves a first-layout archive into the current table, if the file has one.
fn migrate(db: &mut Connection) -> StorageResult<()> {
    let first_layout: Option<i64> = db
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'archive'",
            [],
            |r| r.get(0),
        )
        .optional()
        .context("looking for an archive of the first layout")?;
    if first_layout.is_none() {
        return Ok(());
    }
    let tx = db
        .transaction()
        .context("starting the move of the first layout")?;
    tx.execute_batch(MIGRATE_FIRST_LAYOUT)
        .context("moving the archive of the first layout")?;
    tx.commit()
        .context("committing the move of the first layout")
}

impl SqliteArchive {
    /// Opens (creating if needed) the archive in `dir`.
    pub(super) fn open(dir: &Path) -> StorageResult<SqliteArchive> {
        let path = dir.join(FILE_NAME);
        let mut write = connect(&path)?;
        write
            .pragma_update(None, "cache_size", -WRITE_CACHE_KIB)
            .context("sizing the writer's cache")?;
        write
            .pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .context("setting the checkpoint interval")?;
        write
            .pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)
            .context("limiting the WAL file")?;
        write
            .execute_batch(SCHEMA)
            .context("creating the archive table")?;
        migrate(&mut write)?;
        let read = connect(&path)?;
        Ok(SqliteArchive {
            write: Mutex::new(write),
            read: Mutex::new(read),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores messages (of any owners) in one transaction; a message with the id of a
    /// stored one of the same owner replaces it.
    pub(super) fn append(&self, entries: &[(Account, ArchivedMessage)]) -> StorageResult<()> {
        // Every part checked before anything is written.
        for (owner, m) in entries {
            owner_parts(owner)?;
            key_part(&m.with, "JID")?;
        }
        let mut db = self.writer();
        let tx = db.transaction().context("starting a write")?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO archive_messages \
                     (domain, local, id, with_jid, with_resource, outgoing, origin_id, stanza) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .context("preparing the insert")?;
            for (owner, m) in entries {
                insert
                    .execute(params![
                        owner.domain,
                        owner.local,
                        stored(m.id.0),
                        m.with,
                        m.with_resource,
                        m.outgoing,
                        m.origin_id,
                        m.stanza,
                    ])
                    .context("archiving")?;
            }
        }
        tx.commit().context("committing archived messages")
    }

    /// The ids of an owner's messages inside the query's bounds and party filter, in order.
    fn matching_ids(
        &self,
        db: &Connection,
        owner: &Account,
        q: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveId>> {
        let (domain, local) = owner_parts(owner)?;
        let (lo, hi) = q.id_range();
        if lo > hi {
            return Ok(Vec::new());
        }
        let (lo, hi) = (stored(lo.0), stored(hi.0));
        let mut ids = Vec::new();
        let mut keep = |id: i64| {
            let id = ArchiveId(id as u64);
            if q.in_bounds(id) {
                ids.push(id);
            }
        };
        // One statement text per filter shape (each cached on the connection), so each
        // plan uses the index that fits.
        let mut sql =
            String::from("SELECT id FROM archive_messages WHERE domain = ? AND local = ?");
        let mut args: Vec<&dyn ToSql> = vec![&domain, &local];
        if let Some(with) = &q.with {
            sql.push_str(" AND with_jid = ?");
            args.push(with);
        }
        if let Some(resource) = &q.with_resource {
            sql.push_str(" AND with_resource = ?");
            args.push(resource);
        }
        sql.push_str(" AND id BETWEEN ? AND ? ORDER BY id");
        args.extend([&lo as &dyn ToSql, &hi]);
        let mut st = db.prepare_cached(&sql).context("preparing a query")?;
        let rows = st
            .query_map(args.as_slice(), |r| r.get(0))
            .context("querying")?;
        for id in rows {
            keep(id.context("reading ids")?);
        }
        Ok(ids)
    }

    /// One page of an owner's archive.
    pub(super) fn query(&self, owner: &Account, q: &ArchiveQuery) -> StorageResult<ArchivePage> {
        let db = self.reader();
        let matching = self.matching_ids(&db, owner, q)?;
        let ids = paginate(&matching, &q.page);
        let mut load = db
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM archive_messages \
                 WHERE domain = ?1 AND local = ?2 AND id = ?3"
            ))
            .context("preparing a load")?;
        let mut loaded = Vec::with_capacity(ids.ids.len());
        for id in &ids.ids {
            let m = load
                .query_row(
                    params![owner.domain, owner.local, stored(id.0)],
                    read_message,
                )
                .optional()
                .context("loading a message")?;
            loaded.push(m);
        }
        let mut loaded = loaded.into_iter();
        Ok(page_of(ids, |_| loaded.next().flatten()))
    }

    /// See [`crate::ArchiveStore::retract`].
    pub(super) fn retract(
        &self,
        owner: &Account,
        with: &str,
        origin_id: &str,
        outgoing: bool,
        tombstone: &str,
    ) -> StorageResult<bool> {
        let (domain, local) = owner_parts(owner)?;
        let db = self.writer();
        let found = {
            let mut st = db
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM archive_messages \
                     WHERE domain = ?1 AND local = ?2 AND with_jid = ?3 \
                     ORDER BY id DESC LIMIT ?4"
                ))
                .context("preparing a retraction")?;
            let rows = st
                .query_map(
                    params![domain, local, with, RETRACT_WITHIN as i64],
                    read_message,
                )
                .context("looking for the retracted message")?;
            let mut found = None;
            for row in rows {
                let m = row.context("reading for a retraction")?;
                if m.outgoing == outgoing && m.matches_origin(origin_id) {
                    found = Some(m.id);
                    break;
                }
            }
            found
        };
        let Some(id) = found else {
            return Ok(false);
        };
        db.execute(
            "UPDATE archive_messages SET stanza = ?4 \
             WHERE domain = ?1 AND local = ?2 AND id = ?3",
            params![domain, local, stored(id.0), tombstone],
        )
        .context("retracting")?;
        Ok(true)
    }

    /// Removes the messages of a domain's owners archived before `before`.
    pub(super) fn remove_before(&self, domain: &str, before: ArchiveId) -> StorageResult<usize> {
        let domain = key_part(domain, "domain")?;
        self.writer()
            .execute(
                "DELETE FROM archive_messages WHERE domain = ?1 AND id < ?2",
                params![domain, stored(before.0)],
            )
            .context("purging the archive")
    }

    /// Removes an owner's messages.
    pub(super) fn delete_owner(&self, owner: &Account) -> StorageResult<()> {
        let (domain, local) = owner_parts(owner)?;
        self.writer()
            .execute(
                "DELETE FROM archive_messages WHERE domain = ?1 AND local = ?2",
                params![domain, local],
            )
            .context("deleting an archive")
            .map(drop)
    }

    /// Removes every message of a domain's owners.
    pub(super) fn delete_domain(&self, domain: &str) -> StorageResult<()> {
        let domain = key_part(domain, "domain")?;
        self.writer()
            .execute(
                "DELETE FROM archive_messages WHERE domain = ?1",
                params![domain],
            )
            .context("deleting a domain's archives")
            .map(drop)
    }

    /// Whether no message is stored.
    pub(super) fn is_empty(&self) -> StorageResult<bool> {
        let any: Option<i64> = self
            .reader()
            .query_row("SELECT 1 FROM archive_messages LIMIT 1", [], |r| r.get(0))
            .optional()
            .context("looking for messages")?;
        Ok(any.is_none())
    }

    /// Every stored message with its owner, in owner and id order (for export).
    pub(super) fn each(
        &self,
        mut f: impl FnMut(Account, ArchivedMessage) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let db = self.reader();
        let mut st = db
            .prepare(&format!(
                "SELECT {MESSAGE_COLUMNS}, domain, local FROM archive_messages \
                 ORDER BY domain, local, id"
            ))
            .context("preparing the export")?;
        let mut rows = st.query([]).context("exporting")?;
        while let Some(row) = rows.next().context("exporting")? {
            let m = read_message(row).context("exporting")?;
            let domain: String = row.get(6).context("exporting")?;
            let local: String = row.get(7).context("exporting")?;
            f(Account::new(local, domain), m)?;
        }
        Ok(())
    }
}
