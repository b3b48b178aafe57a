//! What a storage backend offers beyond the per-concern traits: its name (the `backend`
//! label of `heliograph_storage_seconds`), whether its database answers (`/health/ready`),
//! and the raw record stream that `heliograph storage export` and `import` move between
//! backends ([`DumpRecord`], in the order [`KINDS`] gives).
//!
//! Export and import are the only ways to write a roster version, an offline message's
//! position or a room-log line number as they are: moving a deployment must keep them.

use serde::{Deserialize, Serialize};

use crate::archive::{ArchivePrefs, ArchivedMessage};
use crate::credentials::StoredCredentials;
use crate::muc::{RoomLogEntry, StoredRoom};
use crate::plugins::SlotRecord;
use crate::tokens::{FastSlots, RefreshRecord};
use crate::{OfflineMessage, RosterItem, StorageResult, TenantRecord};

/// One stored fact, as it travels in a dump. Accounts are given as (`domain`, `local`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DumpRecord {
    User {
        domain: String,
        local: String,
        credentials: StoredCredentials,
    },
    RosterVersion {
        domain: String,
        local: String,
        version: u64,
    },
    RosterItem {
        domain: String,
        local: String,
        item: RosterItem,
    },
    /// Offline messages of one account come oldest first; their order is their position.
    Offline {
        domain: String,
        local: String,
        message: OfflineMessage,
    },
    Block {
        domain: String,
        local: String,
        jid: String,
    },
    Tenant {
        record: TenantRecord,
    },
    Room {
        domain: String,
        room: StoredRoom,
    },
    RoomLog {
        domain: String,
        room: String,
        number: u64,
        entry: RoomLogEntry,
    },
    SigningKey {
        tenant: String,
        #[serde(with = "b64")]
        key: Vec<u8>,
    },
    RevocationSeq {
        domain: String,
        local: String,
        seq: u64,
    },
    Refresh {
        domain: String,
        local: String,
        record: RefreshRecord,
    },
    Fast {
        domain: String,
        local: String,
        client: String,
        slots: FastSlots,
    },
    PluginBlob {
        sha256: String,
        #[serde(with = "b64")]
        wasm: Vec<u8>,
    },
    PluginSlot {
        record: SlotRecord,
    },
    /// The pair's quota usage is not dumped: import recomputes it from the entries.
    PluginKv {
        tenant: String,
        slot: String,
        key: String,
        #[serde(with = "b64")]
        value: Vec<u8>,
    },
    /// One archived message of an account or a room (`local` is `room@service`), with
    /// its id; the conversation index is rebuilt from these.
    Archived {
        domain: String,
        local: String,
        message: ArchivedMessage,
    },
    ArchivePrefs {
        domain: String,
        local: String,
        prefs: ArchivePrefs,
    },
    AccountData {
        domain: String,
        local: String,
        data_kind: String,
        #[serde(with = "b64")]
        value: Vec<u8>,
    },
    /// One PEP node of an account, with its configuration and items.
    PepNode {
        domain: String,
        local: String,
        node: crate::PepNode,
    },
}

/// The kinds of [`DumpRecord`] in the order an export writes them. Within a kind, records
/// come in key order (domain, then localpart, then the entry's own key, compared as
/// bytes), so two backends holding the same data write the same dump.
pub const KINDS: [&str; 19] = [
    "user",
    "roster_version",
    "roster_item",
    "offline",
    "block",
    "tenant",
    "room",
    "room_log",
    "signing_key",
    "revocation_seq",
    "refresh",
    "fast",
    "plugin_blob",
    "plugin_slot",
    "plugin_kv",
    "archived",
    "archive_prefs",
    "account_data",
    "pep_node",
];

impl DumpRecord {
    /// The record's kind, as in [`KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            DumpRecord::User { .. } => KINDS[0],
            DumpRecord::RosterVersion { .. } => KINDS[1],
            DumpRecord::RosterItem { .. } => KINDS[2],
            DumpRecord::Offline { .. } => KINDS[3],
            DumpRecord::Block { .. } => KINDS[4],
            DumpRecord::Tenant { .. } => KINDS[5],
            DumpRecord::Room { .. } => KINDS[6],
            DumpRecord::RoomLog { .. } => KINDS[7],
            DumpRecord::SigningKey { .. } => KINDS[8],
            DumpRecord::RevocationSeq { .. } => KINDS[9],
            DumpRecord::Refresh { .. } => KINDS[10],
            DumpRecord::Fast { .. } => KINDS[11],
            DumpRecord::PluginBlob { .. } => KINDS[12],
            DumpRecord::PluginSlot { .. } => KINDS[13],
            DumpRecord::PluginKv { .. } => KINDS[14],
            DumpRecord::Archived { .. } => KINDS[15],
            DumpRecord::ArchivePrefs { .. } => KINDS[16],
            DumpRecord::AccountData { .. } => KINDS[17],
            DumpRecord::PepNode { .. } => KINDS[18],
        }
    }
}

/// Where export hands each record.
pub type Sink<'a> = dyn FnMut(DumpRecord) -> StorageResult<()> + 'a;

/// The backend behind a [`crate::Storage`] as a whole.
pub trait Backend: Send + Sync {
    /// `sled`, `postgres`, or `memory`.
    fn name(&self) -> &'static str;
    /// Whether the database answered its last check. Cheap (no I/O on the caller's
    /// thread); an embedded database is always reachable.
    fn reachable(&self) -> bool {
        true
    }
    /// True when a read waits on nothing but memory and the system's page cache (an
    /// embedded database): such a read costs less in line than the blocking pool's
    /// hand-over, two thread wake-ups (see [`crate::Storage::read`]).
    fn reads_in_memory(&self) -> bool {
        false
    }
    /// True when nothing at all is stored (import refuses any other target).
    fn is_empty(&self) -> StorageResult<bool>;
    /// Every stored record, kind by kind in [`KINDS`] order, each kind in key order, from
    /// one consistent view where the database has one.
    fn export(&self, sink: &mut Sink<'_>) -> StorageResult<u64>;
    /// Writes records as they are (versions, positions and numbers kept) into an empty
    /// store; durable when it returns `Ok`. An `Err` from `records` aborts the import
    /// (a transactional backend then keeps nothing of it).
    fn import(
        &self,
        records: &mut dyn Iterator<Item = StorageResult<DumpRecord>>,
    ) -> StorageResult<u64>;
}

/// A backend for test storage assembled from in-memory stores: nothing to export, and
/// nothing can be imported.
pub struct MemBackend;

impl Backend for MemBackend {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn reads_in_memory(&self) -> bool {
        true
    }
    fn is_empty(&self) -> StorageResult<bool> {
        Ok(true)
    }
    fn export(&self, _: &mut Sink<'_>) -> StorageResult<u64> {
        Ok(0)
    }
    fn import(&self, _: &mut dyn Iterator<Item = StorageResult<DumpRecord>>) -> StorageResult<u64> {
        Err(crate::StorageError::Backend(
            "the in-memory test storage cannot import".into(),
        ))
    }
}

/// Base64 (standard, padded) for bytes inside a dump.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
