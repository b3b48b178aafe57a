//! A node cut off from NATS and healed (a netsplit of one node): the others count it
//! dead and it counts them dead; when NATS is back every registry holds every session
//! once, where it is (no ghost, no duplicate), and no message sent meanwhile is lost.

use super::*;
use crate::common::tcp_proxy::TcpProxy;
use zero_loss::collect;

/// Waits until `server`'s registry is exactly `want` (full JID, holder: `None` for the
/// server itself), each JID once.
async fn wait_registry_is(server: &TestServer, want: &[(&str, Option<&str>)]) {
    let mut want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(j, n)| (j.to_string(), n.map(str::to_string)))
        .collect();
    want.sort();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut got = sessions(server).await;
        got.sort();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the registry of {} never became {want:?}: {got:?}",
            server.admin
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// n3 reaches NATS through a proxy the test cuts (its connection closed, new ones refused)
/// for longer than `dead_after_ms`, then restores. Alice (n1) writes to carol (n3) right
/// after the cut (n1 still counts n3 alive: NATS drops what it publishes to n3's subject)
/// and after n1 counted n3 dead (offline storage). After healing, the three registries
/// agree again, and carol finds every message (offline storage, at her next login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_and_healed_leaves_no_ghost_and_loses_nothing() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let Some(db) = TestDb::create() else {
        return;
    };
    let proxy = TcpProxy::start(nats.url.trim_start_matches("nats://")).await;
    let n1 = node(&db, &nats, "n1");
    let n2 = node(&db, &nats, "n2");
    let n3 = zero_loss::node_on(&db, &format!("nats://{}", proxy.addr), "n3", 1500);
    let [
        (mut alice, alice_jid),
        (_bob, bob_jid),
        (mut carol, carol_jid),
    ] = alice_bob_carol_online([&n1, &n2, &n3]).await;
    let everyone = |here: &str| -> Vec<(&str, Option<&str>)> {
        [
            (alice_jid.as_str(), "n1"),
            (bob_jid.as_str(), "n2"),
            (carol_jid.as_str(), "n3"),
        ]
        .into_iter()
        .map(|(j, n)| (j, (n != here).then_some(n)))
        .collect()
    };
    for (server, name) in [(&n1, "n1"), (&n2, "n2"), (&n3, "n3")] {
        wait_registry_is(server, &everyone(name)).await;
    }

    proxy.cut();
    const EARLY: usize = 10;
    for i in 0..EARLY {
        alice
            .send(&chat("carol@localhost", &format!("early-{i}")))
            .await;
    }
    // Each side counts the other dead.
    wait_registry_is(&n1, &[(&alice_jid, None), (&bob_jid, Some("n2"))]).await;
    wait_registry_is(&n2, &[(&alice_jid, Some("n1")), (&bob_jid, None)]).await;
    wait_registry_is(&n3, &[(&carol_jid, None)]).await;
    const LATE: usize = 10;
    for i in 0..LATE {
        alice
            .send(&chat("carol@localhost", &format!("late-{i}")))
            .await;
    }
    crate::common::ping_barrier(&mut alice).await;

    proxy.restore();
    let healed = Instant::now();
    for (server, name) in [(&n1, "n1"), (&n2, "n2"), (&n3, "n3")] {
        wait_registry_is(server, &everyone(name)).await;
    }
    let converged = healed.elapsed();
    // Live chat again across the healed link.
    alice.send(&chat(&carol_jid, "healed")).await;
    expect_body(&mut carol, "healed").await;
    // What was sent during the cut waits in offline storage.
    let want = (0..EARLY)
        .map(|i| format!("early-{i}"))
        .chain((0..LATE).map(|i| format!("late-{i}")))
        .collect();
    let twice = collect(&n1, "carol", "pw-c", &want).await;
    eprintln!(
        "NATS cut of n3 healed: registries agreed {} ms after, all {} messages sent during \
         the cut found, {twice} twice",
        converged.as_millis(),
        EARLY + LATE
    );
}
