//! [`AccountDataStore`] on sled: `account_data` maps `domain \0 local \0 kind` to the value.

use super::{Context, SledStore, keys};
use crate::account_data::AccountDataStore;
use crate::{Account, StorageResult};

impl AccountDataStore for SledStore {
    fn get(&self, account: &Account, kind: &str) -> StorageResult<Option<Vec<u8>>> {
        let key = keys::jid_key(account, kind)?;
        Ok(self
            .account_data
            .get(key)
            .context("reading account data")?
            .map(|v| v.to_vec()))
    }

    fn put(&self, account: &Account, kind: &str, value: &[u8]) -> StorageResult<()> {
        let key = keys::jid_key(account, kind)?;
        if value.is_empty() {
            self.account_data
                .remove(key)
                .context("removing account data")?;
        } else {
            self.account_data
                .insert(key, value)
                .context("storing account data")?;
        }
        self.flush()
    }
}
