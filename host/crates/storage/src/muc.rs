//! Persistent multi-user chat rooms (XEP-0045 §10.1 "persistent"): what must survive a
//! restart — configuration, affiliations and subject — stored per room; and the public log
//! of rooms whose owners turned logging on (`muc#roomconfig_enablelogging`), a bounded
//! sequence of messages per room. Occupants and the join history are not stored.
//!
//! Rooms are addressed by the tenant domain their MUC service hangs off (`example.com`
//! for `conference.example.com`) and the room's localpart, domain first like every other
//! store, so purging a tenant domain removes its rooms.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::StorageResult;

/// A persistent room as stored. The MUC module owns the meaning of `config` (its
/// `muc#roomconfig` field values) so the store stays format-agnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRoom {
    /// The room's localpart (`standup`).
    pub name: String,
    /// The MUC service's subdomain when stored (`conference`).
    pub subdomain: String,
    /// Room configuration as (`muc#roomconfig_*` var, value) pairs.
    pub config: Vec<(String, String)>,
    /// Affiliations other than `none`, as (bare JID, affiliation name).
    pub affiliations: Vec<(String, String)>,
    /// The subject and who set it (nickname), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<(String, String)>,
}

/// One line of a room's public log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomLogEntry {
    /// When the room accepted it (XEP-0082, UTC, milliseconds).
    pub at: String,
    /// The sender's nickname in the room.
    pub nick: String,
    /// The sender's real bare JID.
    pub jid: String,
    /// True for a subject change, false for a message body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub subject: bool,
    /// The body (or subject) as the room broadcast it.
    pub text: String,
}

/// Persistent rooms and room logs.
pub trait MucStore: Send + Sync {
    /// Every room stored under the tenant domain `domain`, sorted by name.
    fn rooms(&self, domain: &str) -> StorageResult<Vec<StoredRoom>>;
    /// Inserts or replaces a room.
    fn put_room(&self, domain: &str, room: &StoredRoom) -> StorageResult<()>;
    /// Deletes a room (no error if absent).
    fn delete_room(&self, domain: &str, name: &str) -> StorageResult<()>;
    /// Appends to a room's log, numbering the entries after the last one (the first
    /// entry is 1), then drops the oldest entries beyond `keep`. Calls for one room must
    /// not run concurrently (the MUC makes them under the room's lock).
    fn append_log(
        &self,
        domain: &str,
        name: &str,
        entries: &[RoomLogEntry],
        keep: usize,
    ) -> StorageResult<()>;
    /// Up to `limit` log entries numbered after `after`, oldest first, with their numbers.
    fn room_log(
        &self,
        domain: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<(u64, RoomLogEntry)>>;
    /// Deletes a room's log (no error if there is none).
    fn delete_log(&self, domain: &str, name: &str) -> StorageResult<()>;
}

/// An in-memory [`MucStore`] for tests.
#[derive(Default)]
pub struct MemMucStore {
    rooms: Mutex<BTreeMap<(String, String), StoredRoom>>,
    logs: Mutex<BTreeMap<(String, String), BTreeMap<u64, RoomLogEntry>>>,
}

impl MucStore for MemMucStore {
    fn rooms(&self, domain: &str) -> StorageResult<Vec<StoredRoom>> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        Ok(rooms
            .iter()
            .filter(|((d, _), _)| d == domain)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn put_room(&self, domain: &str, room: &StoredRoom) -> StorageResult<()> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.insert((domain.to_string(), room.name.clone()), room.clone());
        Ok(())
    }

    fn delete_room(&self, domain: &str, name: &str) -> StorageResult<()> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.remove(&(domain.to_string(), name.to_string()));
        Ok(())
    }

    fn append_log(
        &self,
        domain: &str,
        name: &str,
        entries: &[RoomLogEntry],
        keep: usize,
    ) -> StorageResult<()> {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let log = logs
            .entry((domain.to_string(), name.to_string()))
            .or_default();
        let first = log.keys().next_back().map_or(1, |last| last + 1);
        for (number, e) in (first..).zip(entries) {
            log.insert(number, e.clone());
        }
        while log.len() > keep {
            log.pop_first();
        }
        Ok(())
    }

    fn room_log(
        &self,
        domain: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<(u64, RoomLogEntry)>> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(logs
            .get(&(domain.to_string(), name.to_string()))
            .map(|log| {
                log.range(after.saturating_add(1)..)
                    .take(limit)
                    .map(|(n, e)| (*n, e.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn delete_log(&self, domain: &str, name: &str) -> StorageResult<()> {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.remove(&(domain.to_string(), name.to_string()));
        Ok(())
    }
}
