//! The message archive (XEP-0313): each owner's messages in the order the server accepted
//! them, queried by time, conversation partner and id with XEP-0059 paging, plus the
//! owner's archiving preferences.
//!
//! An owner is an account (its 1:1 messages) or a MUC room. A room's archive is stored
//! under its tenant domain with the localpart `room@service` ([`room_owner`]): `@` cannot
//! appear in an account's localpart, so a room never shares an archive with a user.
//!
//! Ids are numbers that grow with the time of archiving ([`ArchiveId`]): the textual form
//! is the XEP-0359 stanza-id clients see, and id order is archive order. The paging rules
//! ([`paginate`]) are shared by every backend: a backend lists the ids matching the
//! filters, the rules pick the page.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::{Account, StorageResult};

/// An archive id: microseconds since the Unix epoch when the message was archived, made
/// unique (and increasing) within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ArchiveId(pub u64);

impl ArchiveId {
    /// A new id, greater than every id this process made before.
    pub fn next() -> ArchiveId {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default();
        let mut last = LAST.load(Ordering::Relaxed);
        loop {
            let id = now.max(last + 1);
            match LAST.compare_exchange_weak(last, id, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return ArchiveId(id),
                Err(seen) => last = seen,
            }
        }
    }

    /// The smallest id archived at or after `ms` (milliseconds since the epoch).
    pub fn at_ms(ms: u64) -> ArchiveId {
        ArchiveId(ms.saturating_mul(1000))
    }

    /// When it was archived, in milliseconds since the epoch.
    pub fn ms(self) -> u64 {
        self.0 / 1000
    }

    /// Parses the textual form (16 lowercase hex digits).
    pub fn parse(s: &str) -> Option<ArchiveId> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(ArchiveId)
    }
}

impl std::fmt::Display for ArchiveId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedMessage {
    pub id: ArchiveId,
    /// The bare JID of the other party (for a room archive: the sender's occupant JID).
    pub with: String,
    /// The other party's resource, when the message named one (for full-JID queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_resource: Option<String>,
    /// Sent by the owner (not received).
    pub outgoing: bool,
    /// The sender's XEP-0359 origin-id, for retraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_id: Option<String>,
    /// The message as it was delivered, serialized.
    pub stanza: String,
}

/// Filters and paging of one query. Bounds are exclusive ids or inclusive times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only messages with this party (a bare JID)...
    pub with: Option<String>,
    /// ... and, when set, this resource of it (a full-JID `with`).
    pub with_resource: Option<String>,
    /// Archived at or after this time (ms).
    pub start_ms: Option<u64>,
    /// Archived at or before this time (ms).
    pub end_ms: Option<u64>,
    /// Only ids greater than this (the `after-id` filter).
    pub after_id: Option<ArchiveId>,
    /// Only ids smaller than this (the `before-id` filter).
    pub before_id: Option<ArchiveId>,
    /// Only these ids.
    pub ids: Option<Vec<ArchiveId>>,
    /// The page.
    pub page: Page,
}

/// XEP-0059 paging of a result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most this many messages.
    pub max: usize,
    /// Where the page is.
    pub at: PageAt,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            max: 50,
            at: PageAt::First,
        }
    }
}

/// Where a page is in the result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageAt {
    /// The oldest messages (no `<before/>` or `<after/>`).
    First,
    /// The newest messages (an empty `<before/>`).
    Last,
    /// The messages right after this id (`<after>id</after>`).
    After(ArchiveId),
    /// The messages right before this id (`<before>id</before>`).
    Before(ArchiveId),
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArchivePage {
    /// The messages, oldest first.
    pub messages: Vec<ArchivedMessage>,
    /// The page reaches the end of the result set in its direction (XEP-0313 `complete`).
    pub complete: bool,
    /// How many messages match the filters, all pages together.
    pub count: usize,
    /// The position of the page's first message in the result set.
    pub first_index: usize,
    /// The RSM `<after/>`/`<before/>` id was not in the result set.
    pub anchor_missing: bool,
}

/// The ids of a page (see [`paginate`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageIds {
    pub ids: Vec<ArchiveId>,
    pub complete: bool,
    pub count: usize,
    pub first_index: usize,
    pub anchor_missing: bool,
}

/// Picks a page from the ids matching a query's filters, oldest first.
pub fn paginate(matching: &[ArchiveId], page: &Page) -> PageIds {
    let count = matching.len();
    let (start, end, toward_end) = match page.at {
        PageAt::First => (0, page.max.min(count), true),
        PageAt::Last => (count.saturating_sub(page.max), count, false),
        PageAt::After(id) => match matching.binary_search(&id) {
            Ok(i) => (i + 1, (i + 1 + page.max).min(count), true),
            Err(_) => return missing(count),
        },
        PageAt::Before(id) => match matching.binary_search(&id) {
            Ok(i) => (i.saturating_sub(page.max), i, false),
            Err(_) => return missing(count),
        },
    };
    PageIds {
        ids: matching[start..end].to_vec(),
        complete: if toward_end { end == count } else { start == 0 },
        count,
        first_index: start,
        anchor_missing: false,
    }
}

fn missing(count: usize) -> PageIds {
    PageIds {
        count,
        anchor_missing: true,
        ..Default::default()
    }
}

impl ArchiveQuery {
    /// Whether an id is inside the query's id and time bounds.
    pub fn in_bounds(&self, id: ArchiveId) -> bool {
        self.after_id.is_none_or(|a| id > a)
            && self.before_id.is_none_or(|b| id < b)
            && self.start_ms.is_none_or(|s| id >= ArchiveId::at_ms(s))
            && self
                .end_ms
                .is_none_or(|e| id < ArchiveId::at_ms(e.saturating_add(1)))
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }

    /// Whether a message is with the query's party (bare JID, and resource if given).
    pub fn matches_party(&self, m: &ArchivedMessage) -> bool {
        self.with.as_ref().is_none_or(|w| *w == m.with)
            && (self.with_resource.is_none() || self.with_resource == m.with_resource)
    }

    /// The smallest and largest ids the bounds allow.
    pub fn id_range(&self) -> (ArchiveId, ArchiveId) {
        let lo = [
            self.after_id.map(|a| a.0.saturating_add(1)),
            self.start_ms.map(|s| ArchiveId::at_ms(s).0),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let hi = [
            self.before_id.map(|b| b.0.saturating_sub(1)),
            self.end_ms
                .map(|e| ArchiveId::at_ms(e.saturating_add(1)).0.saturating_sub(1)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX);
        (ArchiveId(lo), ArchiveId(hi))
    }
}

/// What the owner wants archived (XEP-0313 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveDefault {
    #[default]
    Always,
    Never,
    /// Only messages with contacts in the roster.
    Roster,
}

impl ArchiveDefault {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveDefault::Always => "always",
            ArchiveDefault::Never => "never",
            ArchiveDefault::Roster => "roster",
        }
    }

    pub fn parse(s: &str) -> Option<ArchiveDefault> {
        match s {
            "always" => Some(ArchiveDefault::Always),
            "never" => Some(ArchiveDefault::Never),
            "roster" => Some(ArchiveDefault::Roster),
            _ => None,
        }
    }
}

/// An owner's archiving preferences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ArchivePrefs {
    pub default: ArchiveDefault,
    /// Bare JIDs always archived.
    #[serde(default)]
    pub always: Vec<String>,
    /// Bare JIDs never archived.
    #[serde(default)]
    pub never: Vec<String>,
}

/// The archive of a MUC room (see the module docs).
pub fn room_owner(tenant_domain: &str, room: &str, service: &str) -> Account {
    Account::new(format!("{room}@{service}"), tenant_domain)
}

/// Message archives and archiving preferences.
pub trait ArchiveStore: Send + Sync {
    /// Stores messages (of any owners) in one write.
    fn append(&self, entries: &[(Account, ArchivedMessage)]) -> StorageResult<()>;
    /// One page of an owner's archive.
    fn query(&self, owner: &Account, query: &ArchiveQuery) -> StorageResult<ArchivePage>;
    /// Replaces the stored stanza of the newest message with `with` whose origin-id (or
    /// id) is `origin_id` and whose direction is `outgoing`, among the newest `within`
    /// messages with that party. Returns whether one was found.
    fn retract(
        &self,
        owner: &Account,
        with: &str,
        origin_id: &str,
        outgoing: bool,
        tombstone: &str,
    ) -> StorageResult<bool>;
    /// Removes an owner's messages archived before `before`; returns how many.
    fn remove_before(&self, domain: &str, before: ArchiveId) -> StorageResult<usize>;
    /// Removes an owner's whole archive and preferences.
    fn delete_owner(&self, owner: &Account) -> StorageResult<()>;
    /// The owner's stored preferences, if any.
    fn prefs(&self, owner: &Account) -> StorageResult<Option<ArchivePrefs>>;
    fn set_prefs(&self, owner: &Account, prefs: &ArchivePrefs) -> StorageResult<()>;
}

/// How far back [`ArchiveStore::retract`] looks for the message to retract.
pub const RETRACT_WITHIN: usize = 1000;

/// An in-memory [`ArchiveStore`], for tests and as the reference of the behaviour.
#[derive(Default)]
pub struct MemArchiveStore {
    inner: Mutex<MemArchive>,
}

#[derive(Default)]
struct MemArchive {
    messages: BTreeMap<Account, BTreeMap<ArchiveId, ArchivedMessage>>,
    prefs: BTreeMap<Account, ArchivePrefs>,
}

impl ArchiveStore for MemArchiveStore {
    fn append(&self, entries: &[(Account, ArchivedMessage)]) -> StorageResult<()> {
        let mut a = self.inner.lock().expect("archive lock");
        for (owner, m) in entries {
            a.messages
                .entry(owner.clone())
                .or_default()
                .insert(m.id, m.clone());
        }
        Ok(())
    }

    fn query(&self, owner: &Account, q: &ArchiveQuery) -> StorageResult<ArchivePage> {
        let a = self.inner.lock().expect("archive lock");
        let Some(all) = a.messages.get(owner) else {
            return Ok(page_of(paginate(&[], &q.page), |_| None));
        };
        let matching: Vec<ArchiveId> = all
            .values()
            .filter(|m| q.in_bounds(m.id) && q.matches_party(m))
            .map(|m| m.id)
            .collect();
        Ok(page_of(paginate(&matching, &q.page), |id| {
            all.get(&id).cloned()
        }))
    }

    fn retract(
        &self,
        owner: &Account,
        with: &str,
        origin_id: &str,
        outgoing: bool,
        tombstone: &str,
    ) -> StorageResult<bool> {
        let mut a = self.inner.lock().expect("archive lock");
        let Some(all) = a.messages.get_mut(owner) else {
            return Ok(false);
        };
        let found = all
            .values_mut()
            .rev()
            .filter(|m| m.with == with)
            .take(RETRACT_WITHIN)
            .find(|m| m.outgoing == outgoing && m.matches_origin(origin_id));
        Ok(found.map(|m| m.stanza = tombstone.to_string()).is_some())
    }

    fn remove_before(&self, domain: &str, before: ArchiveId) -> StorageResult<usize> {
        let mut a = self.inner.lock().expect("archive lock");
        let mut removed = 0;
        for (owner, all) in a.messages.iter_mut() {
            if owner.domain == domain {
                let keep = all.split_off(&before);
                removed += all.len();
                *all = keep;
            }
        }
        Ok(removed)
    }

    fn delete_owner(&self, owner: &Account) -> StorageResult<()> {
        let mut a = self.inner.lock().expect("archive lock");
        a.messages.remove(owner);
        a.prefs.remove(owner);
        Ok(())
    }

    fn prefs(&self, owner: &Account) -> StorageResult<Option<ArchivePrefs>> {
        Ok(self
            .inner
            .lock()
            .expect("archive lock")
            .prefs
            .get(owner)
            .cloned())
    }

    fn set_prefs(&self, owner: &Account, prefs: &ArchivePrefs) -> StorageResult<()> {
        let mut a = self.inner.lock().expect("archive lock");
        a.prefs.insert(owner.clone(), prefs.clone());
        Ok(())
    }
}

impl ArchivedMessage {
    /// Whether a retraction naming `id` is about this message (its origin-id, or its
    /// archive id for senders that had none).
    pub fn matches_origin(&self, id: &str) -> bool {
        match &self.origin_id {
            Some(o) => o == id,
            None => self.id.to_string() == id,
        }
    }
}

/// Builds the page from its ids, loading each message.
pub fn page_of(
    ids: PageIds,
    mut load: impl FnMut(ArchiveId) -> Option<ArchivedMessage>,
) -> ArchivePage {
    ArchivePage {
        messages: ids.ids.iter().filter_map(|id| load(*id)).collect(),
        complete: ids.complete,
        count: ids.count,
        first_index: ids.first_index,
        anchor_missing: ids.anchor_missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<ArchiveId> {
        (1..=n).map(ArchiveId).collect()
    }

    fn page(max: usize, at: PageAt) -> Page {
        Page { max, at }
    }

    #[test]
    fn ids_grow_and_read_back() {
        let a = ArchiveId::next();
        let b = ArchiveId::next();
        assert!(b > a);
        assert_eq!(ArchiveId::parse(&a.to_string()), Some(a));
        assert_eq!(ArchiveId::parse("not-an-id"), None);
        assert_eq!(ArchiveId::parse("0123456789abcdeg"), None);
    }

    #[test]
    fn paging_forward_through_everything_sees_each_id_once() {
        let all = ids(250);
        let mut seen = Vec::new();
        let mut at = PageAt::First;
        loop {
            let p = paginate(&all, &page(50, at));
            assert_eq!(p.count, 250);
            seen.extend(p.ids.iter().copied());
            if p.complete {
                break;
            }
            at = PageAt::After(*p.ids.last().unwrap());
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn paging_backward_from_the_end_sees_each_id_once() {
        let all = ids(250);
        let mut seen = Vec::new();
        let mut at = PageAt::Last;
        loop {
            let p = paginate(&all, &page(40, at));
            let mut chunk = p.ids.clone();
            chunk.extend(seen);
            seen = chunk;
            if p.complete {
                assert_eq!(p.first_index, 0);
                break;
            }
            at = PageAt::Before(p.ids[0]);
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn an_unknown_anchor_is_reported() {
        let all = ids(10);
        assert!(paginate(&all, &page(5, PageAt::After(ArchiveId(99)))).anchor_missing);
        assert!(!paginate(&all, &page(5, PageAt::After(ArchiveId(3)))).anchor_missing);
    }

    #[test]
    fn empty_archive_is_complete() {
        let p = paginate(&[], &Page::default());
        assert!(p.complete && p.ids.is_empty() && p.count == 0);
        let p = paginate(&[], &page(5, PageAt::Last));
        assert!(p.complete);
    }

    #[test]
    fn time_and_id_bounds() {
        let q = ArchiveQuery {
            start_ms: Some(2),
            end_ms: Some(3),
            ..Default::default()
        };
        assert!(!q.in_bounds(ArchiveId(1999)));
        assert!(q.in_bounds(ArchiveId(2000)));
        assert!(q.in_bounds(ArchiveId(3999)));
        assert!(!q.in_bounds(ArchiveId(4000)));
        assert_eq!(q.id_range(), (ArchiveId(2000), ArchiveId(3999)));
        let q = ArchiveQuery {
            after_id: Some(ArchiveId(5)),
            before_id: Some(ArchiveId(9)),
            ..Default::default()
        };
        assert_eq!(q.id_range(), (ArchiveId(6), ArchiveId(8)));
        assert!(!q.in_bounds(ArchiveId(5)) && q.in_bounds(ArchiveId(6)));
    }

    #[test]
    fn retraction_touches_only_the_owners_own_matching_message() {
        let store = MemArchiveStore::default();
        let alice = Account::new("alice", "x");
        let msg = |id, outgoing, origin: &str| ArchivedMessage {
            id: ArchiveId(id),
            with: "bob@x".into(),
            with_resource: None,
            outgoing,
            origin_id: Some(origin.into()),
            stanza: format!("m{id}"),
        };
        store
            .append(&[
                (alice.clone(), msg(1, true, "o1")),
                (alice.clone(), msg(2, false, "o1")),
            ])
            .unwrap();
        // Bob's message with the same origin-id is not alice's to retract.
        assert!(store.retract(&alice, "bob@x", "o1", true, "gone").unwrap());
        let page = store.query(&alice, &ArchiveQuery::default()).unwrap();
        assert_eq!(page.messages[0].stanza, "gone");
        assert_eq!(page.messages[1].stanza, "m2");
        assert!(
            !store
                .retract(&alice, "carol@x", "o1", true, "gone")
                .unwrap()
        );
    }
}
