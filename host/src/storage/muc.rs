//! Persistent multi-user chat rooms (XEP-0045 §10.1 "persistent"): what must survive a
//! restart — configuration, affiliations and subject — stored per room. Occupants and
//! discussion history are not stored.
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

/// Persistent rooms.
pub trait MucStore: Send + Sync {
    /// Every room stored under the tenant domain `domain`, sorted by name.
    fn rooms(&self, domain: &str) -> StorageResult<Vec<StoredRoom>>;
    /// Inserts or replaces a room.
    fn put_room(&self, domain: &str, room: &StoredRoom) -> StorageResult<()>;
    /// Deletes a room (no error if absent).
    fn delete_room(&self, domain: &str, name: &str) -> StorageResult<()>;
}

/// An in-memory [`MucStore`] for tests.
#[derive(Default)]
pub struct MemMucStore {
    rooms: Mutex<BTreeMap<(String, String), StoredRoom>>,
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
}
