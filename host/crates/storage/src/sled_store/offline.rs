//! [`OfflineStore`] on sled: `offline` maps `domain \0 local \0 sequence` to a JSON message.
//! Sequences come from sled's monotonic ID generator, which keeps increasing across
//! restarts, so key order is the order in which each sender pushed.

use super::{Context, SledStore, count, decode, encode, keys};
use crate::{Account, OfflineMessage, OfflineStore, QueuedMessage, StorageError, StorageResult};

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

    fn peek(
        &self,
        account: &Account,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<QueuedMessage>> {
        let prefix = keys::account_prefix(account)?;
        let start = match after {
            Some(id) => match id.checked_add(1) {
                Some(next) => keys::offline_key(account, next)?,
                None => return Ok(Vec::new()),
            },
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for entry in self.offline.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry.context("reading offline messages")?;
            if !key.starts_with(&prefix) {
                break;
            }
            let id = sequence_of(&key, &prefix)?;
            out.push(QueuedMessage {
                id,
                message: decode(&key, &value)?,
            });
        }
        Ok(out)
    }

    fn remove(&self, account: &Account, ids: &[u64]) -> StorageResult<usize> {
        let mut removed = 0;
        for id in ids {
            let key = keys::offline_key(account, *id)?;
            if self
                .offline
                .remove(key)
                .context("removing offline message")?
                .is_some()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }

    fn count(&self, account: &Account) -> StorageResult<usize> {
        count(&self.offline, &keys::account_prefix(account)?)
    }
}

/// The sequence at the end of an offline key.
fn sequence_of(key: &[u8], prefix: &[u8]) -> StorageResult<u64> {
    key.strip_prefix(prefix)
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt("malformed offline message key".into()))
}
