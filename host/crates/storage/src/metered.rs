//! Storage latency by backend and operation: [`Metered`] wraps one store and records the
//! time of every call in `heliograph_storage_seconds{backend,op}` (`op` is
//! `store.method`, e.g. `offline.take_all`), whoever calls it and from whichever thread.
//! [`crate::Storage::metered`] wraps every store of a backend.

use std::sync::Arc;
use std::time::Instant;

use crate::account_data::AccountDataStore;
use crate::archive::{
    ArchiveId, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore, ArchivedMessage,
};
use crate::credentials::StoredCredentials;
use crate::muc::{MucStore, RoomLogEntry, StoredRoom};
use crate::pep::{PepNode, PepStore};
use crate::plugins::{KvWrite, PluginStore, SlotRecord};
use crate::tokens::{FastSlots, RefreshRecord, TokenStore};
use crate::{
    Account, BlockStore, OfflineMessage, OfflineStore, QueuedMessage, Roster, RosterItem,
    RosterStore, StorageResult, TenantRecord, TenantStore, UserStore,
};

/// A store whose calls are timed.
pub struct Metered<T: ?Sized> {
    backend: &'static str,
    inner: Arc<T>,
}

impl<T: ?Sized> Metered<T> {
    pub fn new(backend: &'static str, inner: Arc<T>) -> Metered<T> {
        Metered { backend, inner }
    }

    fn time<R>(&self, op: &'static str, f: impl FnOnce(&T) -> R) -> R {
        let started = Instant::now();
        let out = f(&self.inner);
        heliograph_metrics::storage_call(self.backend, op, started.elapsed());
        out
    }
}

/// Implements `$trait` for `Metered<dyn $trait>` by timing each listed method.
macro_rules! metered {
    ($trait:ident, $store:literal, {
        $(fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty;)*
    }) => {
        impl $trait for Metered<dyn $trait> {
            $(fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.time(concat!($store, ".", stringify!($name)), |s| s.$name($($arg),*))
            })*
        }
    };
}

metered!(UserStore, "users", {
    fn create_user(&self, account: &Account, creds: &StoredCredentials) -> StorageResult<()>;
    fn set_credentials(&self, account: &Account, creds: &StoredCredentials) -> StorageResult<()>;
    fn credentials(&self, account: &Account) -> StorageResult<Option<StoredCredentials>>;
    fn delete_user(&self, account: &Account) -> StorageResult<()>;
    fn list_users(&self, domain: &str) -> StorageResult<Vec<String>>;
    fn count_users(&self, domain: &str) -> StorageResult<usize>;
    fn purge_domain(&self, domain: &str) -> StorageResult<()>;
});

metered!(RosterStore, "rosters", {
    fn roster(&self, account: &Account) -> StorageResult<Roster>;
    fn item(&self, account: &Account, contact: &str) -> StorageResult<Option<RosterItem>>;
    fn put_item(&self, account: &Account, item: &RosterItem) -> StorageResult<u64>;
    fn remove_item(&self, account: &Account, contact: &str) -> StorageResult<u64>;
});

metered!(OfflineStore, "offline", {
    fn push(&self, account: &Account, msg: &OfflineMessage) -> StorageResult<usize>;
    fn take_all(&self, account: &Account) -> StorageResult<Vec<OfflineMessage>>;
    fn peek(
        &self,
        account: &Account,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<QueuedMessage>>;
    fn remove(&self, account: &Account, ids: &[u64]) -> StorageResult<usize>;
    fn count(&self, account: &Account) -> StorageResult<usize>;
});

metered!(ArchiveStore, "archive", {
    fn append(&self, entries: &[(Account, ArchivedMessage)]) -> StorageResult<()>;
    fn query(&self, owner: &Account, query: &ArchiveQuery) -> StorageResult<ArchivePage>;
    fn retract(
        &self,
        owner: &Account,
        with: &str,
        origin_id: &str,
        outgoing: bool,
        tombstone: &str,
    ) -> StorageResult<bool>;
    fn remove_before(&self, domain: &str, before: ArchiveId) -> StorageResult<usize>;
    fn delete_owner(&self, owner: &Account) -> StorageResult<()>;
    fn prefs(&self, owner: &Account) -> StorageResult<Option<ArchivePrefs>>;
    fn set_prefs(&self, owner: &Account, prefs: &ArchivePrefs) -> StorageResult<()>;
});

metered!(AccountDataStore, "account_data", {
    fn get(&self, account: &Account, kind: &str) -> StorageResult<Option<Vec<u8>>>;
    fn put(&self, account: &Account, kind: &str, value: &[u8]) -> StorageResult<()>;
});

metered!(PepStore, "pep", {
    fn node_names(&self, owner: &Account) -> StorageResult<Vec<String>>;
    fn node(&self, owner: &Account, name: &str) -> StorageResult<Option<PepNode>>;
    fn put_node(&self, owner: &Account, node: &PepNode) -> StorageResult<()>;
    fn delete_node(&self, owner: &Account, name: &str) -> StorageResult<bool>;
});

metered!(BlockStore, "blocks", {
    fn blocked(&self, account: &Account) -> StorageResult<Vec<String>>;
    fn block(&self, account: &Account, jids: &[String]) -> StorageResult<Vec<String>>;
    fn unblock(&self, account: &Account, jids: &[String]) -> StorageResult<Vec<String>>;
    fn unblock_all(&self, account: &Account) -> StorageResult<Vec<String>>;
});

metered!(TenantStore, "tenants", {
    fn tenant_records(&self) -> StorageResult<Vec<TenantRecord>>;
    fn tenant_record(&self, name: &str) -> StorageResult<Option<TenantRecord>>;
    fn put_tenant_record(&self, record: &TenantRecord) -> StorageResult<()>;
    fn create_tenant_record(&self, record: &TenantRecord) -> StorageResult<()>;
    fn delete_tenant_record(&self, name: &str) -> StorageResult<()>;
});

metered!(MucStore, "muc", {
    fn rooms(&self, domain: &str) -> StorageResult<Vec<StoredRoom>>;
    fn put_room(&self, domain: &str, room: &StoredRoom) -> StorageResult<()>;
    fn delete_room(&self, domain: &str, name: &str) -> StorageResult<()>;
    fn append_log(
        &self,
        domain: &str,
        name: &str,
        entries: &[RoomLogEntry],
        keep: usize,
    ) -> StorageResult<()>;
    fn room_log(
        &self,
        domain: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<(u64, RoomLogEntry)>>;
    fn delete_log(&self, domain: &str, name: &str) -> StorageResult<()>;
});

metered!(PluginStore, "plugins", {
    fn kv_get(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<Option<Vec<u8>>>;
    fn kv_set(
        &self,
        tenant: &str,
        slot: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> StorageResult<KvWrite>;
    fn kv_delete(&self, tenant: &str, slot: &str, key: &str) -> StorageResult<bool>;
    fn kv_list_keys(
        &self,
        tenant: &str,
        slot: &str,
        prefix: &str,
        limit: usize,
    ) -> StorageResult<Vec<String>>;
    fn kv_usage(&self, tenant: &str, slot: &str) -> StorageResult<u64>;
    fn kv_purge(&self, tenant: &str, slot: &str) -> StorageResult<()>;
    fn put_blob(&self, sha256: &str, wasm: &[u8]) -> StorageResult<()>;
    fn blob(&self, sha256: &str) -> StorageResult<Option<Vec<u8>>>;
    fn delete_blob(&self, sha256: &str) -> StorageResult<()>;
    fn put_slot(&self, record: &SlotRecord) -> StorageResult<()>;
    fn delete_slot(&self, tenant: &str, slot: &str) -> StorageResult<()>;
    fn slots(&self) -> StorageResult<Vec<SlotRecord>>;
});

metered!(TokenStore, "tokens", {
    fn signing_key(&self, tenant: &str) -> StorageResult<Vec<u8>>;
    fn revocation_seq(&self, account: &Account) -> StorageResult<u64>;
    fn put_refresh(&self, account: &Account, record: &RefreshRecord) -> StorageResult<()>;
    fn refresh(&self, account: &Account, id: &str) -> StorageResult<Option<RefreshRecord>>;
    fn list_refresh(&self, account: &Account) -> StorageResult<Vec<RefreshRecord>>;
    fn revoke_refresh(&self, account: &Account, id: &str) -> StorageResult<bool>;
    fn revoke_all(&self, account: &Account) -> StorageResult<usize>;
    fn purge_tokens(&self, domain: &str) -> StorageResult<()>;
    fn fast_slots(&self, account: &Account, client: &str) -> StorageResult<FastSlots>;
    fn put_fast_slots(
        &self,
        account: &Account,
        client: &str,
        slots: &FastSlots,
    ) -> StorageResult<()>;
    fn delete_fast(&self, account: &Account) -> StorageResult<()>;
});
