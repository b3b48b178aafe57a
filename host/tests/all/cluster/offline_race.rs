//! A message stored offline on one node while its recipient's first session, on another
//! node, had already read her stored messages (the storing node did not know the session
//! yet): the storing node announces it, and the node holding the session delivers it at
//! once instead of at her next login (docs/CLUSTER.md, "Offline messages stored during a
//! bind elsewhere").

use super::*;
use crate::common::tcp_proxy::TcpProxy;

const DELAY: &str = "urn:xmpp:delay";

/// n1 hears NATS through a proxy that the test makes hold back everything coming to n1
/// (n1's own publications still go out). Bob logs in on n2 and becomes available, so his
/// offline messages (none) are read; n1 never hears of him. Alice on n1 writes to him:
/// n1 stores the message offline, and bob gets it on n2 right away, stamped by offline
/// storage, while n1 still does not know his session. Before the announcement the message
/// waited in storage until bob's next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stored_offline_while_its_recipient_is_online_on_another_node_reaches_him() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let Some(db) = TestDb::create() else {
        return;
    };
    let proxy = TcpProxy::start(nats.url.trim_start_matches("nats://")).await;
    // n1 hears nothing while held: a long dead_after keeps it from counting n2 dead.
    let n1 = zero_loss::node_on(&db, &format!("nats://{}", proxy.addr), "n1", 600_000);
    let n2 = node(&db, &nats, "n2");
    for (user, password) in [("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")] {
        add_user(&n1, "localhost", user, password).await;
    }
    let (mut alice, alice_jid) = RawClient::login(&n1.starttls, "alice", "pw-a", Some("a")).await;
    alice.send_raw("<presence/>").await;
    let (mut carol, carol_jid) = RawClient::login(&n2.starttls, "carol", "pw-c", Some("c")).await;
    carol.send_raw("<presence/>").await;
    // NATS carries both ways for n1.
    wait_available(&n2, &alice_jid).await;
    wait_available(&n1, &carol_jid).await;

    proxy.hold_replies();
    let (mut bob, bob_jid) = RawClient::login(&n2.starttls, "bob", "pw-b", Some("b")).await;
    bob.send_raw("<presence/>").await;
    wait_available(&n2, &bob_jid).await;
    crate::common::ping_barrier(&mut bob).await;
    assert!(
        !sessions(&n1).await.iter().any(|(j, _)| *j == bob_jid),
        "n1 must not know bob's session while it hears nothing"
    );

    alice.send(&chat("bob@localhost", "stored-meanwhile")).await;
    let got = expect_body(&mut bob, "stored-meanwhile").await;
    assert!(
        got.children().any(|c| c.is("delay", DELAY)),
        "the message came through offline storage: {got}"
    );
    assert!(
        !sessions(&n1).await.iter().any(|(j, _)| *j == bob_jid),
        "bob got it while n1 still did not know his session"
    );

    // Healed, n1 learns of bob, and the message does not come a second time.
    proxy.release();
    wait_registry(&n1, &bob_jid, Held::On("n2")).await;
    alice.send(&chat(&bob_jid, "after")).await;
    let mut later = Vec::new();
    loop {
        let el = bob.next().await;
        if el.name() == "message" {
            let id = el.attr("id").unwrap_or_default().to_string();
            later.push(id.clone());
            if id == "after" {
                break;
            }
        }
    }
    later.extend(bob.message_ids_until_barrier().await);
    assert!(
        !later.iter().any(|id| id == "stored-meanwhile"),
        "delivered twice: {later:?}"
    );
    drop(carol);
}
