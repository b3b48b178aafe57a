//! Tests of the sled stores: each method, persistence across reopening, isolation of
//! accounts and domains sharing key prefixes, corrupt data, and concurrent offline queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use tempfile::TempDir;

use super::SledStore;
use crate::credentials::{ScramKeys, StoredCredentials};
use crate::{
    Account, BlockStore, OfflineMessage, OfflineStore, Roster, RosterItem, RosterStore, Storage,
    StorageError, Subscription, UserStore,
};

fn temp() -> (TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open_sled(dir.path()).unwrap();
    (dir, storage)
}

fn creds(n: u8) -> StoredCredentials {
    let keys = ScramKeys {
        salt: vec![n; 16],
        iterations: 4096,
        stored_key: vec![n; 20],
        server_key: vec![n; 20],
    };
    StoredCredentials {
        sha1: keys.clone(),
        sha256: ScramKeys {
            stored_key: vec![n; 32],
            server_key: vec![n; 32],
            ..keys
        },
    }
}

fn acct(local: &str, domain: &str) -> Account {
    Account::new(local, domain)
}

fn item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.into(),
        subscription: Subscription::Both,
        groups: vec!["Friends".into()],
        ..Default::default()
    }
}

fn msg(text: &str) -> OfflineMessage {
    OfflineMessage {
        stanza: format!("<message><body>{text}</body></message>"),
        stamp_ms: 1_700_000_000_000,
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Gives `account` data in every tree.
fn populate(s: &Storage, account: &Account) {
    s.users.create_user(account, &creds(1)).unwrap();
    s.rosters.put_item(account, &item("friend@x.test")).unwrap();
    s.offline.push(account, &msg("hi")).unwrap();
    s.blocks.block(account, &strings(&["spam@x.test"])).unwrap();
}

/// Everything stored for `account` outside its credentials.
#[derive(Debug, PartialEq)]
struct Data {
    roster: Roster,
    offline: usize,
    blocked: Vec<String>,
}

fn data(s: &Storage, account: &Account) -> Data {
    Data {
        roster: s.rosters.roster(account).unwrap(),
        offline: s.offline.count(account).unwrap(),
        blocked: s.blocks.blocked(account).unwrap(),
    }
}

/// What [`populate`] stores.
fn populated() -> Data {
    Data {
        roster: Roster {
            version: 1,
            items: vec![item("friend@x.test")],
        },
        offline: 1,
        blocked: strings(&["spam@x.test"]),
    }
}

fn empty() -> Data {
    Data {
        roster: Roster::default(),
        offline: 0,
        blocked: vec![],
    }
}

#[test]
fn create_get_and_replace_credentials() {
    let (_dir, s) = temp();
    let alice = acct("alice", "a.test");
    assert_eq!(s.users.credentials(&alice).unwrap(), None);
    s.users.create_user(&alice, &creds(1)).unwrap();
    assert!(matches!(
        s.users.create_user(&alice, &creds(2)),
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(s.users.credentials(&alice).unwrap(), Some(creds(1)));
    s.users.set_credentials(&alice, &creds(3)).unwrap();
    assert_eq!(s.users.credentials(&alice).unwrap(), Some(creds(3)));
    let bob = acct("bob", "a.test");
    assert!(matches!(
        s.users.set_credentials(&bob, &creds(1)),
        Err(StorageError::NotFound)
    ));
    assert_eq!(s.users.credentials(&bob).unwrap(), None);
}

#[test]
fn list_and_count_users_per_domain() {
    let (_dir, s) = temp();
    for local in ["carol", "alice", "bob"] {
        s.users
            .create_user(&acct(local, "a.test"), &creds(1))
            .unwrap();
    }
    s.users
        .create_user(&acct("dave", "a.test2"), &creds(1))
        .unwrap();
    s.users
        .create_user(&acct("erin", "b.test"), &creds(1))
        .unwrap();
    assert_eq!(
        s.users.list_users("a.test").unwrap(),
        strings(&["alice", "bob", "carol"])
    );
    assert_eq!(s.users.count_users("a.test").unwrap(), 3);
    assert_eq!(s.users.list_users("a.test2").unwrap(), strings(&["dave"]));
    assert_eq!(s.users.count_users("none.test").unwrap(), 0);
    assert!(s.users.list_users("none.test").unwrap().is_empty());
}

#[test]
fn rejects_keys_with_nul_or_empty_parts() {
    let (_dir, s) = temp();
    for bad in [
        acct("al\0ice", "a.test"),
        acct("alice", "a.test\0x"),
        acct("", "a.test"),
        acct("alice", ""),
    ] {
        let err = s.users.create_user(&bad, &creds(1)).unwrap_err();
        assert!(matches!(err, StorageError::Backend(_)), "{bad:?}: {err}");
    }
    let alice = acct("alice", "a.test");
    assert!(s.rosters.put_item(&alice, &item("x\0y")).is_err());
    // One bad JID rejects the whole call before anything is written.
    assert!(
        s.blocks
            .block(&alice, &strings(&["ok@x.test", "bad\0"]))
            .is_err()
    );
    assert!(s.blocks.blocked(&alice).unwrap().is_empty());
    assert!(s.users.list_users("a\0").is_err());
}

#[test]
fn roster_items_sorted_and_versioned() {
    let (_dir, s) = temp();
    let alice = acct("alice", "a.test");
    assert_eq!(s.rosters.roster(&alice).unwrap(), Roster::default());
    assert_eq!(s.rosters.put_item(&alice, &item("zed@x.test")).unwrap(), 1);
    assert_eq!(s.rosters.put_item(&alice, &item("bob@x.test")).unwrap(), 2);
    let renamed = RosterItem {
        name: Some("Zed".into()),
        ask: true,
        ..item("zed@x.test")
    };
    assert_eq!(s.rosters.put_item(&alice, &renamed).unwrap(), 3);
    let roster = s.rosters.roster(&alice).unwrap();
    assert_eq!(
        roster,
        Roster {
            version: 3,
            items: vec![item("bob@x.test"), renamed.clone()]
        }
    );
    assert_eq!(s.rosters.item(&alice, "zed@x.test").unwrap(), Some(renamed));
    assert_eq!(s.rosters.item(&alice, "nobody@x.test").unwrap(), None);

    assert_eq!(s.rosters.remove_item(&alice, "zed@x.test").unwrap(), 4);
    assert_eq!(s.rosters.item(&alice, "zed@x.test").unwrap(), None);
    // Removing an absent item is not an error and still bumps the version.
    assert_eq!(s.rosters.remove_item(&alice, "zed@x.test").unwrap(), 5);
    assert_eq!(
        s.rosters.roster(&alice).unwrap(),
        Roster {
            version: 5,
            items: vec![item("bob@x.test")]
        }
    );
    // Other accounts are separate.
    assert_eq!(
        s.rosters.roster(&acct("al", "a.test")).unwrap(),
        Roster::default()
    );
}

#[test]
fn offline_queue_in_order() {
    let (_dir, s) = temp();
    let alice = acct("alice", "a.test");
    assert!(s.offline.take_all(&alice).unwrap().is_empty());
    assert_eq!(s.offline.push(&alice, &msg("1")).unwrap(), 1);
    assert_eq!(s.offline.push(&alice, &msg("2")).unwrap(), 2);
    assert_eq!(
        s.offline
            .push(&acct("al", "a.test"), &msg("other"))
            .unwrap(),
        1
    );
    assert_eq!(s.offline.push(&alice, &msg("3")).unwrap(), 3);
    assert_eq!(s.offline.count(&alice).unwrap(), 3);
    assert_eq!(
        s.offline.take_all(&alice).unwrap(),
        vec![msg("1"), msg("2"), msg("3")]
    );
    assert_eq!(s.offline.count(&alice).unwrap(), 0);
    assert!(s.offline.take_all(&alice).unwrap().is_empty());
    assert_eq!(s.offline.count(&acct("al", "a.test")).unwrap(), 1);
}

#[test]
fn block_list() {
    let (_dir, s) = temp();
    let alice = acct("alice", "a.test");
    let added = s
        .blocks
        .block(&alice, &strings(&["z@x.test", "b@x.test", "z@x.test"]))
        .unwrap();
    assert_eq!(added, strings(&["z@x.test", "b@x.test"]));
    assert_eq!(
        s.blocks
            .block(&alice, &strings(&["b@x.test", "m.test"]))
            .unwrap(),
        strings(&["m.test"])
    );
    assert_eq!(
        s.blocks.blocked(&alice).unwrap(),
        strings(&["b@x.test", "m.test", "z@x.test"])
    );
    assert_eq!(
        s.blocks
            .unblock(&alice, &strings(&["m.test", "nope@x.test"]))
            .unwrap(),
        strings(&["m.test"])
    );
    assert_eq!(
        s.blocks.unblock_all(&alice).unwrap(),
        strings(&["b@x.test", "z@x.test"])
    );
    assert!(s.blocks.blocked(&alice).unwrap().is_empty());
    assert!(s.blocks.unblock_all(&alice).unwrap().is_empty());
}

#[test]
fn everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let alice = acct("alice", "a.test");
    {
        let s = Storage::open_sled(dir.path()).unwrap();
        s.users.create_user(&alice, &creds(7)).unwrap();
        s.rosters.put_item(&alice, &item("b@x.test")).unwrap();
        s.rosters.put_item(&alice, &item("a@x.test")).unwrap();
        s.rosters.remove_item(&alice, "b@x.test").unwrap();
        s.offline.push(&alice, &msg("1")).unwrap();
        s.offline.push(&alice, &msg("2")).unwrap();
        s.blocks.block(&alice, &strings(&["spam@x.test"])).unwrap();
        (s.flush)().unwrap();
    }
    let s = Storage::open_sled(dir.path()).unwrap();
    assert_eq!(s.users.credentials(&alice).unwrap(), Some(creds(7)));
    assert_eq!(s.users.list_users("a.test").unwrap(), strings(&["alice"]));
    assert_eq!(
        s.rosters.roster(&alice).unwrap(),
        Roster {
            version: 3,
            items: vec![item("a@x.test")]
        }
    );
    assert_eq!(s.rosters.put_item(&alice, &item("c@x.test")).unwrap(), 4);
    assert_eq!(s.blocks.blocked(&alice).unwrap(), strings(&["spam@x.test"]));
    // Sequences keep increasing after a restart, so new messages queue after old ones.
    s.offline.push(&alice, &msg("3")).unwrap();
    assert_eq!(
        s.offline.take_all(&alice).unwrap(),
        vec![msg("1"), msg("2"), msg("3")]
    );
}

#[test]
fn delete_user_removes_all_its_data_and_nothing_else() {
    let (_dir, s) = temp();
    let alice = acct("alice", "a.test");
    let others = [
        acct("al", "a.test"),
        acct("alice", "b.test"),
        acct("alicea", "a.test"),
    ];
    populate(&s, &alice);
    for other in &others {
        populate(&s, other);
    }
    s.users.delete_user(&alice).unwrap();
    assert_eq!(s.users.credentials(&alice).unwrap(), None);
    assert_eq!(data(&s, &alice), empty());
    assert!(matches!(
        s.users.delete_user(&alice),
        Err(StorageError::NotFound)
    ));
    for other in &others {
        assert_eq!(
            s.users.credentials(other).unwrap(),
            Some(creds(1)),
            "{other}"
        );
        assert_eq!(data(&s, other), populated(), "{other}");
    }
    // A new account with the same name starts empty.
    s.users.create_user(&alice, &creds(2)).unwrap();
    assert_eq!(data(&s, &alice), empty());
}

#[test]
fn purge_domain_removes_only_that_domain() {
    let (_dir, s) = temp();
    let purged = [acct("alice", "a.test"), acct("bob", "a.test")];
    let kept = [
        acct("alice", "a.test2"),
        acct("bob", "b.a.test"),
        acct("carol", "b.test"),
    ];
    for account in purged.iter().chain(&kept) {
        populate(&s, account);
    }
    s.users.purge_domain("a.test").unwrap();
    assert!(s.users.list_users("a.test").unwrap().is_empty());
    for account in &purged {
        assert_eq!(s.users.credentials(account).unwrap(), None);
        assert_eq!(data(&s, account), empty(), "{account}");
    }
    for account in &kept {
        assert_eq!(
            s.users.credentials(account).unwrap(),
            Some(creds(1)),
            "{account}"
        );
        assert_eq!(data(&s, account), populated(), "{account}");
    }
    s.users.purge_domain("empty.test").unwrap();
}

#[test]
fn corrupt_data_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let alice = acct("alice", "a.test");
    store
        .users
        .insert(b"a.test\0alice", &b"not json"[..])
        .unwrap();
    store
        .roster_meta
        .insert(b"a.test\0alice", &b"abc"[..])
        .unwrap();
    store
        .offline
        .insert(b"a.test\0alice\0\0\0\0\0\0\0\0\x01", &b"{"[..])
        .unwrap();
    store
        .blocks
        .insert(b"a.test\0alice\0\xff", &b""[..])
        .unwrap();
    assert!(matches!(
        store.credentials(&alice),
        Err(StorageError::Corrupt(_))
    ));
    assert!(matches!(
        store.roster(&alice),
        Err(StorageError::Corrupt(_))
    ));
    assert!(matches!(
        store.put_item(&alice, &item("b@x.test")),
        Err(StorageError::Corrupt(_))
    ));
    assert!(matches!(
        store.blocked(&alice),
        Err(StorageError::Corrupt(_))
    ));
    // A corrupt message fails the call and loses nothing.
    assert!(matches!(
        store.take_all(&alice),
        Err(StorageError::Corrupt(_))
    ));
    assert_eq!(store.count(&alice).unwrap(), 1);
    // The account can still be deleted.
    store.delete_user(&alice).unwrap();
    assert_eq!(store.count(&alice).unwrap(), 0);
}

#[test]
fn concurrent_push_and_take_all_lose_nothing() {
    const PUSHERS: usize = 4;
    const EACH: usize = 250;
    let (_dir, s) = temp();
    let alice = Arc::new(acct("alice", "a.test"));
    let done = Arc::new(AtomicBool::new(false));

    let taker = {
        let (offline, alice, done) = (s.offline.clone(), alice.clone(), done.clone());
        thread::spawn(move || {
            let mut received = Vec::new();
            loop {
                // Read the flag first so a final pass runs after every push finished.
                let finished = done.load(Ordering::SeqCst);
                received.extend(offline.take_all(&alice).unwrap());
                if finished {
                    return received;
                }
            }
        })
    };
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let (offline, alice) = (s.offline.clone(), alice.clone());
            thread::spawn(move || {
                for i in 0..EACH {
                    offline.push(&alice, &msg(&format!("{p}:{i}"))).unwrap();
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let received = taker.join().unwrap();

    assert_eq!(received.len(), PUSHERS * EACH);
    assert_eq!(s.offline.count(&alice).unwrap(), 0);
    let mut next = [0usize; PUSHERS];
    for m in &received {
        let body = m
            .stanza
            .strip_prefix("<message><body>")
            .unwrap()
            .strip_suffix("</body></message>")
            .unwrap();
        let (p, i) = body.split_once(':').unwrap();
        let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[p], "pusher {p} out of order");
        next[p] += 1;
    }
}

fn room(name: &str) -> crate::StoredRoom {
    crate::StoredRoom {
        name: name.into(),
        subdomain: "conference".into(),
        config: vec![("muc#roomconfig_persistentroom".into(), "1".into())],
        affiliations: vec![("alice@a.test".into(), "owner".into())],
        subject: Some(("Standup".into(), "alice".into())),
    }
}

#[test]
fn muc_rooms_persist_and_are_purged_with_their_domain() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open_sled(dir.path()).unwrap();
        s.muc.put_room("a.test", &room("standup")).unwrap();
        s.muc.put_room("a.test", &room("retro")).unwrap();
        s.muc.put_room("a.test2", &room("other")).unwrap();
        s.muc.delete_room("a.test", "nothing").unwrap();
    }
    let s = Storage::open_sled(dir.path()).unwrap();
    let names = |d: &str| -> Vec<String> {
        s.muc
            .rooms(d)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    assert_eq!(names("a.test"), vec!["retro", "standup"]);
    assert_eq!(s.muc.rooms("a.test").unwrap()[1], room("standup"));
    s.muc.delete_room("a.test", "retro").unwrap();
    assert_eq!(names("a.test"), vec!["standup"]);
    s.users.purge_domain("a.test").unwrap();
    assert!(names("a.test").is_empty());
    assert_eq!(names("a.test2"), vec!["other"]);
    assert!(s.muc.put_room("a.test", &room("bad\0name")).is_err());
}

fn log_line(text: &str) -> crate::RoomLogEntry {
    crate::RoomLogEntry {
        at: "2026-11-24T10:00:00.000Z".into(),
        nick: "Alice".into(),
        jid: "alice@a.test".into(),
        subject: false,
        text: text.into(),
    }
}

/// The same log operations give the same results on sled and in memory.
fn exercise_room_log(muc: &dyn crate::MucStore) {
    let texts = |after: u64, limit: usize| -> Vec<(u64, String)> {
        muc.room_log("a.test", "standup", after, limit)
            .unwrap()
            .into_iter()
            .map(|(n, e)| (n, e.text))
            .collect()
    };
    assert!(texts(0, 10).is_empty());
    muc.append_log("a.test", "standup", &[log_line("one"), log_line("two")], 3)
        .unwrap();
    // A room whose name extends another's is a different log.
    muc.append_log("a.test", "standup2", &[log_line("elsewhere")], 3)
        .unwrap();
    assert_eq!(texts(0, 10), vec![(1, "one".into()), (2, "two".into())]);
    muc.append_log(
        "a.test",
        "standup",
        &[log_line("three"), log_line("four")],
        3,
    )
    .unwrap();
    // Bounded to the newest three; numbers keep counting.
    assert_eq!(
        texts(0, 10),
        vec![(2, "two".into()), (3, "three".into()), (4, "four".into())]
    );
    assert_eq!(texts(2, 1), vec![(3, "three".into())]);
    assert!(texts(4, 10).is_empty());
    muc.delete_log("a.test", "standup").unwrap();
    assert!(texts(0, 10).is_empty());
    muc.delete_log("a.test", "standup").unwrap();
    assert_eq!(
        muc.room_log("a.test", "standup2", 0, 10).unwrap()[0].1.text,
        "elsewhere"
    );
}

#[test]
fn room_logs_are_numbered_bounded_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open_sled(dir.path()).unwrap();
    exercise_room_log(s.muc.as_ref());
    exercise_room_log(&crate::MemMucStore::default());
}

#[test]
fn room_logs_survive_restarts_and_are_purged_with_their_domain() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open_sled(dir.path()).unwrap();
        s.muc
            .append_log("a.test", "standup", &[log_line("kept")], 10)
            .unwrap();
        s.muc
            .append_log("a.test2", "standup", &[log_line("other tenant")], 10)
            .unwrap();
    }
    let s = Storage::open_sled(dir.path()).unwrap();
    let log = s.muc.room_log("a.test", "standup", 0, 10).unwrap();
    assert_eq!(log, vec![(1, log_line("kept"))]);
    s.users.purge_domain("a.test").unwrap();
    assert!(
        s.muc
            .room_log("a.test", "standup", 0, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.muc.room_log("a.test2", "standup", 0, 10).unwrap().len(),
        1
    );
}

mod archive {
    use super::*;
    use crate::{ArchiveId, ArchiveQuery, ArchivedMessage, Page, PageAt};

    fn msg(id: u64, with: &str, outgoing: bool) -> ArchivedMessage {
        ArchivedMessage {
            id: ArchiveId(id),
            with: with.into(),
            with_resource: None,
            outgoing,
            origin_id: Some(format!("o{id}")),
            stanza: format!("<message>{id}</message>"),
        }
    }

    fn ids(page: &crate::ArchivePage) -> Vec<u64> {
        page.messages.iter().map(|m| m.id.0).collect()
    }

    #[test]
    fn queries_by_partner_time_and_id_with_paging() {
        let (_dir, s) = temp();
        let alice = acct("alice", "a.test");
        // A user whose name is a prefix of alice's must not see her archive.
        let al = acct("al", "a.test");
        let entries: Vec<_> = (1..=30u64)
            .map(|i| {
                let with = if i % 3 == 0 {
                    "carol@a.test"
                } else {
                    "bob@a.test"
                };
                (alice.clone(), msg(i * 1000, with, i % 2 == 0))
            })
            .chain([(al.clone(), msg(5500, "bob@a.test", true))])
            .collect();
        s.archive.append(&entries).unwrap();

        let all = s.archive.query(&alice, &ArchiveQuery::default()).unwrap();
        assert_eq!(all.count, 30);
        assert!(all.complete);
        let carol = ArchiveQuery {
            with: Some("carol@a.test".into()),
            ..Default::default()
        };
        let page = s.archive.query(&alice, &carol).unwrap();
        assert_eq!(ids(&page), (1..=10).map(|i| i * 3000).collect::<Vec<_>>());
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
        assert_eq!(page.count, 19);
        assert!(!page.complete);
        let only = ArchiveQuery {
            ids: Some(vec![ArchiveId(2000), ArchiveId(77)]),
            ..Default::default()
        };
        assert_eq!(ids(&s.archive.query(&alice, &only).unwrap()), [2000]);
        assert_eq!(
            s.archive
                .query(&al, &ArchiveQuery::default())
                .unwrap()
                .count,
            1
        );
    }

    #[test]
    fn conversation_index_chunks_from_many_writes_read_as_one() {
        let (_dir, s) = temp();
        let alice = acct("alice", "a.test");
        for round in 0..5u64 {
            // Each write holds two conversations, out of order within the write.
            let entries: Vec<_> = [3, 1, 2]
                .iter()
                .flat_map(|k| {
                    let id = round * 100 + k;
                    [
                        (alice.clone(), msg(id * 1000, "bob@a.test", false)),
                        (alice.clone(), msg(id * 1000 + 50, "carol@a.test", true)),
                    ]
                })
                .collect();
            s.archive.append(&entries).unwrap();
        }
        let bob = ArchiveQuery {
            with: Some("bob@a.test".into()),
            ..Default::default()
        };
        let page = s.archive.query(&alice, &bob).unwrap();
        let expected: Vec<u64> = (0..5u64)
            .flat_map(|r| (1..=3).map(move |k| (r * 100 + k) * 1000))
            .collect();
        assert_eq!(ids(&page), expected);
        let window = ArchiveQuery {
            with: Some("bob@a.test".into()),
            after_id: Some(ArchiveId(102_000)),
            before_id: Some(ArchiveId(301_000)),
            ..Default::default()
        };
        assert_eq!(
            ids(&s.archive.query(&alice, &window).unwrap()),
            [103_000, 201_000, 202_000, 203_000]
        );
        // Retraction looks through the chunks newest first.
        assert!(
            s.archive
                .retract(&alice, "carol@a.test", "o101050", true, "gone")
                .unwrap()
        );
        // Retention cuts a chunk in the middle.
        s.archive
            .remove_before("a.test", ArchiveId(202_000))
            .unwrap();
        let page = s.archive.query(&alice, &bob).unwrap();
        assert_eq!(ids(&page)[..3], [202_000, 203_000, 301_000]);
    }

    #[test]
    fn retention_retraction_and_account_deletion() {
        let (_dir, s) = temp();
        let alice = acct("alice", "a.test");
        s.users.create_user(&alice, &creds(1)).unwrap();
        let other = acct("dave", "b.test");
        s.archive
            .append(&[
                (alice.clone(), msg(1000, "bob@a.test", true)),
                (alice.clone(), msg(2000, "bob@a.test", false)),
                (alice.clone(), msg(3000, "bob@a.test", true)),
                (other.clone(), msg(1000, "bob@a.test", true)),
            ])
            .unwrap();
        // o2 is bob's message: alice cannot retract it as her own.
        assert!(
            !s.archive
                .retract(&alice, "bob@a.test", "o2000", true, "x")
                .unwrap()
        );
        assert!(
            s.archive
                .retract(&alice, "bob@a.test", "o3000", true, "gone")
                .unwrap()
        );
        let page = s.archive.query(&alice, &ArchiveQuery::default()).unwrap();
        assert_eq!(page.messages[2].stanza, "gone");
        assert_eq!(page.messages[1].stanza, "<message>2000</message>");

        assert_eq!(
            s.archive.remove_before("a.test", ArchiveId(2000)).unwrap(),
            1
        );
        assert_eq!(
            ids(&s.archive.query(&alice, &ArchiveQuery::default()).unwrap()),
            [2000, 3000]
        );
        let with_bob = ArchiveQuery {
            with: Some("bob@a.test".into()),
            ..Default::default()
        };
        assert_eq!(s.archive.query(&alice, &with_bob).unwrap().count, 2);
        // Another domain's retention is its own.
        assert_eq!(
            s.archive
                .query(&other, &ArchiveQuery::default())
                .unwrap()
                .count,
            1
        );

        let prefs = crate::ArchivePrefs {
            default: crate::ArchiveDefault::Roster,
            ..Default::default()
        };
        s.archive.set_prefs(&alice, &prefs).unwrap();
        assert_eq!(s.archive.prefs(&alice).unwrap(), Some(prefs));
        s.users.delete_user(&alice).unwrap();
        assert_eq!(
            s.archive
                .query(&alice, &ArchiveQuery::default())
                .unwrap()
                .count,
            0
        );
        assert_eq!(s.archive.query(&alice, &with_bob).unwrap().count, 0);
        assert_eq!(s.archive.prefs(&alice).unwrap(), None);
    }
}

#[test]
fn account_data_is_kept_per_kind_and_goes_with_the_account() {
    let (_dir, s) = temp();
    let alice = acct("alice", "a.test");
    s.users.create_user(&alice, &creds(1)).unwrap();
    s.account_data.put(&alice, "push", b"[1]").unwrap();
    s.account_data.put(&alice, "other", b"x").unwrap();
    assert_eq!(
        s.account_data.get(&alice, "push").unwrap().as_deref(),
        Some(&b"[1]"[..])
    );
    s.account_data.put(&alice, "other", b"").unwrap();
    assert_eq!(s.account_data.get(&alice, "other").unwrap(), None);
    s.users.delete_user(&alice).unwrap();
    assert_eq!(s.account_data.get(&alice, "push").unwrap(), None);
}
