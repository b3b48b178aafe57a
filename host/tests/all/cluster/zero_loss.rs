//! No message lost when a node dies (`kill -9`): the sending node keeps every message
//! for another node's session until that node says the client has it, and routes again
//! what the dead node never confirmed (docs/CLUSTER.md, "In-flight messages").

use super::*;

const SM: &str = "urn:xmpp:sm:3";

/// Logs `user` in on `server` again and again (a fresh resource each time) until the
/// messages `want` all arrived, from offline storage or live; returns how many arrived
/// twice. Fails after the deadline with what is missing.
pub(super) async fn collect(
    server: &TestServer,
    user: &str,
    password: &str,
    want: &std::collections::BTreeSet<String>,
) -> usize {
    let deadline = Instant::now() + DEADLINE;
    let mut got: Vec<String> = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resource = format!("collect{attempt}");
        let (mut c, _) = RawClient::login(&server.starttls, user, password, Some(&resource)).await;
        c.send_raw("<presence/>").await;
        // Read until every wanted body came or nothing came for a while (the offline
        // messages may not be stored yet: log in again then).
        loop {
            let next = tokio::time::timeout(Duration::from_secs(2), c.next()).await;
            let Ok(el) = next else { break };
            if el.name() == "message"
                && let Some(b) = body_of(&el)
                && want.contains(&b)
            {
                got.push(b);
            }
            if want.iter().all(|w| got.contains(w)) {
                let distinct: std::collections::BTreeSet<&String> = got.iter().collect();
                return got.len() - distinct.len();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{user} lost: {:?}",
            want.iter()
                .filter(|w| !got.contains(w))
                .take(10)
                .collect::<Vec<_>>()
        );
    }
}

/// Bob (n2, stream management) reads every message alice (n1) sends him and never
/// acknowledges one; carol (n2, no stream management) reads hers and never answers the
/// ping n2 sends after them. n2 is killed: n1 never heard that either client has the
/// messages, so it routes them all again (offline storage) and both find every one when
/// they log in on n3. Before n2 confirmed only what its clients had, n2 confirmed each
/// message once it was queued there, and all of them were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_message_its_clients_had_not_acknowledged() {
    let Some(mut c) = cluster().await else {
        return;
    };
    add_user(&c.nodes[0], "localhost", "carol", "pw-c").await;
    let (mut alice, _) = RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("a")).await;
    let (mut bob, bob_jid) = RawClient::login(&c.nodes[1].starttls, "bob", "pw-b", Some("b")).await;
    bob.send_raw(&format!("<enable xmlns='{SM}'/>")).await;
    let enabled = bob.next_matching(|e| e.ns() == SM).await;
    assert!(enabled.is("enabled", SM), "{enabled}");
    bob.send_raw("<presence/>").await;
    let (mut carol, carol_jid) =
        RawClient::login(&c.nodes[1].starttls, "carol", "pw-c", Some("c")).await;
    carol.send_raw("<presence/>").await;
    wait_registry(&c.nodes[0], &bob_jid, Held::On("n2")).await;
    wait_registry(&c.nodes[0], &carol_jid, Held::On("n2")).await;

    const N: usize = 40;
    for i in 0..N {
        alice.send(&chat(&bob_jid, &format!("bob-{i}"))).await;
        alice.send(&chat(&carol_jid, &format!("carol-{i}"))).await;
    }
    // n2 wrote every message to its client: before, it had confirmed them all to n1.
    for i in 0..N {
        expect_body(&mut bob, &format!("bob-{i}")).await;
        expect_body(&mut carol, &format!("carol-{i}")).await;
    }
    c.nodes[1].kill();
    drop(bob);
    drop(carol);
    wait_registry(&c.nodes[0], &bob_jid, Held::Nowhere).await;
    wait_registry(&c.nodes[0], &carol_jid, Held::Nowhere).await;

    for (user, password, prefix) in [("bob", "pw-b", "bob-"), ("carol", "pw-c", "carol-")] {
        let want = (0..N).map(|i| format!("{prefix}{i}")).collect();
        let twice = collect(&c.nodes[2], user, password, &want).await;
        eprintln!("kill -9 of the recipient's node: {user} got all {N} messages, {twice} twice");
    }
}

/// Alice (n2, resumable stream management) reads every message bob (n1) sends her and
/// acknowledges none; her connection is reset and she resumes on n3, reads them all
/// again there and still acknowledges none; n3 is killed. n2 kept the messages' receipts
/// when her session left (n1 still holds the messages in flight), drops them when n3
/// dies, and n1 routes them again: she finds every one when she logs in on n1. Before
/// the receipts moved with the session, n2 confirmed them as it left, and n1 forgot them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumed_on_a_node_that_dies_before_acknowledging_loses_nothing() {
    let Some(mut c) = cluster().await else {
        return;
    };
    let (mut bob, bob_jid) = RawClient::login(&c.nodes[0].starttls, "bob", "pw-b", Some("b")).await;
    let (mut alice, alice_jid) =
        RawClient::login(&c.nodes[1].starttls, "alice", "pw-a", Some("phone")).await;
    alice
        .send_raw(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = alice
        .next_matching(|e| e.ns() == SM && e.name() != "r")
        .await;
    let id = enabled.attr("id").expect("a resumption id").to_string();
    alice.send_raw("<presence/>").await;
    wait_registry(&c.nodes[0], &alice_jid, Held::On("n2")).await;
    wait_registry(&c.nodes[1], &bob_jid, Held::On("n1")).await;

    const N: usize = 30;
    let want: std::collections::BTreeSet<String> = (0..N).map(|i| format!("moved-{i}")).collect();
    for i in 0..N {
        bob.send(&chat(&alice_jid, &format!("moved-{i}"))).await;
    }
    for i in 0..N {
        expect_body(&mut alice, &format!("moved-{i}")).await;
    }
    alice.reset();
    let mut again = RawClient::authenticated(&c.nodes[2].starttls, "alice", "pw-a").await;
    again.open_to("localhost").await;
    again
        .send_raw(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await;
    let resumed = again
        .next_matching(|e| e.ns() == SM && e.name() != "r")
        .await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    for i in 0..N {
        expect_body(&mut again, &format!("moved-{i}")).await;
    }
    wait_registry(&c.nodes[0], &alice_jid, Held::On("n3")).await;
    c.nodes[2].kill();
    drop(again);
    wait_registry(&c.nodes[0], &alice_jid, Held::Nowhere).await;

    let twice = collect(&c.nodes[0], "alice", "pw-a", &want).await;
    eprintln!(
        "kill -9 of the node a session resumed on: alice got all {N} messages, {twice} twice"
    );
    drop(bob);
}

/// A node of the cluster named `name` on NATS at `nats_url`, counting a silent node dead
/// after `dead_after_ms`.
pub(super) fn node_on(db: &TestDb, nats_url: &str, name: &str, dead_after_ms: u64) -> TestServer {
    TestServer::start(
        &[],
        &format!(
            "\n[storage]\nbackend = \"postgres\"\nurl = \"{}\"\n\
             [cluster]\nnats = [\"{nats_url}\"]\nnode = \"{name}\"\nheartbeat_ms = 250\n\
             dead_after_ms = {dead_after_ms}\n",
            db.url
        ),
    )
}

/// `server`'s own view of its NATS connection (`GET /api/v1/cluster`).
async fn nats_connected(server: &TestServer) -> bool {
    let (status, text) = api(server, "GET", "/api/v1/cluster", "").await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["status"]["nats_connected"].as_bool().unwrap_or(false)
}

/// Waits until `server` says its NATS connection is `up` (or not).
async fn wait_nats(server: &TestServer, up: bool) {
    let deadline = Instant::now() + DEADLINE;
    while nats_connected(server).await != up {
        assert!(
            Instant::now() < deadline,
            "{} never saw NATS {}",
            server.admin,
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks for an acknowledgement and returns the `h` of the answer.
async fn ask_ack(c: &mut RawClient) -> u32 {
    c.send_raw(&format!("<r xmlns='{SM}'/>")).await;
    let a = c.next_matching(|e| e.is("a", SM)).await;
    a.attr("h").and_then(|h| h.parse().ok()).unwrap()
}

/// Alice (n1, stream management) writes to bob (n2) while n2 is cut off from NATS (its
/// connection goes through a proxy the test cuts): n1 still counts n2 alive and publishes
/// to n2's subject, where nobody listens any more. n1 is killed before it counts n2 dead,
/// and n2 comes back: every message n1 acknowledged to alice must reach bob. Before n1
/// waited for the recipient's node to take a message, it acknowledged each one as soon
/// as it had read it, and those were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_a_killed_sender_node_acknowledged_reaches_the_recipient() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let Some(db) = TestDb::create() else {
        return;
    };
    let proxy =
        crate::common::tcp_proxy::TcpProxy::start(nats.url.trim_start_matches("nats://")).await;
    let mut n1 = node_on(&db, &nats.url, "n1", 10_000);
    let n2 = node_on(&db, &format!("nats://{}", proxy.addr), "n2", 10_000);
    add_user(&n1, "localhost", "alice", "pw-a").await;
    add_user(&n1, "localhost", "bob", "pw-b").await;
    let (mut bob, bob_jid) = RawClient::login(&n2.starttls, "bob", "pw-b", Some("b")).await;
    bob.send_raw("<presence/>").await;
    let (mut alice, _) = RawClient::login(&n1.starttls, "alice", "pw-a", Some("a")).await;
    alice.send_raw(&format!("<enable xmlns='{SM}'/>")).await;
    let enabled = alice.next_matching(|e| e.ns() == SM).await;
    assert!(enabled.is("enabled", SM), "{enabled}");
    wait_registry(&n1, &bob_jid, Held::On("n2")).await;

    // Before the cut: delivered, and acknowledged once n2 took them.
    const BEFORE: u32 = 10;
    for i in 0..BEFORE {
        alice.send(&chat(&bob_jid, &format!("before-{i}"))).await;
    }
    for i in 0..BEFORE {
        expect_body(&mut bob, &format!("before-{i}")).await;
    }
    let deadline = Instant::now() + DEADLINE;
    while ask_ack(&mut alice).await < BEFORE {
        assert!(
            Instant::now() < deadline,
            "n1 never acknowledged what bob has"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // n2 loses NATS; n1 does not know yet (it counts a node dead after 10 s).
    proxy.cut();
    wait_nats(&n2, false).await;
    const CUT: u32 = 20;
    for i in 0..CUT {
        alice.send(&chat(&bob_jid, &format!("cut-{i}"))).await;
    }
    let acked = ask_ack(&mut alice).await;
    n1.kill();
    proxy.restore();
    wait_nats(&n2, true).await;

    let acked_during_cut = acked.saturating_sub(BEFORE);
    for i in 0..acked_during_cut {
        expect_body(&mut bob, &format!("cut-{i}")).await;
    }
    eprintln!(
        "kill -9 of the sender's node: n1 had acknowledged {acked_during_cut} of the {CUT} \
         messages sent while the recipient's node was cut off; bob got every one of them"
    );
}
