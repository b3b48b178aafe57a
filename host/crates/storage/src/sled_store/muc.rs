//! [`MucStore`] on sled: `muc_rooms` holds `domain \0 room` → JSON [`StoredRoom`], so a
//! tenant domain's rooms are one prefix range (listed in name order, purged with the
//! domain). `muc_logs` holds `domain \0 room \0 number` → JSON [`RoomLogEntry`]; numbers
//! of one room are consecutive (new lines after the last, trimming from the first), so
//! the log's length is the difference of its first and last numbers.

use sled::Batch;

use super::{Context, SledStore, decode, encode, keys, remove_prefix, scan};
use crate::{MucStore, RoomLogEntry, StorageResult, StoredRoom};

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

    fn append_log(
        &self,
        domain: &str,
        name: &str,
        entries: &[RoomLogEntry],
        keep: usize,
    ) -> StorageResult<()> {
        let prefix = keys::room_log_prefix(domain, name)?;
        let bound = |end: bool| -> StorageResult<Option<u64>> {
            let mut range = self.muc_logs.scan_prefix(&prefix).keys();
            let key = if end { range.next_back() } else { range.next() };
            key.transpose()
                .context("reading the room log")?
                .map(|k| keys::room_log_number(&k, &prefix))
                .transpose()
        };
        let last = bound(true)?.unwrap_or(0);
        let first = bound(false)?.unwrap_or(last + 1);
        let mut batch = Batch::default();
        for (number, e) in (last + 1..).zip(entries) {
            batch.insert(keys::room_log_key(&prefix, number), encode(e)?);
        }
        let next = last + 1 + entries.len() as u64;
        // Lines first..next-1 exist after the inserts; keep the newest `keep`.
        let oldest_kept = next.saturating_sub(keep as u64).max(first);
        for n in first..oldest_kept {
            batch.remove(keys::room_log_key(&prefix, n));
        }
        self.muc_logs
            .apply_batch(batch)
            .context("appending to the room log")?;
        self.flush()
    }

    fn room_log(
        &self,
        domain: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<(u64, RoomLogEntry)>> {
        let prefix = keys::room_log_prefix(domain, name)?;
        let start = keys::room_log_key(&prefix, after.saturating_add(1));
        let mut out = Vec::new();
        for item in self.muc_logs.range(start..).take(limit) {
            let (key, value) = item.context("reading the room log")?;
            if !key.starts_with(&prefix) {
                break;
            }
            out.push((keys::room_log_number(&key, &prefix)?, decode(&key, &value)?));
        }
        Ok(out)
    }

    fn delete_log(&self, domain: &str, name: &str) -> StorageResult<()> {
        let prefix = keys::room_log_prefix(domain, name)?;
        let empty = self
            .muc_logs
            .scan_prefix(&prefix)
            .next()
            .transpose()
            .context("reading the room log")?
            .is_none();
        if empty {
            return Ok(());
        }
        remove_prefix(&self.muc_logs, &prefix)?;
        self.flush()
    }
}
