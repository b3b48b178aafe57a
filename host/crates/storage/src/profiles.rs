//! What a user keeps about themselves, on top of [`AccountDataStore`] (so every backend
//! has it, it is deleted with the account, and dumps carry it): the vCard (XEP-0054),
//! private XML storage (XEP-0049) and the time of the last logout (XEP-0012).
//!
//! Every record is bounded by the limits the caller passes ([`PrivateLimits`], the
//! vCard's byte limit): a write over a limit is refused before anything is stored, and
//! what was stored stays as it was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Account, AccountDataStore, StorageError, StorageResult};

/// The [`AccountDataStore`] kind of the vCard (its serialized XML).
pub const VCARD_KIND: &str = "vcard";
/// The kind of private XML storage (one JSON map of namespace to serialized XML).
pub const PRIVATE_KIND: &str = "private";
/// The kind of the last-logout record ([`LastLogout`] as JSON).
pub const LAST_KIND: &str = "last";

/// Why a profile write was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("private storage already holds {limit} namespaces")]
    TooManyNamespaces { limit: usize },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Reads the stored vCard (serialized XML).
pub fn vcard(store: &dyn AccountDataStore, account: &Account) -> StorageResult<Option<String>> {
    store
        .get(account, VCARD_KIND)?
        .map(|v| String::from_utf8(v).map_err(|e| StorageError::Corrupt(e.to_string())))
        .transpose()
}

/// Stores (replacing) the vCard if it is within `limit` bytes; an empty one removes it.
pub fn put_vcard(
    store: &dyn AccountDataStore,
    account: &Account,
    xml: &str,
    limit: usize,
) -> Result<(), ProfileError> {
    if xml.len() > limit {
        return Err(ProfileError::TooLarge {
            what: "vCard",
            size: xml.len(),
            limit,
        });
    }
    Ok(store.put(account, VCARD_KIND, xml.as_bytes())?)
}

/// Limits of one user's private XML storage.
#[derive(Debug, Clone, Copy)]
pub struct PrivateLimits {
    /// All namespaces' XML together, in bytes.
    pub max_bytes: usize,
    pub max_namespaces: usize,
}

type PrivateMap = BTreeMap<String, String>;

fn private_map(store: &dyn AccountDataStore, account: &Account) -> StorageResult<PrivateMap> {
    match store.get(account, PRIVATE_KIND)? {
        None => Ok(PrivateMap::new()),
        Some(v) => serde_json::from_slice(&v).map_err(|e| StorageError::Corrupt(e.to_string())),
    }
}

/// The XML stored under `namespace`, if any.
pub fn private(
    store: &dyn AccountDataStore,
    account: &Account,
    namespace: &str,
) -> StorageResult<Option<String>> {
    Ok(private_map(store, account)?.remove(namespace))
}

/// Stores each `(namespace, xml)` (replacing what the namespace held), all or nothing:
/// if the result would be over `limits`, nothing changes.
pub fn put_private(
    store: &dyn AccountDataStore,
    account: &Account,
    entries: &[(String, String)],
    limits: PrivateLimits,
) -> Result<(), ProfileError> {
    let mut map = private_map(store, account)?;
    for (ns, xml) in entries {
        map.insert(ns.clone(), xml.clone());
    }
    if map.len() > limits.max_namespaces {
        return Err(ProfileError::TooManyNamespaces {
            limit: limits.max_namespaces,
        });
    }
    let size: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > limits.max_bytes {
        return Err(ProfileError::TooLarge {
            what: "private storage",
            size,
            limit: limits.max_bytes,
        });
    }
    let bytes = serde_json::to_vec(&map).map_err(|e| StorageError::Backend(e.to_string()))?;
    Ok(store.put(account, PRIVATE_KIND, &bytes)?)
}

/// When the account's last session ended, and the status it left with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastLogout {
    /// Seconds since the Unix epoch.
    pub at_secs: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
}

/// Status texts longer than this are cut (at a character boundary) before being stored.
pub const MAX_STATUS_BYTES: usize = 1024;

/// The last logout, if one was recorded.
pub fn last_logout(
    store: &dyn AccountDataStore,
    account: &Account,
) -> StorageResult<Option<LastLogout>> {
    store
        .get(account, LAST_KIND)?
        .map(|v| serde_json::from_slice(&v).map_err(|e| StorageError::Corrupt(e.to_string())))
        .transpose()
}

/// Records a logout (the status cut to [`MAX_STATUS_BYTES`]).
pub fn put_last_logout(
    store: &dyn AccountDataStore,
    account: &Account,
    at_secs: u64,
    status: &str,
) -> StorageResult<()> {
    let mut end = status.len().min(MAX_STATUS_BYTES);
    while !status.is_char_boundary(end) {
        end -= 1;
    }
    let record = LastLogout {
        at_secs,
        status: status[..end].to_string(),
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| StorageError::Backend(e.to_string()))?;
    store.put(account, LAST_KIND, &bytes)
}
