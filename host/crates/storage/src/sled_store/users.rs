//! [`UserStore`] on sled: accounts are the `users` tree (`domain \0 local` → JSON
//! credentials); deleting an account or a domain also clears the other trees.

use sled::transaction::{ConflictableTransactionError, Transactional};

use super::{Context, SledStore, count, decode, encode, keys, remove_prefix, scan_keys};
use crate::credentials::StoredCredentials;
use crate::{Account, StorageError, StorageResult, UserStore};

impl UserStore for SledStore {
    fn create_user(&self, account: &Account, creds: &StoredCredentials) -> StorageResult<()> {
        let key = keys::account_key(account)?;
        self.users
            .compare_and_swap(key, None::<&[u8]>, Some(encode(creds)?))
            .context("creating account")?
            .map_err(|_| StorageError::AlreadyExists)?;
        self.flush()
    }

    fn set_credentials(&self, account: &Account, creds: &StoredCredentials) -> StorageResult<()> {
        let key = keys::account_key(account)?;
        let new = encode(creds)?;
        // Compare-and-swap against the current value so a concurrent delete is not undone.
        loop {
            let current = self.users.get(&key).context("reading credentials")?;
            let Some(current) = current else {
                return Err(StorageError::NotFound);
            };
            let swap = self
                .users
                .compare_and_swap(&key, Some(current), Some(new.as_slice()))
                .context("replacing credentials")?;
            if swap.is_ok() {
                return self.flush();
            }
        }
    }

    fn credentials(&self, account: &Account) -> StorageResult<Option<StoredCredentials>> {
        let key = keys::account_key(account)?;
        let value = self.users.get(&key).context("reading credentials")?;
        value.map(|bytes| decode(&key, &bytes)).transpose()
    }

    fn delete_user(&self, account: &Account) -> StorageResult<()> {
        let key = keys::account_key(account)?;
        let prefix = keys::account_prefix(account)?;
        let [rosters, offline, blocks] = self.entry_trees();
        let entries = [
            scan_keys(rosters, &prefix)?,
            scan_keys(offline, &prefix)?,
            scan_keys(blocks, &prefix)?,
        ];
        let trees = (&self.users, &self.roster_meta, rosters, offline, blocks);
        trees
            .transaction(|(users, roster_meta, rosters, offline, blocks)| {
                if users.remove(key.as_slice())?.is_none() {
                    return Err(ConflictableTransactionError::Abort(StorageError::NotFound));
                }
                roster_meta.remove(key.as_slice())?;
                for (tree, entry_keys) in [rosters, offline, blocks].into_iter().zip(&entries) {
                    for entry in entry_keys {
                        tree.remove(entry.clone())?;
                    }
                }
                Ok(())
            })
            .context("deleting account")?;
        // Entries a concurrent writer added after the scan above. A write that races past
        // this sweep too is left behind: callers should stop writing for an account they
        // are deleting.
        for tree in self
            .entry_trees()
            .into_iter()
            .chain([&self.account_data, &self.pep])
        {
            remove_prefix(tree, &prefix)?;
        }
        // The archive goes with the account (XEP-0313 data is the user's).
        crate::ArchiveStore::delete_owner(self, account)
    }

    fn list_users(&self, domain: &str) -> StorageResult<Vec<String>> {
        let prefix = keys::domain_prefix(domain)?;
        let accounts = scan_keys(&self.users, &prefix)?;
        accounts
            .iter()
            .map(|key| keys::suffix(key, &prefix))
            .collect()
    }

    fn count_users(&self, domain: &str) -> StorageResult<usize> {
        let prefix = keys::domain_prefix(domain)?;
        count(&self.users, &prefix)
    }

    fn purge_domain(&self, domain: &str) -> StorageResult<()> {
        let prefix = keys::domain_prefix(domain)?;
        self.messages.delete_domain(domain)?;
        // Accounts last: if interrupted, they are still listed and the purge can be rerun.
        for tree in [
            &self.rosters,
            &self.offline,
            &self.blocks,
            &self.muc_rooms,
            &self.muc_logs,
            &self.archive_prefs,
            &self.account_data,
            &self.pep,
            &self.roster_meta,
            &self.users,
        ] {
            remove_prefix(tree, &prefix)?;
        }
        self.flush()
    }
}
