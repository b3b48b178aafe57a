//! The plugin's configuration from the tenant's settings. The server flattens the JSON
//! object: nested objects become dotted keys (`users.alice`), strings stay as they are,
//! other values are JSON text (`true`, `3`, `["a","b"]`).

/// The whole configuration as JSON text (`{}` when none was given).
pub fn json() -> String {
    backend::config_json()
}

/// One flattened entry.
pub fn get(key: &str) -> Option<String> {
    backend::config_get(key)
}

/// Every flattened entry, sorted by key.
pub fn entries() -> Vec<(String, String)> {
    backend::config_entries()
}

/// Entries under `prefix.`, with the prefix removed (`with_prefix("users")` gives
/// `("alice", ..)` for `users.alice`).
pub fn with_prefix(prefix: &str) -> Vec<(String, String)> {
    let dotted = format!("{prefix}.");
    entries()
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(&dotted).map(|rest| (rest.to_string(), v)))
        .collect()
}

/// A boolean entry: `true`/`false` (JSON booleans or those strings); `default` if absent.
pub fn get_bool(key: &str, default: bool) -> bool {
    match get(key).as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => default,
    }
}

/// A list entry: a JSON array of strings, or a comma-separated string. Items are
/// trimmed; empty ones are dropped. (Strings containing `"` or `,` are not supported.)
pub fn get_list(key: &str) -> Vec<String> {
    let Some(value) = get(key) else {
        return Vec::new();
    };
    let inner = value
        .trim()
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(&value);
    inner
        .split(',')
        .map(|item| item.trim().trim_matches('"').trim().to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(target_arch = "wasm32")]
use crate::__guest::backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::backend;
