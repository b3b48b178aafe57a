//! [`RosterStore`] on sled: items in `rosters` (`domain \0 local \0 contact` → JSON item),
//! the version in `roster_meta` (`domain \0 local` → u64 BE). Every change to an item bumps
//! the version in the same transaction.

use sled::IVec;
use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};

use super::{Context, SledStore, decode, encode, keys, scan};
use crate::{Account, Roster, RosterItem, RosterStore, StorageError, StorageResult};

impl RosterStore for SledStore {
    fn roster(&self, account: &Account) -> StorageResult<Roster> {
        // Version first: transactions are atomic to single reads, so the items read next
        // include at least every change up to this version. A concurrent change can only
        // make the version look older than the items, which costs a client a full resend
        // rather than a stale cache.
        let meta_key = keys::account_key(account)?;
        let stored = self
            .roster_meta
            .get(&meta_key)
            .context("reading roster version")?;
        let version = decode_version(&meta_key, stored)?;
        let entries = scan(&self.rosters, &keys::account_prefix(account)?)?;
        let items = entries
            .iter()
            .map(|(key, value)| decode(key, value))
            .collect::<Result<_, _>>()?;
        Ok(Roster { version, items })
    }

    fn item(&self, account: &Account, contact: &str) -> StorageResult<Option<RosterItem>> {
        let key = keys::jid_key(account, contact)?;
        let value = self.rosters.get(&key).context("reading roster item")?;
        value.map(|bytes| decode(&key, &bytes)).transpose()
    }

    fn put_item(&self, account: &Account, item: &RosterItem) -> StorageResult<u64> {
        let key = keys::jid_key(account, &item.jid)?;
        let value = encode(item)?;
        self.change_roster(account, |rosters| {
            rosters.insert(key.as_slice(), value.as_slice())?;
            Ok(())
        })
    }

    fn remove_item(&self, account: &Account, contact: &str) -> StorageResult<u64> {
        let key = keys::jid_key(account, contact)?;
        self.change_roster(account, |rosters| {
            rosters.remove(key.as_slice())?;
            Ok(())
        })
    }
}

impl SledStore {
    /// Applies `change` to the `rosters` tree and increments the account's roster version
    /// (even if the change was a no-op) in one transaction; returns the new version.
    fn change_roster(
        &self,
        account: &Account,
        change: impl Fn(&TransactionalTree) -> Result<(), ConflictableTransactionError<StorageError>>,
    ) -> StorageResult<u64> {
        let meta_key = keys::account_key(account)?;
        let version = (&self.rosters, &self.roster_meta)
            .transaction(|(rosters, roster_meta)| {
                change(rosters)?;
                let current = roster_meta.get(meta_key.as_slice())?;
                let next = decode_version(&meta_key, current)
                    .and_then(|v| {
                        v.checked_add(1)
                            .ok_or_else(|| StorageError::Corrupt("roster version overflow".into()))
                    })
                    .map_err(ConflictableTransactionError::Abort)?;
                roster_meta.insert(meta_key.as_slice(), &next.to_be_bytes())?;
                Ok(next)
            })
            .context("updating roster")?;
        self.flush()?;
        Ok(version)
    }
}

/// The stored roster version; 0 if the roster never changed.
fn decode_version(key: &[u8], stored: Option<IVec>) -> StorageResult<u64> {
    let Some(bytes) = stored else { return Ok(0) };
    let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
        StorageError::Corrupt(format!(
            "roster version at key {} is not 8 bytes",
            keys::describe(key)
        ))
    })?;
    Ok(u64::from_be_bytes(bytes))
}
