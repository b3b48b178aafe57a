//! What flows after authentication, under load: a peer flooding a local client that
//! reads slowly is slowed down (its stream is not read) instead of the client being
//! disconnected, and a peer over the per-domain stanza rate (`[s2s] rate`, `burst`)
//! waits rather than losing stanzas.

use std::time::{Duration, Instant};

use heliograph::xml::ns;

use super::{LogsOnFailure, admin_get, federated, free_port, is_message_from};
use crate::common::*;

/// Two federating servers; b.test gets `b_s2s` in its `[s2s]` table and `b_tables`
/// (other tables) at the end of its configuration.
fn pair_with(b_s2s: &str, b_tables: &str) -> (TestServer, TestServer) {
    let (pa, pb) = (free_port(), free_port());
    let a = federated(
        "a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        "enabled = true",
        "",
        &[("alice", "a.test", "pw-a")],
    );
    let b = federated(
        "b.test",
        pb,
        &[("a.test", format!("127.0.0.1:{pa}"))],
        &format!("enabled = true\n{b_tables}"),
        b_s2s,
        &[("bob", "b.test", "pw-b")],
    );
    (a, b)
}

const FLOOD: usize = 400;
const FLOOD_BODY: usize = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_flooding_a_slow_reader_is_slowed_down_and_the_reader_keeps_its_session() {
    // A small queue per session on b.test, so a recipient whose socket is full soon has
    // a full queue too.
    let (a, b) = pair_with("", "[c2s]\nsession_queue = 16\n");
    let _logs = LogsOnFailure::of(&[&a, &b]);
    let mut bob = RawClient::login_on(&b, "b.test", "bob", "pw-b", "desk").await;
    bob.send_raw("<presence/>").await;
    ping_barrier(&mut bob).await;
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "phone").await;
    let body = "x".repeat(FLOOD_BODY);
    let sender = tokio::spawn(async move {
        for i in 0..FLOOD {
            alice
                .send_raw(&format!(
                    "<message to='bob@b.test/desk' id='m{i}' type='chat'><body>{body}</body></message>"
                ))
                .await;
        }
        ping_barrier(&mut alice).await;
        alice
    });
    // bob reads nothing until b.test says it slowed the peer's stream down.
    let warning = "another server sends faster than a recipient reads";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !b.log_text().contains(warning) {
        assert!(
            Instant::now() < deadline,
            "the peer was never slowed down: {}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then it reads everything, in order, and its session never ended.
    let mut received = 0;
    while received < FLOOD {
        let el = bob.next().await;
        assert!(
            !el.is("error", ns::STREAM),
            "the recipient was disconnected: {el}"
        );
        if is_message_from(&el, "alice@a.test/phone") {
            assert_eq!(
                el.attr("id"),
                Some(format!("m{received}").as_str()),
                "in order"
            );
            received += 1;
        }
    }
    ping_barrier(&mut bob).await;
    let mut alice = sender.await.unwrap();
    ping_barrier(&mut alice).await;
    assert!(
        !b.log_text().contains("closing slow client"),
        "nobody was closed as slow"
    );
    let a_s2s = admin_get(&a, "/api/v1/s2s").await;
    assert_eq!(
        a_s2s["counters"]["bounced"].as_u64(),
        Some(0),
        "nothing bounced on the sending side: {a_s2s}"
    );
}

const BURST: usize = 5;
const RATE: usize = 20;
const SENT: usize = 60;

#[tokio::test]
async fn a_peer_over_its_stanza_rate_waits_and_loses_nothing() {
    let (a, b) = pair_with(&format!("rate = {RATE}\nburst = {BURST}"), "");
    let _logs = LogsOnFailure::of(&[&a, &b]);
    let mut bob = RawClient::login_on(&b, "b.test", "bob", "pw-b", "desk").await;
    bob.send_raw("<presence/>").await;
    ping_barrier(&mut bob).await;
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "phone").await;
    let started = Instant::now();
    for i in 0..SENT {
        alice
            .send_raw(&format!(
                "<message to='bob@b.test/desk' id='r{i}' type='chat'><body>n{i}</body></message>"
            ))
            .await;
    }
    for i in 0..SENT {
        let el = bob
            .next_matching(|e| is_message_from(e, "alice@a.test/phone"))
            .await;
        assert_eq!(el.attr("id"), Some(format!("r{i}").as_str()), "in order");
    }
    // Beyond the burst, b.test took at most RATE a second: the last one cannot have
    // come sooner (a lower bound; a slow machine only makes it later).
    let least = Duration::from_secs_f64((SENT - BURST - 1) as f64 / RATE as f64);
    assert!(
        started.elapsed() >= least,
        "{SENT} stanzas in {:?}, faster than the rate allows ({least:?})",
        started.elapsed()
    );
    let s2s = admin_get(&b, "/api/v1/s2s").await;
    assert!(
        s2s["counters"]["throttled"].as_u64().unwrap_or(0) > 0,
        "{s2s}"
    );
    // The stream is still up, and bob is still there.
    ping_barrier(&mut bob).await;
    let a_s2s = admin_get(&a, "/api/v1/s2s").await;
    assert_eq!(a_s2s["counters"]["bounced"].as_u64(), Some(0), "{a_s2s}");
}
