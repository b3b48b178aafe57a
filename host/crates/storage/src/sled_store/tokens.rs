//! [`TokenStore`] on sled. The `tokens` tree holds, by key prefix:
//! - `k \0 tenant` → the tenant's signing key (created with compare-and-swap, so two
//!   concurrent first uses agree on one key);
//! - `s \0 domain \0 local` → the account's revocation sequence (u64 big-endian);
//! - `r \0 domain \0 local \0 id` → a [`RefreshRecord`] as JSON;
//! - `f \0 domain \0 local \0 client` → a client's FAST tokens ([`FastSlots`]) as JSON.
//!
//! `revoke_all` bumps the sequence and removes the account's refresh records and FAST
//! tokens in one transaction.

use sled::transaction::ConflictableTransactionError;

use super::{Context, SledStore, decode, encode, keys, scan};
use crate::tokens::{FastSlots, RefreshRecord, TokenStore};
use crate::{Account, StorageError, StorageResult};

fn fast_prefix(account: &Account) -> StorageResult<Vec<u8>> {
    let mut k = b"f\0".to_vec();
    k.extend(keys::account_prefix(account)?);
    Ok(k)
}

pub(super) fn fast_key(account: &Account, client: &str) -> StorageResult<Vec<u8>> {
    let mut k = fast_prefix(account)?;
    k.extend_from_slice(client.as_bytes());
    Ok(k)
}

pub(super) fn key_key(tenant: &str) -> Vec<u8> {
    let mut k = b"k\0".to_vec();
    k.extend_from_slice(tenant.as_bytes());
    k
}

pub(super) fn seq_key(account: &Account) -> StorageResult<Vec<u8>> {
    let mut k = b"s\0".to_vec();
    k.extend(keys::account_key(account)?);
    Ok(k)
}

fn refresh_prefix(account: &Account) -> StorageResult<Vec<u8>> {
    let mut k = b"r\0".to_vec();
    k.extend(keys::account_prefix(account)?);
    Ok(k)
}

pub(super) fn refresh_key(account: &Account, id: &str) -> StorageResult<Vec<u8>> {
    let mut k = refresh_prefix(account)?;
    k.extend_from_slice(id.as_bytes());
    Ok(k)
}

fn decode_seq(bytes: &[u8]) -> StorageResult<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt("revocation sequence is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(arr))
}

impl TokenStore for SledStore {
    fn signing_key(&self, tenant: &str) -> StorageResult<Vec<u8>> {
        let key = key_key(tenant);
        if let Some(v) = self.tokens.get(&key).context("reading signing key")? {
            return Ok(v.to_vec());
        }
        let fresh = rand::random::<[u8; 32]>().to_vec();
        match self
            .tokens
            .compare_and_swap(&key, None::<&[u8]>, Some(fresh.clone()))
            .context("storing signing key")?
        {
            Ok(()) => {
                self.flush()?;
                Ok(fresh)
            }
            Err(cas) => Ok(cas.current.map(|v| v.to_vec()).unwrap_or(fresh)),
        }
    }

    fn revocation_seq(&self, account: &Account) -> StorageResult<u64> {
        match self
            .tokens
            .get(seq_key(account)?)
            .context("reading revocation sequence")?
        {
            Some(v) => decode_seq(&v),
            None => Ok(0),
        }
    }

    fn put_refresh(&self, account: &Account, record: &RefreshRecord) -> StorageResult<()> {
        self.tokens
            .insert(refresh_key(account, &record.id)?, encode(record)?)
            .context("storing refresh token")?;
        self.flush()
    }

    fn refresh(&self, account: &Account, id: &str) -> StorageResult<Option<RefreshRecord>> {
        let key = refresh_key(account, id)?;
        match self.tokens.get(&key).context("reading refresh token")? {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn list_refresh(&self, account: &Account) -> StorageResult<Vec<RefreshRecord>> {
        scan(&self.tokens, &refresh_prefix(account)?)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    fn revoke_refresh(&self, account: &Account, id: &str) -> StorageResult<bool> {
        let existed = self
            .tokens
            .remove(refresh_key(account, id)?)
            .context("deleting refresh token")?
            .is_some();
        if existed {
            self.flush()?;
        }
        Ok(existed)
    }

    fn revoke_all(&self, account: &Account) -> StorageResult<usize> {
        let seq_key = seq_key(account)?;
        let refresh_keys: Vec<sled::IVec> = scan(&self.tokens, &refresh_prefix(account)?)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let fast_keys: Vec<sled::IVec> = scan(&self.tokens, &fast_prefix(account)?)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let removed = self
            .tokens
            .transaction(|t| {
                let seq = match t.get(&seq_key)? {
                    Some(v) => decode_seq(&v).map_err(ConflictableTransactionError::Abort)?,
                    None => 0,
                };
                t.insert(seq_key.as_slice(), &(seq + 1).to_be_bytes()[..])?;
                let mut removed = 0;
                for k in &refresh_keys {
                    if t.remove(k.clone())?.is_some() {
                        removed += 1;
                    }
                }
                for k in &fast_keys {
                    t.remove(k.clone())?;
                }
                Ok(removed)
            })
            .context("revoking tokens")?;
        self.flush()?;
        Ok(removed)
    }

    fn purge_tokens(&self, domain: &str) -> StorageResult<()> {
        let prefix = keys::domain_prefix(domain)?;
        for tag in [b"s\0", b"r\0", b"f\0"] {
            let mut p = tag.to_vec();
            p.extend_from_slice(&prefix);
            super::remove_prefix(&self.tokens, &p)?;
        }
        self.flush()
    }

    fn fast_slots(&self, account: &Account, client: &str) -> StorageResult<FastSlots> {
        let key = fast_key(account, client)?;
        match self.tokens.get(&key).context("reading FAST tokens")? {
            Some(v) => decode(&key, &v),
            None => Ok(FastSlots::default()),
        }
    }

    fn put_fast_slots(
        &self,
        account: &Account,
        client: &str,
        slots: &FastSlots,
    ) -> StorageResult<()> {
        let key = fast_key(account, client)?;
        if slots.is_empty() {
            self.tokens.remove(key).context("deleting FAST tokens")?;
        } else {
            self.tokens
                .insert(key, encode(slots)?)
                .context("storing FAST tokens")?;
        }
        self.flush()
    }

    fn delete_fast(&self, account: &Account) -> StorageResult<()> {
        super::remove_prefix(&self.tokens, &fast_prefix(account)?)?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use crate::tokens::{FastSlots, FastToken, HtMechanism};
    use crate::{Account, RefreshRecord, Storage};

    fn record(id: &str) -> RefreshRecord {
        RefreshRecord {
            id: id.into(),
            issued_at: 1,
            expires_at: 2,
            seq: 0,
        }
    }

    #[test]
    fn keys_sequences_refresh_and_fast_persist_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Account::new("alice", "a.test");
        let bob = Account::new("bob", "a.test");
        let carol = Account::new("carol", "b.test");
        let key = {
            let s = Storage::open_sled(dir.path()).unwrap();
            let t = &s.tokens;
            let key = t.signing_key("acme").unwrap();
            assert_eq!(key.len(), 32);
            assert_eq!(t.signing_key("acme").unwrap(), key, "created once");
            assert_ne!(t.signing_key("other").unwrap(), key);
            for a in [&alice, &bob, &carol] {
                t.put_refresh(a, &record("r1")).unwrap();
            }
            t.put_refresh(&alice, &record("r2")).unwrap();
            let slots = FastSlots {
                current: None,
                new: Some(FastToken {
                    mechanism: HtMechanism::None,
                    secret: "c2VjcmV0".into(),
                    issued_at: 0,
                    expires_at: 10,
                    last_count: None,
                }),
            };
            t.put_fast_slots(&alice, "client", &slots).unwrap();
            t.put_fast_slots(&bob, "client", &slots).unwrap();
            key
        };
        let s = Storage::open_sled(dir.path()).unwrap();
        let t = &s.tokens;
        assert_eq!(t.signing_key("acme").unwrap(), key, "survives a restart");
        assert_eq!(t.list_refresh(&alice).unwrap().len(), 2);
        assert!(t.refresh(&alice, "r2").unwrap().is_some());
        assert!(!t.fast_slots(&alice, "client").unwrap().is_empty());
        assert!(t.revoke_refresh(&alice, "r2").unwrap());
        assert!(!t.revoke_refresh(&alice, "r2").unwrap());
        assert_eq!(t.revocation_seq(&alice).unwrap(), 0);
        assert_eq!(t.revoke_all(&alice).unwrap(), 1);
        assert_eq!(t.revocation_seq(&alice).unwrap(), 1);
        assert!(t.list_refresh(&alice).unwrap().is_empty());
        assert!(t.fast_slots(&alice, "client").unwrap().is_empty());
        // Bob is untouched; a password change deletes only FAST tokens.
        assert_eq!(t.list_refresh(&bob).unwrap().len(), 1);
        t.delete_fast(&bob).unwrap();
        assert!(t.fast_slots(&bob, "client").unwrap().is_empty());
        assert_eq!(t.list_refresh(&bob).unwrap().len(), 1);
        // Purging a domain removes its records, not other domains'.
        t.purge_tokens("a.test").unwrap();
        assert!(t.list_refresh(&bob).unwrap().is_empty());
        assert_eq!(t.revocation_seq(&alice).unwrap(), 0);
        assert_eq!(t.list_refresh(&carol).unwrap().len(), 1);
        // Empty slots delete the record.
        t.put_fast_slots(&carol, "c", &FastSlots::default())
            .unwrap();
        assert!(t.fast_slots(&carol, "c").unwrap().is_empty());
    }
}
