//! A cache of recently verified plaintext passwords, so that PLAIN logins (and anything
//! else that checks a password against stored SCRAM keys) do not pay the PBKDF2 key
//! derivation on every login.
//!
//! For each account it keeps one tag: HMAC-SHA-256 under a random per-process key of the
//! account's current StoredKey and the password. A later check computes the same tag (one
//! HMAC, microseconds) and accepts on a match; anything else falls back to the full
//! derivation. Changing the password changes StoredKey, so an old tag can never match
//! again. The tags live only in memory, are bounded in number, and are useless without
//! the process's key; still, they are cheaper to attack than PBKDF2, so the cache can be
//! turned off (`[auth] password_cache = false`).

use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use heliograph_storage::Account;

/// Accounts remembered at most; past that the cache starts over.
const MAX_ENTRIES: usize = 200_000;

/// See the module docs.
pub struct VerifiedPasswords {
    key: [u8; 32],
    tags: DashMap<Account, [u8; 32]>,
    enabled: AtomicBool,
}

impl Default for VerifiedPasswords {
    fn default() -> Self {
        VerifiedPasswords {
            key: rand::random(),
            tags: DashMap::new(),
            enabled: AtomicBool::new(true),
        }
    }
}

impl VerifiedPasswords {
    /// Turns the cache on or off (off forgets everything).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
        if !enabled {
            self.tags.clear();
        }
    }

    fn tag(&self, account: &Account, stored_key: &[u8], password: &str) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        for part in [
            account.local.as_bytes(),
            account.domain.as_bytes(),
            stored_key,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// True if this password was verified for the account's current keys before.
    pub fn contains(&self, account: &Account, stored_key: &[u8], password: &str) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        let Some(known) = self.tags.get(account) else {
            return false;
        };
        bool::from(known.ct_eq(&self.tag(account, stored_key, password)))
    }

    /// Remembers a password that was just verified the slow way.
    pub fn remember(&self, account: &Account, stored_key: &[u8], password: &str) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        if self.tags.len() >= MAX_ENTRIES {
            self.tags.clear();
        }
        self.tags
            .insert(account.clone(), self.tag(account, stored_key, password));
    }

    /// Forgets an account (deleted, or its password changed).
    pub fn forget(&self, account: &Account) {
        self.tags.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_password_and_keys() {
        let c = VerifiedPasswords::default();
        let a = Account::new("alice", "x.test");
        assert!(!c.contains(&a, b"k1", "pw"));
        c.remember(&a, b"k1", "pw");
        assert!(c.contains(&a, b"k1", "pw"));
        assert!(!c.contains(&a, b"k1", "other"));
        assert!(
            !c.contains(&a, b"k2", "pw"),
            "new keys (password changed) invalidate"
        );
        assert!(!c.contains(&Account::new("bob", "x.test"), b"k1", "pw"));
        c.forget(&a);
        assert!(!c.contains(&a, b"k1", "pw"));
        c.remember(&a, b"k1", "pw");
        c.set_enabled(false);
        assert!(!c.contains(&a, b"k1", "pw"));
    }
}
