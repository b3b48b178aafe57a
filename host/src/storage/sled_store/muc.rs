//! [`MucStore`] on sled: `muc_rooms` holds `domain \0 room` → JSON [`StoredRoom`], so a
//! tenant domain's rooms are one prefix range (listed in name order, purged with the
//! domain).

use super::{Context, SledStore, decode, encode, keys, scan};
use crate::storage::{MucStore, StorageResult, StoredRoom};

impl MucStore for SledStore {
    fn rooms(&self, domain: &str) -> StorageResult<Vec<StoredRoom>> {
        let prefix = keys::domain_prefix(domain)?;
        scan(&self.muc_rooms, &prefix)?
            .iter()
            .map(|(key, value)| decode(key, value))
            .collect()
    }

    fn put_room(&self, domain: &str, room: &StoredRoom) -> StorageResult<()> {
        let key = keys::room_key(domain, &room.name)?;
        self.muc_rooms
            .insert(key, encode(room)?)
            .context("storing a room")?;
        self.flush()
    }

    fn delete_room(&self, domain: &str, name: &str) -> StorageResult<()> {
        let key = keys::room_key(domain, name)?;
        if self
            .muc_rooms
            .remove(key)
            .context("deleting a room")?
            .is_some()
        {
            self.flush()?;
        }
        Ok(())
    }
}
