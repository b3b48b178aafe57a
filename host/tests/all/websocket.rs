//! End-to-end tests of XMPP over WebSocket (RFC 7395) against the real binary: the
//! upgrade (subprotocol, Origin), login with restart, chat with TCP and BOSH users,
//! session parity, pings, the message size limit, see-other-uri and bad input.

use crate::common;

use common::web::{
    Bosh, FRAMING, WsClient, WsEvent, admin_get, assert_session_listed, body_text, http, message,
    ws_connect_status,
};
use common::{RawClient, TestServer};
use heliograph::xml::ns;

#[tokio::test(flavor = "multi_thread")]
async fn login_and_chat_with_tcp_and_bosh_users() {
    let server = TestServer::start_http(
        &[("alice", "pw"), ("bob", "pw"), ("carol", "pw")],
        "bosh_polling = 0\nbosh_max_wait = 2\n",
    );
    let (mut tcp, tcp_jid) = RawClient::login(&server.starttls, "bob", "pw", Some("tcp")).await;
    let (mut ws, ws_jid) = WsClient::login(&server.http, "alice", "pw").await;
    assert!(ws_jid.starts_with("alice@localhost/"));
    let (mut bosh, bosh_jid) = Bosh::login(&server.http, "carol", "pw", "wait='1' hold='1'").await;

    ws.send(&message(&tcp_jid, "ws to tcp")).await;
    let m = tcp.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m).as_deref(), Some("ws to tcp"));
    assert_eq!(m.attr("from"), Some(ws_jid.as_str()));

    tcp.send_raw(&message(&ws_jid, "tcp to ws")).await;
    let m = ws.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m).as_deref(), Some("tcp to ws"));

    ws.send(&message(&bosh_jid, "ws to bosh")).await;
    let m = bosh.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m).as_deref(), Some("ws to bosh"));
    bosh.send(&message(&ws_jid, "bosh to ws")).await;
    let m = ws.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m).as_deref(), Some("bosh to ws"));

    // Parity: roster, and the sessions API lists the transport.
    ws.send("<iq xmlns='jabber:client' type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let r = ws.next_matching(|e| e.attr("id") == Some("r1")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    let sessions = admin_get(&server.admin, &server.token, "/api/v1/sessions").await;
    let list = sessions["sessions"].as_array().unwrap();
    let find = |jid: &str| list.iter().find(|s| s["jid"] == jid).unwrap()["transport"].clone();
    assert_eq!(find(&ws_jid), "websocket");
    assert_eq!(find(&bosh_jid), "bosh");

    // Closing the stream: the server answers <close/> and ends the session.
    ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await;
    let close = ws.next().await;
    assert!(close.is("close", FRAMING), "{close}");
    assert!(matches!(ws.event().await, WsEvent::Close(_) | WsEvent::Eof));
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_messages_and_blocking_work_over_websocket() {
    let server = TestServer::start_http(&[("alice", "pw"), ("bob", "pw")], "");
    let (mut tcp, tcp_jid) = RawClient::login(&server.starttls, "bob", "pw", Some("tcp")).await;
    tcp.send_raw(&message("alice@localhost", "stored for later"))
        .await;
    // The offline store has taken it once bob's next stanza is answered.
    common::ping_barrier(&mut tcp).await;
    let (mut ws, ws_jid) = WsClient::login(&server.http, "alice", "pw").await;
    ws.send("<presence xmlns='jabber:client'/>").await;
    let m = ws.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m).as_deref(), Some("stored for later"));
    assert!(m.child("delay", ns::DELAY).is_some());
    ws.send("<iq xmlns='jabber:client' type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>")
        .await;
    let ok = ws.next_matching(|e| e.attr("id") == Some("b1")).await;
    assert_eq!(ok.attr("type"), Some("result"));
    tcp.send_raw(&message(&ws_jid, "blocked")).await;
    let bounce = tcp
        .next_matching(|e| e.name() == "message" && e.attr("type") == Some("error"))
        .await;
    assert!(bounce.child("error", ns::CLIENT).is_some());
    let _ = tcp_jid;
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_needs_the_xmpp_subprotocol_and_an_allowed_origin() {
    let server = TestServer::start_http(&[], "allowed_origins = [\"http://app.test\"]\n");
    let a = &server.http;
    assert_eq!(ws_connect_status(a, None, None).await, 400);
    assert_eq!(ws_connect_status(a, Some("chat"), None).await, 400);
    assert_eq!(ws_connect_status(a, Some("xmpp"), None).await, 101);
    assert_eq!(
        ws_connect_status(a, Some("xmpp"), Some("http://evil.test")).await,
        403
    );
    assert_eq!(
        ws_connect_status(a, Some("chat, xmpp"), Some("http://app.test")).await,
        101
    );
    // Not an upgrade at all.
    let r = common::web::http("GET", &format!("http://{a}/xmpp-websocket"), &[], "").await;
    assert_eq!(r.status, 426);
}

#[tokio::test(flavor = "multi_thread")]
async fn pings_size_limit_and_bad_xml() {
    let server = TestServer::start_http(
        &[("alice", "pw")],
        "websocket_ping_interval = 1\nmax_body_size = 2048\n",
    );
    // The server pings a quiet client.
    let (mut ws, _) = WsClient::login(&server.http, "alice", "pw").await;
    let wait = tokio::time::timeout(std::time::Duration::from_millis(2500), ws.event()).await;
    assert!(wait.is_err(), "nothing but pings expected");
    assert!(ws.pings >= 1, "no ping received");

    // A message over the limit: close code 1009 (message too big).
    let mut big = WsClient::connect(&server.http).await;
    big.open_and_features().await;
    big.send(&format!(
        "<message xmlns='jabber:client'><body>{}</body></message>",
        "x".repeat(4000)
    ))
    .await;
    let mut code = None;
    loop {
        match big.event().await {
            WsEvent::Element(_) => continue,
            WsEvent::Close(c) => {
                code = c;
                break;
            }
            WsEvent::Eof => break,
        }
    }
    assert_eq!(code, Some(1009));

    // Malformed XML: stream error not-well-formed.
    let mut bad = WsClient::connect(&server.http).await;
    bad.open_and_features().await;
    bad.send("<message xmlns='jabber:client'><body>oops</message>")
        .await;
    assert_eq!(bad.expect_stream_error().await, "not-well-formed");

    // Restricted XML.
    let mut bad = WsClient::connect(&server.http).await;
    bad.open_and_features().await;
    bad.send("<?xml-stylesheet href='x'?><message xmlns='jabber:client'/>")
        .await;
    assert_eq!(bad.expect_stream_error().await, "restricted-xml");

    // Wrong stream namespace in <open/>.
    let mut bad = WsClient::connect(&server.http).await;
    bad.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='nowhere.test' version='1.0'/>")
        .await;
    assert_eq!(bad.expect_stream_error().await, "host-unknown");

    // The first session is still alive.
    ws.send("<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let pong = ws.next_matching(|e| e.attr("id") == Some("p")).await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[tokio::test(flavor = "multi_thread")]
async fn see_other_uri_sends_clients_elsewhere() {
    let server = TestServer::start_http(
        &[],
        "see_other_uri = \"wss://other.example/xmpp-websocket\"\n",
    );
    let mut ws = WsClient::connect(&server.http).await;
    ws.open().await;
    let open = ws.next().await;
    assert!(open.is("open", FRAMING), "{open}");
    let close = ws.next().await;
    assert!(close.is("close", FRAMING), "{close}");
    assert_eq!(
        close.attr("see-other-uri"),
        Some("wss://other.example/xmpp-websocket")
    );
}

/// PLAIN login over WebSocket to `domain` (the common helper speaks to localhost).
async fn ws_login_to(addr: &str, domain: &str, user: &str) -> (WsClient, String) {
    let mut c = WsClient::connect(addr).await;
    let open = format!("<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>");
    c.send(&open).await;
    c.next_matching(|e| e.is("features", ns::STREAM)).await;
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("\0{user}\0pw"),
    );
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
    ))
    .await;
    let outcome = c.next().await;
    assert!(outcome.is("success", ns::SASL), "{outcome}");
    c.send(&open).await;
    c.next_matching(|e| e.is("features", ns::STREAM)).await;
    c.send("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .await;
    let r = c.next_matching(|e| e.attr("id") == Some("b")).await;
    let jid = r
        .child("bind", ns::BIND)
        .unwrap()
        .child_text("jid", ns::BIND)
        .unwrap();
    (c, jid)
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_stanza_rate_slows_a_websocket_session_without_dropping() {
    let server = TestServer::start_http(&[], "");
    let auth = format!("Bearer {}", server.token);
    let post = |path: String, body: &'static str| {
        let auth = auth.clone();
        let url = format!("http://{}{path}", server.admin);
        async move {
            let h = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let r = http("POST", &url, &h, body).await;
            assert!(r.status.is_success(), "{path}: {:?}", r.body);
        }
    };
    // A tenant shaped to 10 stanzas/s with a burst of 4.
    post(
        "/api/v1/tenants".into(),
        r#"{"name":"shaped","domains":["shaped.test"],"limits":{"stanza_rate":10,"stanza_burst":4}}"#,
    )
    .await;
    post(
        "/api/v1/users/shaped.test".into(),
        r#"{"username":"alice","password":"pw"}"#,
    )
    .await;
    post(
        "/api/v1/users/shaped.test".into(),
        r#"{"username":"bob","password":"pw"}"#,
    )
    .await;
    let (mut bob, bob_jid) = ws_login_to(&server.http, "shaped.test", "bob").await;
    let (mut alice, _) = ws_login_to(&server.http, "shaped.test", "alice").await;
    // 16 stanzas at once: 4 pass on the burst, the other 12 wait 0.1 s each.
    let t0 = std::time::Instant::now();
    for i in 0..16 {
        alice.send(&message(&bob_jid, &format!("m{i}"))).await;
    }
    for i in 0..16 {
        let m = bob.next_matching(|e| e.name() == "message").await;
        assert_eq!(body_text(&m), Some(format!("m{i}")), "in order, none lost");
    }
    let took = t0.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1000),
        "not shaped: {took:?}"
    );
    // Not slowed far past the rate (a generous bound: the machine may be busy).
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
}

/// A tenant whose stanzas may be 2,048 bytes at most (the server's default is far larger).
const SMALL_TENANT: &str =
    "[tenants.small]\ndomains = [\"small.test\"]\nlimits = { max_stanza_size = 2048 }\n";

/// A tenant's stanza size limit holds on WebSocket as it does on TCP.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_stanza_size_limit_holds_on_websocket() {
    let server = TestServer::start_full(&[], SMALL_TENANT, "", "");
    let big = message("someone@localhost", &"x".repeat(4000));
    // On the default tenant a 4 KB stanza is read (and refused only for coming before
    // authentication)...
    let mut c = WsClient::connect(&server.http).await;
    c.send(&format!(
        "<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
    ))
    .await;
    c.next_matching(|e| e.is("features", ns::STREAM)).await;
    c.send(&big).await;
    assert_eq!(c.expect_stream_error().await, "not-authorized");
    // ...on small.test it is over the tenant's limit.
    let mut c = WsClient::connect(&server.http).await;
    c.send(&format!(
        "<open xmlns='{FRAMING}' to='small.test' version='1.0'/>"
    ))
    .await;
    c.next_matching(|e| e.is("features", ns::STREAM)).await;
    c.send(&big).await;
    assert_eq!(c.expect_stream_error().await, "policy-violation");
}

/// Messages accepted for a WebSocket session that stopped reading, and still queued when
/// the session ends (a drain here), are routed again (offline storage), not lost.
#[tokio::test(flavor = "multi_thread")]
async fn messages_queued_for_a_websocket_session_that_ends_are_rescued() {
    const N: usize = 1500;
    let mut server = TestServer::start_full(
        &[("alice", "pw"), ("bob", "pw")],
        "[drain]\ngrace_period = 1\ndeadline = 3\n",
        "",
        "",
    )
    // A queue that holds every message: alice is never made to wait for bob (a sender
    // waits up to the write timeout for a full queue, and the session is closed after
    // it, which would rescue the messages before the drain instead of by it).
    .with_c2s("max_offline_messages = 10000\nsession_queue = 2048\n");
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "pw", None).await;
    let (mut bob, bob_jid) = WsClient::login(&server.http, "bob", "pw").await;
    bob.send("<presence xmlns='jabber:client'/>").await;
    // Bob stops reading: 12 MiB of messages fill the socket buffers, the rest waits in
    // the queue.
    let filler = "x".repeat(8192);
    for i in 0..N {
        alice
            .send_raw(&format!(
                "<message to='{bob_jid}' type='chat' id='m{i}'><body>{filler}</body></message>"
            ))
            .await;
    }
    alice
        .send_raw("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice
        .next_matching(|e| e.is("iq", ns::CLIENT) && e.attr("id") == Some("sync"))
        .await;
    // Bob's session is still there, its messages queued: the drain ends it.
    assert_session_listed(
        &server.admin,
        &server.token,
        &bob_jid,
        "his session ended before the drain",
    )
    .await;
    let auth = format!("Bearer {}", server.token);
    let r = http(
        "POST",
        &format!("http://{}/api/v1/drain", server.admin),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status.as_u16(), 202);
    assert_eq!(
        server.wait_exit(std::time::Duration::from_secs(30)),
        Some(0),
        "{}",
        server.log_text()
    );
    // What reached bob before the server went away...
    let mut seen = std::collections::BTreeSet::new();
    loop {
        match bob.event().await {
            WsEvent::Element(el) if el.name() == "message" => {
                if let Some(i) = el.attr("id").and_then(|id| id.strip_prefix('m')) {
                    seen.insert(i.parse::<usize>().unwrap());
                }
            }
            WsEvent::Element(_) => {}
            _ => break,
        }
    }
    let direct = seen.len();
    assert!(
        direct < N,
        "bob's buffers took everything; the test proves nothing"
    );
    // ...and what was stored for him instead.
    server.launch();
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", None).await;
    bob.send_raw("<presence/>").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.len() < N && std::time::Instant::now() < deadline {
        let Ok(el) = tokio::time::timeout(std::time::Duration::from_secs(5), bob.next()).await
        else {
            break;
        };
        if el.name() != "message" {
            continue;
        }
        if let Some(i) = el.attr("id").and_then(|id| id.strip_prefix('m')) {
            seen.insert(i.parse::<usize>().unwrap());
        }
    }
    let missing: Vec<_> = (0..N).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} messages lost ({direct} read before the drain): first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
    );
}
