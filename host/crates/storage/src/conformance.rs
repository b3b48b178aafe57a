//! The storage conformance suite: what every backend must do, written once against the
//! traits. Each backend runs it with [`crate::conformance_tests!`], giving a function that
//! opens a [`Harness`]: a fresh store, a second handle on the same data (another "node":
//! a second connection pool for a database server, the same handle for an embedded
//! database), and a way to open more fresh stores (import targets).
//!
//! Besides each method's behaviour, the suite checks what several nodes writing the same
//! rows need: an offline message taken by two nodes at once is delivered once, roster
//! versions stay monotonic, one of two concurrent creations of a tenant fails with
//! `AlreadyExists`; and that a dump imported into a fresh store exports the same.

mod archive;
mod pep;
mod profiles;

pub use archive::*;
pub use pep::*;
pub use profiles::*;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;

use crate::credentials::{ScramKeys, StoredCredentials};
use crate::plugins::{KvWrite, SlotRecord, VersionRecord};
use crate::tokens::{FastSlots, FastToken, HtMechanism, RefreshRecord};
use crate::{
    Account, OfflineMessage, RoomLogEntry, Roster, RosterItem, Storage, StorageError, StoredRoom,
    Subscription, TenantRecord,
};

/// What a case runs against.
pub struct Harness {
    /// A fresh, empty store.
    pub storage: Storage,
    /// Another handle on the same data, as a second node would have.
    pub second: Storage,
    /// Opens another fresh, empty store.
    pub fresh: Box<dyn Fn() -> Storage + Send + Sync>,
    /// Whatever must live as long as the stores (temporary directories, databases).
    pub guard: Box<dyn std::any::Any + Send>,
}

/// Expands to one `#[test]` per case, each opening its harness with `$open`
/// (`fn() -> Option<Harness>`; `None` skips the case, e.g. without a database).
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::conformance_tests!(@cases $open;
            create_get_and_replace_credentials,
            list_and_count_users_per_domain,
            rejects_keys_with_nul_or_empty_parts,
            roster_items_sorted_and_versioned,
            offline_queue_in_order,
            offline_messages_stay_queued_until_removed,
            block_list,
            delete_user_removes_all_its_data_and_nothing_else,
            purge_domain_removes_only_that_domain,
            concurrent_push_and_take_all_lose_nothing,
            offline_message_taken_by_two_nodes_at_once_is_delivered_once,
            roster_versions_stay_monotonic_under_concurrent_writers,
            tenant_created_on_two_nodes_at_once_exists_once,
            tenant_records_round_trip,
            muc_rooms_are_listed_replaced_and_purged,
            room_logs_are_numbered_bounded_and_deleted,
            tokens_keys_sequences_refresh_and_fast,
            plugin_kv_quota_blobs_and_slots,
            dump_round_trips_equal,
            import_refuses_a_non_empty_store_and_a_cut_dump,
            archive_pages_250_both_ways,
            archive_filters_by_party_resource_time_and_ids,
            archive_queries_match_the_reference,
            archive_retracts_only_the_owners_own_message,
            archive_retention_by_domain,
            archive_prefs_and_owner_deletion,
            account_data_per_kind_and_with_the_account,
            profiles_bounded_and_deleted_with_the_account,
            pep_nodes_stored_whole_per_account
        );
    };
    (@cases $open:path; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                if let Some(harness) = $open() {
                    $crate::conformance::$case(&harness);
                }
            }
        )*
    };
}

/// A fixture shared with the backends' own tests.
pub(crate) fn creds(n: u8) -> StoredCredentials {
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

/// A fixture shared with the backends' own tests.
pub(crate) fn acct(local: &str, domain: &str) -> Account {
    Account::new(local, domain)
}

/// A fixture shared with the backends' own tests.
pub(crate) fn item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.into(),
        subscription: Subscription::Both,
        groups: vec!["Friends".into()],
        ..Default::default()
    }
}

/// A fixture shared with the backends' own tests.
pub(crate) fn msg(text: &str) -> OfflineMessage {
    OfflineMessage {
        stanza: format!("<message><body>{text}</body></message>"),
        stamp_ms: 1_700_000_000_000,
    }
}

fn body(m: &OfflineMessage) -> &str {
    m.stanza
        .strip_prefix("<message><body>")
        .and_then(|s| s.strip_suffix("</body></message>"))
        .expect("a message of this suite")
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Gives `account` data in every per-account store.
fn populate(s: &Storage, account: &Account) {
    s.users.create_user(account, &creds(1)).unwrap();
    s.rosters.put_item(account, &item("friend@x.test")).unwrap();
    s.offline.push(account, &msg("hi")).unwrap();
    s.blocks.block(account, &strings(&["spam@x.test"])).unwrap();
    s.archive
        .append(&[(account.clone(), archived(1000, "friend@x.test", true))])
        .unwrap();
    s.archive.set_prefs(account, &archive_prefs()).unwrap();
    s.account_data.put(account, "push", b"[1]").unwrap();
    s.pep
        .put_node(account, &pep_node("urn:xmpp:avatar:metadata", 1))
        .unwrap();
}

fn archive_prefs() -> crate::ArchivePrefs {
    crate::ArchivePrefs {
        default: crate::ArchiveDefault::Roster,
        always: strings(&["friend@x.test"]),
        never: vec![],
    }
}

/// Everything stored for an account outside its credentials.
#[derive(Debug, PartialEq)]
struct Data {
    roster: Roster,
    offline: usize,
    blocked: Vec<String>,
    archived: usize,
    archived_with_friend: usize,
    archive_prefs: Option<crate::ArchivePrefs>,
    push: Option<Vec<u8>>,
    pep_nodes: Vec<String>,
}

fn data(s: &Storage, account: &Account) -> Data {
    let with_friend = crate::ArchiveQuery {
        with: Some("friend@x.test".into()),
        ..Default::default()
    };
    Data {
        roster: s.rosters.roster(account).unwrap(),
        offline: s.offline.count(account).unwrap(),
        blocked: s.blocks.blocked(account).unwrap(),
        archived: s.archive.query(account, &Default::default()).unwrap().count,
        archived_with_friend: s.archive.query(account, &with_friend).unwrap().count,
        archive_prefs: s.archive.prefs(account).unwrap(),
        push: s.account_data.get(account, "push").unwrap(),
        pep_nodes: s.pep.node_names(account).unwrap(),
    }
}

fn populated() -> Data {
    Data {
        roster: Roster {
            version: 1,
            items: vec![item("friend@x.test")],
        },
        offline: 1,
        blocked: strings(&["spam@x.test"]),
        archived: 1,
        archived_with_friend: 1,
        archive_prefs: Some(archive_prefs()),
        push: Some(b"[1]".to_vec()),
        pep_nodes: strings(&["urn:xmpp:avatar:metadata"]),
    }
}

fn empty() -> Data {
    Data {
        roster: Roster::default(),
        offline: 0,
        blocked: vec![],
        archived: 0,
        archived_with_friend: 0,
        archive_prefs: None,
        push: None,
        pep_nodes: vec![],
    }
}

pub fn create_get_and_replace_credentials(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    assert_eq!(s.users.credentials(&alice).unwrap(), None);
    s.users.create_user(&alice, &creds(1)).unwrap();
    assert!(matches!(
        s.users.create_user(&alice, &creds(2)),
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(s.users.credentials(&alice).unwrap(), Some(creds(1)));
    s.users.set_credentials(&alice, &creds(3)).unwrap();
    assert_eq!(h.second.users.credentials(&alice).unwrap(), Some(creds(3)));
    let bob = acct("bob", "a.test");
    assert!(matches!(
        s.users.set_credentials(&bob, &creds(1)),
        Err(StorageError::NotFound)
    ));
    assert_eq!(s.users.credentials(&bob).unwrap(), None);
}

pub fn list_and_count_users_per_domain(h: &Harness) {
    let s = &h.storage;
    for local in ["carol", "alice", "bob", "Bob"] {
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
    // Sorted as bytes, whatever the database's collation.
    assert_eq!(
        s.users.list_users("a.test").unwrap(),
        strings(&["Bob", "alice", "bob", "carol"])
    );
    assert_eq!(s.users.count_users("a.test").unwrap(), 4);
    assert_eq!(s.users.list_users("a.test2").unwrap(), strings(&["dave"]));
    assert_eq!(s.users.count_users("none.test").unwrap(), 0);
    assert!(s.users.list_users("none.test").unwrap().is_empty());
}

pub fn rejects_keys_with_nul_or_empty_parts(h: &Harness) {
    let s = &h.storage;
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
    assert!(s.muc.put_room("a.test", &room("bad\0name")).is_err());
    assert!(s.plugins.kv_get("", "slot", "k").is_err());
}

pub fn roster_items_sorted_and_versioned(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    assert_eq!(s.rosters.roster(&alice).unwrap(), Roster::default());
    assert_eq!(s.rosters.put_item(&alice, &item("zed@x.test")).unwrap(), 1);
    assert_eq!(s.rosters.put_item(&alice, &item("bob@x.test")).unwrap(), 2);
    let renamed = RosterItem {
        name: Some("Zed".into()),
        ask: true,
        pending_in: true,
        pending_in_stanza: Some("<presence type='subscribe'/>".into()),
        ..item("zed@x.test")
    };
    assert_eq!(s.rosters.put_item(&alice, &renamed).unwrap(), 3);
    assert_eq!(
        s.rosters.roster(&alice).unwrap(),
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
        h.second.rosters.roster(&alice).unwrap(),
        Roster {
            version: 5,
            items: vec![item("bob@x.test")]
        }
    );
    assert_eq!(
        s.rosters.roster(&acct("al", "a.test")).unwrap(),
        Roster::default()
    );
}

pub fn offline_queue_in_order(h: &Harness) {
    let s = &h.storage;
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
    assert_eq!(h.second.offline.push(&alice, &msg("3")).unwrap(), 3);
    assert_eq!(s.offline.count(&alice).unwrap(), 3);
    assert_eq!(
        s.offline.take_all(&alice).unwrap(),
        vec![msg("1"), msg("2"), msg("3")]
    );
    assert_eq!(s.offline.count(&alice).unwrap(), 0);
    assert!(s.offline.take_all(&alice).unwrap().is_empty());
    assert_eq!(s.offline.count(&acct("al", "a.test")).unwrap(), 1);
}

/// Delivery reads the queue without emptying it and removes each message once its
/// recipient has it: what is peeked stays, pages follow on from the last id, and removing
/// takes exactly the ids given (from either node, twice harmlessly).
pub fn offline_messages_stay_queued_until_removed(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    assert!(s.offline.peek(&alice, None, 10).unwrap().is_empty());
    for i in 1..=5 {
        s.offline.push(&alice, &msg(&i.to_string())).unwrap();
    }
    s.offline
        .push(&acct("al", "a.test"), &msg("other"))
        .unwrap();
    let all = s.offline.peek(&alice, None, 10).unwrap();
    let bodies: Vec<&str> = all.iter().map(|q| body(&q.message)).collect();
    assert_eq!(bodies, ["1", "2", "3", "4", "5"]);
    assert_eq!(
        s.offline.count(&alice).unwrap(),
        5,
        "peeking removes nothing"
    );
    let first = h.second.offline.peek(&alice, None, 2).unwrap();
    assert_eq!(first, all[..2]);
    let next = s.offline.peek(&alice, Some(first[1].id), 2).unwrap();
    assert_eq!(next, all[2..4]);
    let ids = [all[0].id, all[2].id];
    assert_eq!(h.second.offline.remove(&alice, &ids).unwrap(), 2);
    assert_eq!(s.offline.remove(&alice, &ids).unwrap(), 0, "already gone");
    let left = s.offline.peek(&alice, None, 10).unwrap();
    let left: Vec<&str> = left.iter().map(|q| body(&q.message)).collect();
    assert_eq!(left, ["2", "4", "5"]);
    // Another account's ids are not this one's.
    let other = s.offline.peek(&acct("al", "a.test"), None, 10).unwrap();
    assert_eq!(s.offline.remove(&alice, &[other[0].id]).unwrap(), 0);
    assert_eq!(s.offline.count(&acct("al", "a.test")).unwrap(), 1);
    assert_eq!(s.offline.count(&alice).unwrap(), 3);
}

pub fn block_list(h: &Harness) {
    let s = &h.storage;
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

pub fn delete_user_removes_all_its_data_and_nothing_else(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    let others = [
        acct("al", "a.test"),
        acct("alice", "b.test"),
        acct("alicea", "a.test"),
    ];
    populate(s, &alice);
    for other in &others {
        populate(s, other);
    }
    s.users.delete_user(&alice).unwrap();
    assert_eq!(s.users.credentials(&alice).unwrap(), None);
    assert_eq!(data(s, &alice), empty());
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
        assert_eq!(data(s, other), populated(), "{other}");
    }
    // A new account with the same name starts empty.
    s.users.create_user(&alice, &creds(2)).unwrap();
    assert_eq!(data(s, &alice), empty());
}

pub fn purge_domain_removes_only_that_domain(h: &Harness) {
    let s = &h.storage;
    let purged = [acct("alice", "a.test"), acct("bob", "a.test")];
    let kept = [
        acct("alice", "a.test2"),
        acct("bob", "b.a.test"),
        acct("carol", "b.test"),
    ];
    for account in purged.iter().chain(&kept) {
        populate(s, account);
    }
    s.muc.put_room("a.test", &room("standup")).unwrap();
    s.muc.put_room("a.test2", &room("other")).unwrap();
    s.muc
        .append_log("a.test", "standup", &[log_line("gone")], 10)
        .unwrap();
    let room_archive = crate::archive::room_owner("a.test", "standup", "conference.a.test");
    let kept_room = crate::archive::room_owner("a.test2", "other", "conference.a.test2");
    for owner in [&room_archive, &kept_room] {
        s.archive
            .append(&[(
                owner.clone(),
                archived(1000, "x@conference.a.test/n", false),
            )])
            .unwrap();
    }
    s.users.purge_domain("a.test").unwrap();
    assert_eq!(
        s.archive
            .query(&room_archive, &Default::default())
            .unwrap()
            .count,
        0
    );
    assert_eq!(
        s.archive
            .query(&kept_room, &Default::default())
            .unwrap()
            .count,
        1
    );
    assert!(s.users.list_users("a.test").unwrap().is_empty());
    for account in &purged {
        assert_eq!(s.users.credentials(account).unwrap(), None);
        assert_eq!(data(s, account), empty(), "{account}");
    }
    for account in &kept {
        assert_eq!(
            s.users.credentials(account).unwrap(),
            Some(creds(1)),
            "{account}"
        );
        assert_eq!(data(s, account), populated(), "{account}");
    }
    assert!(s.muc.rooms("a.test").unwrap().is_empty());
    assert!(
        s.muc
            .room_log("a.test", "standup", 0, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.muc.rooms("a.test2").unwrap().len(), 1);
    s.users.purge_domain("empty.test").unwrap();
}

/// Four writers push while a taker on the other node takes: nothing is lost and each
/// writer's messages arrive in the order it pushed them.
pub fn concurrent_push_and_take_all_lose_nothing(h: &Harness) {
    const PUSHERS: usize = 4;
    const EACH: usize = 100;
    let alice = Arc::new(acct("alice", "a.test"));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let taker = {
        let (offline, alice, done) = (h.second.offline.clone(), alice.clone(), done.clone());
        thread::spawn(move || {
            let mut received = Vec::new();
            loop {
                // Read the flag first so a final pass runs after every push finished.
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                received.extend(offline.take_all(&alice).unwrap());
                if finished {
                    return received;
                }
            }
        })
    };
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let (offline, alice) = (h.storage.offline.clone(), alice.clone());
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
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let received = taker.join().unwrap();
    assert_eq!(received.len(), PUSHERS * EACH);
    assert_eq!(h.storage.offline.count(&alice).unwrap(), 0);
    let mut next = [0usize; PUSHERS];
    for m in &received {
        let (p, i) = body(m).split_once(':').unwrap();
        let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[p], "pusher {p} out of order");
        next[p] += 1;
    }
}

/// Two nodes take an account's queue at the same moment, many times over: every message
/// comes out exactly once.
pub fn offline_message_taken_by_two_nodes_at_once_is_delivered_once(h: &Harness) {
    let bob = acct("bob", "a.test");
    for round in 0..20 {
        for i in 0..5 {
            h.storage
                .offline
                .push(&bob, &msg(&format!("{round}:{i}")))
                .unwrap();
        }
        let barrier = Arc::new(Barrier::new(2));
        let takers: Vec<_> = [h.storage.offline.clone(), h.second.offline.clone()]
            .into_iter()
            .map(|offline| {
                let (barrier, bob) = (barrier.clone(), bob.clone());
                thread::spawn(move || {
                    barrier.wait();
                    offline.take_all(&bob).unwrap()
                })
            })
            .collect();
        let mut bodies: Vec<String> = takers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .map(|m| body(&m).to_string())
            .collect();
        bodies.sort();
        let expected: Vec<String> = (0..5).map(|i| format!("{round}:{i}")).collect();
        assert_eq!(bodies, expected, "round {round}: each message exactly once");
    }
}

/// Writers on two nodes change one roster at once: every write gets its own version,
/// each writer sees its versions increase, and the last version counts every write.
pub fn roster_versions_stay_monotonic_under_concurrent_writers(h: &Harness) {
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let alice = acct("alice", "a.test");
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let rosters = if w % 2 == 0 {
                h.storage.rosters.clone()
            } else {
                h.second.rosters.clone()
            };
            let alice = alice.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                for i in 0..EACH {
                    let jid = format!("c{w}-{}@x.test", i % 3);
                    let v = if i % 4 == 3 {
                        rosters.remove_item(&alice, &jid).unwrap()
                    } else {
                        rosters.put_item(&alice, &item(&jid)).unwrap()
                    };
                    seen.push(v);
                }
                seen
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for w in writers {
        let seen = w.join().unwrap();
        assert!(
            seen.windows(2).all(|p| p[0] < p[1]),
            "a writer's versions went backwards: {seen:?}"
        );
        for v in seen {
            assert!(all.insert(v), "version {v} handed out twice");
        }
    }
    let total = (WRITERS * EACH) as u64;
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(h.second.rosters.roster(&alice).unwrap().version, total);
}

/// Two nodes create the same tenant at once: one succeeds, the other gets
/// `AlreadyExists`, and the stored record is the winner's.
pub fn tenant_created_on_two_nodes_at_once_exists_once(h: &Harness) {
    for round in 0..10 {
        let name = format!("acme{round}");
        let barrier = Arc::new(Barrier::new(2));
        let nodes: Vec<_> = [h.storage.tenants.clone(), h.second.tenants.clone()]
            .into_iter()
            .enumerate()
            .map(|(node, tenants)| {
                let (barrier, name) = (barrier.clone(), name.clone());
                thread::spawn(move || {
                    let mut record = TenantRecord::new(&name);
                    record.spec = Some(serde_json::json!({ "node": node }));
                    barrier.wait();
                    (record.clone(), tenants.create_tenant_record(&record))
                })
            })
            .collect();
        let results: Vec<_> = nodes.into_iter().map(|n| n.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|(_, r)| matches!(r, Err(StorageError::AlreadyExists))),
            "round {round}: {results:?}"
        );
        assert_eq!(
            h.storage.tenants.tenant_record(&name).unwrap().as_ref(),
            Some(&winners[0].0)
        );
    }
}

pub fn tenant_records_round_trip(h: &Harness) {
    let s = &h.storage;
    let mut rec = TenantRecord::new("acme");
    rec.spec = Some(serde_json::json!({"domains": ["acme.test"], "stanza_rate": 2.5}));
    rec.token_sha256 = Some("ab".into());
    s.tenants.put_tenant_record(&rec).unwrap();
    s.tenants
        .put_tenant_record(&TenantRecord::new("zeta"))
        .unwrap();
    let mut beta = TenantRecord::new("beta");
    beta.enabled_override = Some(false);
    s.tenants.create_tenant_record(&beta).unwrap();
    s.tenants.delete_tenant_record("zeta").unwrap();
    s.tenants.delete_tenant_record("never").unwrap();
    assert_eq!(
        h.second.tenants.tenant_records().unwrap(),
        vec![rec.clone(), beta.clone()]
    );
    assert_eq!(s.tenants.tenant_record("acme").unwrap(), Some(rec.clone()));
    assert_eq!(s.tenants.tenant_record("zeta").unwrap(), None);
    rec.token_sha256 = None;
    s.tenants.put_tenant_record(&rec).unwrap();
    assert_eq!(s.tenants.tenant_record("acme").unwrap(), Some(rec));
}

fn room(name: &str) -> StoredRoom {
    StoredRoom {
        name: name.into(),
        subdomain: "conference".into(),
        config: vec![("muc#roomconfig_persistentroom".into(), "1".into())],
        affiliations: vec![("alice@a.test".into(), "owner".into())],
        subject: Some(("Standup".into(), "alice".into())),
    }
}

fn log_line(text: &str) -> RoomLogEntry {
    RoomLogEntry {
        at: "2026-11-24T10:00:00.000Z".into(),
        nick: "Alice".into(),
        jid: "alice@a.test".into(),
        subject: false,
        text: text.into(),
    }
}

pub fn muc_rooms_are_listed_replaced_and_purged(h: &Harness) {
    let s = &h.storage;
    s.muc.put_room("a.test", &room("standup")).unwrap();
    s.muc.put_room("a.test", &room("retro")).unwrap();
    s.muc.put_room("a.test2", &room("other")).unwrap();
    s.muc.delete_room("a.test", "nothing").unwrap();
    let names = |d: &str| -> Vec<String> {
        h.second
            .muc
            .rooms(d)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    assert_eq!(names("a.test"), vec!["retro", "standup"]);
    assert_eq!(s.muc.rooms("a.test").unwrap()[1], room("standup"));
    let changed = StoredRoom {
        subject: None,
        ..room("standup")
    };
    s.muc.put_room("a.test", &changed).unwrap();
    assert_eq!(s.muc.rooms("a.test").unwrap()[1], changed);
    s.muc.delete_room("a.test", "retro").unwrap();
    assert_eq!(names("a.test"), vec!["standup"]);
    s.users.purge_domain("a.test").unwrap();
    assert!(names("a.test").is_empty());
    assert_eq!(names("a.test2"), vec!["other"]);
}

pub fn room_logs_are_numbered_bounded_and_deleted(h: &Harness) {
    let muc = &h.storage.muc;
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

fn refresh(id: &str) -> RefreshRecord {
    RefreshRecord {
        id: id.into(),
        issued_at: 1,
        expires_at: 2,
        seq: 0,
    }
}

fn fast_slots() -> FastSlots {
    FastSlots {
        current: None,
        new: Some(FastToken {
            mechanism: HtMechanism::None,
            secret: "c2VjcmV0".into(),
            issued_at: 0,
            expires_at: 10,
            last_count: Some(3),
        }),
    }
}

pub fn tokens_keys_sequences_refresh_and_fast(h: &Harness) {
    let alice = acct("alice", "a.test");
    let bob = acct("bob", "a.test");
    let carol = acct("carol", "b.test");
    let t = &h.storage.tokens;
    let key = t.signing_key("acme").unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(
        h.second.tokens.signing_key("acme").unwrap(),
        key,
        "created once"
    );
    assert_ne!(t.signing_key("other").unwrap(), key);
    for a in [&alice, &bob, &carol] {
        t.put_refresh(a, &refresh("r1")).unwrap();
    }
    t.put_refresh(&alice, &refresh("r2")).unwrap();
    t.put_fast_slots(&alice, "client", &fast_slots()).unwrap();
    t.put_fast_slots(&bob, "client", &fast_slots()).unwrap();
    assert_eq!(t.list_refresh(&alice).unwrap().len(), 2);
    assert_eq!(t.refresh(&alice, "r2").unwrap(), Some(refresh("r2")));
    assert_eq!(t.fast_slots(&alice, "client").unwrap(), fast_slots());
    assert!(t.revoke_refresh(&alice, "r2").unwrap());
    assert!(!t.revoke_refresh(&alice, "r2").unwrap());
    assert_eq!(t.revocation_seq(&alice).unwrap(), 0);
    assert_eq!(t.revoke_all(&alice).unwrap(), 1);
    assert_eq!(t.revocation_seq(&alice).unwrap(), 1);
    assert_eq!(h.second.tokens.revoke_all(&alice).unwrap(), 0);
    assert_eq!(t.revocation_seq(&alice).unwrap(), 2);
    assert!(t.list_refresh(&alice).unwrap().is_empty());
    assert!(t.fast_slots(&alice, "client").unwrap().is_empty());
    // Bob is untouched; a password change deletes only FAST tokens.
    assert_eq!(t.list_refresh(&bob).unwrap().len(), 1);
    t.delete_fast(&bob).unwrap();
    assert!(t.fast_slots(&bob, "client").unwrap().is_empty());
    assert_eq!(t.list_refresh(&bob).unwrap().len(), 1);
    // Purging a domain removes its records, not other domains'.
    t.purge_tokens("a.test").unwrap();
    assert!(t.list_refresh(&bob).unwrap().is_empty());
    assert_eq!(t.revocation_seq(&alice).unwrap(), 0);
    assert_eq!(t.list_refresh(&carol).unwrap().len(), 1);
    // Empty slots delete the record.
    t.put_fast_slots(&carol, "c", &fast_slots()).unwrap();
    t.put_fast_slots(&carol, "c", &FastSlots::default())
        .unwrap();
    assert!(t.fast_slots(&carol, "c").unwrap().is_empty());
}

fn slot_record(tenant: &str, slot: &str) -> SlotRecord {
    SlotRecord {
        tenant: tenant.into(),
        slot: slot.into(),
        world: "authenticator".into(),
        active: 2,
        versions: vec![
            VersionRecord {
                version: 1,
                sha256: "aa".into(),
                size: 3,
                config: "{}".into(),
                installed_at_ms: 5,
            },
            VersionRecord {
                version: 2,
                sha256: "bb".into(),
                size: 4,
                config: "{\"x\":1}".into(),
                installed_at_ms: 6,
            },
        ],
    }
}

pub fn plugin_kv_quota_blobs_and_slots(h: &Harness) {
    let p = &h.storage.plugins;
    assert_eq!(p.kv_get("acme", "auth", "k").unwrap(), None);
    assert_eq!(
        p.kv_set("acme", "auth", "k1", b"12345", 20).unwrap(),
        KvWrite::Stored
    );
    assert_eq!(p.kv_usage("acme", "auth").unwrap(), 7);
    // 7 + (2 + 12) = 21 > 20.
    assert_eq!(
        p.kv_set("acme", "auth", "k2", b"123456789012", 20).unwrap(),
        KvWrite::OverQuota
    );
    assert_eq!(p.kv_get("acme", "auth", "k2").unwrap(), None);
    // Replacing a value counts the old one out.
    assert_eq!(
        p.kv_set("acme", "auth", "k1", b"1234567890", 20).unwrap(),
        KvWrite::Stored
    );
    assert_eq!(p.kv_usage("acme", "auth").unwrap(), 12);
    p.kv_set("acme", "auth", "a", b"", 100).unwrap();
    p.kv_set("acme", "auth", "k0", b"x", 100).unwrap();
    p.kv_set("acme", "other", "k9", b"x", 100).unwrap();
    p.kv_set("acme2", "auth", "k8", b"x", 100).unwrap();
    assert_eq!(
        h.second
            .plugins
            .kv_list_keys("acme", "auth", "k", 10)
            .unwrap(),
        strings(&["k0", "k1"])
    );
    assert_eq!(
        p.kv_list_keys("acme", "auth", "", 2).unwrap(),
        strings(&["a", "k0"])
    );
    assert_eq!(
        p.kv_get("acme", "auth", "k1").unwrap(),
        Some(b"1234567890".to_vec())
    );
    assert!(p.kv_delete("acme", "auth", "k1").unwrap());
    assert!(!p.kv_delete("acme", "auth", "k1").unwrap());
    assert_eq!(p.kv_usage("acme", "auth").unwrap(), 1 + 3);
    p.kv_purge("acme", "auth").unwrap();
    assert_eq!(p.kv_usage("acme", "auth").unwrap(), 0);
    assert!(p.kv_list_keys("acme", "auth", "", 10).unwrap().is_empty());
    assert_eq!(p.kv_list_keys("acme", "other", "", 10).unwrap().len(), 1);
    assert_eq!(p.kv_list_keys("acme2", "auth", "", 10).unwrap().len(), 1);

    p.put_blob("aa", b"wasm").unwrap();
    p.put_blob("aa", b"wasm").unwrap();
    assert_eq!(h.second.plugins.blob("aa").unwrap(), Some(b"wasm".to_vec()));
    p.delete_blob("aa").unwrap();
    p.delete_blob("aa").unwrap();
    assert_eq!(p.blob("aa").unwrap(), None);

    p.put_slot(&slot_record("zeta", "auth")).unwrap();
    p.put_slot(&slot_record("acme", "rooms")).unwrap();
    p.put_slot(&slot_record("acme", "auth")).unwrap();
    let mut changed = slot_record("acme", "auth");
    changed.active = 1;
    p.put_slot(&changed).unwrap();
    assert_eq!(
        p.slots().unwrap(),
        vec![
            changed,
            slot_record("acme", "rooms"),
            slot_record("zeta", "auth")
        ]
    );
    p.delete_slot("acme", "rooms").unwrap();
    p.delete_slot("acme", "rooms").unwrap();
    assert_eq!(p.slots().unwrap().len(), 2);
}

/// Stores something of every kind a dump carries.
pub fn populate_every_kind(s: &Storage) {
    let alice = acct("alice", "a.test");
    let bob = acct("bob", "a.test");
    populate(s, &alice);
    populate(s, &bob);
    s.rosters.put_item(&alice, &item("zz@x.test")).unwrap();
    s.rosters.remove_item(&alice, "zz@x.test").unwrap();
    s.offline.push(&alice, &msg("second")).unwrap();
    s.offline.push(&acct("carol", "b.test"), &msg("c")).unwrap();
    let mut rec = TenantRecord::new("acme");
    rec.spec = Some(serde_json::json!({"domains": ["a.test"], "stanza_rate": 2.5, "n": 7}));
    s.tenants.put_tenant_record(&rec).unwrap();
    s.muc.put_room("a.test", &room("standup")).unwrap();
    s.muc
        .append_log(
            "a.test",
            "standup",
            &[log_line("1"), log_line("2"), log_line("3")],
            2,
        )
        .unwrap();
    s.tokens.signing_key("acme").unwrap();
    s.tokens.put_refresh(&alice, &refresh("r1")).unwrap();
    s.tokens.revoke_all(&bob).unwrap();
    s.tokens
        .put_fast_slots(&alice, "ua", &fast_slots())
        .unwrap();
    s.plugins.put_blob("bb", &[0, 1, 2, 255]).unwrap();
    s.plugins.put_slot(&slot_record("acme", "auth")).unwrap();
    s.plugins
        .kv_set("acme", "auth", "key\u{e9}", &[0, 9], 1000)
        .unwrap();
    s.plugins.kv_set("acme", "auth", "a", b"v", 1000).unwrap();
    // Archives (an account's with a full-JID party and a retracted message, a room's)
    // and account data.
    let mut with_resource = archived(3000, "friend@x.test", false);
    with_resource.with_resource = Some("phone".into());
    with_resource.origin_id = None;
    s.archive
        .append(&[
            (alice.clone(), archived(2000, "zed@x.test", true)),
            (alice.clone(), with_resource),
            (
                crate::archive::room_owner("a.test", "standup", "conference.a.test"),
                archived(1500, "standup@conference.a.test/n", false),
            ),
        ])
        .unwrap();
    s.archive
        .retract(&alice, "zed@x.test", "o2000", true, "<retracted/>")
        .unwrap();
    s.account_data.put(&bob, "other", &[0, 1, 255]).unwrap();
}

fn export(s: &Storage) -> Vec<String> {
    let mut out = Vec::new();
    crate::dump::export(s, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // The header names the backend that wrote the dump; the records must be equal.
    text.lines().skip(1).map(str::to_string).collect()
}

fn import(s: &Storage, lines: &[String], backend: &str) -> Result<u64, crate::dump::DumpError> {
    let mut text = format!(
        "{{\"format\":\"{}\",\"version\":{},\"backend\":\"{backend}\"}}\n",
        crate::dump::FORMAT,
        crate::dump::VERSION
    );
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    crate::dump::import(s, &mut text.as_bytes())
}

/// A store's dump imported into a fresh store exports the same, and the imported store
/// goes on where the first left off (roster versions, offline order, log numbers).
pub fn dump_round_trips_equal(h: &Harness) {
    let s = &h.storage;
    populate_every_kind(s);
    let first = export(s);
    let kinds: BTreeSet<&str> = first
        .iter()
        .filter_map(|l| serde_json::from_str::<crate::DumpRecord>(l).ok())
        .map(|r| r.kind())
        .collect();
    assert_eq!(kinds.len(), crate::backend::KINDS.len(), "{first:#?}");
    let target = (h.fresh)();
    let n = import(&target, &first, "test").unwrap();
    assert_eq!(n as usize + 1, first.len());
    assert_eq!(export(&target), first);
    let alice = acct("alice", "a.test");
    assert_eq!(
        target
            .rosters
            .put_item(&alice, &item("new@x.test"))
            .unwrap(),
        4
    );
    target.offline.push(&alice, &msg("third")).unwrap();
    let bodies: Vec<String> = target
        .offline
        .take_all(&alice)
        .unwrap()
        .iter()
        .map(|m| body(m).to_string())
        .collect();
    assert_eq!(bodies, strings(&["hi", "second", "third"]));
    target
        .muc
        .append_log("a.test", "standup", &[log_line("4")], 2)
        .unwrap();
    let numbers: Vec<u64> = target
        .muc
        .room_log("a.test", "standup", 0, 10)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(numbers, vec![3, 4]);
    assert_eq!(target.plugins.kv_usage("acme", "auth").unwrap(), 7 + 2);
    assert_eq!(
        target
            .tokens
            .revocation_seq(&acct("bob", "a.test"))
            .unwrap(),
        1
    );
    // The archive's conversation queries work on the imported copy.
    let with_zed = crate::ArchiveQuery {
        with: Some("zed@x.test".into()),
        ..Default::default()
    };
    let page = target.archive.query(&alice, &with_zed).unwrap();
    assert_eq!(page.count, 1);
    assert_eq!(page.messages[0].stanza, "<retracted/>");
    let phone = crate::ArchiveQuery {
        with: Some("friend@x.test".into()),
        with_resource: Some("phone".into()),
        ..Default::default()
    };
    assert_eq!(target.archive.query(&alice, &phone).unwrap().count, 1);
    assert_eq!(
        target.archive.prefs(&alice).unwrap(),
        s.archive.prefs(&alice).unwrap()
    );
}

pub fn import_refuses_a_non_empty_store_and_a_cut_dump(h: &Harness) {
    let s = &h.storage;
    populate_every_kind(s);
    let dump = export(s);
    let err = import(s, &dump, "test").unwrap_err();
    assert!(
        matches!(err, crate::dump::DumpError::NotEmpty { .. }),
        "{err}"
    );
    let target = (h.fresh)();
    let cut = &dump[..dump.len() / 2];
    let err = import(&target, cut, "test").unwrap_err();
    assert!(
        matches!(err, crate::dump::DumpError::Truncated { .. }),
        "{err}"
    );
    let newer = format!(
        "{{\"format\":\"{}\",\"version\":{},\"backend\":\"x\"}}\n",
        crate::dump::FORMAT,
        crate::dump::VERSION + 1
    );
    let err = crate::dump::import(&(h.fresh)(), &mut newer.as_bytes()).unwrap_err();
    assert!(
        matches!(err, crate::dump::DumpError::Version { .. }),
        "{err}"
    );
}
