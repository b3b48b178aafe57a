//! Stream management (XEP-0198) against the real binary: acks both ways, resumption
//! after a TCP reset (and over a half-dead connection, and inline in SASL2), what a
//! resumption of someone else's session learns (nothing), the timeout that sends
//! unacknowledged messages to offline storage, and the limits.

use std::time::Duration;

use crate::common;

use common::web::admin_get;
use common::{RawClient, TestServer, ping_barrier};
use heliograph::xml::{Element, ns};

const SM: &str = "urn:xmpp:sm:3";

fn chat(to: &str, id: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("type", "chat")
        .with_attr("to", to)
        .with_attr("id", id)
        .with_child(Element::new("body", ns::CLIENT).with_text(id))
}

/// Sends `<enable/>` and returns the `<enabled/>` (or `<failed/>`).
async fn enable(c: &mut RawClient, resume: bool) -> Element {
    let attrs = if resume { " resume='true'" } else { "" };
    c.send_raw(&format!("<enable xmlns='{SM}'{attrs}/>")).await;
    c.next_matching(|e| e.ns() == SM && e.name() != "r").await
}

/// Reads messages until `n` have come (skipping acks and requests); their ids.
async fn messages(c: &mut RawClient, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let el = c.next_matching(|e| e.name() == "message").await;
        ids.push(el.attr("id").unwrap_or_default().to_string());
    }
    ids
}

/// A new connection of `user` that authenticates and asks to resume `id` having
/// received `h` stanzas; the connection and the answer (`<resumed/>` or `<failed/>`).
async fn resume(server: &TestServer, user: &str, id: &str, h: u32) -> (RawClient, Element) {
    let mut c = RawClient::authenticated(&server.starttls, user, "pw").await;
    let features = c.open_to("localhost").await;
    assert!(features.has_child("sm", SM), "{features}");
    c.send_raw(&format!("<resume xmlns='{SM}' previd='{id}' h='{h}'/>"))
        .await;
    let answer = c.next().await;
    (c, answer)
}

/// The `detached` flag of `jid` in the sessions API (`None`: no such session).
async fn detached(server: &TestServer, jid: &str) -> Option<bool> {
    let v = admin_get(&server.admin, &server.token, "/api/v1/sessions").await;
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["jid"] == jid)
        .map(|s| s["detached"].as_bool().unwrap())
}

/// Polls `check` until it holds (generous deadline: the machine may be busy).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stream error's condition and the element itself.
async fn stream_error(c: &mut RawClient) -> (String, Element) {
    let el = c.next_matching(|e| e.is("error", ns::STREAM)).await;
    let cond = el
        .children()
        .find(|c| c.ns() == ns::STREAMS_ERRORS && c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_default();
    (cond, el)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_connection_resumes_with_every_unacknowledged_stanza_once_and_in_order() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "");
    let (mut alice, alice_jid) =
        RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    let enabled = enable(&mut alice, true).await;
    assert!(enabled.is("enabled", SM), "{enabled}");
    assert_eq!(enabled.attr("resume"), Some("true"));
    assert_eq!(enabled.attr("max"), Some("300"));
    let id = enabled.attr("id").unwrap().to_string();
    let (mut bob, bob_jid) = RawClient::login(&server.starttls, "bob", "pw", None).await;
    for m in ["m1", "m2", "m3"] {
        bob.send(&chat(&alice_jid, m)).await;
    }
    assert_eq!(messages(&mut alice, 3).await, ["m1", "m2", "m3"]);
    // Alice acknowledges only the first, says something, and her network goes.
    alice.send_raw(&format!("<a xmlns='{SM}' h='1'/>")).await;
    alice.send(&chat(&bob_jid, "from-alice")).await;
    assert_eq!(messages(&mut bob, 1).await, ["from-alice"]);
    alice.reset();
    until("the session to wait for its client", || async {
        detached(&server, &alice_jid).await == Some(true)
    })
    .await;
    bob.send(&chat(&alice_jid, "m4")).await;
    ping_barrier(&mut bob).await;

    // A new connection resumes: the server handled one stanza of hers; she gets what she
    // did not acknowledge, once each, in order.
    let (mut again, resumed) = resume(&server, "alice", &id, 1).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    assert_eq!(resumed.attr("h"), Some("1"));
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    assert_eq!(again.message_ids_until_barrier().await, ["m2", "m3", "m4"]);
    assert_eq!(detached(&server, &alice_jid).await, Some(false));
    // Her count: the message to Bob and the ping.
    again.send_raw(&format!("<r xmlns='{SM}'/>")).await;
    let a = again.next_matching(|e| e.is("a", SM)).await;
    assert_eq!(a.attr("h"), Some("2"));
    // The session goes on as before.
    bob.send(&chat(&alice_jid, "m5")).await;
    assert_eq!(messages(&mut again, 1).await, ["m5"]);
    // Sent to her: m1..m5 and the ping's answer (6). Acknowledging 9 is a lie.
    again.send_raw(&format!("<a xmlns='{SM}' h='6'/>")).await;
    again.send_raw(&format!("<a xmlns='{SM}' h='9'/>")).await;
    let (cond, el) = stream_error(&mut again).await;
    assert_eq!(cond, "undefined-condition");
    let too_high = el
        .child("handled-count-too-high", SM)
        .expect("the SM detail");
    assert_eq!(too_high.attr("h"), Some("9"));
    assert_eq!(too_high.attr("send-count"), Some("6"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_nobody_resumes_sends_its_messages_to_offline_storage() {
    let server =
        TestServer::start(&[("alice", "pw"), ("bob", "pw")], "").with_c2s("resume_timeout = 1");
    let (mut alice, alice_jid) =
        RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    let id = enable(&mut alice, true)
        .await
        .attr("id")
        .unwrap()
        .to_string();
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", None).await;
    bob.send(&chat(&alice_jid, "m1")).await;
    assert_eq!(messages(&mut alice, 1).await, ["m1"]);
    ping_barrier(&mut alice).await;
    alice.reset();
    bob.send(&chat(&alice_jid, "m2")).await;
    ping_barrier(&mut bob).await;
    until("the session to end", || async {
        detached(&server, &alice_jid).await.is_none()
    })
    .await;

    // Too late: <failed/> with how far the server got, and the messages are offline.
    let (mut again, failed) = resume(&server, "alice", &id, 1).await;
    assert!(failed.is("failed", SM), "{failed}");
    assert!(
        failed.has_child("item-not-found", ns::STANZAS_ERRORS),
        "{failed}"
    );
    assert_eq!(failed.attr("h"), Some("1"), "the ping was handled");
    again.bind_here(Some("phone")).await;
    again.send_raw("<presence/>").await;
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let m = again.next_matching(|e| e.name() == "message").await;
        ids.push(m.attr("id").unwrap().to_string());
        let delays: Vec<_> = m.children().filter(|c| c.is("delay", ns::DELAY)).collect();
        assert_eq!(delays.len(), 1, "one stamp from the server: {m}");
        if ids.len() == 1 {
            // m1 may have reached the old connection: it is stamped with when it was
            // sent then, not when it went to offline storage.
            assert_ne!(delays[0].text(), "Offline storage", "{m}");
        }
    }
    assert_eq!(ids, ["m1", "m2"]);
    assert!(again.message_ids_until_barrier().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn resuming_someone_elses_session_is_refused_without_a_clue() {
    let server = TestServer::start(&[("alice", "pw"), ("mallory", "pw")], "");
    let (mut alice, alice_jid) =
        RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    let id = enable(&mut alice, true)
        .await
        .attr("id")
        .unwrap()
        .to_string();
    let (mut mallory, failed) = resume(&server, "mallory", &id, 0).await;
    assert!(failed.is("failed", SM), "{failed}");
    assert!(failed.has_child("item-not-found", ns::STANZAS_ERRORS));
    assert_eq!(failed.attr("h"), None, "nothing about alice's session");
    // The same answer as for an id that never existed.
    mallory
        .send_raw(&format!("<resume xmlns='{SM}' previd='nope' h='0'/>"))
        .await;
    let unknown = mallory.next().await;
    assert_eq!(failed.to_string(), unknown.to_string());
    // Alice's session is untouched.
    let mallory_jid = mallory.bind_here(Some("x")).await;
    mallory.send(&chat(&alice_jid, "hi")).await;
    assert_eq!(messages(&mut alice, 1).await, ["hi"]);
    assert_eq!(detached(&server, &alice_jid).await, Some(false));
    assert!(mallory_jid.starts_with("mallory@"));
}

#[tokio::test(flavor = "multi_thread")]
async fn resumption_replaces_a_half_dead_connection() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "");
    let (mut old, alice_jid) =
        RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    let id = enable(&mut old, true).await.attr("id").unwrap().to_string();
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", None).await;
    bob.send(&chat(&alice_jid, "m1")).await;
    ping_barrier(&mut bob).await;
    // The old connection is still open, but Alice's phone moved on without it.
    let (mut new, resumed) = resume(&server, "alice", &id, 0).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    assert_eq!(messages(&mut new, 1).await, ["m1"]);
    // The server closed the old connection.
    tokio::time::timeout(Duration::from_secs(30), async {
        while old.next_event().await.is_some() {}
    })
    .await
    .expect("the old connection closed");
    bob.send(&chat(&alice_jid, "m2")).await;
    assert_eq!(messages(&mut new, 1).await, ["m2"]);
    assert!(new.message_ids_until_barrier().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_answering_is_waited_for_not_closed() {
    let server =
        TestServer::start(&[("alice", "pw")], "").with_c2s("ping_interval = 1\nping_timeout = 1");
    let (mut old, alice_jid) =
        RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    let id = enable(&mut old, true).await.attr("id").unwrap().to_string();
    // Alice says nothing more: the server asks for an ack (<r/>), gets none, and keeps
    // the session without its connection.
    let r = old.next().await;
    assert!(
        r.is("r", SM),
        "the keepalive is a stream management request: {r}"
    );
    until("the session to be detached", || async {
        detached(&server, &alice_jid).await == Some(true)
    })
    .await;
    let (_new, resumed) = resume(&server, "alice", &id, 0).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_unacknowledged_stanzas_end_the_stream_and_lose_nothing() {
    // At the bound the client is asked for an acknowledgement and sent nothing more; one
    // that does not answer within the write timeout is closed.
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "")
        .with_c2s("max_unacked = 3\nack_request_interval = 0\nwrite_timeout = 2");
    let (mut alice, alice_jid) =
        RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    assert!(enable(&mut alice, false).await.is("enabled", SM));
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", None).await;
    for m in ["m1", "m2", "m3", "m4"] {
        bob.send(&chat(&alice_jid, m)).await;
    }
    let (cond, _) = stream_error(&mut alice).await;
    assert_eq!(cond, "policy-violation");
    until("the session to end", || async {
        detached(&server, &alice_jid).await.is_none()
    })
    .await;
    let (mut again, _) = RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    again.send_raw("<presence/>").await;
    assert_eq!(messages(&mut again, 4).await, ["m1", "m2", "m3", "m4"]);
    assert!(again.message_ids_until_barrier().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_acknowledges_late_is_paced_not_closed() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "")
        .with_c2s("max_unacked = 3\nack_request_interval = 0");
    let (mut alice, alice_jid) =
        RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    assert!(enable(&mut alice, false).await.is("enabled", SM));
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", None).await;
    let sent: Vec<String> = (1..=12).map(|i| format!("m{i}")).collect();
    for m in &sent {
        bob.send(&chat(&alice_jid, m)).await;
    }
    let (mut received, mut acked, mut requests) = (Vec::new(), 0, 0);
    while received.len() < sent.len() {
        let el = alice.next().await;
        if el.name() == "message" {
            received.push(el.attr("id").unwrap_or_default().to_string());
            assert!(
                received.len() - acked <= 3,
                "more than max_unacked outstanding: {received:?}, {acked} acknowledged"
            );
        } else if el.is("r", SM) {
            requests += 1;
            assert_eq!(received.len() - acked, 3, "asked at the bound");
            if requests == 1 {
                // An answer that acknowledges nothing new: still at the bound, so the
                // server asks again rather than wait.
                alice
                    .send_raw(&format!("<a xmlns='{SM}' h='{acked}'/>"))
                    .await;
                let again = alice.next().await;
                assert!(again.is("r", SM), "asked again: {again}");
            }
            acked = received.len();
            alice
                .send_raw(&format!("<a xmlns='{SM}' h='{acked}'/>"))
                .await;
        } else {
            panic!("unexpected {el}");
        }
    }
    assert_eq!(
        received, sent,
        "every message, once, in order, and no stream error"
    );
    assert!(requests >= 3, "{requests} requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl2_resumes_inline_and_bind2_enables_inline() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "");
    let mut alice = RawClient::connect(&server.starttls).await;
    alice.open_and_features().await;
    alice.starttls().await;
    let features = alice.open_and_features().await;
    let inline = features
        .child("authentication", "urn:xmpp:sasl:2")
        .and_then(|a| a.child("inline", "urn:xmpp:sasl:2"))
        .expect("SASL2 inline features");
    assert!(inline.has_child("sm", SM), "{inline}");
    let bind_inline = inline
        .child("bind", "urn:xmpp:bind:0")
        .and_then(|b| b.child("inline", "urn:xmpp:bind:0"))
        .expect("Bind 2 inline features");
    assert!(
        bind_inline.children().any(|f| f.attr("var") == Some(SM)),
        "{bind_inline}"
    );
    let success = alice.auth_sasl2_plain_resumable("alice", "pw").await;
    assert!(success.is("success", "urn:xmpp:sasl:2"), "{success}");
    let enabled = success
        .child("bound", "urn:xmpp:bind:0")
        .and_then(|b| b.child("enabled", SM))
        .expect("enabled inside bound");
    let id = enabled.attr("id").unwrap().to_string();
    let alice_jid = success
        .child_text("authorization-identifier", "urn:xmpp:sasl:2")
        .unwrap();
    alice.next_matching(|e| e.is("features", ns::STREAM)).await;
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", None).await;
    bob.send(&chat(&alice_jid, "m1")).await;
    assert_eq!(messages(&mut alice, 1).await, ["m1"]);
    alice.reset();

    let mut again = RawClient::connect(&server.starttls).await;
    again.open_and_features().await;
    again.starttls().await;
    again.open_and_features().await;
    let success = again
        .auth_sasl2_plain(
            "alice",
            "pw",
            &format!("<user-agent id='ua-1'/><resume xmlns='{SM}' previd='{id}' h='0'/>"),
        )
        .await;
    assert!(success.is("success", "urn:xmpp:sasl:2"), "{success}");
    let resumed = success
        .child("resumed", SM)
        .expect("resumed inside success");
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    assert_eq!(
        success.child_text("authorization-identifier", "urn:xmpp:sasl:2"),
        Some(alice_jid.clone())
    );
    assert_eq!(again.message_ids_until_barrier().await, ["m1"]);
    bob.send(&chat(&alice_jid, "m2")).await;
    assert_eq!(messages(&mut again, 1).await, ["m2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sm_requests_out_of_place_get_failed_and_a_flood_of_r_is_answered() {
    let server = TestServer::start(&[("alice", "pw")], "");
    let mut c = RawClient::authenticated(&server.starttls, "alice", "pw").await;
    c.open_to("localhost").await;
    // Before binding: enable is refused, the stream goes on.
    let failed = enable(&mut c, true).await;
    assert!(failed.is("failed", SM), "{failed}");
    assert!(failed.has_child("unexpected-request", ns::STANZAS_ERRORS));
    c.bind_here(Some("r")).await;
    assert!(enable(&mut c, false).await.is("enabled", SM));
    let again = enable(&mut c, false).await;
    assert!(
        again.has_child("unexpected-request", ns::STANZAS_ERRORS),
        "{again}"
    );
    // A flood of requests: each one answered, nothing else disturbed.
    const N: usize = 2000;
    c.send_raw(&format!("<r xmlns='{SM}'/>").repeat(N)).await;
    let mut acks = 0;
    while acks < N {
        let a = c.next_matching(|e| e.is("a", SM)).await;
        assert_eq!(a.attr("h"), Some("0"));
        acks += 1;
    }
    ping_barrier(&mut c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_without_stream_management_neither_offers_nor_enables_it() {
    let server = TestServer::start(
        &[],
        "[tenants.off]\ndomains = [\"off.test\"]\n[tenants.off.features]\nsm = false\n",
    );
    let r = common::web::http(
        "POST",
        &format!("http://{}/api/v1/users/off.test", server.admin),
        &[
            ("authorization", &format!("Bearer {}", server.token)),
            ("content-type", "application/json"),
        ],
        bytes::Bytes::from_static(br#"{"username":"user","password":"pw"}"#),
    )
    .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let mut c = RawClient::connect(&server.starttls).await;
    c.open_to("off.test").await;
    c.starttls().await;
    c.open_to("off.test").await;
    let r = c.auth_plain("user", "pw").await;
    assert!(r.is("success", ns::SASL), "{r}");
    let features = c.open_to("off.test").await;
    assert!(!features.has_child("sm", SM), "{features}");
    c.bind_here(Some("r")).await;
    let failed = enable(&mut c, true).await;
    assert!(
        failed.has_child("feature-not-implemented", ns::STANZAS_ERRORS),
        "{failed}"
    );
}
