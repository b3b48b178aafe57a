//! [`BlockStore`] on sled: `blocks` holds one empty-valued key `domain \0 local \0 jid` per
//! blocked JID, so the list comes back sorted from a prefix scan.

use super::{Context, SledStore, keys, scan_keys};
use crate::{Account, BlockStore, StorageResult};

impl BlockStore for SledStore {
    fn blocked(&self, account: &Account) -> StorageResult<Vec<String>> {
        let prefix = keys::account_prefix(account)?;
        let entries = scan_keys(&self.blocks, &prefix)?;
        entries
            .iter()
            .map(|key| keys::suffix(key, &prefix))
            .collect()
    }

    fn block(&self, account: &Account, jids: &[String]) -> StorageResult<Vec<String>> {
        let keyed = jid_keys(account, jids)?;
        let mut added = Vec::new();
        for (jid, key) in keyed {
            if self.blocks.insert(key, &[]).context("blocking")?.is_none() {
                added.push(jid);
            }
        }
        self.flush_if_changed(added)
    }

    fn unblock(&self, account: &Account, jids: &[String]) -> StorageResult<Vec<String>> {
        let keyed = jid_keys(account, jids)?;
        self.remove_blocks(keyed)
    }

    fn unblock_all(&self, account: &Account) -> StorageResult<Vec<String>> {
        let prefix = keys::account_prefix(account)?;
        let entries = scan_keys(&self.blocks, &prefix)?;
        let keyed = entries
            .into_iter()
            .map(|key| Ok((keys::suffix(&key, &prefix)?, key.to_vec())))
            .collect::<StorageResult<Vec<_>>>()?;
        self.remove_blocks(keyed)
    }
}

impl SledStore {
    /// Removes the given entries; returns the JIDs that were present.
    fn remove_blocks(&self, keyed: Vec<(String, Vec<u8>)>) -> StorageResult<Vec<String>> {
        let mut removed = Vec::new();
        for (jid, key) in keyed {
            if self.blocks.remove(key).context("unblocking")?.is_some() {
                removed.push(jid);
            }
        }
        self.flush_if_changed(removed)
    }

    fn flush_if_changed(&self, changed: Vec<String>) -> StorageResult<Vec<String>> {
        if !changed.is_empty() {
            self.flush()?;
        }
        Ok(changed)
    }
}

/// Keys of all `jids`, computed before any write so an invalid JID changes nothing.
fn jid_keys(account: &Account, jids: &[String]) -> StorageResult<Vec<(String, Vec<u8>)>> {
    jids.iter()
        .map(|jid| Ok((jid.clone(), keys::jid_key(account, jid)?)))
        .collect()
}
