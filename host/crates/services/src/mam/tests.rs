//! The archive writer with preferences, and the retention purge, on a real sled store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heliograph_tenants::archive_settings::DefaultArchiving;

use super::*;
use crate::storage::{self, ArchiveQuery, RosterItem, Storage};
use crate::tenants::TenantSpec;

fn acct(local: &str) -> Account {
    Account::new(local, "localhost")
}

fn entry(id: ArchiveId, with: &str, body: &str) -> ArchivedMessage {
    archived(
        id,
        with.into(),
        None,
        false,
        &Element::new("message", ns::CLIENT)
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text(body)),
    )
}

async fn bodies(core: &Arc<heliograph_core::Core>, owner: &Account) -> Vec<String> {
    let store = core.storage.archive.clone();
    let owner = owner.clone();
    let page = storage::blocking(move || store.query(&owner, &ArchiveQuery::default()))
        .await
        .unwrap();
    page.messages
        .iter()
        .map(|m| {
            let el = crate::xml::parser::parse_element(
                m.stanza.as_bytes(),
                ns::CLIENT,
                Default::default(),
            )
            .unwrap();
            el.child_text("body", ns::CLIENT).unwrap()
        })
        .collect()
}

fn spec(f: impl FnOnce(&mut TenantSpec)) -> TenantSpec {
    let mut s = TenantSpec::with_domains(vec!["localhost".into()]);
    f(&mut s);
    s
}

#[tokio::test]
async fn the_tenant_default_roster_keeps_only_contacts_and_user_prefs_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let services = crate::Services::default();
    let storage = Storage::open_sled(dir.path()).unwrap();
    let core = crate::testing::core_with_spec(
        &services,
        storage,
        spec(|s| s.archive.default = DefaultArchiving::Roster),
    );
    let (alice, carol) = (acct("alice"), acct("carol"));
    let rosters = core.storage.rosters.clone();
    let item = RosterItem {
        jid: "bob@localhost".into(),
        ..Default::default()
    };
    storage::blocking(move || rosters.put_item(&Account::new("alice", "localhost"), &item))
        .await
        .unwrap();
    let w = services.mam.writer();
    w.append(
        &core,
        alice.clone(),
        entry(ArchiveId::next(), "bob@localhost", "contact"),
    );
    w.append(
        &core,
        alice.clone(),
        entry(ArchiveId::next(), "mallory@localhost", "stranger"),
    );
    w.barrier(&core).await;
    assert_eq!(bodies(&core, &alice).await, ["contact"]);

    // carol asks for everything: her preference beats the tenant's.
    let prefs = ArchivePrefs {
        default: crate::storage::ArchiveDefault::Always,
        ..Default::default()
    };
    let store = core.storage.archive.clone();
    let c = carol.clone();
    storage::blocking(move || store.set_prefs(&c, &prefs))
        .await
        .unwrap();
    w.append(
        &core,
        carol.clone(),
        entry(ArchiveId::next(), "mallory@localhost", "kept"),
    );
    w.barrier(&core).await;
    assert_eq!(bodies(&core, &carol).await, ["kept"]);
}

#[tokio::test]
async fn retention_purges_only_what_is_older_than_the_tenants_days() {
    let dir = tempfile::tempdir().unwrap();
    let services = crate::Services::default();
    let storage = Storage::open_sled(dir.path()).unwrap();
    let core =
        crate::testing::core_with_spec(&services, storage, spec(|s| s.archive.retention_days = 7));
    let alice = acct("alice");
    let now = SystemTime::now();
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let day = Duration::from_secs(86_400);
    let old = ArchiveId::at_ms(ms(now - 8 * day));
    let recent = ArchiveId::at_ms(ms(now - 6 * day));
    let store = core.storage.archive.clone();
    let a = alice.clone();
    storage::blocking(move || {
        store.append(&[
            (a.clone(), entry(old, "bob@localhost", "old")),
            (a, entry(recent, "bob@localhost", "recent")),
        ])
    })
    .await
    .unwrap();
    assert_eq!(retention::purge_once(&core, now).await, 1);
    assert_eq!(bodies(&core, &alice).await, ["recent"]);
    // Nothing more until the recent one ages.
    assert_eq!(retention::purge_once(&core, now).await, 0);
    assert_eq!(retention::purge_once(&core, now + 2 * day).await, 1);
}

#[tokio::test]
async fn no_retention_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let services = crate::Services::default();
    let core = crate::testing::core_with(&services, Storage::open_sled(dir.path()).unwrap());
    let alice = acct("alice");
    let store = core.storage.archive.clone();
    let a = alice.clone();
    storage::blocking(move || {
        store.append(&[(a, entry(ArchiveId(1000), "bob@localhost", "ancient"))])
    })
    .await
    .unwrap();
    assert_eq!(retention::purge_once(&core, SystemTime::now()).await, 0);
    assert_eq!(bodies(&core, &alice).await, ["ancient"]);
}

#[test]
fn what_is_archived() {
    let msg = |ty: &str, child: Element| {
        Element::new("message", ns::CLIENT)
            .with_attr("type", ty)
            .with_child(child)
    };
    let body = || Element::new("body", ns::CLIENT).with_text("hi");
    assert!(archivable(&msg("chat", body())));
    assert!(archivable(&msg("normal", body())));
    assert!(!archivable(&msg("groupchat", body())));
    assert!(!archivable(&msg("headline", body())));
    assert!(!archivable(&msg("error", body())));
    assert!(!archivable(&msg(
        "chat",
        Element::new("composing", ns::CHAT_STATES)
    )));
    assert!(archivable(&msg(
        "chat",
        Element::new("propose", ns::JINGLE_MESSAGE)
    )));
    assert!(archivable(&msg("chat", Element::new("store", ns::HINTS))));
    assert!(!archivable(
        &msg("chat", body()).with_child(Element::new("no-store", ns::HINTS))
    ));
}

#[test]
fn forged_stanza_ids_of_the_archive_are_removed_and_others_kept() {
    let mut m = Element::new("message", ns::CLIENT)
        .with_child(
            Element::new("stanza-id", ns::SID)
                .with_attr("by", "alice@x")
                .with_attr("id", "1"),
        )
        .with_child(
            Element::new("stanza-id", ns::SID)
                .with_attr("by", "room@muc.x")
                .with_attr("id", "2"),
        );
    strip_stanza_ids(&mut m, "alice@x");
    let left: Vec<_> = m.children().filter_map(|c| c.attr("by")).collect();
    assert_eq!(left, ["room@muc.x"]);
}

#[tokio::test]
async fn queued_copies_count_in_the_backlog_until_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let services = crate::Services::default();
    let core = crate::testing::core_with(&services, Storage::open_sled(dir.path()).unwrap());
    let alice = acct("alice");
    let w = services.mam.writer();
    for body in ["one", "two", "three"] {
        w.append(
            &core,
            alice.clone(),
            entry(ArchiveId::next(), "bob@localhost", body),
        );
    }
    assert_eq!(core.backlog.pending(), 3, "queued, not written yet");
    // What the shutdown waits for: once nothing counts, everything is stored.
    assert_eq!(core.backlog.wait_empty(Duration::from_secs(60)).await, 0);
    assert_eq!(bodies(&core, &alice).await, ["one", "two", "three"]);
}

/// A session of `local`, registered in the routing table, and its queue.
fn online(
    core: &Arc<heliograph_core::Core>,
    local: &str,
) -> (Arc<crate::router::SessionEntry>, crate::router::MailboxRx) {
    use crate::router::{SessionEntry, Transport, next_session_id};
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let entry = Arc::new(SessionEntry::new(
        next_session_id(),
        acct(local),
        "phone".into(),
        Transport::Tcp,
        "127.0.0.1:1".into(),
        tx,
    ));
    core.router.register(entry.clone());
    (entry, rx)
}

/// Routes a chat message from `from` to bob's phone in a task of its own.
fn send_to_bob(
    core: &Arc<heliograph_core::Core>,
    from: Arc<crate::router::SessionEntry>,
    body: &str,
) -> tokio::task::JoinHandle<()> {
    use heliograph_core::pipeline::{self, Origin};
    let msg = Element::new("message", ns::CLIENT)
        .with_attr("type", "chat")
        .with_attr("from", from.full_jid.clone())
        .with_attr("to", "bob@localhost/phone")
        .with_child(Element::new("body", ns::CLIENT).with_text(body));
    let core = core.clone();
    tokio::spawn(async move { pipeline::route(&core, &Origin::Session(from), msg).await })
}

/// The body of the stanza next in a session's queue.
fn next_body(rx: &mut crate::router::MailboxRx) -> Option<String> {
    match *rx.try_recv().ok()? {
        crate::router::SessionMsg::Stanza(el) => el.child_text("body", ns::CLIENT),
        _ => None,
    }
}

#[tokio::test]
async fn a_message_waits_while_the_archive_is_behind_and_is_archived_after() {
    let dir = tempfile::tempdir().unwrap();
    let services = crate::Services::default();
    let core = crate::testing::core_with(&services, Storage::open_sled(dir.path()).unwrap());
    let (alice, _alice_rx) = online(&core, "alice");
    let (_bob, mut bob_rx) = online(&core, "bob");
    // The archive is as far behind as it may be, and one more.
    let behind = heliograph_core::backlog::DEFAULT_LIMIT + 1;
    core.backlog.add(behind);

    let mut sending = send_to_bob(&core, alice, "later");
    // Unblocked, routing takes milliseconds; held, it never ends.
    let held = tokio::time::timeout(Duration::from_secs(2), &mut sending).await;
    assert!(held.is_err(), "the sender waits for the archive");
    assert_eq!(next_body(&mut bob_rx), None, "nothing delivered meanwhile");

    // The writer catches up: the message goes on, and both copies are archived.
    core.backlog.done(behind);
    tokio::time::timeout(Duration::from_secs(60), sending)
        .await
        .expect("routed once the archive caught up")
        .unwrap();
    assert_eq!(next_body(&mut bob_rx).as_deref(), Some("later"));
    assert_eq!(core.backlog.wait_empty(Duration::from_secs(60)).await, 0);
    assert_eq!(bodies(&core, &acct("bob")).await, ["later"]);
}

#[tokio::test]
async fn a_tenant_without_the_archive_is_not_held_by_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let services = crate::Services::default();
    let core = crate::testing::core_with_spec(
        &services,
        Storage::open_sled(dir.path()).unwrap(),
        spec(|s| {
            s.features.insert(FEATURE.into(), false);
        }),
    );
    let (alice, _alice_rx) = online(&core, "alice");
    let (_bob, mut bob_rx) = online(&core, "bob");
    core.backlog
        .add(heliograph_core::backlog::DEFAULT_LIMIT + 1);
    tokio::time::timeout(Duration::from_secs(60), send_to_bob(&core, alice, "now"))
        .await
        .expect("routed although another tenant's archive is behind")
        .unwrap();
    assert_eq!(next_body(&mut bob_rx).as_deref(), Some("now"));
}
