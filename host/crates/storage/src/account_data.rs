//! Small per-account records features keep (XEP-0357 push registrations; later private
//! XML storage and the like): one opaque value per account and kind, deleted with the
//! account.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Account, StorageResult};

/// One value per (account, kind).
pub trait AccountDataStore: Send + Sync {
    fn get(&self, account: &Account, kind: &str) -> StorageResult<Option<Vec<u8>>>;
    /// Stores (replacing) the value; an empty value removes it.
    fn put(&self, account: &Account, kind: &str, value: &[u8]) -> StorageResult<()>;
}

/// An in-memory [`AccountDataStore`] for tests.
#[derive(Default)]
pub struct MemAccountDataStore {
    values: Mutex<BTreeMap<(Account, String), Vec<u8>>>,
}

impl AccountDataStore for MemAccountDataStore {
    fn get(&self, account: &Account, kind: &str) -> StorageResult<Option<Vec<u8>>> {
        let v = self.values.lock().expect("account data lock");
        Ok(v.get(&(account.clone(), kind.to_string())).cloned())
    }

    fn put(&self, account: &Account, kind: &str, value: &[u8]) -> StorageResult<()> {
        let mut v = self.values.lock().expect("account data lock");
        let key = (account.clone(), kind.to_string());
        if value.is_empty() {
            v.remove(&key);
        } else {
            v.insert(key, value.to_vec());
        }
        Ok(())
    }
}
