//! Stream management resumption on another node (issue 21, point 6): a client whose
//! connection to n1 was reset resumes on n2 and gets exactly the stanzas it had not
//! acknowledged, once and in order (those sent while it was away included); the registry
//! of every node then points its full JID at n2, and it resumes again on n3 (the id
//! names n1, which says where the session went). SASL2's inline `<resume/>` works the
//! same way, and the session keeps carbons on; so does a session whose old connection
//! is still open (n1 lets it go), and a WebSocket session resumed over TCP. A session
//! whose node was killed, or an id nobody knows, gets `<failed/>` with `item-not-found`.

use std::time::{Duration, Instant};

use heliograph::xml::{Element, ns};

use super::{DEADLINE, Held, chat, cluster, wait_registry};
use crate::common::web::WsClient;
use crate::common::{RawClient, TestServer, ping_barrier};
use tokio_tungstenite::MaybeTlsStream;

const SM: &str = "urn:xmpp:sm:3";
const SASL2: &str = "urn:xmpp:sasl:2";
const CARBONS: &str = "urn:xmpp:carbons:2";

/// Sends `<enable resume='true'/>`; the resumption id.
async fn enable(c: &mut RawClient) -> String {
    c.send_raw(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = c.next_matching(|e| e.ns() == SM && e.name() != "r").await;
    assert!(enabled.is("enabled", SM), "{enabled}");
    enabled.attr("id").expect("a resumption id").to_string()
}

/// A new connection of `user` to `server` asking to resume `id` having received `h`
/// stanzas: the connection and the answer.
async fn resume(
    server: &TestServer,
    user: &str,
    password: &str,
    id: &str,
    h: u32,
) -> (RawClient, Element) {
    let mut c = RawClient::authenticated(&server.starttls, user, password).await;
    let features = c.open_to("localhost").await;
    assert!(features.has_child("sm", SM), "{features}");
    let asked = Instant::now();
    c.send_raw(&format!("<resume xmlns='{SM}' previd='{id}' h='{h}'/>"))
        .await;
    let answer = c.next_matching(|e| e.ns() == SM && e.name() != "r").await;
    // A figure for the report, not a check: `<resume/>` to its answer, on a debug build.
    eprintln!(
        "resume on {}: <{}/> after {:.1} ms",
        server.starttls,
        answer.name(),
        asked.elapsed().as_secs_f64() * 1000.0
    );
    (c, answer)
}

/// Reads until the messages with these ids have come; every message id read, in order
/// (a duplicate or a stranger shows up in it).
async fn read_ids(c: &mut RawClient, want: &[String]) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut got: Vec<String> = Vec::new();
    while !want.iter().all(|w| got.contains(w)) {
        assert!(Instant::now() < deadline, "only {got:?} of {want:?} came");
        let el = c.next_matching(|e| e.name() == "message").await;
        got.push(el.attr("id").unwrap_or_default().to_string());
    }
    got
}

fn ids(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// The `detached` flag of `jid` on `server` (`None`: no local session).
async fn detached(server: &TestServer, jid: &str) -> Option<bool> {
    let v = crate::common::web::admin_get(&server.admin, &server.token, "/api/v1/sessions").await;
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["jid"] == jid && s.get("node").is_none_or(|n| n.is_null()))
        .map(|s| s["detached"].as_bool().unwrap())
}

async fn wait_detached(server: &TestServer, jid: &str) {
    let deadline = Instant::now() + DEADLINE;
    while detached(server, jid).await != Some(true) {
        assert!(Instant::now() < deadline, "{jid} never detached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_node_with_its_unacknowledged_stanzas_once() {
    let Some(c) = cluster().await else {
        return;
    };
    let (n1, n2, n3) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let (mut alice, alice_jid) =
        RawClient::login(&n1.starttls, "alice", "pw-a", Some("phone")).await;
    let id = enable(&mut alice).await;
    assert!(id.starts_with("n1~"), "the id names the node: {id}");
    let (mut bob, bob_jid) = RawClient::login(&n3.starttls, "bob", "pw-b", Some("b")).await;
    wait_registry(n3, &alice_jid, Held::On("n1")).await;
    wait_registry(n1, &bob_jid, Held::On("n3")).await;

    // Ten messages from n3; Alice acknowledges four, says one thing, and her connection
    // is reset.
    for m in ids(1..=10) {
        bob.send(&chat(&alice_jid, &m)).await;
    }
    assert_eq!(read_ids(&mut alice, &ids(1..=10)).await, ids(1..=10));
    alice.send_raw(&format!("<a xmlns='{SM}' h='4'/>")).await;
    alice.send(&chat(&bob_jid, "from-alice")).await;
    bob.next_matching(|e| e.attr("id") == Some("from-alice"))
        .await;
    alice.reset();
    wait_detached(n1, &alice_jid).await;
    // Two more while she is away: queued on n1.
    for m in ids(11..=12) {
        bob.send(&chat(&alice_jid, &m)).await;
    }
    ping_barrier(&mut bob).await;

    // She resumes on n2: n1 hands the session over. Three more are sent meanwhile from
    // n3 (they reach n1 or n2, whichever holds the session then).
    let sender = tokio::spawn(async move {
        for m in ids(13..=15) {
            bob.send(&chat("alice@localhost/phone", &m)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ping_barrier(&mut bob).await;
        bob
    });
    let (mut again, resumed) = resume(n2, "alice", "pw-a", &id, 4).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    assert_eq!(resumed.attr("h"), Some("1"), "n1 handled her one message");
    let mut bob = sender.await.unwrap();
    // Exactly the unacknowledged ones, once each, in order, then the rest.
    let got = read_ids(&mut again, &ids(5..=15)).await;
    assert_eq!(got, ids(5..=15));
    assert_eq!(
        again.message_ids_until_barrier().await,
        Vec::<String>::new()
    );

    // Every registry points her full JID at n2; a message from n3 reaches her there.
    wait_registry(n2, &alice_jid, Held::Here).await;
    wait_registry(n1, &alice_jid, Held::On("n2")).await;
    wait_registry(n3, &alice_jid, Held::On("n2")).await;
    bob.send(&chat(&alice_jid, "m16")).await;
    assert_eq!(read_ids(&mut again, &ids(16..=16)).await, ids(16..=16));
    // Her counts go on: m5..m16 and the barrier's answer were sent on n2 after the 4
    // she acknowledged (17); she acknowledges them all.
    again.send_raw(&format!("<r xmlns='{SM}'/>")).await;
    let a = again.next_matching(|e| e.is("a", SM)).await;
    assert_eq!(
        a.attr("h"),
        Some("2"),
        "her message and the barrier ping: {a}"
    );
    again.send_raw(&format!("<a xmlns='{SM}' h='17'/>")).await;

    // Cut again, resumed on n3: the id still names n1, which says where it went.
    bob.send(&chat(&alice_jid, "m17")).await;
    assert_eq!(read_ids(&mut again, &ids(17..=17)).await, ids(17..=17));
    again.reset();
    wait_detached(n2, &alice_jid).await;
    let (mut third, resumed) = resume(n3, "alice", "pw-a", &id, 17).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    assert_eq!(read_ids(&mut third, &ids(17..=17)).await, ids(17..=17));
    assert_eq!(
        third.message_ids_until_barrier().await,
        Vec::<String>::new()
    );
    wait_registry(n1, &alice_jid, Held::On("n3")).await;
    wait_registry(n2, &alice_jid, Held::On("n3")).await;
    bob.send(&chat(&alice_jid, "m18")).await;
    assert_eq!(read_ids(&mut third, &ids(18..=18)).await, ids(18..=18));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl2_resumes_inline_on_another_node() {
    let Some(c) = cluster().await else {
        return;
    };
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let mut alice = RawClient::connect(&n1.starttls).await;
    alice.open_and_features().await;
    alice.starttls().await;
    alice.open_and_features().await;
    let success = alice.auth_sasl2_plain_resumable("alice", "pw-a").await;
    assert!(success.is("success", SASL2), "{success}");
    let id = success
        .child("bound", "urn:xmpp:bind:0")
        .and_then(|b| b.child("enabled", SM))
        .and_then(|e| e.attr("id"))
        .expect("enabled inside bound")
        .to_string();
    let alice_jid = success
        .child_text("authorization-identifier", SASL2)
        .unwrap();
    alice.next_matching(|e| e.is("features", ns::STREAM)).await;
    alice
        .send_raw(&format!(
            "<iq type='set' id='carbons'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await;
    let on = alice
        .next_matching(|e| e.attr("id") == Some("carbons"))
        .await;
    assert_eq!(on.attr("type"), Some("result"), "{on}");
    let (mut bob, bob_jid) = RawClient::login(&n2.starttls, "bob", "pw-b", None).await;
    wait_registry(n2, &alice_jid, Held::On("n1")).await;
    bob.send(&chat(&alice_jid, "m1")).await;
    assert_eq!(read_ids(&mut alice, &ids(1..=1)).await, ids(1..=1));
    alice.reset();
    wait_detached(n1, &alice_jid).await;

    let mut again = RawClient::connect(&n2.starttls).await;
    again.open_and_features().await;
    again.starttls().await;
    again.open_and_features().await;
    let success = again
        .auth_sasl2_plain(
            "alice",
            "pw-a",
            &format!("<user-agent id='ua-1'/><resume xmlns='{SM}' previd='{id}' h='0'/>"),
        )
        .await;
    assert!(success.is("success", SASL2), "{success}");
    let resumed = success
        .child("resumed", SM)
        .expect("resumed inside success");
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    assert_eq!(
        success.child_text("authorization-identifier", SASL2),
        Some(alice_jid.clone())
    );
    assert_eq!(read_ids(&mut again, &ids(1..=1)).await, ids(1..=1));
    assert_eq!(
        again.message_ids_until_barrier().await,
        Vec::<String>::new()
    );
    wait_registry(n1, &alice_jid, Held::On("n2")).await;
    bob.send(&chat(&alice_jid, "m2")).await;
    assert_eq!(read_ids(&mut again, &ids(2..=2)).await, ids(2..=2));
    // Carbons stayed on: what her other device on n2 sends reaches her. (The carbons
    // setting is known on the session's node only: a device on another node does not
    // copy to her; see docs/CLUSTER.md.)
    let (mut desk, _) = RawClient::login(&n2.starttls, "alice", "pw-a", Some("desk")).await;
    desk.send(&chat(&bob_jid, "from the desk")).await;
    let carbon = again
        .next_matching(|e| e.name() == "message" && e.has_child("sent", CARBONS))
        .await;
    assert!(carbon.to_string().contains("from the desk"), "{carbon}");
}

/// `<failed/>` with `item-not-found`, and no `<resumed/>`.
fn assert_not_found(answer: &Element) {
    assert!(answer.is("failed", SM), "{answer}");
    assert!(
        answer.has_child("item-not-found", ns::STANZAS_ERRORS),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_of_a_session_on_a_killed_node_or_of_an_unknown_id_fails() {
    let Some(mut c) = cluster().await else {
        return;
    };
    let (mut alice, alice_jid) =
        RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("phone")).await;
    let id = enable(&mut alice).await;
    alice.reset();
    wait_detached(&c.nodes[0], &alice_jid).await;

    // An id n1 never issued, and another user's id: n1 answers, nothing is found.
    let (_c, answer) = resume(&c.nodes[1], "alice", "pw-a", "n1~0123", 0).await;
    assert_not_found(&answer);
    let (_c, answer) = resume(&c.nodes[1], "bob", "pw-b", &id, 0).await;
    assert_not_found(&answer);
    // The session is still there for its owner after those.
    assert_eq!(detached(&c.nodes[0], &alice_jid).await, Some(true));

    c.nodes[0].kill();
    let started = Instant::now();
    let (mut again, answer) = resume(&c.nodes[1], "alice", "pw-a", &id, 0).await;
    assert_not_found(&answer);
    assert!(
        started.elapsed() < DEADLINE,
        "the failure came within the deadline"
    );
    // The stream goes on as a fresh one: she binds a new session.
    let jid = again.bind_here(Some("phone")).await;
    assert_eq!(jid, alice_jid);
    wait_registry(&c.nodes[2], &alice_jid, Held::On("n2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_old_connection_is_still_open_moves_too() {
    let Some(c) = cluster().await else {
        return;
    };
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let (mut old, alice_jid) = RawClient::login(&n1.starttls, "alice", "pw-a", Some("phone")).await;
    let id = enable(&mut old).await;
    let (mut bob, _) = RawClient::login(&n2.starttls, "bob", "pw-b", Some("b")).await;
    wait_registry(n2, &alice_jid, Held::On("n1")).await;
    for m in ids(1..=3) {
        bob.send(&chat(&alice_jid, &m)).await;
    }
    assert_eq!(read_ids(&mut old, &ids(1..=3)).await, ids(1..=3));
    // Her phone changed networks: the old connection is not closed (n1 still writes to
    // it), and she resumes on n2 having acknowledged one.
    let (mut again, resumed) = resume(n2, "alice", "pw-a", &id, 1).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    assert_eq!(read_ids(&mut again, &ids(2..=3)).await, ids(2..=3));
    assert_eq!(
        again.message_ids_until_barrier().await,
        Vec::<String>::new()
    );
    wait_registry(n1, &alice_jid, Held::On("n2")).await;
    bob.send(&chat(&alice_jid, "m4")).await;
    assert_eq!(read_ids(&mut again, &ids(4..=4)).await, ids(4..=4));
    // n1 let the old connection go: it ends, and carried nothing sent after the move.
    let mut late = Vec::new();
    while let Some(ev) = old.next_event().await {
        if let heliograph::xml::StreamEvent::Stanza(el) = ev
            && el.name() == "message"
        {
            late.push(el.attr("id").unwrap_or_default().to_string());
        }
    }
    assert_eq!(late, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_resumes_over_tcp_on_another_node() {
    let Some(c) = cluster().await else {
        return;
    };
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let (mut ws, alice_jid) = WsClient::login(&n1.http, "alice", "pw-a").await;
    ws.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = ws.next_matching(|e| e.ns() == SM && e.name() != "r").await;
    assert!(enabled.is("enabled", SM), "{enabled}");
    let id = enabled.attr("id").unwrap().to_string();
    let (mut bob, _) = RawClient::login(&n2.starttls, "bob", "pw-b", Some("b")).await;
    wait_registry(n2, &alice_jid, Held::On("n1")).await;
    for m in ids(1..=2) {
        bob.send(&chat(&alice_jid, &m)).await;
    }
    for m in ids(1..=2) {
        let el = ws.next_matching(|e| e.name() == "message").await;
        assert_eq!(el.attr("id"), Some(m.as_str()));
    }
    // The WebSocket's TCP connection is reset; she comes back over TCP on n2.
    if let MaybeTlsStream::Plain(tcp) = ws.ws.get_ref() {
        tcp.set_zero_linger().unwrap();
    }
    drop(ws);
    wait_detached(n1, &alice_jid).await;
    let (mut again, resumed) = resume(n2, "alice", "pw-a", &id, 0).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    assert_eq!(read_ids(&mut again, &ids(1..=2)).await, ids(1..=2));
    assert_eq!(
        again.message_ids_until_barrier().await,
        Vec::<String>::new()
    );
    wait_registry(n1, &alice_jid, Held::On("n2")).await;
}
