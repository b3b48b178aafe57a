//! [`ArchiveStore`] on sled: `archive` holds each owner's messages in id order,
//! `archive_with` indexes them by conversation partner, `archive_prefs` the preferences.
//! A query lists matching ids from keys and the index alone (time and id bounds are key
//! ranges) and loads only the page's messages.
//!
//! The conversation index is written in chunks: one entry per owner, partner and
//! [`ArchiveStore::append`] call, keyed by the chunk's first id and holding every id of
//! that conversation in the call (8 bytes each, ascending). Under load one write carries
//! thousands of messages over a few hundred conversations, so the index costs a few
//! hundred inserts instead of one per message; a quiet server writes chunks of one.

use std::collections::BTreeMap;

use sled::Batch;

use super::{Context, SledStore, decode, encode, keys, remove_prefix};
use crate::archive::{
    ArchiveId, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore, ArchivedMessage,
    RETRACT_WITHIN, page_of, paginate,
};
use crate::{Account, StorageError, StorageResult};

/// The ids of an index chunk.
fn chunk_ids(key: &[u8], value: &[u8]) -> StorageResult<impl DoubleEndedIterator<Item = u64>> {
    if !value.len().is_multiple_of(8) {
        return Err(StorageError::Corrupt(format!(
            "archive index chunk of {} bytes at {}",
            value.len(),
            keys::describe(key)
        )));
    }
    let ids: Vec<u64> = value
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect();
    Ok(ids.into_iter())
}

impl SledStore {
    fn load_archived(
        &self,
        owner: &Account,
        id: ArchiveId,
    ) -> StorageResult<Option<ArchivedMessage>> {
        let key = keys::archive_key(owner, id.0)?;
        match self.archive.get(&key).context("reading archive")? {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The ids of an owner's messages inside the query's bounds and `with` filter.
    fn matching_ids(&self, owner: &Account, q: &ArchiveQuery) -> StorageResult<Vec<ArchiveId>> {
        let (lo, hi) = q.id_range();
        if lo > hi {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        match &q.with {
            Some(with) => {
                // Chunks start at or before their ids: every chunk keyed up to `hi`.
                let prefix = keys::archive_with_prefix(owner, with)?;
                let mut end = prefix.clone();
                end.extend_from_slice(&hi.0.to_be_bytes());
                for entry in self.archive_with.range(prefix.clone()..=end) {
                    let (key, value) = entry.context("reading archive index")?;
                    ids.extend(
                        chunk_ids(&key, &value)?
                            .map(ArchiveId)
                            .filter(|id| q.in_bounds(*id)),
                    );
                }
                ids.sort_unstable();
                ids.dedup();
            }
            None => {
                let prefix = keys::account_prefix(owner)?;
                let bound = |id: u64| {
                    let mut k = prefix.clone();
                    k.extend_from_slice(&id.to_be_bytes());
                    k
                };
                for key in self.archive.range(bound(lo.0)..=bound(hi.0)).keys() {
                    let id = ArchiveId(keys::archive_id(&key.context("reading archive keys")?)?);
                    if q.in_bounds(id) {
                        ids.push(id);
                    }
                }
            }
        }
        // A full-JID `with`: the resource is in the message, not the index.
        if q.with_resource.is_some() {
            let mut kept = Vec::with_capacity(ids.len());
            for id in ids {
                if self
                    .load_archived(owner, id)?
                    .is_some_and(|m| q.matches_party(&m))
                {
                    kept.push(id);
                }
            }
            ids = kept;
        }
        Ok(ids)
    }
}

impl ArchiveStore for SledStore {
    fn append(&self, entries: &[(Account, ArchivedMessage)]) -> StorageResult<()> {
        let mut main = Batch::default();
        let mut chunks: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (owner, m) in entries {
            main.insert(keys::archive_key(owner, m.id.0)?, encode(m)?);
            chunks
                .entry(keys::archive_with_prefix(owner, &m.with)?)
                .or_default()
                .extend_from_slice(&m.id.0.to_be_bytes());
        }
        let mut index = Batch::default();
        for (prefix, mut ids) in chunks {
            // Ascending, whatever order the caller gave.
            let mut sorted: Vec<[u8; 8]> = ids
                .chunks_exact(8)
                .map(|c| c.try_into().expect("8 bytes"))
                .collect();
            sorted.sort_unstable();
            ids = sorted.concat();
            let mut key = prefix;
            key.extend_from_slice(&ids[..8]);
            index.insert(key, ids);
        }
        // The index first: an entry whose message is missing is skipped by queries, a
        // message missing from the index would be invisible to `with` queries.
        self.archive_with
            .apply_batch(index)
            .context("indexing archive")?;
        self.archive.apply_batch(main).context("archiving")?;
        self.flush()
    }

    fn query(&self, owner: &Account, q: &ArchiveQuery) -> StorageResult<ArchivePage> {
        let matching = self.matching_ids(owner, q)?;
        let ids = paginate(&matching, &q.page);
        let mut loaded = Vec::with_capacity(ids.ids.len());
        for id in &ids.ids {
            loaded.push(self.load_archived(owner, *id)?);
        }
        let mut loaded = loaded.into_iter();
        Ok(page_of(ids, |_| loaded.next().flatten()))
    }

    fn retract(
        &self,
        owner: &Account,
        with: &str,
        origin_id: &str,
        outgoing: bool,
        tombstone: &str,
    ) -> StorageResult<bool> {
        let prefix = keys::archive_with_prefix(owner, with)?;
        let mut looked = 0;
        for entry in self.archive_with.scan_prefix(&prefix).rev() {
            let (key, value) = entry.context("reading archive index")?;
            for id in chunk_ids(&key, &value)?.rev() {
                if looked == RETRACT_WITHIN {
                    return Ok(false);
                }
                looked += 1;
                let Some(mut m) = self.load_archived(owner, ArchiveId(id))? else {
                    continue;
                };
                if m.outgoing == outgoing && m.matches_origin(origin_id) {
                    m.stanza = tombstone.to_string();
                    self.archive
                        .insert(keys::archive_key(owner, id)?, encode(&m)?)
                        .context("retracting")?;
                    self.flush()?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn remove_before(&self, domain: &str, before: ArchiveId) -> StorageResult<usize> {
        let prefix = keys::domain_prefix(domain)?;
        // The index: chunks wholly before the cutoff go, straddling ones keep the rest.
        let mut index = Batch::default();
        for entry in self.archive_with.scan_prefix(&prefix) {
            let (key, value) = entry.context("reading archive index")?;
            if keys::archive_id(&key)? >= before.0 {
                continue;
            }
            let kept: Vec<u8> = chunk_ids(&key, &value)?
                .filter(|id| *id >= before.0)
                .flat_map(u64::to_be_bytes)
                .collect();
            if kept.is_empty() {
                index.remove(key);
            } else if kept.len() != value.len() {
                index.insert(key, kept);
            }
        }
        self.archive_with
            .apply_batch(index)
            .context("purging archive index")?;
        let mut main = Batch::default();
        let mut removed = 0;
        for key in self.archive.scan_prefix(&prefix).keys() {
            let key = key.context("reading archive keys")?;
            if keys::archive_id(&key)? < before.0 {
                main.remove(key);
                removed += 1;
            }
        }
        self.archive.apply_batch(main).context("purging archive")?;
        self.flush()?;
        Ok(removed)
    }

    fn delete_owner(&self, owner: &Account) -> StorageResult<()> {
        let prefix = keys::account_prefix(owner)?;
        remove_prefix(&self.archive_with, &prefix)?;
        remove_prefix(&self.archive, &prefix)?;
        self.archive_prefs
            .remove(keys::account_key(owner)?)
            .context("removing archive preferences")?;
        self.flush()
    }

    fn prefs(&self, owner: &Account) -> StorageResult<Option<ArchivePrefs>> {
        let key = keys::account_key(owner)?;
        match self
            .archive_prefs
            .get(&key)
            .context("reading archive preferences")?
        {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn set_prefs(&self, owner: &Account, prefs: &ArchivePrefs) -> StorageResult<()> {
        self.archive_prefs
            .insert(keys::account_key(owner)?, encode(prefs)?)
            .context("storing archive preferences")?;
        self.flush()
    }
}
