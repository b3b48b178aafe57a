//! [`ArchiveStore`] of the embedded backend: the messages in SQLite
//! ([`super::archive_sqlite`], which says why), the preferences in the sled tree
//! `archive_prefs`.
//!
//! Databases written before the messages moved to SQLite kept them in the sled trees
//! `archive` (each owner's messages in id order) and `archive_with` (an index by party).
//! [`move_sled_archive`] moves such messages into SQLite when the database opens, batch by
//! batch, each batch committed in SQLite before it is removed from sled, so an
//! interrupted move is finished by the next open and loses nothing.

use sled::{Batch, Db};

use super::archive_sqlite::SqliteArchive;
use super::{Context, SledStore, decode, encode, keys};
use crate::archive::{ArchiveId, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore};
use crate::{Account, ArchivedMessage, StorageError, StorageResult};

/// The sled trees the messages were kept in before.
const OLD_MESSAGES: &str = "archive";
const OLD_INDEX: &str = "archive_with";

/// Messages moved per SQLite transaction when an old database opens.
const MOVE_BATCH: usize = 1000;

/// Moves archived messages left in the old sled trees into `archive`, then drops the
/// trees. Returns how many moved.
pub(super) fn move_sled_archive(db: &Db, archive: &SqliteArchive) -> StorageResult<usize> {
    let has = |name: &str| {
        db.tree_names()
            .iter()
            .any(|n| n.as_ref() == name.as_bytes())
    };
    if !has(OLD_MESSAGES) && !has(OLD_INDEX) {
        return Ok(0);
    }
    let old = db
        .open_tree(OLD_MESSAGES)
        .context("opening the old archive tree")?;
    let mut moved = 0;
    loop {
        let mut batch = Vec::with_capacity(MOVE_BATCH);
        let mut keys_moved = Batch::default();
        for entry in old.iter().take(MOVE_BATCH) {
            let (key, value) = entry.context("reading the old archive")?;
            batch.push((old_owner(&key)?, decode::<ArchivedMessage>(&key, &value)?));
            keys_moved.remove(key);
        }
        if batch.is_empty() {
            break;
        }
        archive.append(&batch)?;
        old.apply_batch(keys_moved)
            .context("removing moved messages")?;
        db.flush().context("flushing to disk")?;
        moved += batch.len();
    }
    for name in [OLD_MESSAGES, OLD_INDEX] {
        db.drop_tree(name)
            .context(&format!("dropping the old tree {name}"))?;
    }
    db.flush().context("flushing to disk")?;
    Ok(moved)
}

/// The owner in an old `archive` key (`domain \0 local \0 id`).
fn old_owner(key: &[u8]) -> StorageResult<Account> {
    let malformed = || StorageError::Corrupt(format!("malformed key {}", keys::describe(key)));
    let body = key
        .len()
        .checked_sub(9)
        .map(|end| &key[..end])
        .ok_or_else(malformed)?;
    let mut parts = body.splitn(2, |b| *b == 0);
    let (Some(domain), Some(local)) = (parts.next(), parts.next()) else {
        return Err(malformed());
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| malformed());
    Ok(Account::new(text(local)?, text(domain)?))
}

impl ArchiveStore for SledStore {
    fn append(&self, entries: &[(Account, ArchivedMessage)]) -> StorageResult<()> {
        self.messages.append(entries)
    }

    fn query(&self, owner: &Account, q: &ArchiveQuery) -> StorageResult<ArchivePage> {
        self.messages.query(owner, q)
    }

    fn retract(
        &self,
        owner: &Account,
        with: &str,
        origin_id: &str,
        outgoing: bool,
        tombstone: &str,
    ) -> StorageResult<bool> {
        self.messages
            .retract(owner, with, origin_id, outgoing, tombstone)
    }

    fn remove_before(&self, domain: &str, before: ArchiveId) -> StorageResult<usize> {
        self.messages.remove_before(domain, before)
    }

    fn delete_owner(&self, owner: &Account) -> StorageResult<()> {
        self.messages.delete_owner(owner)?;
        self.archive_prefs
            .remove(keys::account_key(owner)?)
            .context("removing archive preferences")?;
        self.flush()
    }

    fn prefs(&self, owner: &Account) -> StorageResult<Option<ArchivePrefs>> {
        let key = keys::account_key(owner)?;
        match self
            .archive_prefs
            .get(&key)
            .context("reading archive preferences")?
        {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn set_prefs(&self, owner: &Account, prefs: &ArchivePrefs) -> StorageResult<()> {
        self.archive_prefs
            .insert(keys::account_key(owner)?, encode(prefs)?)
            .context("storing archive preferences")?;
        self.flush()
    }
}
