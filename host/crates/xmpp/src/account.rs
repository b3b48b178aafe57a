//! [`Account`]: a user's bare JID, the key of everything stored about a user.

use serde::{Deserialize, Serialize};

/// The hasher of maps keyed by [`Account`] that are read on every stanza (sessions,
/// carbons, block lists): seeded per process like the standard one, several times
/// cheaper than SipHash for short keys.
pub type AccountHasher = foldhash::fast::RandomState;

/// An account: localpart and domain, already normalized (RFC 7622).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Account {
    pub local: String,
    pub domain: String,
}

impl Account {
    pub fn new(local: impl Into<String>, domain: impl Into<String>) -> Self {
        Account {
            local: local.into(),
            domain: domain.into(),
        }
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}
