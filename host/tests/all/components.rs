//! The XEP-0114 component port against the real binary with a raw client: the handshake
//! (hex SHA-1 of stream id and secret), refusals (unknown domain, wrong secret, conflict),
//! bad input after the handshake (not-well-formed, invalid-from, unsupported stanza,
//! oversized stanza) and an immediate reconnect after a dropped connection.

use crate::common;

use common::{RawClient, TestServer};
use heliograph::xml::StreamEvent;
use sha1::{Digest, Sha1};

const TENANT: &str = "[tenants.acme]\ndomains = [\"acme.test\"]\n\
    [[tenants.acme.components]]\ndomains = [\"bot.acme.test\"]\nsecret = \"s3cret\"\n";

fn hex_sha1(data: &str) -> String {
    Sha1::digest(data.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opens a component stream for `domain`; returns the client and the stream id.
async fn open(server: &TestServer, domain: &str) -> (RawClient, String) {
    let mut c = RawClient::connect(&server.component).await;
    c.send_raw(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    ))
    .await;
    let id = match c.next_event().await {
        Some(StreamEvent::Open(h)) => h.attr("id").expect("stream id").to_string(),
        other => panic!("expected a stream header, got {other:?}"),
    };
    (c, id)
}

/// A connected, authenticated component.
async fn connect(server: &TestServer) -> RawClient {
    let (mut c, id) = open(server, "bot.acme.test").await;
    c.send_raw(&format!(
        "<handshake>{}</handshake>",
        hex_sha1(&format!("{id}s3cret"))
    ))
    .await;
    let ok = c.next().await;
    assert_eq!(ok.name(), "handshake", "{ok:?}");
    assert_eq!(ok.ns(), "jabber:component:accept");
    c
}

#[tokio::test]
async fn handshake_refusals_and_bad_input() {
    let server = TestServer::start(&[], TENANT);

    let (mut c, _) = open(&server, "nobody.acme.test").await;
    assert_eq!(c.expect_stream_error().await, "host-unknown");

    let (mut c, id) = open(&server, "bot.acme.test").await;
    c.send_raw(&format!(
        "<handshake>{}</handshake>",
        hex_sha1(&format!("{id}wrong"))
    ))
    .await;
    assert_eq!(c.expect_stream_error().await, "not-authorized");

    // A stanza before the handshake is not a handshake.
    let (mut c, _) = open(&server, "bot.acme.test").await;
    c.send_raw("<message from='bot.acme.test' to='a@acme.test'/>")
        .await;
    assert_eq!(c.expect_stream_error().await, "not-authorized");

    let mut c = connect(&server).await;
    // Refused while the first holds the domain (on_conflict = refuse by default).
    let (mut second, id) = open(&server, "bot.acme.test").await;
    second
        .send_raw(&format!(
            "<handshake>{}</handshake>",
            hex_sha1(&format!("{id}s3cret"))
        ))
        .await;
    assert_eq!(second.expect_stream_error().await, "conflict");
    c.send_raw("<message from='bot.acme.test' to='a@acme.test'><body>x</body></message><<")
        .await;
    assert_eq!(c.expect_stream_error().await, "not-well-formed");

    let mut c = connect(&server).await;
    c.send_raw("<message from='alice@acme.test' to='bob@acme.test'/>")
        .await;
    assert_eq!(c.expect_stream_error().await, "invalid-from");

    let mut c = connect(&server).await;
    c.send_raw("<message to='bob@acme.test'/>").await;
    assert_eq!(c.expect_stream_error().await, "invalid-from");

    let mut c = connect(&server).await;
    c.send_raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    assert_eq!(c.expect_stream_error().await, "unsupported-stanza-type");

    let mut c = connect(&server).await;
    let big = format!(
        "<message from='bot.acme.test' to='a@acme.test'><body>{}</body></message>",
        "x".repeat(300 * 1024)
    );
    c.send_raw(&big).await;
    assert_eq!(c.expect_stream_error().await, "policy-violation");

    // Dropped without a stream close: the route goes at once, a reconnect succeeds.
    let c = connect(&server).await;
    drop(c);
    let mut c = connect(&server).await;
    // An iq request with two payloads is answered with bad-request, the stream stays.
    c.send_raw("<iq type='get' id='q' from='bot.acme.test' to='acme.test'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>")
        .await;
    let err = c.next().await;
    assert_eq!(err.attr("type"), Some("error"));
    assert!(format!("{err:?}").contains("bad-request"), "{err:?}");
}
