//! [`OfflineStore`] on sled: `offline` maps `domain \0 local \0 sequence` to a JSON message.
//! Sequences come from sled's monotonic ID generator, which keeps increasing across
//! restarts, so key order is the order in which each sender pushed.

use super::{Context, SledStore, count, decode, encode, keys};
use crate::{Account, OfflineMessage, OfflineStore, StorageResult};

impl OfflineStore for SledStore {
    fn push(&self, account: &Account, msg: &OfflineMessage) -> StorageResult<usize> {
        let sequence = self
            .db
            .generate_id()
            .context("generating message sequence")?;
        let key = keys::offline_key(account, sequence)?;
        self.offline
            .insert(key, encode(msg)?)
            .context("storing offline message")?;
        self.flush()?;
        self.count(account)
    }

    fn take_all(&self, account: &Account) -> StorageResult<Vec<OfflineMessage>> {
        // Scanned newest first, then reversed: the cursor meets a sender's later message
        // before its earlier ones, so a call never returns a message while skipping an older
        // one from the same sender that was pushed after the scan started.
        let prefix = keys::account_prefix(account)?;
        let newest_first = self.offline.scan_prefix(prefix).rev();
        let mut queued: Vec<_> = newest_first
            .collect::<sled::Result<_>>()
            .context("reading offline messages")?;
        queued.reverse();
        // Decode everything before removing anything: a corrupt entry loses nothing.
        let decoded: Vec<OfflineMessage> = queued
            .iter()
            .map(|(key, value)| decode(key, value))
            .collect::<Result<_, _>>()?;
        // Remove exactly the keys read: messages pushed meanwhile stay queued, and a message
        // is returned only by the caller whose removal actually took it.
        let mut taken = Vec::with_capacity(decoded.len());
        for ((key, _), msg) in queued.iter().zip(decoded) {
            let removed = self
                .offline
                .remove(key)
                .context("removing offline message")?;
            if removed.is_some() {
                taken.push(msg);
            }
        }
        if !taken.is_empty() {
            self.flush()?;
        }
        Ok(taken)
    }

    fn count(&self, account: &Account) -> StorageResult<usize> {
        count(&self.offline, &keys::account_prefix(account)?)
    }
}
