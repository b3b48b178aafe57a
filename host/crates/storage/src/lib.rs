//! Persistent data, one small trait per concern: accounts and credentials
//! ([`UserStore`]), rosters ([`RosterStore`]), offline messages ([`OfflineStore`]),
//! message archives ([`ArchiveStore`]), small per-account records ([`AccountDataStore`],
//! with the vCard, private XML and last logout on top of it in [`profiles`]),
//! personal eventing nodes ([`PepStore`]),
//! block lists ([`BlockStore`]), persistent MUC rooms ([`MucStore`]), plugin versions,
//! blobs and key-value data ([`PluginStore`]) and server-issued token state
//! ([`TokenStore`]). [`Storage`] bundles one implementation of each with its [`Backend`]
//! (name, reachability, export and import); the embedded default is [`sled_store`], and
//! the `heliograph-storage-postgres` crate is the shared one for clusters. Every backend
//! passes the same [`conformance`] suite.
//!
//! Uploaded files (XEP-0363) are not in the database: [`files`] has the small trait they
//! are kept behind and its disk implementation.
//!
//! Every account is addressed by its bare JID ([`Account`]); keys are laid out domain
//! first so that all data of one domain (and so of one tenant) can be listed and purged.
//! A write that returns `Ok` is on disk: implementations flush before acknowledging.
//! Methods are synchronous; async callers run them with [`blocking`].

pub mod account_data;
pub mod archive;
pub mod backend;
pub mod conformance;
pub mod credentials;
pub mod dump;
pub mod files;
pub mod metered;
pub mod muc;
pub mod pep;
pub mod plugins;
pub mod profiles;
pub mod sled_store;
pub mod tokens;

pub use account_data::{AccountDataStore, MemAccountDataStore};
pub use archive::{
    ArchiveDefault, ArchiveId, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore,
    ArchivedMessage, MemArchiveStore, Page, PageAt,
};
pub use backend::{Backend, DumpRecord, MemBackend};
pub use muc::{MemMucStore, MucStore, RoomLogEntry, StoredRoom};
pub use pep::{MemPepStore, PepAffiliation, PepItem, PepNode, PepStore};
pub use plugins::{KvWrite, MemPluginStore, PluginStore, SlotRecord, VersionRecord};
pub use tokens::{MemTokenStore, RefreshRecord, TokenStore};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use heliograph_xmpp::Account;

pub use credentials::StoredCredentials;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Checks one part of a storage key (a domain, localpart, JID, room or tenant name):
/// not empty and without NUL, which normalized JIDs never contain. Every backend refuses
/// such parts the same way, before writing anything.
pub fn key_part<'a>(value: &'a str, what: &str) -> StorageResult<&'a str> {
    if value.is_empty() || value.contains('\0') {
        return Err(StorageError::Backend(format!(
            "invalid {what} {value:?} in a storage key: empty or containing NUL"
        )));
    }
    Ok(value)
}

/// Subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }
    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
}

/// One roster entry, including the server-side subscription state that RFC 6121 requires
/// the server to remember (pending-out `ask`, pending-in, pre-approval).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RosterItem {
    /// Bare JID of the contact.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// Pending-out: the user sent a subscription request not yet answered.
    pub ask: bool,
    /// Pending-in: the contact asked to subscribe and the user has not answered.
    pub pending_in: bool,
    /// Serialized `<presence type='subscribe'/>` to redeliver while pending-in.
    pub pending_in_stanza: Option<String>,
    /// Pre-approved subscription request (RFC 6121 §3.4).
    pub approved: bool,
    pub groups: Vec<String>,
}

/// A user's roster with its version (XEP-0237).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    pub version: u64,
    pub items: Vec<RosterItem>,
}

/// A message stored for later delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineMessage {
    /// Serialized stanza (in `jabber:client`).
    pub stanza: String,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stamp_ms: u64,
}

/// A message still queued, with its place in the account's queue (ids grow with each
/// push; what they are otherwise is the backend's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: u64,
    pub message: OfflineMessage,
}

/// Accounts and their credentials.
pub trait UserStore: Send + Sync {
    /// Creates an account; `AlreadyExists` if it does.
    fn create_user(&self, account: &Account, creds: &StoredCredentials) -> StorageResult<()>;
    /// Replaces the credentials; `NotFound` if there is no such account.
    fn set_credentials(&self, account: &Account, creds: &StoredCredentials) -> StorageResult<()>;
    /// The stored credentials, `None` if there is no such account.
    fn credentials(&self, account: &Account) -> StorageResult<Option<StoredCredentials>>;
    /// Deletes the account and all its data (roster, offline messages, block list).
    /// `NotFound` if there is no such account.
    fn delete_user(&self, account: &Account) -> StorageResult<()>;
    /// Localparts of the accounts of a domain, sorted.
    fn list_users(&self, domain: &str) -> StorageResult<Vec<String>>;
    /// Number of accounts of a domain.
    fn count_users(&self, domain: &str) -> StorageResult<usize>;
    /// Deletes every account of a domain and all their data (and the domain's
    /// persistent MUC rooms).
    fn purge_domain(&self, domain: &str) -> StorageResult<()>;
}

/// Rosters.
pub trait RosterStore: Send + Sync {
    /// The whole roster (empty if none).
    fn roster(&self, account: &Account) -> StorageResult<Roster>;
    /// One item by contact bare JID.
    fn item(&self, account: &Account, contact: &str) -> StorageResult<Option<RosterItem>>;
    /// Inserts or replaces an item; returns the new roster version.
    fn put_item(&self, account: &Account, item: &RosterItem) -> StorageResult<u64>;
    /// Removes an item (no error if absent); returns the new roster version.
    fn remove_item(&self, account: &Account, contact: &str) -> StorageResult<u64>;
}

/// Offline messages (XEP-0160).
pub trait OfflineStore: Send + Sync {
    /// Stores a message; returns the number now queued for the account.
    fn push(&self, account: &Account, msg: &OfflineMessage) -> StorageResult<usize>;
    /// Removes and returns every queued message, oldest first.
    fn take_all(&self, account: &Account) -> StorageResult<Vec<OfflineMessage>>;
    /// Up to `limit` queued messages with an id above `after` (from the start with
    /// `None`), oldest first, left in the queue: a message stays stored until
    /// [`OfflineStore::remove`] says its recipient has it.
    fn peek(
        &self,
        account: &Account,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<QueuedMessage>>;
    /// Removes these queued messages (ids no longer queued are skipped); returns how
    /// many were removed.
    fn remove(&self, account: &Account, ids: &[u64]) -> StorageResult<usize>;
    /// Number of queued messages.
    fn count(&self, account: &Account) -> StorageResult<usize>;
}

/// Block lists (XEP-0191).
pub trait BlockStore: Send + Sync {
    /// Blocked JIDs (as stored, normalized), sorted.
    fn blocked(&self, account: &Account) -> StorageResult<Vec<String>>;
    /// Adds JIDs; returns those that were newly added.
    fn block(&self, account: &Account, jids: &[String]) -> StorageResult<Vec<String>>;
    /// Removes JIDs; returns those that were present.
    fn unblock(&self, account: &Account, jids: &[String]) -> StorageResult<Vec<String>>;
    /// Empties the list; returns what was in it.
    fn unblock_all(&self, account: &Account) -> StorageResult<Vec<String>>;
}

/// What storage keeps per tenant: the full spec of API-managed tenants (as JSON; the
/// tenants layer owns its shape), runtime overrides of config tenants (enabled flag), and
/// the hash of the tenant's admin token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    /// Present for tenants created through the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// Enabled/disabled override for tenants defined in the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_override: Option<bool>,
    /// SHA-256 (hex) of the tenant's admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

impl TenantRecord {
    pub fn new(name: &str) -> TenantRecord {
        TenantRecord {
            name: name.to_string(),
            spec: None,
            enabled_override: None,
            token_sha256: None,
        }
    }

    /// True when the record holds nothing worth keeping.
    pub fn is_empty(&self) -> bool {
        self.spec.is_none() && self.enabled_override.is_none() && self.token_sha256.is_none()
    }
}

/// Tenants managed through the admin API, and runtime state of config tenants.
pub trait TenantStore: Send + Sync {
    /// Every stored record, sorted by name.
    fn tenant_records(&self) -> StorageResult<Vec<TenantRecord>>;
    /// One record by name.
    fn tenant_record(&self, name: &str) -> StorageResult<Option<TenantRecord>>;
    /// Inserts or replaces a record.
    fn put_tenant_record(&self, record: &TenantRecord) -> StorageResult<()>;
    /// Inserts a record only if none has its name: `AlreadyExists` otherwise. Atomic in
    /// the database, so two nodes creating one tenant at once cannot both succeed (the
    /// default, for test stores, checks then writes).
    fn create_tenant_record(&self, record: &TenantRecord) -> StorageResult<()> {
        if self.tenant_record(&record.name)?.is_some() {
            return Err(StorageError::AlreadyExists);
        }
        self.put_tenant_record(record)
    }
    /// Deletes a record (no error if absent).
    fn delete_tenant_record(&self, name: &str) -> StorageResult<()>;
}

/// One implementation of every store.
#[derive(Clone)]
pub struct Storage {
    pub users: Arc<dyn UserStore>,
    pub rosters: Arc<dyn RosterStore>,
    pub offline: Arc<dyn OfflineStore>,
    pub archive: Arc<dyn ArchiveStore>,
    pub account_data: Arc<dyn AccountDataStore>,
    /// Personal eventing (XEP-0163) nodes.
    pub pep: Arc<dyn PepStore>,
    pub blocks: Arc<dyn BlockStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub muc: Arc<dyn MucStore>,
    pub plugins: Arc<dyn PluginStore>,
    /// Server-issued tokens: signing keys, revocation, refresh tokens.
    pub tokens: Arc<dyn TokenStore>,
    /// Flushes everything to disk (called at shutdown).
    pub flush: Arc<dyn Fn() -> StorageResult<()> + Send + Sync>,
    /// The backend as a whole: name, reachability, export and import.
    pub backend: Arc<dyn Backend>,
}

impl Storage {
    /// Opens (creating if needed) the sled database in `dir`, its calls timed, with sled's
    /// default page cache (1 GiB).
    pub fn open_sled(dir: &std::path::Path) -> StorageResult<Storage> {
        Self::open_sled_with_cache(dir, sled_store::DEFAULT_CACHE_BYTES)
    }

    /// [`Storage::open_sled`] keeping at most `cache_bytes` of database pages in memory.
    pub fn open_sled_with_cache(dir: &std::path::Path, cache_bytes: u64) -> StorageResult<Storage> {
        Ok(sled_store::open(dir, cache_bytes)?.metered())
    }

    /// The same stores, each call timed in `heliograph_storage_seconds{backend,op}`.
    pub fn metered(self) -> Storage {
        let name = self.backend.name();
        Storage {
            users: Arc::new(metered::Metered::<dyn UserStore>::new(name, self.users)),
            rosters: Arc::new(metered::Metered::<dyn RosterStore>::new(name, self.rosters)),
            offline: Arc::new(metered::Metered::<dyn OfflineStore>::new(
                name,
                self.offline,
            )),
            archive: Arc::new(metered::Metered::<dyn ArchiveStore>::new(
                name,
                self.archive,
            )),
            account_data: Arc::new(metered::Metered::<dyn AccountDataStore>::new(
                name,
                self.account_data,
            )),
            pep: Arc::new(metered::Metered::<dyn PepStore>::new(name, self.pep)),
            blocks: Arc::new(metered::Metered::<dyn BlockStore>::new(name, self.blocks)),
            tenants: Arc::new(metered::Metered::<dyn TenantStore>::new(name, self.tenants)),
            muc: Arc::new(metered::Metered::<dyn MucStore>::new(name, self.muc)),
            plugins: Arc::new(metered::Metered::<dyn PluginStore>::new(name, self.plugins)),
            tokens: Arc::new(metered::Metered::<dyn TokenStore>::new(name, self.tokens)),
            flush: self.flush,
            backend: self.backend,
        }
    }
}

impl Storage {
    /// Runs a read of these stores from async code: in line when the backend reads from
    /// memory ([`Backend::reads_in_memory`]: sled), where the blocking pool's hand-over
    /// (a thread woken to run it, and the task woken again after) costs several times
    /// the read; through [`blocking`] otherwise (PostgreSQL). For reads only: writes may
    /// wait on the disk. (The archive, in SQLite beside sled, is read through
    /// [`blocking`]: its writer holds the database while it commits.)
    pub async fn read<T, F>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.backend.reads_in_memory() {
            f()
        } else {
            blocking(f).await
        }
    }
}

/// Runs a blocking storage call from async code without stalling the runtime's other tasks.
/// (Each store call inside is timed by [`metered`].)
pub async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    /// A backend whose reads go over the network.
    struct Remote;

    impl Backend for Remote {
        fn name(&self) -> &'static str {
            "remote"
        }
        fn is_empty(&self) -> StorageResult<bool> {
            Ok(true)
        }
        fn export(&self, _: &mut backend::Sink<'_>) -> StorageResult<u64> {
            Ok(0)
        }
        fn import(
            &self,
            _: &mut dyn Iterator<Item = StorageResult<DumpRecord>>,
        ) -> StorageResult<u64> {
            Ok(0)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn reads_run_in_line_only_where_the_backend_reads_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let sled = Storage::open_sled(dir.path()).unwrap();
        let here = std::thread::current().id();
        let thread = || std::thread::current().id();
        assert_eq!(sled.read(thread).await, here);
        let remote = Storage {
            backend: Arc::new(Remote),
            ..sled.clone()
        };
        assert_ne!(remote.read(thread).await, here, "through the blocking pool");
    }
}
