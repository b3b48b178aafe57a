//! Key layout of the sled trees. Every key starts with the domain, so all data of one
//! domain (one tenant) is a single prefix range in each tree:
//!
//! | tree          | key                                | value                       |
//! |---------------|------------------------------------|-----------------------------|
//! | `users`       | `domain \0 local`                  | JSON [`StoredCredentials`]  |
//! | `roster_meta` | `domain \0 local`                  | roster version, u64 BE      |
//! | `rosters`     | `domain \0 local \0 contact`       | JSON [`RosterItem`]         |
//! | `offline`     | `domain \0 local \0 sequence(u64 BE)` | JSON [`OfflineMessage`]  |
//! | `blocks`      | `domain \0 local \0 jid`           | empty                       |
//! | `muc_rooms`   | `domain \0 room`                   | JSON [`StoredRoom`]         |
//! | `muc_logs`    | `domain \0 room \0 number(u64 BE)` | JSON [`RoomLogEntry`]       |
//! | `archive_prefs` | `domain \0 local`               | JSON [`ArchivePrefs`]       |
//! | `account_data` | `domain \0 local \0 kind`        | the feature's bytes         |
//! | `pep`         | `domain \0 local \0 node`         | JSON [`PepNode`] (with its items) |
//!
//! Archived messages are not in sled: they live in SQLite beside it (`archive_sqlite.rs`).
//!
//! A domain prefix and an account prefix always end with the separator, so `a.test` never
//! matches `a.test2` and `al` never matches `alice`. Normalized JIDs cannot contain NUL;
//! any part that does (or is empty) is rejected rather than allowed to mix with other keys.
//!
//! [`StoredCredentials`]: crate::credentials::StoredCredentials
//! [`RosterItem`]: crate::RosterItem
//! [`OfflineMessage`]: crate::OfflineMessage
//! [`StoredRoom`]: crate::StoredRoom
//! [`RoomLogEntry`]: crate::RoomLogEntry
//! [`ArchivePrefs`]: crate::ArchivePrefs
//! [`PepNode`]: crate::PepNode

use crate::{Account, StorageError, StorageResult};

/// Separates the parts of a key.
const SEP: u8 = 0;

/// `domain \0`: every key of the domain in any tree starts with this.
pub(super) fn domain_prefix(domain: &str) -> StorageResult<Vec<u8>> {
    let mut key = part(domain, "domain")?.to_vec();
    key.push(SEP);
    Ok(key)
}

/// `domain \0 local`: the key of the account itself (`users`, `roster_meta`).
pub(super) fn account_key(account: &Account) -> StorageResult<Vec<u8>> {
    let mut key = domain_prefix(&account.domain)?;
    key.extend_from_slice(part(&account.local, "localpart")?);
    Ok(key)
}

/// `domain \0 local \0`: every per-account entry (`rosters`, `offline`, `blocks`) starts
/// with this.
pub(super) fn account_prefix(account: &Account) -> StorageResult<Vec<u8>> {
    let mut key = account_key(account)?;
    key.push(SEP);
    Ok(key)
}

/// `domain \0 local \0 jid`: a roster item or block-list entry.
pub(super) fn jid_key(account: &Account, jid: &str) -> StorageResult<Vec<u8>> {
    let mut key = account_prefix(account)?;
    key.extend_from_slice(part(jid, "JID")?);
    Ok(key)
}

/// `domain \0 room`: a persistent MUC room under its tenant domain.
pub(super) fn room_key(domain: &str, room: &str) -> StorageResult<Vec<u8>> {
    let mut key = domain_prefix(domain)?;
    key.extend_from_slice(part(room, "room name")?);
    Ok(key)
}

/// `domain \0 room \0`: every line of a room's log starts with this.
pub(super) fn room_log_prefix(domain: &str, room: &str) -> StorageResult<Vec<u8>> {
    let mut key = room_key(domain, room)?;
    key.push(SEP);
    Ok(key)
}

/// `domain \0 room \0 number`: a line of a room's log; big-endian so keys sort in order.
pub(super) fn room_log_key(prefix: &[u8], number: u64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// The line number at the end of a room log key.
pub(super) fn room_log_number(key: &[u8], prefix: &[u8]) -> StorageResult<u64> {
    key.strip_prefix(prefix)
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt(format!("malformed key {}", describe(key))))
}

/// `domain \0 local \0 sequence`: an offline message; big-endian so keys sort in order.
pub(super) fn offline_key(account: &Account, sequence: u64) -> StorageResult<Vec<u8>> {
    let mut key = account_prefix(account)?;
    key.extend_from_slice(&sequence.to_be_bytes());
    Ok(key)
}

/// The single string part of `key` after `prefix` (a localpart or JID).
pub(super) fn suffix(key: &[u8], prefix: &[u8]) -> StorageResult<String> {
    let rest = key
        .strip_prefix(prefix)
        .filter(|rest| !rest.is_empty() && !rest.contains(&SEP))
        .ok_or_else(|| StorageError::Corrupt(format!("malformed key {}", describe(key))))?;
    String::from_utf8(rest.to_vec())
        .map_err(|_| StorageError::Corrupt(format!("key is not UTF-8: {}", describe(key))))
}

/// A key in printable form for error messages.
pub(super) fn describe(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

fn part<'a>(value: &'a str, what: &str) -> StorageResult<&'a [u8]> {
    Ok(crate::key_part(value, what)?.as_bytes())
}

/// `tenant \0 slot`: a plugin slot's record and key-value usage counter.
pub(super) fn plugin_scope_key(tenant: &str, slot: &str) -> StorageResult<Vec<u8>> {
    let mut key = part(tenant, "tenant")?.to_vec();
    key.push(SEP);
    key.extend_from_slice(part(slot, "plugin slot")?);
    Ok(key)
}

/// `tenant \0 slot \0`: every key-value entry of the plugin starts with this.
pub(super) fn plugin_kv_prefix(tenant: &str, slot: &str) -> StorageResult<Vec<u8>> {
    let mut key = plugin_scope_key(tenant, slot)?;
    key.push(SEP);
    Ok(key)
}

/// `tenant \0 slot \0 key`: one key-value entry of a plugin.
pub(super) fn plugin_kv_key(tenant: &str, slot: &str, key: &str) -> StorageResult<Vec<u8>> {
    let mut k = plugin_kv_prefix(tenant, slot)?;
    k.extend_from_slice(key.as_bytes());
    Ok(k)
}
