//! Presence and roster driven through the routing pipeline with a real core,
//! sled storage in a temporary directory and sessions whose queues the tests read.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::router::{SessionEntry, SessionMsg, Transport, next_session_id};
use crate::sasl::{ScramKeys, StoredCredentials};
use crate::storage::{self, Account, RosterItem, Storage, Subscription};
use crate::xml::{Element, ns};
use heliograph_core::Core;
use heliograph_core::pipeline::{self, Origin};

struct Env {
    core: Arc<Core>,
    _dir: tempfile::TempDir,
}

struct Client {
    entry: Arc<SessionEntry>,
    rx: crate::router::MailboxRx,
}

impl Client {
    /// Everything queued for the client so far.
    fn take(&mut self) -> Vec<Element> {
        let mut out = Vec::new();
        while let Ok(msg) = self.rx.try_recv() {
            if let SessionMsg::Stanza(el) = *msg {
                out.push(el);
            }
        }
        out
    }
}

fn creds() -> StoredCredentials {
    let keys = ScramKeys {
        salt: vec![1; 16],
        iterations: 4096,
        stored_key: vec![1; 20],
        server_key: vec![1; 20],
    };
    StoredCredentials {
        sha1: keys.clone(),
        sha256: keys,
    }
}

fn acct(local: &str) -> Account {
    Account::new(local, "localhost")
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open_sled(dir.path()).unwrap();
    let core = crate::testing::core_with(&crate::Services::default(), storage);
    for u in ["alice", "bob", "carol"] {
        let users = core.storage.users.clone();
        storage::blocking(move || users.create_user(&acct(u), &creds()))
            .await
            .unwrap();
    }
    Env { core, _dir: dir }
}

impl Env {
    fn connect(&self, local: &str, resource: &str) -> Client {
        let (tx, rx) = mpsc::channel(256);
        let entry = Arc::new(SessionEntry::new(
            next_session_id(),
            acct(local),
            resource.into(),
            Transport::Tcp,
            "127.0.0.1:1".into(),
            tx,
        ));
        self.core.router.register(entry.clone());
        Client { entry, rx }
    }

    async fn send(&self, c: &Client, mut stanza: Element) {
        stanza.set_attr("from", c.entry.full_jid.clone());
        pipeline::route(&self.core, &Origin::Session(c.entry.clone()), stanza).await;
    }

    async fn presence(&self, c: &Client, ty: Option<&str>, to: Option<&str>) {
        self.send(c, pres(ty, to)).await;
    }

    /// Connects, gets the roster and sends initial presence; clears the queue.
    async fn online(&self, local: &str, resource: &str) -> Client {
        let mut c = self.connect(local, resource);
        self.roster_get(&c, None).await;
        self.presence(&c, None, None).await;
        c.take();
        c
    }

    async fn roster_get(&self, c: &Client, ver: Option<&str>) -> Element {
        let query = Element::new("query", ns::ROSTER).with_opt_attr("ver", ver);
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "r1")
            .with_attr("from", c.entry.full_jid.clone())
            .with_child(query);
        crate::roster::handle_iq(&self.core, &c.entry, &iq)
            .await
            .unwrap()
    }

    async fn roster_set(&self, c: &Client, items: Vec<Element>) -> Element {
        let mut query = Element::new("query", ns::ROSTER);
        for i in items {
            query.push_child(i);
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "s1")
            .with_attr("from", c.entry.full_jid.clone())
            .with_child(query);
        crate::roster::handle_iq(&self.core, &c.entry, &iq)
            .await
            .unwrap()
    }

    async fn item(&self, user: &str, contact: &str) -> Option<RosterItem> {
        let store = self.core.storage.rosters.clone();
        let (user, contact) = (acct(user), format!("{contact}@localhost"));
        storage::blocking(move || store.item(&user, &contact))
            .await
            .unwrap()
    }

    /// Mutual subscription between two online clients, queues cleared.
    async fn make_both(&self, a: &mut Client, b: &mut Client) {
        let (aj, bj) = (a.entry.account.to_string(), b.entry.account.to_string());
        self.presence(a, Some("subscribe"), Some(&bj)).await;
        self.presence(b, Some("subscribed"), Some(&aj)).await;
        self.presence(b, Some("subscribe"), Some(&aj)).await;
        self.presence(a, Some("subscribed"), Some(&bj)).await;
        a.take();
        b.take();
        assert_eq!(
            self.item(&a.entry.account.local, &b.entry.account.local)
                .await
                .unwrap()
                .subscription,
            Subscription::Both
        );
        assert_eq!(
            self.item(&b.entry.account.local, &a.entry.account.local)
                .await
                .unwrap()
                .subscription,
            Subscription::Both
        );
    }
}

fn pres(ty: Option<&str>, to: Option<&str>) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_opt_attr("type", ty)
        .with_opt_attr("to", to)
}

fn item_el(jid: &str) -> Element {
    Element::new("item", ns::ROSTER).with_attr("jid", jid)
}

/// Presence stanzas of a type ("" for available) in a batch.
fn presences<'a>(batch: &'a [Element], ty: &str) -> Vec<&'a Element> {
    batch
        .iter()
        .filter(|e| e.name() == "presence" && e.attr("type").unwrap_or("") == ty)
        .collect()
}

/// Roster push items in a batch.
fn pushes(batch: &[Element]) -> Vec<Element> {
    batch
        .iter()
        .filter(|e| e.name() == "iq" && e.attr("type") == Some("set"))
        .filter_map(|e| {
            e.child("query", ns::ROSTER)?
                .child("item", ns::ROSTER)
                .cloned()
        })
        .collect()
}

fn error_condition(el: &Element) -> Option<String> {
    let err = el.child("error", ns::CLIENT)?;
    err.children()
        .find(|c| c.ns() == ns::STANZAS_ERRORS && c.name() != "text")
        .map(|c| c.name().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_handshake_both_ways() {
    let env = env().await;
    let mut alice = env.online("alice", "a").await;
    let mut bob = env.online("bob", "b").await;

    // alice asks bob.
    env.presence(&alice, Some("subscribe"), Some("bob@localhost"))
        .await;
    let got = bob.take();
    let subs = presences(&got, "subscribe");
    assert_eq!(subs.len(), 1, "{got:?}");
    assert_eq!(subs[0].attr("from"), Some("alice@localhost"));
    assert_eq!(subs[0].attr("to"), Some("bob@localhost"));
    assert!(
        pushes(&got).is_empty(),
        "a pending request is not in bob's roster: {got:?}"
    );
    let a = alice.take();
    let p = pushes(&a);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].attr("subscription"), Some("none"));
    assert_eq!(p[0].attr("ask"), Some("subscribe"));
    // bob's roster does not show alice yet, and never shows pending-in.
    let r = env.roster_get(&bob, None).await;
    assert_eq!(r.child("query", ns::ROSTER).unwrap().children().count(), 0);
    assert!(env.item("bob", "alice").await.unwrap().pending_in);

    // bob approves: alice gets subscribed, a push to 'to' and bob's presence.
    env.presence(&bob, Some("subscribed"), Some("alice@localhost"))
        .await;
    let a = alice.take();
    assert_eq!(presences(&a, "subscribed").len(), 1, "{a:?}");
    let p = pushes(&a);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].attr("subscription"), Some("to"));
    assert_eq!(p[0].attr("ask"), None);
    let avail = presences(&a, "");
    assert_eq!(avail.len(), 1, "{a:?}");
    assert_eq!(avail[0].attr("from"), Some("bob@localhost/b"));
    assert_eq!(avail[0].attr("to"), Some("alice@localhost/a"));
    let b = bob.take();
    let p = pushes(&b);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].attr("subscription"), Some("from"));
    assert!(
        presences(&b, "").is_empty(),
        "bob does not see alice yet: {b:?}"
    );

    // bob asks back, alice approves.
    env.presence(&bob, Some("subscribe"), Some("alice@localhost"))
        .await;
    let a = alice.take();
    assert_eq!(presences(&a, "subscribe").len(), 1);
    assert!(
        pushes(&a).is_empty(),
        "alice's item does not change on an inbound request"
    );
    let p = pushes(&bob.take());
    assert_eq!(
        (p[0].attr("subscription"), p[0].attr("ask")),
        (Some("from"), Some("subscribe"))
    );
    env.presence(&alice, Some("subscribed"), Some("bob@localhost"))
        .await;
    let b = bob.take();
    assert_eq!(presences(&b, "subscribed").len(), 1);
    assert_eq!(pushes(&b)[0].attr("subscription"), Some("both"));
    assert_eq!(presences(&b, "")[0].attr("from"), Some("alice@localhost/a"));
    assert_eq!(pushes(&alice.take())[0].attr("subscription"), Some("both"));
    assert_eq!(
        env.item("alice", "bob").await.unwrap().subscription,
        Subscription::Both
    );
    assert_eq!(
        env.item("bob", "alice").await.unwrap().subscription,
        Subscription::Both
    );

    // Presence now flows both ways, to the contact and to the user's own resources.
    let away = pres(None, None).with_child(Element::new("show", ns::CLIENT).with_text("away"));
    env.send(&alice, away).await;
    let b = bob.take();
    assert_eq!(presences(&b, "").len(), 1);
    assert_eq!(
        presences(&b, "")[0]
            .child_text("show", ns::CLIENT)
            .as_deref(),
        Some("away")
    );
    assert_eq!(presences(&b, "")[0].attr("to"), Some("bob@localhost/b"));
    assert_eq!(
        presences(&alice.take(), "").len(),
        1,
        "the sender gets its own broadcast"
    );
    env.presence(&bob, None, None).await;
    assert_eq!(
        presences(&alice.take(), "")[0].attr("from"),
        Some("bob@localhost/b")
    );
    // A duplicate request changes nothing and is answered on alice's behalf.
    env.presence(&bob, Some("subscribe"), Some("alice@localhost"))
        .await;
    assert!(alice.take().is_empty());
    assert!(pushes(&bob.take()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn roster_versioning_and_set() {
    let env = env().await;
    let mut alice = env.online("alice", "a").await;
    let mut alice2 = env.online("alice", "a2").await;
    let mut quiet = env.connect("alice", "noroster");
    let r = env.roster_get(&alice, None).await;
    let ver = r
        .child("query", ns::ROSTER)
        .unwrap()
        .attr("ver")
        .unwrap()
        .to_string();
    // XEP-0237: same version → empty result.
    let r = env.roster_get(&alice, Some(&ver)).await;
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.children().count(), 0);

    let item = item_el("carol@localhost")
        .with_attr("name", "Carol")
        .with_attr("subscription", "both") // ignored
        .with_child(Element::new("group", ns::ROSTER).with_text("Friends"));
    let res = env.roster_set(&alice, vec![item]).await;
    assert_eq!(res.attr("type"), Some("result"));
    for c in [&mut alice, &mut alice2] {
        let got = c.take();
        let push = got.iter().find(|e| e.name() == "iq").unwrap();
        assert_eq!(push.attr("to"), Some(c.entry.full_jid.as_str()));
        let q = push.child("query", ns::ROSTER).unwrap();
        assert_ne!(q.attr("ver"), Some(ver.as_str()));
        let it = q.child("item", ns::ROSTER).unwrap();
        assert_eq!(it.attr("name"), Some("Carol"));
        assert_eq!(it.attr("subscription"), Some("none"));
        assert_eq!(
            it.child_text("group", ns::ROSTER).as_deref(),
            Some("Friends")
        );
    }
    assert!(
        quiet.take().is_empty(),
        "no pushes to a resource that never asked for the roster"
    );

    // Old version → full roster with the new version.
    let r = env.roster_get(&alice, Some(&ver)).await;
    let q = r.child("query", ns::ROSTER).unwrap();
    assert_ne!(q.attr("ver"), Some(ver.as_str()));
    assert_eq!(q.children().count(), 1);
    let new_ver = q.attr("ver").unwrap().to_string();
    assert_eq!(
        env.roster_get(&alice, Some(&new_ver))
            .await
            .children()
            .count(),
        0
    );

    // Errors.
    let cases = [
        (
            vec![item_el("x@localhost"), item_el("y@localhost")],
            "bad-request",
        ),
        (
            vec![
                item_el("x@localhost")
                    .with_child(Element::new("group", ns::ROSTER).with_text("g"))
                    .with_child(Element::new("group", ns::ROSTER).with_text("g")),
            ],
            "bad-request",
        ),
        (
            vec![item_el("x@localhost").with_child(Element::new("group", ns::ROSTER))],
            "not-acceptable",
        ),
        (vec![item_el("alice@localhost")], "not-allowed"),
        (
            vec![item_el("nobody@localhost").with_attr("subscription", "remove")],
            "item-not-found",
        ),
        (vec![], "bad-request"),
    ];
    for (items, cond) in cases {
        let res = env.roster_set(&alice, items).await;
        assert_eq!(res.attr("type"), Some("error"));
        assert_eq!(error_condition(&res).as_deref(), Some(cond));
    }
    assert!(alice.take().is_empty(), "failed sets push nothing");

    // Remove.
    let res = env
        .roster_set(
            &alice,
            vec![item_el("carol@localhost").with_attr("subscription", "remove")],
        )
        .await;
    assert_eq!(res.attr("type"), Some("result"));
    let p = pushes(&alice.take());
    assert_eq!(p[0].attr("subscription"), Some("remove"));
    assert!(env.item("alice", "carol").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_approval() {
    let env = env().await;
    let mut alice = env.online("alice", "a").await;
    let mut bob = env.online("bob", "b").await;
    // bob pre-approves alice.
    env.presence(&bob, Some("subscribed"), Some("alice@localhost"))
        .await;
    assert!(alice.take().is_empty(), "a pre-approval is not routed");
    let p = pushes(&bob.take());
    assert_eq!(p[0].attr("approved"), Some("true"));
    assert_eq!(p[0].attr("subscription"), Some("none"));
    // alice's request is approved without asking bob.
    env.presence(&alice, Some("subscribe"), Some("bob@localhost"))
        .await;
    let b = bob.take();
    assert!(presences(&b, "subscribe").is_empty(), "{b:?}");
    let p = pushes(&b);
    assert_eq!(p.last().unwrap().attr("subscription"), Some("from"));
    assert_eq!(p.last().unwrap().attr("approved"), None);
    let a = alice.take();
    assert_eq!(presences(&a, "subscribed").len(), 1, "{a:?}");
    assert_eq!(presences(&a, "")[0].attr("from"), Some("bob@localhost/b"));
    assert_eq!(pushes(&a).last().unwrap().attr("subscription"), Some("to"));
    // Cancelling a pre-approval.
    env.presence(&bob, Some("subscribed"), Some("carol@localhost"))
        .await;
    assert!(env.item("bob", "carol").await.unwrap().approved);
    env.presence(&bob, Some("unsubscribed"), Some("carol@localhost"))
        .await;
    assert!(!env.item("bob", "carol").await.unwrap().approved);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsubscribe_and_deny() {
    let env = env().await;
    let mut alice = env.online("alice", "a").await;
    let mut bob = env.online("bob", "b").await;
    env.make_both(&mut alice, &mut bob).await;

    // alice stops seeing bob.
    env.presence(&alice, Some("unsubscribe"), Some("bob@localhost"))
        .await;
    assert_eq!(
        env.item("alice", "bob").await.unwrap().subscription,
        Subscription::From
    );
    assert_eq!(
        env.item("bob", "alice").await.unwrap().subscription,
        Subscription::To
    );
    let b = bob.take();
    assert_eq!(presences(&b, "unsubscribe").len(), 1);
    assert_eq!(pushes(&b)[0].attr("subscription"), Some("to"));
    let a = alice.take();
    assert_eq!(pushes(&a)[0].attr("subscription"), Some("from"));
    let un = presences(&a, "unavailable");
    assert_eq!(un.len(), 1, "{a:?}");
    assert_eq!(un[0].attr("from"), Some("bob@localhost/b"));
    // bob's presence no longer reaches alice; alice's still reaches bob.
    env.presence(&bob, None, None).await;
    assert!(presences(&alice.take(), "").is_empty());
    bob.take();
    env.presence(&alice, None, None).await;
    assert_eq!(presences(&bob.take(), "").len(), 1);

    // alice cancels bob's subscription too.
    env.presence(&alice, Some("unsubscribed"), Some("bob@localhost"))
        .await;
    assert_eq!(
        env.item("alice", "bob").await.unwrap().subscription,
        Subscription::None
    );
    assert_eq!(
        env.item("bob", "alice").await.unwrap().subscription,
        Subscription::None
    );
    let b = bob.take();
    assert_eq!(presences(&b, "unsubscribed").len(), 1);
    assert_eq!(
        presences(&b, "unavailable")[0].attr("from"),
        Some("alice@localhost/a")
    );
    // Repeating changes nothing and routes nothing.
    alice.take();
    env.presence(&alice, Some("unsubscribed"), Some("bob@localhost"))
        .await;
    assert!(bob.take().is_empty());
    assert!(alice.take().is_empty());

    // A denied request leaves no trace in the denier's roster.
    let carol = env.online("carol", "c").await;
    env.presence(&carol, Some("subscribe"), Some("alice@localhost"))
        .await;
    assert!(env.item("alice", "carol").await.unwrap().pending_in);
    env.presence(&alice, Some("unsubscribed"), Some("carol@localhost"))
        .await;
    assert!(env.item("alice", "carol").await.is_none());
    let c = env.item("carol", "alice").await.unwrap();
    assert!(!c.ask && c.subscription == Subscription::None);
    assert!(pushes(&alice.take()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn session_end_and_directed_presence() {
    let env = env().await;
    let mut alice = env.online("alice", "a").await;
    let mut alice2 = env.online("alice", "a2").await;
    let mut bob = env.online("bob", "b").await;
    let mut carol = env.online("carol", "c").await;
    let never = env.connect("alice", "never");
    env.make_both(&mut alice, &mut bob).await;
    alice2.take();

    // alice (no subscription with carol) sends directed presence to carol.
    env.presence(&alice, None, Some("carol@localhost")).await;
    let c = carol.take();
    assert_eq!(presences(&c, "").len(), 1);
    assert_eq!(presences(&c, "")[0].attr("from"), Some("alice@localhost/a"));
    assert_eq!(
        alice.entry.presence().directed,
        vec!["carol@localhost".to_string()]
    );
    // Directed presence to a subscriber is not remembered.
    env.presence(&alice, None, Some("bob@localhost")).await;
    assert_eq!(alice.entry.presence().directed.len(), 1);
    bob.take();

    // A session that was never available ends silently.
    crate::presence::session_ended(&env.core, &never.entry).await;
    env.core
        .router
        .unregister(&never.entry.account, never.entry.id);
    assert!(bob.take().is_empty() && alice.take().is_empty() && carol.take().is_empty());

    // alice/a disconnects: bob, alice/a2 and carol get unavailable.
    crate::presence::session_ended(&env.core, &alice.entry).await;
    env.core
        .router
        .unregister(&alice.entry.account, alice.entry.id);
    for (c, to) in [
        (&mut bob, "bob@localhost/b"),
        (&mut alice2, "alice@localhost/a2"),
        (&mut carol, "carol@localhost"),
    ] {
        let got = c.take();
        let un = presences(&got, "unavailable");
        assert_eq!(un.len(), 1, "{to}: {got:?}");
        assert_eq!(un[0].attr("from"), Some("alice@localhost/a"));
        assert_eq!(un[0].attr("to"), Some(to));
    }
    assert!(alice.take().is_empty());
    assert!(!alice.entry.is_available());
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_presence_probes_and_pending_requests() {
    let env = env().await;
    let mut alice = env.online("alice", "a").await;
    let mut bob = env.online("bob", "b").await;
    env.make_both(&mut alice, &mut bob).await;
    // carol asks alice while alice/x is not yet available.
    let carol = env.online("carol", "c").await;
    env.presence(&carol, Some("subscribe"), Some("alice@localhost"))
        .await;

    let mut x = env.connect("alice", "x");
    env.presence(&x, None, None).await;
    let got = x.take();
    let avail = presences(&got, "");
    let froms: Vec<_> = avail.iter().filter_map(|p| p.attr("from")).collect();
    assert!(
        froms.contains(&"bob@localhost/b"),
        "probe answered: {got:?}"
    );
    assert!(
        froms.contains(&"alice@localhost/a"),
        "own other resource: {got:?}"
    );
    assert!(
        froms.contains(&"alice@localhost/x"),
        "own broadcast: {got:?}"
    );
    assert!(
        avail
            .iter()
            .all(|p| p.attr("to") == Some("alice@localhost/x"))
    );
    // The pending request is redelivered.
    let subs = presences(&got, "subscribe");
    assert_eq!(subs.len(), 1, "{got:?}");
    assert_eq!(subs[0].attr("from"), Some("carol@localhost"));
    // bob sees the new resource.
    assert_eq!(
        presences(&bob.take(), "")[0].attr("from"),
        Some("alice@localhost/x")
    );
    // A second available presence is not initial: no probes, no redelivery.
    env.presence(&x, None, None).await;
    let got = x.take();
    assert_eq!(got.len(), 1, "{got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn roster_remove_cancels_both_directions() {
    let env = env().await;
    let mut alice = env.online("alice", "a").await;
    let mut bob = env.online("bob", "b").await;
    env.make_both(&mut alice, &mut bob).await;
    let res = env
        .roster_set(
            &alice,
            vec![item_el("bob@localhost").with_attr("subscription", "remove")],
        )
        .await;
    assert_eq!(res.attr("type"), Some("result"));
    assert!(env.item("alice", "bob").await.is_none());
    let bi = env.item("bob", "alice").await.unwrap();
    assert_eq!(bi.subscription, Subscription::None);
    let b = bob.take();
    assert_eq!(presences(&b, "unsubscribe").len(), 1);
    assert_eq!(presences(&b, "unsubscribed").len(), 1);
    assert_eq!(
        presences(&b, "unavailable")[0].attr("from"),
        Some("alice@localhost/a")
    );
    let a = alice.take();
    assert_eq!(
        pushes(&a).last().unwrap().attr("subscription"),
        Some("remove")
    );
    assert_eq!(
        presences(&a, "unavailable")[0].attr("from"),
        Some("bob@localhost/b")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_and_invalid() {
    let env = env().await;
    let mut alice = env.online("alice", "a").await;
    env.presence(&alice, Some("subscribe"), Some("someone@elsewhere.example"))
        .await;
    let got = alice.take();
    assert_eq!(
        error_condition(&got[0]).as_deref(),
        Some("remote-server-not-found")
    );
    env.presence(&alice, Some("bogus"), Some("bob@localhost"))
        .await;
    assert_eq!(
        error_condition(&alice.take()[0]).as_deref(),
        Some("bad-request")
    );
    env.presence(&alice, Some("error"), Some("bob@localhost"))
        .await;
    assert!(alice.take().is_empty());
}
