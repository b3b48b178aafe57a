//! sled implementation of every store: one `SledStore` over one database implements
//! [`UserStore`], [`RosterStore`], [`OfflineStore`], [`BlockStore`], `MucStore` (in
//! `muc.rs`), [`PluginStore`] (in `plugins.rs`) and `ArchiveStore` (in `archive.rs`; its
//! messages live in a SQLite file beside the trees, see `archive_sqlite.rs`).
//!
//! The key layout is in `keys.rs`; each trait lives in its own file. Every mutating method
//! flushes the database before returning `Ok`, so an acknowledged write survives a crash.
//!
//! Atomicity, in short:
//! - `create_user` and `set_credentials` are compare-and-swap on the credentials key.
//! - `put_item` / `remove_item` change the item and bump the roster version in one
//!   transaction.
//! - `delete_user` removes the credentials and every entry of the account that exists when
//!   it starts in one transaction, then sweeps entries written concurrently meanwhile.
//! - `take_all` removes exactly the messages it returns, so a concurrent `push` is either
//!   returned or stays queued, and two concurrent `take_all` never return the same message.
//! - `create_tenant_record` is compare-and-swap on the tenant's key.
//! - `block` / `unblock` / `unblock_all` are atomic per JID; `purge_domain` is atomic per
//!   tree and idempotent (accounts go last, so an interrupted purge still lists them).
//!
//! [`UserStore`]: super::UserStore
//! [`RosterStore`]: super::RosterStore
//! [`OfflineStore`]: super::OfflineStore
//! [`BlockStore`]: super::BlockStore
//! [`PluginStore`]: super::PluginStore

mod account_data;
mod archive;
mod archive_sqlite;
mod blocks;
mod dump;
mod keys;
mod muc;
mod offline;
mod pep;
mod plugins;
mod rosters;
mod tenants;
#[cfg(test)]
mod tests;
mod tokens;
mod users;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::TransactionError;
use sled::{Batch, Db, IVec, Tree};

use super::{Storage, StorageError, StorageResult};

/// sled's own default page cache: 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

/// Opens (creating if needed) the database in `dir`, keeping at most `cache_bytes` of its
/// pages in memory (sled's page cache; it fills as the database grows).
pub fn open(dir: &Path, cache_bytes: u64) -> StorageResult<Storage> {
    let store = Arc::new(SledStore::open(dir, cache_bytes)?);
    let flusher = Arc::clone(&store);
    Ok(Storage {
        users: store.clone(),
        rosters: store.clone(),
        offline: store.clone(),
        archive: store.clone(),
        account_data: store.clone(),
        pep: store.clone(),
        blocks: store.clone(),
        tenants: store.clone(),
        muc: store.clone(),
        tokens: store.clone(),
        plugins: store.clone(),
        flush: Arc::new(move || flusher.flush()),
        backend: store,
    })
}

/// Opens the database, waiting briefly for the file lock: a `Db` dropped moments ago
/// (same process) releases its lock only when sled's background flusher lets go of it.
fn open_db(dir: &Path, cache_bytes: u64) -> sled::Result<Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            // sled reports the held lock as an `Other` error whose text names it.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// The database and its trees (see [`keys`] for what each holds).
struct SledStore {
    db: Db,
    users: Tree,
    roster_meta: Tree,
    rosters: Tree,
    offline: Tree,
    blocks: Tree,
    tenants: Tree,
    muc_rooms: Tree,
    muc_logs: Tree,
    tokens: Tree,
    plugin_kv: Tree,
    plugin_kv_usage: Tree,
    plugin_blobs: Tree,
    plugin_slots: Tree,
    /// The archived messages (the preferences are in `archive_prefs`).
    messages: archive_sqlite::SqliteArchive,
    archive_prefs: Tree,
    account_data: Tree,
    pep: Tree,
}

impl SledStore {
    fn open(dir: &Path, cache_bytes: u64) -> StorageResult<SledStore> {
        let db =
            open_db(dir, cache_bytes).context(&format!("opening database in {}", dir.display()))?;
        let tree = |name: &str| db.open_tree(name).context(&format!("opening tree {name}"));
        // After sled, whose file lock keeps a second process out of the directory.
        let messages = archive_sqlite::SqliteArchive::open(dir)?;
        archive::move_sled_archive(&db, &messages)?;
        Ok(SledStore {
            users: tree("users")?,
            roster_meta: tree("roster_meta")?,
            rosters: tree("rosters")?,
            offline: tree("offline")?,
            blocks: tree("blocks")?,
            tenants: tree("tenants")?,
            muc_rooms: tree("muc_rooms")?,
            muc_logs: tree("muc_logs")?,
            tokens: tree("tokens")?,
            plugin_kv: tree("plugin_kv")?,
            plugin_kv_usage: tree("plugin_kv_usage")?,
            plugin_blobs: tree("plugin_blobs")?,
            plugin_slots: tree("plugin_slots")?,
            messages,
            archive_prefs: tree("archive_prefs")?,
            account_data: tree("account_data")?,
            pep: tree("pep")?,
            db,
        })
    }

    /// Writes everything to disk; called before acknowledging any write.
    fn flush(&self) -> StorageResult<()> {
        self.db.flush().context("flushing to disk").map(drop)
    }

    /// Trees whose keys are `account prefix + entry` (see [`keys::account_prefix`]).
    fn entry_trees(&self) -> [&Tree; 3] {
        [&self.rosters, &self.offline, &self.blocks]
    }
}

/// Adds context to sled errors, keeping detected corruption apart from other failures.
trait Context<T> {
    fn context(self, what: &str) -> StorageResult<T>;
}

impl<T> Context<T> for sled::Result<T> {
    fn context(self, what: &str) -> StorageResult<T> {
        self.map_err(|e| match e {
            sled::Error::Corruption { .. } => StorageError::Corrupt(format!("{what}: {e}")),
            e => StorageError::Backend(format!("{what}: {e}")),
        })
    }
}

impl<T> Context<T> for Result<T, TransactionError<StorageError>> {
    fn context(self, what: &str) -> StorageResult<T> {
        self.or_else(|e| match e {
            TransactionError::Abort(e) => Err(e),
            TransactionError::Storage(e) => Err(e).context(what),
        })
    }
}

/// Serializes a stored value.
fn encode<T: Serialize>(value: &T) -> StorageResult<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| StorageError::Backend(format!("encoding {}: {e}", std::any::type_name::<T>())))
}

/// Deserializes the value stored under `key`.
fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StorageResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = std::any::type_name::<T>();
        StorageError::Corrupt(format!("{what} at key {}: {e}", keys::describe(key)))
    })
}

/// Every entry of `tree` under `prefix`, in key order.
fn scan(tree: &Tree, prefix: &[u8]) -> StorageResult<Vec<(IVec, IVec)>> {
    tree.scan_prefix(prefix)
        .map(|entry| entry.context(&format!("reading {}", tree_name(tree))))
        .collect()
}

/// Every key of `tree` under `prefix`, in key order.
fn scan_keys(tree: &Tree, prefix: &[u8]) -> StorageResult<Vec<IVec>> {
    Ok(scan(tree, prefix)?
        .into_iter()
        .map(|(key, _)| key)
        .collect())
}

/// Number of entries of `tree` under `prefix`.
fn count(tree: &Tree, prefix: &[u8]) -> StorageResult<usize> {
    tree.scan_prefix(prefix)
        .keys()
        .try_fold(0, |n, key| key.map(|_| n + 1))
        .context(&format!("counting in {}", tree_name(tree)))
}

/// Removes every entry of `tree` under `prefix` in one atomic batch.
fn remove_prefix(tree: &Tree, prefix: &[u8]) -> StorageResult<()> {
    let mut batch = Batch::default();
    for key in scan_keys(tree, prefix)? {
        batch.remove(key);
    }
    tree.apply_batch(batch)
        .context(&format!("removing from {}", tree_name(tree)))
}

fn tree_name(tree: &Tree) -> String {
    String::from_utf8_lossy(&tree.name()).into_owned()
}
