//! [`ArchiveStore`] on sled: `archive` holds each owner's messages in id order,
//! `archive_with` indexes them by conversation partner, `archive_prefs` the preferences.
//! A query lists matching ids from keys alone (the index for a `with` filter, a key range
//! for time and id bounds) and loads only the page's messages.

use sled::Batch;

use super::{Context, SledStore, decode, encode, keys, remove_prefix};
use crate::archive::{
    ArchiveId, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore, ArchivedMessage,
    RETRACT_WITHIN, page_of, paginate,
};
use crate::{Account, StorageResult};

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
        let prefix = match &q.with {
            Some(with) => keys::archive_with_prefix(owner, with)?,
            None => keys::account_prefix(owner)?,
        };
        let tree = if q.with.is_some() {
            &self.archive_with
        } else {
            &self.archive
        };
        let bound = |id: u64| {
            let mut k = prefix.clone();
            k.extend_from_slice(&id.to_be_bytes());
            k
        };
        let mut ids = Vec::new();
        for key in tree.range(bound(lo.0)..=bound(hi.0)).keys() {
            let key = key.context("reading archive keys")?;
            let id = ArchiveId(keys::archive_id(&key)?);
            if !q.in_bounds(id) {
                continue;
            }
            // A full-JID `with`: the resource is in the message, not the key.
            if q.with_resource.is_some()
                && !self
                    .load_archived(owner, id)?
                    .is_some_and(|m| q.matches_party(&m))
            {
                continue;
            }
            ids.push(id);
        }
        Ok(ids)
    }
}

impl ArchiveStore for SledStore {
    fn append(&self, entries: &[(Account, ArchivedMessage)]) -> StorageResult<()> {
        let (mut main, mut index) = (Batch::default(), Batch::default());
        for (owner, m) in entries {
            main.insert(keys::archive_key(owner, m.id.0)?, encode(m)?);
            let mut k = keys::archive_with_prefix(owner, &m.with)?;
            k.extend_from_slice(&m.id.0.to_be_bytes());
            index.insert(k, &[][..]);
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
        let newest_first = self.archive_with.scan_prefix(&prefix).keys().rev();
        for key in newest_first.take(RETRACT_WITHIN) {
            let id = ArchiveId(keys::archive_id(&key.context("reading archive index")?)?);
            let Some(mut m) = self.load_archived(owner, id)? else {
                continue;
            };
            if m.outgoing == outgoing && m.matches_origin(origin_id) {
                m.stanza = tombstone.to_string();
                self.archive
                    .insert(keys::archive_key(owner, id.0)?, encode(&m)?)
                    .context("retracting")?;
                self.flush()?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn remove_before(&self, domain: &str, before: ArchiveId) -> StorageResult<usize> {
        let prefix = keys::domain_prefix(domain)?;
        let mut removed = 0;
        for tree in [&self.archive_with, &self.archive] {
            let mut batch = Batch::default();
            let mut n = 0;
            for key in tree.scan_prefix(&prefix).keys() {
                let key = key.context("reading archive keys")?;
                if keys::archive_id(&key)? < before.0 {
                    batch.remove(key);
                    n += 1;
                }
            }
            tree.apply_batch(batch).context("purging archive")?;
            // The messages themselves are the last tree.
            removed = n;
        }
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
