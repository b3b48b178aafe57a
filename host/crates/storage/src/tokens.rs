//! [`TokenStore`]: what server-issued tokens need persisted: each tenant's signing key,
//! each account's revocation sequence (bumping it invalidates every access token issued
//! before), the refresh tokens handed out (a refresh token is usable only while its
//! record exists), and each client's XEP-0484 FAST tokens. [`MemTokenStore`] keeps the same in memory for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Account, StorageResult};

/// A refresh token that was handed out (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Random id carried inside the token.
    pub id: String,
    /// Seconds since the epoch.
    pub issued_at: u64,
    pub expires_at: u64,
    /// The account's revocation sequence when issued.
    pub seq: u64,
}

/// An HT mechanism (draft-schmaus-kitten-sasl-ht) with SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HtMechanism {
    /// No channel binding.
    #[serde(rename = "HT-SHA-256-NONE")]
    None,
    /// `tls-server-end-point` (RFC 5929).
    #[serde(rename = "HT-SHA-256-ENDP")]
    Endpoint,
    /// `tls-exporter` (RFC 9266).
    #[serde(rename = "HT-SHA-256-EXPR")]
    Exporter,
}

impl HtMechanism {
    pub fn name(self) -> &'static str {
        match self {
            HtMechanism::None => "HT-SHA-256-NONE",
            HtMechanism::Endpoint => "HT-SHA-256-ENDP",
            HtMechanism::Exporter => "HT-SHA-256-EXPR",
        }
    }

    pub fn from_name(name: &str) -> Option<HtMechanism> {
        [
            HtMechanism::None,
            HtMechanism::Endpoint,
            HtMechanism::Exporter,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// One FAST token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastToken {
    pub mechanism: HtMechanism,
    /// The secret, as given to the client (base64 of 32 random bytes).
    pub secret: String,
    pub issued_at: u64,
    pub expires_at: u64,
    /// Highest `count` seen with this token.
    #[serde(default)]
    pub last_count: Option<u64>,
}

/// A client's FAST tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastSlots {
    pub current: Option<FastToken>,
    pub new: Option<FastToken>,
}

impl FastSlots {
    /// True if no token is left.
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.new.is_none()
    }
}

/// Persistence for server-issued tokens.
pub trait TokenStore: Send + Sync {
    /// The tenant's HMAC signing key, created (random) on first use.
    fn signing_key(&self, tenant: &str) -> StorageResult<Vec<u8>>;
    /// The account's current revocation sequence (0 if never revoked).
    fn revocation_seq(&self, account: &Account) -> StorageResult<u64>;
    /// Stores a refresh token record.
    fn put_refresh(&self, account: &Account, record: &RefreshRecord) -> StorageResult<()>;
    /// One refresh token record by id.
    fn refresh(&self, account: &Account, id: &str) -> StorageResult<Option<RefreshRecord>>;
    /// Every refresh token record of the account, by id.
    fn list_refresh(&self, account: &Account) -> StorageResult<Vec<RefreshRecord>>;
    /// Deletes one refresh token; true if it existed.
    fn revoke_refresh(&self, account: &Account, id: &str) -> StorageResult<bool>;
    /// Bumps the revocation sequence (every token issued so far becomes unusable) and
    /// deletes every refresh record; returns how many refresh tokens were deleted.
    fn revoke_all(&self, account: &Account) -> StorageResult<usize>;
    /// Deletes every token record of a domain (purge).
    fn purge_tokens(&self, domain: &str) -> StorageResult<()>;
    /// The FAST tokens of one client (by `client_key` of the auth layer).
    fn fast_slots(&self, account: &Account, client: &str) -> StorageResult<FastSlots>;
    /// Stores a client's FAST tokens (empty slots delete the record).
    fn put_fast_slots(
        &self,
        account: &Account,
        client: &str,
        slots: &FastSlots,
    ) -> StorageResult<()>;
    /// Deletes every FAST token of the account (password change, revocation).
    fn delete_fast(&self, account: &Account) -> StorageResult<()>;
}

/// In-memory [`TokenStore`].
#[derive(Default)]
pub struct MemTokenStore {
    keys: Mutex<BTreeMap<String, Vec<u8>>>,
    seqs: Mutex<BTreeMap<Account, u64>>,
    refresh: Mutex<BTreeMap<(Account, String), RefreshRecord>>,
    fast: Mutex<BTreeMap<(Account, String), FastSlots>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TokenStore for MemTokenStore {
    fn signing_key(&self, tenant: &str) -> StorageResult<Vec<u8>> {
        Ok(lock(&self.keys)
            .entry(tenant.to_string())
            .or_insert_with(|| rand::random::<[u8; 32]>().to_vec())
            .clone())
    }

    fn revocation_seq(&self, account: &Account) -> StorageResult<u64> {
        Ok(lock(&self.seqs).get(account).copied().unwrap_or(0))
    }

    fn put_refresh(&self, account: &Account, record: &RefreshRecord) -> StorageResult<()> {
        lock(&self.refresh).insert((account.clone(), record.id.clone()), record.clone());
        Ok(())
    }

    fn refresh(&self, account: &Account, id: &str) -> StorageResult<Option<RefreshRecord>> {
        Ok(lock(&self.refresh)
            .get(&(account.clone(), id.to_string()))
            .cloned())
    }

    fn list_refresh(&self, account: &Account) -> StorageResult<Vec<RefreshRecord>> {
        Ok(lock(&self.refresh)
            .iter()
            .filter(|((a, _), _)| a == account)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn revoke_refresh(&self, account: &Account, id: &str) -> StorageResult<bool> {
        Ok(lock(&self.refresh)
            .remove(&(account.clone(), id.to_string()))
            .is_some())
    }

    fn revoke_all(&self, account: &Account) -> StorageResult<usize> {
        *lock(&self.seqs).entry(account.clone()).or_insert(0) += 1;
        lock(&self.fast).retain(|(a, _), _| a != account);
        let mut refresh = lock(&self.refresh);
        let before = refresh.len();
        refresh.retain(|(a, _), _| a != account);
        Ok(before - refresh.len())
    }

    fn purge_tokens(&self, domain: &str) -> StorageResult<()> {
        lock(&self.seqs).retain(|a, _| a.domain != domain);
        lock(&self.refresh).retain(|(a, _), _| a.domain != domain);
        lock(&self.fast).retain(|(a, _), _| a.domain != domain);
        Ok(())
    }

    fn fast_slots(&self, account: &Account, client: &str) -> StorageResult<FastSlots> {
        Ok(lock(&self.fast)
            .get(&(account.clone(), client.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    fn put_fast_slots(
        &self,
        account: &Account,
        client: &str,
        slots: &FastSlots,
    ) -> StorageResult<()> {
        let key = (account.clone(), client.to_string());
        if slots.is_empty() {
            lock(&self.fast).remove(&key);
        } else {
            lock(&self.fast).insert(key, slots.clone());
        }
        Ok(())
    }

    fn delete_fast(&self, account: &Account) -> StorageResult<()> {
        lock(&self.fast).retain(|(a, _), _| a != account);
        Ok(())
    }
}
