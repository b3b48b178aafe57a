//! [`Backend`] on sled: export walks the trees kind by kind (tree order is key order, the
//! order a dump needs); import writes records into the trees as they come, giving offline
//! messages fresh sequences in dump order and recomputing plugin quota usage, and
//! flushes once at the end. sled has no transaction spanning a whole import: a failed
//! import leaves what it wrote, and since import only runs on an empty store, the operator
//! removes the database directory and runs it again.

use std::collections::BTreeMap;

use sled::Tree;

use super::{Context, SledStore, decode, encode, keys};
use crate::backend::{Backend, DumpRecord, Sink};
use crate::plugins::kv_entry_size;
use crate::{Account, StorageError, StorageResult};

/// Archived messages written per `append` while importing.
const ARCHIVE_BATCH: usize = 1000;

/// Splits `key` at its first `n - 1` separators into exactly `n` parts.
fn split(key: &[u8], n: usize) -> StorageResult<Vec<&[u8]>> {
    let parts: Vec<&[u8]> = key.splitn(n, |b| *b == 0).collect();
    if parts.len() != n {
        return Err(StorageError::Corrupt(format!(
            "malformed key {}",
            keys::describe(key)
        )));
    }
    Ok(parts)
}

fn text(part: &[u8], key: &[u8]) -> StorageResult<String> {
    String::from_utf8(part.to_vec())
        .map_err(|_| StorageError::Corrupt(format!("key is not UTF-8: {}", keys::describe(key))))
}

fn number(part: &[u8], key: &[u8]) -> StorageResult<u64> {
    <[u8; 8]>::try_from(part)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt(format!("malformed key {}", keys::describe(key))))
}

/// Every entry of `tree` under `prefix`, in key order, with the prefix stripped.
fn each(
    tree: &Tree,
    prefix: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> StorageResult<()>,
) -> StorageResult<()> {
    for entry in tree.scan_prefix(prefix) {
        let (key, value) = entry.context("reading for export")?;
        f(&key[prefix.len()..], &value)?;
    }
    Ok(())
}

impl Backend for SledStore {
    fn name(&self) -> &'static str {
        "sled"
    }

    /// sled keeps its pages in its own cache and reads them from the file otherwise (a
    /// page-cache hit for a live server).
    fn reads_in_memory(&self) -> bool {
        true
    }

    fn is_empty(&self) -> StorageResult<bool> {
        let trees = [
            &self.users,
            &self.roster_meta,
            &self.rosters,
            &self.offline,
            &self.blocks,
            &self.tenants,
            &self.muc_rooms,
            &self.muc_logs,
            &self.tokens,
            &self.plugin_kv,
            &self.plugin_blobs,
            &self.plugin_slots,
            &self.archive_prefs,
            &self.account_data,
            &self.pep,
        ];
        Ok(trees.iter().all(|t| t.is_empty()) && self.messages.is_empty()?)
    }

    fn export(&self, sink: &mut Sink<'_>) -> StorageResult<u64> {
        let mut n = 0u64;
        let mut emit = |r: DumpRecord| {
            n += 1;
            sink(r)
        };
        each(&self.users, b"", |k, v| {
            let p = split(k, 2)?;
            emit(DumpRecord::User {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                credentials: decode(k, v)?,
            })
        })?;
        each(&self.roster_meta, b"", |k, v| {
            let p = split(k, 2)?;
            emit(DumpRecord::RosterVersion {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                version: number(v, k)?,
            })
        })?;
        each(&self.rosters, b"", |k, v| {
            let p = split(k, 3)?;
            emit(DumpRecord::RosterItem {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                item: decode(k, v)?,
            })
        })?;
        each(&self.offline, b"", |k, v| {
            let p = split(k, 3)?;
            emit(DumpRecord::Offline {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                message: decode(k, v)?,
            })
        })?;
        each(&self.blocks, b"", |k, _| {
            let p = split(k, 3)?;
            emit(DumpRecord::Block {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                jid: text(p[2], k)?,
            })
        })?;
        each(&self.tenants, b"", |k, v| {
            emit(DumpRecord::Tenant {
                record: decode(k, v)?,
            })
        })?;
        each(&self.muc_rooms, b"", |k, v| {
            let p = split(k, 2)?;
            emit(DumpRecord::Room {
                domain: text(p[0], k)?,
                room: decode(k, v)?,
            })
        })?;
        each(&self.muc_logs, b"", |k, v| {
            let p = split(k, 3)?;
            emit(DumpRecord::RoomLog {
                domain: text(p[0], k)?,
                room: text(p[1], k)?,
                number: number(p[2], k)?,
                entry: decode(k, v)?,
            })
        })?;
        each(&self.tokens, b"k\0", |k, v| {
            emit(DumpRecord::SigningKey {
                tenant: text(k, k)?,
                key: v.to_vec(),
            })
        })?;
        each(&self.tokens, b"s\0", |k, v| {
            let p = split(k, 2)?;
            emit(DumpRecord::RevocationSeq {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                seq: number(v, k)?,
            })
        })?;
        each(&self.tokens, b"r\0", |k, v| {
            let p = split(k, 3)?;
            emit(DumpRecord::Refresh {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                record: decode(k, v)?,
            })
        })?;
        each(&self.tokens, b"f\0", |k, v| {
            let p = split(k, 3)?;
            emit(DumpRecord::Fast {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                client: text(p[2], k)?,
                slots: decode(k, v)?,
            })
        })?;
        each(&self.plugin_blobs, b"", |k, v| {
            emit(DumpRecord::PluginBlob {
                sha256: text(k, k)?,
                wasm: v.to_vec(),
            })
        })?;
        each(&self.plugin_slots, b"", |k, v| {
            emit(DumpRecord::PluginSlot {
                record: decode(k, v)?,
            })
        })?;
        each(&self.plugin_kv, b"", |k, v| {
            let p = split(k, 3)?;
            emit(DumpRecord::PluginKv {
                tenant: text(p[0], k)?,
                slot: text(p[1], k)?,
                key: text(p[2], k)?,
                value: v.to_vec(),
            })
        })?;
        self.messages.each(|owner, message| {
            emit(DumpRecord::Archived {
                domain: owner.domain,
                local: owner.local,
                message,
            })
        })?;
        each(&self.archive_prefs, b"", |k, v| {
            let p = split(k, 2)?;
            emit(DumpRecord::ArchivePrefs {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                prefs: decode(k, v)?,
            })
        })?;
        each(&self.account_data, b"", |k, v| {
            let p = split(k, 3)?;
            emit(DumpRecord::AccountData {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                data_kind: text(p[2], k)?,
                value: v.to_vec(),
            })
        })?;
        each(&self.pep, b"", |k, v| {
            let p = split(k, 3)?;
            emit(DumpRecord::PepNode {
                domain: text(p[0], k)?,
                local: text(p[1], k)?,
                node: decode(k, v)?,
            })
        })?;
        Ok(n)
    }

    fn import(
        &self,
        records: &mut dyn Iterator<Item = StorageResult<DumpRecord>>,
    ) -> StorageResult<u64> {
        let mut n = 0u64;
        let mut usage: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        // Archived messages go through `append` (which builds the conversation index), a
        // thousand at a time.
        let mut archived: Vec<(Account, crate::ArchivedMessage)> = Vec::new();
        let put = |tree: &Tree, key: Vec<u8>, value: Vec<u8>| -> StorageResult<()> {
            tree.insert(key, value).context("importing").map(drop)
        };
        for record in records {
            let record = record?;
            n += 1;
            match record {
                DumpRecord::User {
                    domain,
                    local,
                    credentials,
                } => put(
                    &self.users,
                    keys::account_key(&Account::new(&local, &domain))?,
                    encode(&credentials)?,
                )?,
                DumpRecord::RosterVersion {
                    domain,
                    local,
                    version,
                } => put(
                    &self.roster_meta,
                    keys::account_key(&Account::new(&local, &domain))?,
                    version.to_be_bytes().to_vec(),
                )?,
                DumpRecord::RosterItem {
                    domain,
                    local,
                    item,
                } => put(
                    &self.rosters,
                    keys::jid_key(&Account::new(&local, &domain), &item.jid)?,
                    encode(&item)?,
                )?,
                DumpRecord::Offline {
                    domain,
                    local,
                    message,
                } => {
                    let sequence = self.db.generate_id().context("generating a sequence")?;
                    put(
                        &self.offline,
                        keys::offline_key(&Account::new(&local, &domain), sequence)?,
                        encode(&message)?,
                    )?
                }
                DumpRecord::Block { domain, local, jid } => put(
                    &self.blocks,
                    keys::jid_key(&Account::new(&local, &domain), &jid)?,
                    Vec::new(),
                )?,
                DumpRecord::Tenant { record } => put(
                    &self.tenants,
                    crate::key_part(&record.name, "tenant")?.as_bytes().to_vec(),
                    encode(&record)?,
                )?,
                DumpRecord::Room { domain, room } => put(
                    &self.muc_rooms,
                    keys::room_key(&domain, &room.name)?,
                    encode(&room)?,
                )?,
                DumpRecord::RoomLog {
                    domain,
                    room,
                    number,
                    entry,
                } => put(
                    &self.muc_logs,
                    keys::room_log_key(&keys::room_log_prefix(&domain, &room)?, number),
                    encode(&entry)?,
                )?,
                DumpRecord::SigningKey { tenant, key } => {
                    put(&self.tokens, super::tokens::key_key(&tenant), key)?
                }
                DumpRecord::RevocationSeq { domain, local, seq } => put(
                    &self.tokens,
                    super::tokens::seq_key(&Account::new(&local, &domain))?,
                    seq.to_be_bytes().to_vec(),
                )?,
                DumpRecord::Refresh {
                    domain,
                    local,
                    record,
                } => put(
                    &self.tokens,
                    super::tokens::refresh_key(&Account::new(&local, &domain), &record.id)?,
                    encode(&record)?,
                )?,
                DumpRecord::Fast {
                    domain,
                    local,
                    client,
                    slots,
                } => put(
                    &self.tokens,
                    super::tokens::fast_key(&Account::new(&local, &domain), &client)?,
                    encode(&slots)?,
                )?,
                DumpRecord::PluginBlob { sha256, wasm } => put(
                    &self.plugin_blobs,
                    crate::key_part(&sha256, "blob hash")?.as_bytes().to_vec(),
                    wasm,
                )?,
                DumpRecord::PluginSlot { record } => put(
                    &self.plugin_slots,
                    keys::plugin_scope_key(&record.tenant, &record.slot)?,
                    encode(&record)?,
                )?,
                DumpRecord::PluginKv {
                    tenant,
                    slot,
                    key,
                    value,
                } => {
                    *usage
                        .entry(keys::plugin_scope_key(&tenant, &slot)?)
                        .or_default() += kv_entry_size(&key, &value);
                    put(
                        &self.plugin_kv,
                        keys::plugin_kv_key(&tenant, &slot, &key)?,
                        value,
                    )?
                }
                DumpRecord::Archived {
                    domain,
                    local,
                    message,
                } => {
                    archived.push((Account::new(&local, &domain), message));
                    if archived.len() == ARCHIVE_BATCH {
                        crate::ArchiveStore::append(self, &archived)?;
                        archived.clear();
                    }
                }
                DumpRecord::ArchivePrefs {
                    domain,
                    local,
                    prefs,
                } => put(
                    &self.archive_prefs,
                    keys::account_key(&Account::new(&local, &domain))?,
                    encode(&prefs)?,
                )?,
                DumpRecord::AccountData {
                    domain,
                    local,
                    data_kind,
                    value,
                } => put(
                    &self.account_data,
                    keys::jid_key(&Account::new(&local, &domain), &data_kind)?,
                    value,
                )?,
                DumpRecord::PepNode {
                    domain,
                    local,
                    node,
                } => put(
                    &self.pep,
                    keys::jid_key(&Account::new(&local, &domain), &node.name)?,
                    encode(&node)?,
                )?,
            }
        }
        if !archived.is_empty() {
            crate::ArchiveStore::append(self, &archived)?;
        }
        for (scope, bytes) in usage {
            put(&self.plugin_kv_usage, scope, bytes.to_be_bytes().to_vec())?;
        }
        self.flush()?;
        Ok(n)
    }
}
