//! End-to-end tests of client connections against the real binary: stream negotiation,
//! every SASL mechanism, binding, routing basics, bad input and shutdown.

use crate::common;

use common::{RawClient, TestServer};
use heliograph::sasl::ScramHash;
use heliograph::xml::{Element, ns};

fn mechanisms(features: &Element) -> Vec<String> {
    features
        .child("mechanisms", ns::SASL)
        .map(|m| m.children().map(|c| c.text()).collect())
        .unwrap_or_default()
}

fn sasl_condition(el: &Element) -> String {
    assert!(el.is("failure", ns::SASL), "expected failure, got {el}");
    el.children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_is_required_before_auth() {
    let server = TestServer::start(&[("alice", "pw")], "");
    let mut c = RawClient::connect(&server.starttls).await;
    let features = c.open_and_features().await;
    let st = features
        .child("starttls", ns::TLS)
        .expect("starttls offered");
    assert!(st.has_child("required", ns::TLS));
    assert!(
        mechanisms(&features).is_empty(),
        "no SASL before TLS: {features}"
    );
    let r = c.auth_plain("alice", "pw").await;
    assert_eq!(sasl_condition(&r), "encryption-required");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scram_mechanism_logs_in_with_channel_binding_where_offered() {
    let server = TestServer::start(&[("alice", "secret")], "");
    for (hash, plus) in [
        (ScramHash::Sha256, true),
        (ScramHash::Sha1, true),
        (ScramHash::Sha256, false),
        (ScramHash::Sha1, false),
    ] {
        let mut c = RawClient::connect(&server.starttls).await;
        c.open_and_features().await;
        c.starttls().await;
        let features = c.open_and_features().await;
        let mechs = mechanisms(&features);
        for m in [
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN",
        ] {
            assert!(mechs.contains(&m.to_string()), "{m} missing from {mechs:?}");
        }
        let cb = features
            .child("sasl-channel-binding", ns::SASL_CB)
            .expect("XEP-0440 advertised");
        assert!(
            cb.children()
                .any(|t| t.attr("type") == Some("tls-exporter"))
        );
        let r = c.auth_scram(hash, plus, "alice", "secret").await;
        assert!(r.is("success", ns::SASL), "{hash:?} plus={plus}: {r}");
        let jid = c.bind(Some("res")).await;
        assert_eq!(jid, "alice@localhost/res");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_refused_and_attempts_are_bounded() {
    let server = TestServer::start(&[("alice", "secret")], "");
    let mut c = RawClient::connect(&server.starttls).await;
    c.open_and_features().await;
    c.starttls().await;
    c.open_and_features().await;
    let r = c
        .auth_scram(ScramHash::Sha256, false, "alice", "wrong")
        .await;
    assert_eq!(sasl_condition(&r), "not-authorized");
    let r = c.auth_plain("nobody", "secret").await;
    assert_eq!(sasl_condition(&r), "not-authorized");
    let r = c.auth_plain("alice", "wrong").await;
    assert_eq!(sasl_condition(&r), "not-authorized");
    // Third failure (the default limit): the stream is closed.
    assert_eq!(c.expect_stream_error().await, "policy-violation");
    // The server keeps serving.
    let (_c, jid) = RawClient::login(&server.starttls, "alice", "secret", None).await;
    assert!(jid.starts_with("alice@localhost/"), "{jid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_over_direct_tls_and_generated_resource() {
    let server = TestServer::start(&[("bob", "pw")], "");
    let mut c = RawClient::connect_direct_tls(&server.direct).await;
    let features = c.open_and_features().await;
    assert!(features.child("starttls", ns::TLS).is_none());
    let r = c.auth_plain("bob", "pw").await;
    assert!(r.is("success", ns::SASL), "{r}");
    let jid = c.bind(None).await;
    assert!(
        jid.starts_with("bob@localhost/") && jid.len() > "bob@localhost/".len(),
        "{jid}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_without_tls_is_too_weak_unless_configured() {
    let server = TestServer::start_with(&[("alice", "pw")], "", "require_tls = false");
    let mut c = RawClient::connect(&server.starttls).await;
    let features = c.open_and_features().await;
    assert!(!mechanisms(&features).contains(&"PLAIN".to_string()));
    let r = c.auth_plain("alice", "pw").await;
    assert_eq!(sasl_condition(&r), "mechanism-too-weak");
    let r = c.auth_scram(ScramHash::Sha256, false, "alice", "pw").await;
    assert!(
        r.is("success", ns::SASL),
        "SCRAM works without TLS when allowed: {r}"
    );

    let server = TestServer::start_with(
        &[("alice", "pw")],
        "",
        "require_tls = false\nallow_plain_without_tls = true",
    );
    let mut c = RawClient::connect(&server.starttls).await;
    let features = c.open_and_features().await;
    assert!(mechanisms(&features).contains(&"PLAIN".to_string()));
    let r = c.auth_plain("alice", "pw").await;
    assert!(r.is("success", ns::SASL), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn newer_session_replaces_older_with_conflict() {
    let server = TestServer::start(&[("alice", "pw")], "");
    let (mut old, _) = RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    let (_new, jid) = RawClient::login(&server.starttls, "alice", "pw", Some("phone")).await;
    assert_eq!(jid, "alice@localhost/phone");
    assert_eq!(old.expect_stream_error().await, "conflict");
}

#[tokio::test(flavor = "multi_thread")]
async fn from_is_stamped_and_spoofing_is_impossible() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "");
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "pw", Some("a")).await;
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", Some("b")).await;
    let msg = Element::new("message", ns::CLIENT)
        .with_attr("to", "bob@localhost/b")
        .with_attr("from", "mallory@localhost/x")
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
    alice.send(&msg).await;
    let got = bob.next_matching(|e| e.name() == "message").await;
    assert_eq!(got.attr("from"), Some("alice@localhost/a"));
    assert_eq!(got.child_text("body", ns::CLIENT).as_deref(), Some("hi"));
}

#[tokio::test(flavor = "multi_thread")]
async fn iq_errors_for_unknown_namespace_unknown_domain_and_offline_full_jid() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "");
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "pw", Some("a")).await;
    let cases = [
        ("localhost", "urn:example:unknown", "service-unavailable"),
        (
            "elsewhere.example",
            "urn:xmpp:ping",
            "remote-server-not-found",
        ),
        (
            "bob@localhost/offline",
            "urn:xmpp:ping",
            "service-unavailable",
        ),
    ];
    for (i, (to, q, cond)) in cases.iter().enumerate() {
        let id = format!("q{i}");
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", id.clone())
            .with_attr("to", *to)
            .with_child(Element::new("query", *q));
        alice.send(&iq).await;
        let r = alice.next_matching(|e| e.attr("id") == Some(&id)).await;
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        let err = r.child("error", ns::CLIENT).unwrap();
        assert!(err.has_child(cond, ns::STANZAS_ERRORS), "{to}: {r}");
    }
    // Ping, version, time and disco answer.
    for (i, q) in [ns::PING, ns::VERSION, ns::TIME, ns::DISCO_INFO]
        .iter()
        .enumerate()
    {
        let id = format!("ok{i}");
        let payload = if *q == ns::PING || *q == ns::TIME {
            Element::new(if *q == ns::PING { "ping" } else { "time" }, *q)
        } else {
            Element::new("query", *q)
        };
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", id.clone())
            .with_attr("to", "localhost")
            .with_child(payload);
        alice.send(&iq).await;
        let r = alice.next_matching(|e| e.attr("id") == Some(&id)).await;
        assert_eq!(r.attr("type"), Some("result"), "{r}");
    }
}

async fn expect_refusal(server: &TestServer, data: &str, condition: &str) {
    let mut c = RawClient::connect(&server.starttls).await;
    c.send_raw(data).await;
    assert_eq!(
        c.expect_stream_error().await,
        condition,
        "for input {data:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_right_stream_error_and_the_server_keeps_serving() {
    let server = TestServer::start(&[("alice", "pw")], "max_stanza_size = 4096");
    let open = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' \
                xmlns:stream='http://etherx.jabber.org/streams'>";
    expect_refusal(&server, "GET / HTTP/1.1\r\n\r\n", "not-well-formed").await;
    expect_refusal(
        &server,
        "<!DOCTYPE foo [<!ENTITY x 'y'>]><stream:stream/>",
        "restricted-xml",
    )
    .await;
    expect_refusal(
        &server,
        &format!("{open}<message><body>&xxe;</body></message>"),
        "restricted-xml",
    )
    .await;
    expect_refusal(
        &server,
        &format!("{open}<!-- comment -->"),
        "restricted-xml",
    )
    .await;
    expect_refusal(&server, &format!("{open}<?pi data?>"), "restricted-xml").await;
    expect_refusal(
        &server,
        &format!("{open}<message><body>{}</body></message>", "x".repeat(8000)),
        "policy-violation",
    )
    .await;
    expect_refusal(&server, &format!("{open}<message></iq>"), "not-well-formed").await;
    expect_refusal(&server, "<stream:stream to='localhost' version='1.0' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>", "invalid-namespace").await;
    expect_refusal(&server, "<stream:stream to='nowhere.example' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", "host-unknown").await;
    expect_refusal(
        &server,
        &format!("{open}<message><body>before auth</body></message>"),
        "not-authorized",
    )
    .await;
    let (_c, jid) = RawClient::login(&server.starttls, "alice", "pw", Some("r")).await;
    assert_eq!(jid, "alice@localhost/r");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_streams_with_system_shutdown_and_exits_zero() {
    let mut server = TestServer::start(&[("alice", "pw")], "");
    let (mut c, _) = RawClient::login(&server.starttls, "alice", "pw", Some("r")).await;
    let stopper = tokio::task::spawn_blocking(move || {
        let code = server.stop();
        (code, server)
    });
    assert_eq!(c.expect_stream_error().await, "system-shutdown");
    let (code, server) = stopper.await.unwrap();
    assert_eq!(code, Some(0), "{}", server.log_text());
}

/// A server stopped the moment it says it is ready (its ready file written) shuts down
/// cleanly: its signal handlers are installed before that. They used to be installed
/// after, and a SIGTERM in between ended the process with the default action (no exit
/// code), as a test stopping a freshly started server on a busy machine found.
#[test]
fn sigterm_right_after_ready_exits_zero() {
    let mut server = TestServer::start(&[], "");
    for round in 0..10 {
        if round > 0 {
            server.launch();
        }
        assert_eq!(
            server.stop(),
            Some(0),
            "round {round}: {}",
            server.log_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn negotiation_timeout_closes_silent_connections() {
    let server = TestServer::start_with(&[], "", "negotiation_timeout = 1");
    let mut c = RawClient::connect(&server.starttls).await;
    c.open_and_features().await;
    assert_eq!(c.expect_stream_error().await, "connection-timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_pings_silent_clients_and_drops_unresponsive_ones() {
    let server =
        TestServer::start(&[("alice", "pw")], "").with_c2s("ping_interval = 1\nping_timeout = 1");
    let (mut c, jid) = RawClient::login(&server.starttls, "alice", "pw", Some("r")).await;
    // First ping: answer it, and the session stays.
    let ping = c.next_matching(|e| e.has_child("ping", ns::PING)).await;
    assert_eq!(ping.attr("type"), Some("get"));
    assert_eq!(ping.attr("to"), Some(jid.as_str()));
    let pong = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("id", ping.attr("id").unwrap())
        .with_attr("to", "localhost");
    c.send(&pong).await;
    // Second ping: stay silent, and the server gives up.
    c.next_matching(|e| e.has_child("ping", ns::PING)).await;
    assert_eq!(c.expect_stream_error().await, "connection-timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_plain_logins_stay_correct_after_a_password_change() {
    let server = TestServer::start(&[("alice", "old")], "");
    for _ in 0..3 {
        let (_c, jid) = RawClient::login(&server.starttls, "alice", "old", None).await;
        assert!(jid.starts_with("alice@localhost/"));
    }
    let api = heliograph::cli::client::ApiClient::new(
        &format!("http://{}", server.admin),
        server.token.clone(),
    )
    .unwrap();
    api.set_password("localhost", "alice", "new").await.unwrap();
    let mut c = RawClient::connect(&server.starttls).await;
    c.open_and_features().await;
    c.starttls().await;
    c.open_and_features().await;
    let r = c.auth_plain("alice", "old").await;
    assert_eq!(
        sasl_condition(&r),
        "not-authorized",
        "the old password must stop working at once"
    );
    let (_c, _) = RawClient::login(&server.starttls, "alice", "new", None).await;
}
