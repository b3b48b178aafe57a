//! Tests of the sled stores: the conformance suite every backend passes, and what is
//! sled's own: persistence across reopening and corrupt data.

use std::sync::{Arc, Mutex};

use tempfile::TempDir;

use super::SledStore;
use crate::conformance::{Harness, acct, creds, item, msg};
use crate::{BlockStore, OfflineStore, Roster, RosterStore, Storage, StorageError, UserStore};

/// A fresh sled database in a temporary directory; the second "node" is the same handle
/// (sled allows one process per database).
fn harness() -> Option<Harness> {
    let dirs: Arc<Mutex<Vec<TempDir>>> = Arc::default();
    let open = {
        let dirs = dirs.clone();
        move || {
            let dir = tempfile::tempdir().unwrap();
            let storage = Storage::open_sled(dir.path()).unwrap();
            dirs.lock().unwrap().push(dir);
            storage
        }
    };
    let storage = open();
    Some(Harness {
        second: storage.clone(),
        storage,
        fresh: Box::new(open),
        guard: Box::new(dirs),
    })
}

mod conformance {
    crate::conformance_tests!(super::harness);
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
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
fn corrupt_data_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), super::DEFAULT_CACHE_BYTES).unwrap();
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

fn log_line(text: &str) -> crate::RoomLogEntry {
    crate::RoomLogEntry {
        at: "2026-11-24T10:00:00.000Z".into(),
        nick: "Alice".into(),
        jid: "alice@a.test".into(),
        subject: false,
        text: text.into(),
    }
}

/// The in-memory store behaves like the backends (the conformance suite's log case).
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
fn memory_room_log_matches_the_backends() {
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
    use crate::{ArchiveId, ArchiveQuery, ArchivedMessage};

    /// The archive's behaviour is in the conformance suite; these are the embedded
    /// backend's own: the move from the old sled trees, and persistence.
    fn temp() -> (TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open_sled(dir.path()).unwrap();
        (dir, storage)
    }

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

    /// An archive written before the messages moved to SQLite: the old sled trees, keyed
    /// `domain \0 local \0 id`, with an index tree beside them.
    fn write_old_archive(dir: &std::path::Path, entries: &[(crate::Account, ArchivedMessage)]) {
        let db = sled::open(dir).unwrap();
        let old = db.open_tree("archive").unwrap();
        for (owner, m) in entries {
            let mut key = format!("{}\0{}\0", owner.domain, owner.local).into_bytes();
            key.extend_from_slice(&m.id.0.to_be_bytes());
            old.insert(key, serde_json::to_vec(m).unwrap()).unwrap();
        }
        db.open_tree("archive_with")
            .unwrap()
            .insert(b"a.test\0alice\0bob@a.test\0", &[0u8; 8][..])
            .unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn messages_left_in_the_old_sled_trees_move_to_sqlite_once() {
        let dir = tempfile::tempdir().unwrap();
        let alice = acct("alice", "a.test");
        let room = acct("standup@conference.a.test", "a.test");
        // More than one move batch, for two owners.
        let entries: Vec<_> = (1..=2500u64)
            .map(|i| {
                let owner = if i % 5 == 0 { &room } else { &alice };
                (owner.clone(), msg(i * 1000, "bob@a.test", i % 2 == 0))
            })
            .collect();
        write_old_archive(dir.path(), &entries);
        let s = Storage::open_sled(dir.path()).unwrap();
        let all = ArchiveQuery {
            page: crate::archive::Page {
                max: 5000,
                ..Default::default()
            },
            ..Default::default()
        };
        let alices = s.archive.query(&alice, &all).unwrap();
        assert_eq!(alices.count, 2000);
        assert_eq!(alices.messages[0], entries[0].1);
        assert_eq!(s.archive.query(&room, &all).unwrap().count, 500);
        drop(s);
        // The old trees are gone, and opening again moves (and duplicates) nothing.
        let s = Storage::open_sled(dir.path()).unwrap();
        assert_eq!(s.archive.query(&alice, &all).unwrap().count, 2000);
        drop(s);
        let db = sled::open(dir.path()).unwrap();
        let names: Vec<_> = db.tree_names().into_iter().map(|n| n.to_vec()).collect();
        assert!(!names.contains(&b"archive".to_vec()));
        assert!(!names.contains(&b"archive_with".to_vec()));
    }

    /// An archive written with SQLite's first layout: a table keyed by owner, each
    /// message's JSON in one column.
    fn write_first_sqlite_layout(
        dir: &std::path::Path,
        entries: &[(crate::Account, ArchivedMessage)],
    ) {
        let db = rusqlite::Connection::open(dir.join("archive.sqlite3")).unwrap();
        db.execute_batch(
            "CREATE TABLE archive (domain TEXT NOT NULL, local TEXT NOT NULL, \
             id INTEGER NOT NULL, with_jid TEXT NOT NULL, with_resource TEXT, \
             message BLOB NOT NULL, PRIMARY KEY (domain, local, id)) WITHOUT ROWID; \
             CREATE INDEX archive_conversation ON archive (domain, local, with_jid, id);",
        )
        .unwrap();
        for (owner, m) in entries {
            db.execute(
                "INSERT INTO archive VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    owner.domain,
                    owner.local,
                    m.id.0 as i64,
                    m.with,
                    m.with_resource,
                    serde_json::to_vec(m).unwrap()
                ],
            )
            .unwrap();
        }
    }

    #[test]
    fn messages_of_the_first_sqlite_layout_move_to_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let alice = acct("alice", "a.test");
        let bob = acct("bob", "b.test");
        let mut entries: Vec<_> = (1..=300u64)
            .map(|i| {
                let owner = if i % 3 == 0 { &bob } else { &alice };
                (owner.clone(), msg(i * 1000, "carol@c.test", i % 2 == 0))
            })
            .collect();
        // Optional fields absent, and text JSON must escape.
        entries[0].1.origin_id = None;
        entries[1].1.with_resource = Some("phone".into());
        entries[1].1.stanza = "<message>\"quoted\" \\ é 💬</message>".into();
        write_first_sqlite_layout(dir.path(), &entries);
        let all = ArchiveQuery {
            page: crate::archive::Page {
                max: 5000,
                ..Default::default()
            },
            ..Default::default()
        };
        for _ in 0..2 {
            // Opening again finds nothing more to move, and loses nothing.
            let s = Storage::open_sled(dir.path()).unwrap();
            let alices = s.archive.query(&alice, &all).unwrap();
            let expected: Vec<_> = entries
                .iter()
                .filter(|(o, _)| *o == alice)
                .map(|(_, m)| m.clone())
                .collect();
            assert_eq!(alices.messages, expected);
            assert_eq!(s.archive.query(&bob, &all).unwrap().count, 100);
            let with_carol = ArchiveQuery {
                with: Some("carol@c.test".into()),
                with_resource: Some("phone".into()),
                ..all.clone()
            };
            assert_eq!(ids(&s.archive.query(&alice, &with_carol).unwrap()), [2000]);
        }
        let db = rusqlite::Connection::open(dir.path().join("archive.sqlite3")).unwrap();
        let old: i64 = db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'archive'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the first layout's table is gone");
    }

    #[test]
    fn archived_messages_and_retractions_survive_reopening() {
        let (dir, s) = temp();
        let alice = acct("alice", "a.test");
        let entries: Vec<_> = (1..=3u64)
            .map(|i| (alice.clone(), msg(i * 1000, "bob@a.test", true)))
            .collect();
        s.archive.append(&entries).unwrap();
        assert!(
            s.archive
                .retract(&alice, "bob@a.test", "o2000", true, "<gone/>")
                .unwrap()
        );
        drop(s);
        let s = Storage::open_sled(dir.path()).unwrap();
        let page = s.archive.query(&alice, &ArchiveQuery::default()).unwrap();
        assert_eq!(ids(&page), [1000, 2000, 3000]);
        assert_eq!(page.messages[1].stanza, "<gone/>");
        assert_eq!(page.messages[2], entries[2].1);
    }
}
