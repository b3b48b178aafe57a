//! The conformance cases of the message archive ([`crate::ArchiveStore`]) and of account
//! data ([`crate::AccountDataStore`]). Paging is checked against the in-memory reference
//! ([`MemArchiveStore`]): every backend must return the very pages it returns, counts,
//! positions and `complete` flags included.

use super::{Harness, acct, creds};
use crate::archive::{RETRACT_WITHIN, room_owner};
use crate::{
    Account, ArchiveDefault, ArchiveId, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore,
    ArchivedMessage, MemArchiveStore, Page, PageAt,
};

/// A message with `with`, its origin-id derived from its id.
pub(super) fn archived(id: u64, with: &str, outgoing: bool) -> ArchivedMessage {
    ArchivedMessage {
        id: ArchiveId(id),
        with: with.into(),
        with_resource: None,
        outgoing,
        origin_id: Some(format!("o{id}")),
        stanza: format!("<message>{id}</message>"),
    }
}

fn ids(page: &ArchivePage) -> Vec<u64> {
    page.messages.iter().map(|m| m.id.0).collect()
}

fn query(with: Option<&str>, page: Page) -> ArchiveQuery {
    ArchiveQuery {
        with: with.map(str::to_string),
        page,
        ..Default::default()
    }
}

/// Stores the same messages in the backend and in the reference.
fn both(h: &Harness, entries: &[(Account, ArchivedMessage)]) -> MemArchiveStore {
    h.storage.archive.append(entries).unwrap();
    let reference = MemArchiveStore::default();
    reference.append(entries).unwrap();
    reference
}

/// 250 messages paged forward by 50 and backward by 40, with and without a `with`
/// filter: each message seen once, in order, with the reference's counts and positions;
/// the other node reads the same pages.
pub fn archive_pages_250_both_ways(h: &Harness) {
    let alice = acct("alice", "a.test");
    let entries: Vec<_> = (1..=250u64)
        .map(|i| {
            let with = if i % 5 == 0 {
                "carol@a.test"
            } else {
                "bob@a.test"
            };
            (alice.clone(), archived(i * 1000, with, i % 2 == 0))
        })
        .collect();
    let reference = both(h, &entries);
    for with in [None, Some("bob@a.test")] {
        let expected = reference
            .query(&alice, &query(with, Page::default()))
            .unwrap();
        let total = expected.count;
        assert_eq!(total, if with.is_none() { 250 } else { 200 });

        let mut seen = Vec::new();
        let mut at = PageAt::First;
        loop {
            let q = query(with, Page { max: 50, at });
            let page = h.storage.archive.query(&alice, &q).unwrap();
            assert_eq!(page, reference.query(&alice, &q).unwrap(), "{q:?}");
            assert_eq!(h.second.archive.query(&alice, &q).unwrap(), page);
            assert_eq!((page.count, page.first_index), (total, seen.len()));
            seen.extend(ids(&page));
            if page.complete {
                break;
            }
            at = PageAt::After(page.messages.last().unwrap().id);
        }
        assert_eq!(
            seen,
            ids(&reference
                .query(
                    &alice,
                    &query(
                        with,
                        Page {
                            max: 1000,
                            at: PageAt::First
                        }
                    )
                )
                .unwrap())
        );

        let mut back: Vec<u64> = Vec::new();
        let mut at = PageAt::Last;
        loop {
            let q = query(with, Page { max: 40, at });
            let page = h.storage.archive.query(&alice, &q).unwrap();
            assert_eq!(page, reference.query(&alice, &q).unwrap(), "{q:?}");
            assert_eq!(page.first_index + page.messages.len() + back.len(), total);
            let mut chunk = ids(&page);
            chunk.extend(back);
            back = chunk;
            if page.complete {
                assert_eq!(page.first_index, 0);
                break;
            }
            at = PageAt::Before(page.messages[0].id);
        }
        assert_eq!(back, seen);
    }
    // An anchor that is not in the result set (carol's message in bob's conversation).
    let q = query(
        Some("bob@a.test"),
        Page {
            max: 10,
            at: PageAt::After(ArchiveId(5000)),
        },
    );
    let page = h.storage.archive.query(&alice, &q).unwrap();
    assert!(page.anchor_missing && page.messages.is_empty() && page.count == 200);
    assert_eq!(page, reference.query(&alice, &q).unwrap());
}

/// Filters by party (bare and full JID), time (inclusive milliseconds), id bounds
/// (exclusive) and id lists; one owner never sees another's messages, even one whose
/// name is a prefix of its own.
pub fn archive_filters_by_party_resource_time_and_ids(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    let al = acct("al", "a.test");
    let mut entries: Vec<_> = (1..=30u64)
        .map(|i| {
            let with = if i % 3 == 0 {
                "carol@a.test"
            } else {
                "bob@a.test"
            };
            let mut m = archived(i * 1000, with, i % 2 == 0);
            m.with_resource = (i % 4 == 0).then(|| "phone".to_string());
            (alice.clone(), m)
        })
        .collect();
    entries.push((al.clone(), archived(5500, "bob@a.test", true)));
    let reference = both(h, &entries);

    let all = s.archive.query(&alice, &ArchiveQuery::default()).unwrap();
    assert_eq!((all.count, all.complete), (30, true));
    let carol = query(Some("carol@a.test"), Page::default());
    let expected: Vec<u64> = (1..=10).map(|i| i * 3000).collect();
    assert_eq!(ids(&s.archive.query(&alice, &carol).unwrap()), expected);
    // Times are inclusive, in milliseconds: ids 3000..=6000 µs are 3..=6 ms.
    let window = ArchiveQuery {
        start_ms: Some(3),
        end_ms: Some(6),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.archive.query(&alice, &window).unwrap()),
        [3000, 4000, 5000, 6000]
    );
    let last = ArchiveQuery {
        with: Some("bob@a.test".into()),
        before_id: Some(ArchiveId(29000)),
        page: Page {
            max: 2,
            at: PageAt::Last,
        },
        ..Default::default()
    };
    let page = s.archive.query(&alice, &last).unwrap();
    assert_eq!(ids(&page), [26000, 28000]);
    assert_eq!((page.count, page.complete), (19, false));
    let after = ArchiveQuery {
        after_id: Some(ArchiveId(27000)),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.archive.query(&alice, &after).unwrap()),
        [28000, 29000, 30000]
    );
    let only = ArchiveQuery {
        ids: Some(vec![ArchiveId(2000), ArchiveId(77), ArchiveId(5500)]),
        ..Default::default()
    };
    assert_eq!(ids(&s.archive.query(&alice, &only).unwrap()), [2000]);
    // A full JID: bob's phone (ids 4000, 8000, 16000, 20000, 28000; 12000 and 24000
    // are carol's).
    let phone = ArchiveQuery {
        with: Some("bob@a.test".into()),
        with_resource: Some("phone".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.archive.query(&alice, &phone).unwrap()),
        [4000, 8000, 16000, 20000, 28000]
    );
    for q in [all_query(), carol, window, last, after, only, phone] {
        assert_eq!(
            s.archive.query(&alice, &q).unwrap(),
            reference.query(&alice, &q).unwrap(),
            "{q:?}"
        );
    }
    assert_eq!(
        s.archive
            .query(&al, &ArchiveQuery::default())
            .unwrap()
            .count,
        1
    );
    let nobody = s
        .archive
        .query(&acct("nobody", "a.test"), &ArchiveQuery::default())
        .unwrap();
    assert!(nobody.complete && nobody.count == 0 && nobody.messages.is_empty());
}

fn all_query() -> ArchiveQuery {
    ArchiveQuery::default()
}

/// A small deterministic generator (xorshift), so the case needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn maybe(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Hundreds of generated queries (every filter, page size and position, anchors present
/// and missing) return exactly the reference's pages.
pub fn archive_queries_match_the_reference(h: &Harness) {
    let alice = acct("alice", "a.test");
    let parties = ["bob@a.test", "carol@a.test", "dave@b.test"];
    let resources = [None, Some("phone"), Some("laptop")];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut id = 1_700_000_000_000_000u64;
    let entries: Vec<_> = (0..300)
        .map(|_| {
            id += 1 + rng.below(3000);
            let mut m = archived(id, parties[rng.below(3) as usize], rng.maybe());
            m.with_resource = resources[rng.below(3) as usize].map(str::to_string);
            if rng.below(4) == 0 {
                m.origin_id = None;
            }
            (alice.clone(), m)
        })
        .collect();
    let reference = both(h, &entries);
    let all: Vec<ArchiveId> = entries.iter().map(|(_, m)| m.id).collect();
    let (first, last) = (all[0].0, all[all.len() - 1].0);
    let pick = |rng: &mut Rng| -> ArchiveId {
        if rng.below(5) == 0 {
            ArchiveId(first + rng.below(last - first))
        } else {
            all[rng.below(all.len() as u64) as usize]
        }
    };
    for _ in 0..300 {
        let mut q = ArchiveQuery::default();
        if rng.maybe() {
            q.with = Some(parties[rng.below(3) as usize].to_string());
        }
        if rng.below(3) == 0 {
            q.with_resource = resources[1 + rng.below(2) as usize].map(str::to_string);
        }
        if rng.below(3) == 0 {
            q.start_ms = Some(pick(&mut rng).ms());
        }
        if rng.below(3) == 0 {
            q.end_ms = Some(pick(&mut rng).ms());
        }
        if rng.below(4) == 0 {
            q.after_id = Some(pick(&mut rng));
        }
        if rng.below(4) == 0 {
            q.before_id = Some(pick(&mut rng));
        }
        if rng.below(6) == 0 {
            q.ids = Some((0..rng.below(6)).map(|_| pick(&mut rng)).collect());
        }
        q.page.max = [0, 1, 7, 50, 400][rng.below(5) as usize];
        q.page.at = match rng.below(4) {
            0 => PageAt::First,
            1 => PageAt::Last,
            2 => PageAt::After(pick(&mut rng)),
            _ => PageAt::Before(pick(&mut rng)),
        };
        assert_eq!(
            h.storage.archive.query(&alice, &q).unwrap(),
            reference.query(&alice, &q).unwrap(),
            "{q:?}"
        );
    }
}

/// Retraction replaces the stanza of the owner's own newest matching message (by
/// origin-id, or by archive id when it had none), among the newest
/// [`RETRACT_WITHIN`] messages with that party, and nothing else.
pub fn archive_retracts_only_the_owners_own_message(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    let mut no_origin = archived(4000, "bob@a.test", true);
    no_origin.origin_id = None;
    s.archive
        .append(&[
            (alice.clone(), archived(1000, "bob@a.test", true)),
            (alice.clone(), archived(2000, "bob@a.test", false)),
            (alice.clone(), archived(3000, "bob@a.test", true)),
            (alice.clone(), no_origin),
            (acct("bob", "a.test"), archived(3000, "alice@a.test", false)),
        ])
        .unwrap();
    // o2000 is bob's message: alice cannot retract it as her own.
    assert!(
        !s.archive
            .retract(&alice, "bob@a.test", "o2000", true, "x")
            .unwrap()
    );
    // Not in the conversation with carol.
    assert!(
        !s.archive
            .retract(&alice, "carol@a.test", "o3000", true, "x")
            .unwrap()
    );
    assert!(
        h.second
            .archive
            .retract(&alice, "bob@a.test", "o3000", true, "gone")
            .unwrap()
    );
    let id_only = ArchiveId(4000).to_string();
    assert!(
        s.archive
            .retract(&alice, "bob@a.test", &id_only, true, "gone too")
            .unwrap()
    );
    let stanzas: Vec<String> = s
        .archive
        .query(&alice, &ArchiveQuery::default())
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.stanza)
        .collect();
    assert_eq!(
        stanzas,
        [
            "<message>1000</message>",
            "<message>2000</message>",
            "gone",
            "gone too"
        ]
    );
    // Bob's copy is his own.
    let bob = s
        .archive
        .query(&acct("bob", "a.test"), &ArchiveQuery::default())
        .unwrap();
    assert_eq!(bob.messages[0].stanza, "<message>3000</message>");

    // Beyond the newest RETRACT_WITHIN messages of the conversation, nothing is found.
    let newer: Vec<_> = (0..RETRACT_WITHIN as u64)
        .map(|i| (alice.clone(), archived(10_000 + i, "bob@a.test", false)))
        .collect();
    s.archive.append(&newer).unwrap();
    assert!(
        !s.archive
            .retract(&alice, "bob@a.test", "o1000", true, "x")
            .unwrap()
    );
    // Newer messages with someone else do not push it out.
    let carol = acct("carol", "a.test");
    s.archive
        .append(&[(carol.clone(), archived(1000, "bob@a.test", true))])
        .unwrap();
    let others: Vec<_> = (0..RETRACT_WITHIN as u64)
        .map(|i| (carol.clone(), archived(10_000 + i, "dave@a.test", false)))
        .collect();
    s.archive.append(&others).unwrap();
    assert!(
        s.archive
            .retract(&carol, "bob@a.test", "o1000", true, "gone")
            .unwrap()
    );
}

/// Retention removes a domain's messages archived before the cutoff, rooms' included,
/// and keeps what `with` queries find in step; other domains keep theirs.
pub fn archive_retention_by_domain(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    let room = room_owner("a.test", "standup", "conference.a.test");
    let other = acct("dave", "b.test");
    let prefix = acct("erin", "a.test2");
    s.archive
        .append(&[
            (alice.clone(), archived(1000, "bob@a.test", true)),
            (alice.clone(), archived(2000, "bob@a.test", false)),
            (alice.clone(), archived(3000, "bob@a.test", true)),
            (
                room.clone(),
                archived(1500, "standup@conference.a.test/x", false),
            ),
            (
                room.clone(),
                archived(2500, "standup@conference.a.test/y", false),
            ),
            (other.clone(), archived(1000, "bob@a.test", true)),
            (prefix.clone(), archived(1000, "bob@a.test", true)),
        ])
        .unwrap();
    assert_eq!(
        s.archive.remove_before("a.test", ArchiveId(2000)).unwrap(),
        2
    );
    let all = ArchiveQuery::default();
    assert_eq!(ids(&s.archive.query(&alice, &all).unwrap()), [2000, 3000]);
    assert_eq!(ids(&s.archive.query(&room, &all).unwrap()), [2500]);
    let with_bob = query(Some("bob@a.test"), Page::default());
    let page = s.archive.query(&alice, &with_bob).unwrap();
    assert_eq!((ids(&page), page.count), (vec![2000, 3000], 2));
    for kept in [&other, &prefix] {
        assert_eq!(s.archive.query(kept, &all).unwrap().count, 1, "{kept}");
    }
    assert_eq!(
        s.archive.remove_before("a.test", ArchiveId(2000)).unwrap(),
        0
    );
    assert_eq!(
        s.archive
            .remove_before("empty.test", ArchiveId(u64::MAX >> 1))
            .unwrap(),
        0
    );
}

/// Preferences per owner; deleting an owner (a room) removes its archive and
/// preferences and nothing of anyone else's.
pub fn archive_prefs_and_owner_deletion(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    let room = room_owner("a.test", "standup", "conference.a.test");
    assert_eq!(s.archive.prefs(&alice).unwrap(), None);
    let prefs = ArchivePrefs {
        default: ArchiveDefault::Roster,
        always: vec!["bob@a.test".into()],
        never: vec!["spam@x.test".into(), "eve@x.test".into()],
    };
    s.archive.set_prefs(&alice, &prefs).unwrap();
    assert_eq!(h.second.archive.prefs(&alice).unwrap(), Some(prefs.clone()));
    let never = ArchivePrefs {
        default: ArchiveDefault::Never,
        ..Default::default()
    };
    s.archive.set_prefs(&room, &never).unwrap();
    s.archive
        .append(&[
            (alice.clone(), archived(1000, "bob@a.test", true)),
            (
                room.clone(),
                archived(1500, "standup@conference.a.test/x", false),
            ),
        ])
        .unwrap();
    s.archive.delete_owner(&room).unwrap();
    let all = ArchiveQuery::default();
    assert_eq!(s.archive.query(&room, &all).unwrap().count, 0);
    assert_eq!(s.archive.prefs(&room).unwrap(), None);
    assert_eq!(s.archive.query(&alice, &all).unwrap().count, 1);
    assert_eq!(s.archive.prefs(&alice).unwrap(), Some(prefs));
    s.archive.set_prefs(&alice, &never).unwrap();
    assert_eq!(s.archive.prefs(&alice).unwrap(), Some(never));
}

/// One value per account and kind; an empty value removes it; deleting the account
/// removes all of them.
pub fn account_data_per_kind_and_with_the_account(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    let al = acct("al", "a.test");
    s.users.create_user(&alice, &creds(1)).unwrap();
    s.account_data.put(&alice, "push", b"[1]").unwrap();
    s.account_data.put(&alice, "other", &[0, 255]).unwrap();
    s.account_data.put(&al, "push", b"al").unwrap();
    assert_eq!(
        h.second
            .account_data
            .get(&alice, "push")
            .unwrap()
            .as_deref(),
        Some(&b"[1]"[..])
    );
    s.account_data.put(&alice, "push", b"[2]").unwrap();
    assert_eq!(
        s.account_data.get(&alice, "push").unwrap().as_deref(),
        Some(&b"[2]"[..])
    );
    s.account_data.put(&alice, "other", b"").unwrap();
    assert_eq!(s.account_data.get(&alice, "other").unwrap(), None);
    s.account_data.put(&alice, "never-set", b"").unwrap();
    s.users.delete_user(&alice).unwrap();
    assert_eq!(s.account_data.get(&alice, "push").unwrap(), None);
    assert_eq!(
        s.account_data.get(&al, "push").unwrap().as_deref(),
        Some(&b"al"[..])
    );
}
