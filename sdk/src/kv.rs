//! The plugin's private key-value store: scoped to its (tenant, slot), kept across calls,
//! restarts and new versions of the plugin. Limits (server defaults): keys up to 256
//! bytes, values up to 64 KiB, 1 MiB in total, 256 KiB written per call.

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// Empty or too long a key.
    InvalidKey(String),
    /// The value is over the per-value limit (the limit, in bytes).
    ValueTooLarge(u64),
    /// The store is full.
    QuotaExceeded,
    /// This call has written as much as it may.
    CallBudgetExhausted,
    /// The server's storage failed; try again later.
    Unavailable(String),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::InvalidKey(why) => write!(f, "invalid key: {why}"),
            KvError::ValueTooLarge(limit) => write!(f, "value over the {limit}-byte limit"),
            KvError::QuotaExceeded => f.write_str("key-value quota exceeded"),
            KvError::CallBudgetExhausted => f.write_str("write budget of this call exhausted"),
            KvError::Unavailable(why) => write!(f, "key-value store unavailable: {why}"),
        }
    }
}

impl std::error::Error for KvError {}

/// The value of `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    backend::kv_get(key)
}

/// The value of `key` as text (invalid UTF-8 is replaced).
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    Ok(get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Stores `value` under `key`.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), KvError> {
    backend::kv_set(key, value.as_ref())
}

/// Deletes `key`; true if it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    backend::kv_delete(key)
}

/// Keys starting with `prefix`, sorted, at most `limit` (capped at 1000).
pub fn list_keys(prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
    backend::kv_list_keys(prefix, limit)
}

#[cfg(target_arch = "wasm32")]
use crate::__guest::backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::backend;
