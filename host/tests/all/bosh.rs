//! End-to-end tests of BOSH (XEP-0124 + XEP-0206) against the real binary: login with
//! every mechanism, message exchange with TCP users, session parity, the rid window,
//! acknowledgements, pause, inactivity, overactivity and polling rules, terminate both
//! ways, CORS, gzip, trusted proxies, and every kind of bad input.

use crate::common;

use std::time::Duration;

use common::web::{
    Bosh, HTTPBIND, admin_get, body_text, bosh_post, http, message, terminate_condition,
};
use common::{RawClient, TestServer};
use heliograph::sasl::ScramHash;
use heliograph::xml::ns;

/// Fast settings for tests: short waits, no polling rule unless a test wants one.
const FAST: &str = "bosh_polling = 0\nbosh_max_wait = 2\n";

#[tokio::test(flavor = "multi_thread")]
async fn login_with_plain_and_scram_and_chat_with_a_tcp_user() {
    let server = TestServer::start_http(&[("alice", "pw-a"), ("bob", "pw-b")], FAST);
    let (mut tcp, tcp_jid) = RawClient::login(&server.starttls, "bob", "pw-b", Some("tcp")).await;

    // PLAIN over BOSH.
    let (mut web, web_jid) = Bosh::login(&server.http, "alice", "pw-a", "wait='1' hold='1'").await;
    assert!(web_jid.starts_with("alice@localhost/"), "{web_jid}");

    // BOSH -> TCP
    web.send(&message(&tcp_jid, "hello from bosh")).await;
    let m = tcp.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m).as_deref(), Some("hello from bosh"));
    assert_eq!(m.attr("from"), Some(web_jid.as_str()));

    // TCP -> BOSH (arrives on a held long-poll)
    tcp.send_raw(&message(&web_jid, "hello from tcp")).await;
    let m = web.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m).as_deref(), Some("hello from tcp"));
    assert_eq!(m.attr("from"), Some(tcp_jid.as_str()));

    // Both SCRAM variants over BOSH.
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let mut s = Bosh::create(&server.http, "wait='1' hold='1'").await;
        let jid = s.login_scram(hash, "alice", "pw-a").await;
        assert!(jid.starts_with("alice@localhost/"));
    }

    // A wrong password gets a SASL failure, not a dead session.
    let mut bad = Bosh::create(&server.http, "wait='1' hold='1'").await;
    let payload = base64_plain("alice", "wrong");
    bad.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
    ))
    .await;
    let f = bad.next_matching(|e| e.ns() == ns::SASL).await;
    assert!(f.is("failure", ns::SASL), "{f}");
}

fn base64_plain(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn session_creation_response_content_type_cors_and_gzip() {
    let server = TestServer::start_http(
        &[("alice", "pw")],
        &format!("{FAST}allowed_origins = [\"http://app.test:8080\"]\nbosh_max_hold = 3\n"),
    );
    let url = format!("http://{}/http-bind", server.http);
    let origin = ("origin", "http://app.test:8080");
    let create = format!(
        "<body rid='100' to='localhost' wait='30' hold='7' xmpp:version='1.0' \
         xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'/>"
    );

    // Preflight from an allowed origin; refused for another one.
    let pre = http(
        "OPTIONS",
        &url,
        &[
            origin,
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        "",
    )
    .await;
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.headers["access-control-allow-origin"],
        "http://app.test:8080"
    );
    assert!(
        pre.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert_eq!(pre.headers["access-control-allow-headers"], "content-type");
    let evil = http(
        "OPTIONS",
        &url,
        &[
            ("origin", "http://evil.test"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(evil.status, 403);
    assert!(evil.headers.get("access-control-allow-origin").is_none());

    // Creation: hold clamped to the server's maximum, requests = hold + 1, wait clamped.
    let r = http("POST", &url, &[origin], create.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/xml; charset=utf-8");
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "http://app.test:8080"
    );
    let body = r.element();
    assert_eq!(body.attr("hold"), Some("3"));
    assert_eq!(body.attr("requests"), Some("4"));
    assert_eq!(body.attr("wait"), Some("2"));
    assert_eq!(body.attr("from"), Some("localhost"));
    assert_eq!(body.attr("secure"), Some("false"));
    for a in ["sid", "inactivity", "polling", "maxpause", "authid", "ver"] {
        assert!(body.attr(a).is_some(), "{a} missing in {body}");
    }
    let features = body
        .child("features", ns::STREAM)
        .expect("features in creation response");
    assert!(features.has_child("mechanisms", ns::SASL));
    let sid = body.attr("sid").unwrap().to_string();

    // An empty response after `wait` carries the CORS headers too.
    let started = std::time::Instant::now();
    let empty = http(
        "POST",
        &url,
        &[origin],
        format!("<body rid='101' sid='{sid}' xmlns='{HTTPBIND}'/>"),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "held for wait"
    );
    assert_eq!(empty.status, 200);
    assert_eq!(
        empty.headers["access-control-allow-origin"],
        "http://app.test:8080"
    );
    assert_eq!(empty.headers["content-type"], "text/xml; charset=utf-8");
    let e = empty.element();
    assert!(
        e.children().next().is_none() && e.attr("type").is_none(),
        "{e}"
    );

    // Errors carry them as well; disallowed origins get none.
    let unknown = http(
        "POST",
        &url,
        &[origin],
        format!("<body rid='5' sid='nope' xmlns='{HTTPBIND}'/>"),
    )
    .await;
    assert_eq!(
        unknown.headers["access-control-allow-origin"],
        "http://app.test:8080"
    );
    assert_eq!(
        terminate_condition(&unknown.element()).as_deref(),
        Some("item-not-found")
    );
    let other = http(
        "POST",
        &url,
        &[("origin", "http://evil.test")],
        create.clone(),
    )
    .await;
    assert!(other.headers.get("access-control-allow-origin").is_none());

    // gzip when accepted (and only then).
    let gz = http(
        "POST",
        &url,
        &[("accept-encoding", "gzip, deflate")],
        create.clone(),
    )
    .await;
    assert_eq!(gz.headers["content-encoding"], "gzip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut text)
        .unwrap();
    assert!(text.contains("mechanisms"), "{text}");
    let plain = http("POST", &url, &[], create).await;
    assert!(plain.headers.get("content-encoding").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn rid_window_reorders_retransmits_and_refuses_out_of_window() {
    let server = TestServer::start_http(&[("alice", "pw"), ("bob", "pw")], FAST);
    let (mut tcp, tcp_jid) = RawClient::login(&server.starttls, "bob", "pw", Some("tcp")).await;
    let (mut web, _) = Bosh::login(&server.http, "alice", "pw", "wait='2' hold='2'").await;

    // rid+2 arrives before rid+1: processed after it.
    let r1 = web.next_rid();
    let r2 = web.next_rid();
    let second_msg = message(&tcp_jid, "second");
    let second = web.raw(r2, "", &second_msg);
    let first = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        web.raw(r1, "", &message(&tcp_jid, "first")).await
    };
    let (a, b) = tokio::join!(first, second);
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    let m1 = tcp.next_matching(|e| e.name() == "message").await;
    let m2 = tcp.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m1).as_deref(), Some("first"));
    assert_eq!(body_text(&m2).as_deref(), Some("second"));

    // A repeated rid gets the very same response again, and is not processed twice.
    let r3 = web.next_rid();
    let orig = web
        .raw(
            r3,
            "",
            "<iq xmlns='jabber:client' type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    let again = web
        .raw(
            r3,
            "",
            "<iq xmlns='jabber:client' type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(orig.body, again.body);
    assert!(String::from_utf8_lossy(&orig.body).contains("ping1"));

    // Out of window: the session ends with item-not-found.
    let far = web.rid + 50;
    let r = web.raw(far, "", "").await;
    assert_eq!(
        terminate_condition(&r.element()).as_deref(),
        Some("item-not-found")
    );
    let after = web.raw(web.rid + 1, "", "").await;
    assert_eq!(
        terminate_condition(&after.element()).as_deref(),
        Some("item-not-found")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledgements_report_a_missed_response() {
    let server = TestServer::start_http(&[("alice", "pw")], FAST);
    let mut web = Bosh::create(&server.http, "wait='1' hold='1' ack='1'").await;
    assert_eq!(web.creation.attr("ack"), Some(web.rid.to_string().as_str()));
    let creation_rid = web.rid;
    // The client sends a request and "loses" its response.
    let lost_rid = web.next_rid();
    let lost = web
        .raw(
            lost_rid,
            &format!("ack='{creation_rid}'"),
            &format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                base64_plain("alice", "pw")
            ),
        )
        .await;
    assert!(String::from_utf8_lossy(&lost.body).contains("success"));
    tokio::time::sleep(Duration::from_millis(2300)).await;
    // Its next request still acknowledges only the creation response: the server reports.
    let next = web.next_rid();
    let r = web
        .raw(next, &format!("ack='{creation_rid}'"), "")
        .await
        .element();
    assert_eq!(r.attr("report"), Some(lost_rid.to_string().as_str()), "{r}");
    let time: u64 = r.attr("time").unwrap().parse().unwrap();
    assert!(time >= 2000, "{time}");
    // The client asks for it again and gets the cached response.
    let again = web.raw(lost_rid, "", "").await;
    assert_eq!(again.body, lost.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn overactive_client_is_terminated_with_policy_violation() {
    let server =
        TestServer::start_http(&[("alice", "pw")], "bosh_polling = 0\nbosh_max_wait = 10\n");
    let web = Bosh::create(&server.http, "wait='10' hold='2'").await;
    assert_eq!(web.creation.attr("requests"), Some("3"));
    let base = web.rid;
    // Two held (hold = 2), one early: three unanswered requests, the limit.
    // Each request opens its own connection, so arrival order is not send order: space
    // them out so the held ones are in place before the early one and the extra one.
    let h1 = web.raw(base + 1, "", "");
    let h2 = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        web.raw(base + 2, "", "").await
    };
    let early = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        web.raw(base + 4, "", "").await
    };
    let fourth = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        web.raw(base + 5, "", "").await
    };
    let (a, b, c, d) = tokio::join!(h1, h2, early, fourth);
    assert_eq!(
        terminate_condition(&d.element()).as_deref(),
        Some("policy-violation")
    );
    for r in [a, b] {
        assert_eq!(
            terminate_condition(&r.element()).as_deref(),
            Some("policy-violation")
        );
    }
    // The early one was never processed; it learns the session is gone.
    let c = terminate_condition(&c.element());
    assert!(c.is_some(), "early request answered with a terminate");
    // The server keeps serving others.
    let (_w, jid) = Bosh::login(&server.http, "alice", "pw", "wait='1' hold='1'").await;
    assert!(jid.starts_with("alice@localhost/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn polling_too_often_is_a_policy_violation() {
    let server = TestServer::start_http(&[], "bosh_polling = 5\n");
    let mut web = Bosh::create(&server.http, "wait='1' hold='0'").await;
    assert_eq!(web.creation.attr("polling"), Some("5"));
    assert_eq!(web.creation.attr("requests"), Some("1"));
    let first = web.send("").await;
    assert!(terminate_condition(&first).is_none(), "{first}");
    let second = web.send("").await;
    assert_eq!(
        terminate_condition(&second).as_deref(),
        Some("policy-violation")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inactivity_ends_sessions_and_pause_extends_it() {
    let server = TestServer::start_http(
        &[("alice", "pw")],
        // A longer wait than FAST's, so an answer "at once" is told from a held one with a
        // generous margin; a long maxpause, so a slow machine never outlives the pause.
        "bosh_polling = 0\nbosh_max_wait = 8\nbosh_inactivity = 2\nbosh_max_pause = 30\n",
    );
    // Idle past `inactivity`: gone.
    let web = Bosh::create(&server.http, "wait='1' hold='1'").await;
    assert_eq!(web.creation.attr("inactivity"), Some("2"));
    assert_eq!(web.creation.attr("maxpause"), Some("30"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r = web.raw(web.rid + 1, "", "").await.element();
    assert_eq!(terminate_condition(&r).as_deref(), Some("item-not-found"));

    // A pause answers at once and keeps the session through a longer silence.
    let (mut web, _) = Bosh::login(&server.http, "alice", "pw", "wait='8' hold='1'").await;
    let started = std::time::Instant::now();
    let p = web.send_with("pause='20'", "").await;
    assert!(terminate_condition(&p).is_none(), "{p}");
    // Held, it would have been answered after the 8 s wait.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "pause answered at once, not held: {:?}",
        started.elapsed()
    );
    // Silent longer than `inactivity` (2 s), well within the 20 s pause.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let back = web.send("").await;
    assert!(
        terminate_condition(&back).is_none(),
        "session survived the pause: {back}"
    );

    // A pause longer than maxpause is refused.
    let too_long = web.send_with("pause='60'", "").await;
    assert_eq!(
        terminate_condition(&too_long).as_deref(),
        Some("policy-violation")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn terminate_from_client_and_from_server() {
    let server = TestServer::start_http(&[("alice", "pw"), ("bob", "pw")], FAST);
    let (mut tcp, tcp_jid) = RawClient::login(&server.starttls, "bob", "pw", Some("tcp")).await;

    // Client terminate, with a final stanza in the same body.
    let (mut web, _) = Bosh::login(&server.http, "alice", "pw", "wait='1' hold='1'").await;
    let bye = web
        .send_with("type='terminate'", &message(&tcp_jid, "bye"))
        .await;
    assert_eq!(bye.attr("type"), Some("terminate"), "{bye}");
    let m = tcp.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&m).as_deref(), Some("bye"));
    let gone = web.raw(web.rid + 1, "", "").await.element();
    assert_eq!(
        terminate_condition(&gone).as_deref(),
        Some("item-not-found")
    );

    // Server side: the same resource logs in over TCP; the BOSH session is replaced.
    let (mut web, jid) = Bosh::login(&server.http, "alice", "pw", "wait='2' hold='1'").await;
    let resource = jid.split('/').nth(1).unwrap().to_string();
    let held = web.send("");
    let replace = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        RawClient::login(&server.starttls, "alice", "pw", Some(&resource)).await
    };
    let (held, _newer) = tokio::join!(held, replace);
    let mut held = held;
    if terminate_condition(&held).is_none() {
        held = web.send("").await;
    }
    assert_eq!(
        terminate_condition(&held).as_deref(),
        Some("remote-stream-error"),
        "{held}"
    );
    let err = held
        .child("error", ns::STREAM)
        .expect("stream error inside");
    assert!(err.has_child("conflict", ns::STREAMS_ERRORS), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn session_parity_roster_offline_blocking_and_sessions_api() {
    let server = TestServer::start_http(&[("alice", "pw"), ("bob", "pw")], FAST);
    // bob (TCP) writes to alice while she is offline.
    let (mut tcp, tcp_jid) = RawClient::login(&server.starttls, "bob", "pw", Some("tcp")).await;
    tcp.send_raw(&message("alice@localhost", "while you were away"))
        .await;
    // The offline store has taken it once bob's next stanza is answered.
    common::ping_barrier(&mut tcp).await;

    let (mut web, web_jid) = Bosh::login(&server.http, "alice", "pw", "wait='1' hold='1'").await;
    // Roster get works like on TCP.
    web.send("<iq xmlns='jabber:client' type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = web.next_matching(|e| e.attr("id") == Some("r1")).await;
    assert_eq!(roster.attr("type"), Some("result"), "{roster}");
    assert!(roster.child("query", ns::ROSTER).is_some());
    // Initial presence delivers the offline message with its delay stamp.
    web.send("<presence xmlns='jabber:client'/>").await;
    let offline = web.next_matching(|e| e.name() == "message").await;
    assert_eq!(body_text(&offline).as_deref(), Some("while you were away"));
    assert!(offline.child("delay", ns::DELAY).is_some(), "{offline}");

    // The sessions API lists the BOSH session with its transport and address.
    let sessions = admin_get(&server.admin, &server.token, "/api/v1/sessions").await;
    let me = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["jid"] == web_jid.as_str())
        .expect("listed");
    assert_eq!(me["transport"], "bosh");
    assert!(
        me["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{me}"
    );

    // Blocking (XEP-0191): after alice blocks bob, his messages bounce.
    web.send(&format!(
        "<iq xmlns='jabber:client' type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='{}'/></block></iq>",
        tcp_jid.split('/').next().unwrap()
    ))
    .await;
    let ok = web.next_matching(|e| e.attr("id") == Some("b1")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{ok}");
    tcp.send_raw(&message(&web_jid, "blocked?")).await;
    let bounce = tcp
        .next_matching(|e| e.name() == "message" && e.attr("type") == Some("error"))
        .await;
    assert!(bounce.child("error", ns::CLIENT).is_some(), "{bounce}");
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxy_sets_address_security_and_limits() {
    let server = TestServer::start_http(
        &[("alice", "pw")],
        &format!("{FAST}trusted_proxies = [\"127.0.0.1\"]\nmax_sessions_per_address = 1\n"),
    );
    // Forwarded over plain HTTP from a remote client: not secure, so no authentication.
    let mut insecure = Bosh::create_with_headers(
        &server.http,
        "wait='1' hold='1'",
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    assert_eq!(insecure.creation.attr("secure"), Some("false"));
    insecure
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            base64_plain("alice", "pw")
        ))
        .await;
    let f = insecure.next_matching(|e| e.ns() == ns::SASL).await;
    assert!(
        f.is("failure", ns::SASL) && f.has_child("encryption-required", ns::SASL),
        "{f}"
    );

    // The same client again: over the per-address limit.
    let r = http(
        "POST",
        &format!("http://{}/http-bind", server.http),
        &[("x-forwarded-for", "203.0.113.7")],
        format!("<body rid='9' to='localhost' wait='1' hold='1' xmlns='{HTTPBIND}'/>"),
    )
    .await;
    assert_eq!(
        terminate_condition(&r.element()).as_deref(),
        Some("policy-violation")
    );

    // Another client behind the proxy, which says it used HTTPS: secure, logs in, and is
    // listed with its own address.
    let mut web = Bosh::create_with_headers(
        &server.http,
        "wait='1' hold='1'",
        &[("forwarded", "for=198.51.100.20;proto=https")],
    )
    .await;
    assert_eq!(web.creation.attr("secure"), Some("true"));
    let jid = web.login_plain("alice", "pw").await;
    let sessions = admin_get(&server.admin, &server.token, "/api/v1/sessions").await;
    let me = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["jid"] == jid.as_str())
        .expect("listed");
    assert_eq!(me["address"], "198.51.100.20");
    assert!(
        server.log_text().contains("198.51.100.20"),
        "logs use the client address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_right_condition_and_the_server_keeps_serving() {
    let server = TestServer::start_http(
        &[("alice", "pw")],
        &format!("{FAST}max_body_size = 4096\nrequest_timeout = 2\n"),
    );
    let addr = &server.http;
    let (mut web, _) = Bosh::login(addr, "alice", "pw", "wait='1' hold='1'").await;

    let cases = [
        ("<body rid='1' to='localhost'", "bad-request"),
        (
            "<body rid='1' to='localhost' xmlns='jabber:client'/>",
            "bad-request",
        ),
        (
            "<body to='localhost' wait='1' xmlns='http://jabber.org/protocol/httpbind'/>",
            "bad-request",
        ),
        (
            "<body rid='1' to='localhost' hold='x' xmlns='http://jabber.org/protocol/httpbind'/>",
            "bad-request",
        ),
        (
            "<!DOCTYPE body [<!ENTITY x 'y'>]><body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
            "bad-request",
        ),
        (
            "<body rid='1' sid='does-not-exist' xmlns='http://jabber.org/protocol/httpbind'/>",
            "item-not-found",
        ),
        (
            "<body rid='1' to='elsewhere.test' xmlns='http://jabber.org/protocol/httpbind'/>",
            "host-unknown",
        ),
        (
            "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
            "improper-addressing",
        ),
    ];
    for (body, cond) in cases {
        let r = bosh_post(addr, body).await;
        assert_eq!(r.status, 200, "{body}");
        assert_eq!(r.headers["content-type"], "text/xml; charset=utf-8");
        assert_eq!(
            terminate_condition(&r.element()).as_deref(),
            Some(cond),
            "{body}"
        );
    }

    // Oversized body: 413 with policy-violation, before reading it all.
    let big = format!(
        "<body rid='1' to='localhost' xmlns='http://jabber.org/protocol/httpbind'>{}</body>",
        "<message xmlns='jabber:client'><body>x</body></message>".repeat(200)
    );
    let r = bosh_post(addr, &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        terminate_condition(&r.element()).as_deref(),
        Some("policy-violation")
    );

    // Wrong method and path.
    let r = http("GET", &format!("http://{addr}/http-bind"), &[], "").await;
    assert_eq!(r.status, 405);
    assert!(r.headers["allow"].to_str().unwrap().contains("POST"));
    let r = http("POST", &format!("http://{addr}/nope"), &[], "").await;
    assert_eq!(r.status, 404);

    // A slow client (headers never finished) is cut off; others are served meanwhile.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"POST /http-bind HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A slow body gets 408.
    let mut slow_body = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut slow_body,
        b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<body",
    )
    .await
    .unwrap();
    web.send("<presence xmlns='jabber:client'/>").await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut slow, &mut buf),
    )
    .await
    .expect("slow header client disconnected")
    .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.contains("408"), "{text}");
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut slow_body, &mut buf),
    )
    .await
    .expect("slow body answered")
    .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));

    // The logged-in session still works after all that.
    let r = web
        .send("<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let _ = r;
    let pong = web.next_matching(|e| e.attr("id") == Some("p")).await;
    assert_eq!(pong.attr("type"), Some("result"));
}

/// One BOSH request over an already open HTTPS connection; the parsed `<body/>`.
async fn https_post(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    host: &str,
    body: String,
) -> heliograph::xml::Element {
    use http_body_util::BodyExt as _;
    send.ready().await.unwrap();
    let req = hyper::Request::post(format!("https://{host}/http-bind"))
        .header("host", host)
        .header("content-type", "text/xml; charset=utf-8")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    heliograph::xml::parser::parse_element(
        &bytes,
        HTTPBIND,
        heliograph::xml::ParserLimits {
            max_stanza_bytes: 1 << 20,
            max_depth: 64,
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bosh_over_https_with_the_self_signed_certificate() {
    // TLS on the HTTP listener, and no loopback exemption: only TLS makes auth allowed.
    let server = TestServer::start_http(
        &[("alice", "pw")],
        "tls = true\nallow_insecure_loopback = false\n",
    );
    let tcp = tokio::net::TcpStream::connect(&server.http).await.unwrap();
    let tls = common::tls_connector()
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS handshake with the server's certificate");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let host = server.http.clone();
    let wrap = |rid: u64, sid: &str, attrs: &str, payload: &str| {
        format!(
            "<body rid='{rid}' sid='{sid}' {attrs} xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'>{payload}</body>"
        )
    };
    let created = https_post(
        &mut send,
        &host,
        format!(
            "<body rid='5000' to='localhost' xml:lang='en' ver='1.6' wait='5' hold='1' \
             xmpp:version='1.0' xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'/>"
        ),
    )
    .await;
    assert_eq!(created.attr("secure"), Some("true"), "{created}");
    let sid = created.attr("sid").unwrap().to_string();
    let mut pending: Vec<heliograph::xml::Element> = created.children().cloned().collect();
    let mut rid = 5000;
    if pending.is_empty() {
        rid += 1;
        pending.extend(
            https_post(&mut send, &host, wrap(rid, &sid, "", ""))
                .await
                .children()
                .cloned(),
        );
    }
    let features = pending.remove(0);
    assert!(features.is("features", ns::STREAM), "{features}");
    let mechs = features.to_string();
    assert!(mechs.contains("PLAIN"), "PLAIN offered over TLS: {mechs}");

    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD.encode("\0alice\0pw");
    rid += 1;
    let r = https_post(
        &mut send,
        &host,
        wrap(
            rid,
            &sid,
            "",
            &format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
            ),
        ),
    )
    .await;
    let success = r.children().next().cloned().expect("SASL outcome");
    assert!(success.is("success", ns::SASL), "{success}");
    rid += 1;
    let r = https_post(
        &mut send,
        &host,
        wrap(rid, &sid, "xmpp:restart='true' to='localhost'", ""),
    )
    .await;
    let features = r
        .children()
        .next()
        .cloned()
        .expect("features after restart");
    assert!(features.has_child("bind", ns::BIND), "{features}");
    rid += 1;
    let r = https_post(
        &mut send,
        &host,
        wrap(
            rid,
            &sid,
            "",
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        ),
    )
    .await;
    let bound = r.children().next().cloned().expect("bind result");
    assert_eq!(bound.attr("type"), Some("result"), "{bound}");
    let jid = bound
        .child("bind", ns::BIND)
        .and_then(|b| b.child_text("jid", ns::BIND))
        .unwrap();
    assert!(jid.starts_with("alice@localhost/"), "{jid}");
}

/// A tenant's stanza size limit holds on BOSH as it does on TCP: each stanza of a body
/// is checked against the limit of the session's tenant.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_stanza_size_limit_holds_on_bosh() {
    let server = TestServer::start_full(
        &[],
        "[tenants.small]\ndomains = [\"small.test\"]\nlimits = { max_stanza_size = 2048 }\n",
        "",
        FAST,
    );
    let big = message("someone@localhost", &"x".repeat(4000));
    let create = |to: &str| {
        format!(
            "<body rid='1000' to='{to}' wait='1' hold='1' ver='1.6' xmpp:version='1.0' \
             xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'/>"
        )
    };
    for (domain, expected) in [
        // Read, then refused only for coming before authentication...
        ("localhost", "not-authorized"),
        // ...or over the tenant's limit.
        ("small.test", "policy-violation"),
    ] {
        let created = bosh_post(&server.http, &create(domain)).await.element();
        let sid = created.attr("sid").expect("a session").to_string();
        let r = bosh_post(
            &server.http,
            &format!("<body rid='1001' sid='{sid}' xmlns='{HTTPBIND}'>{big}</body>"),
        )
        .await
        .element();
        assert_eq!(r.attr("type"), Some("terminate"), "{domain}: {r}");
        let err = r.child("error", ns::STREAM).expect("a stream error");
        assert!(
            err.has_child(expected, ns::STREAMS_ERRORS),
            "{domain}: {err}"
        );
    }
}

/// Messages waiting for a BOSH client that stopped making requests are routed again
/// (offline storage here) when the session ends, not lost with it.
#[tokio::test(flavor = "multi_thread")]
async fn messages_waiting_for_a_bosh_session_that_ends_are_rescued() {
    const N: usize = 20;
    let server = TestServer::start_http(
        &[("alice", "pw"), ("bob", "pw")],
        &format!("{FAST}bosh_inactivity = 2\n"),
    );
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "pw", None).await;
    let (mut web, bob_jid) = Bosh::login(&server.http, "bob", "pw", "wait='1' hold='1'").await;
    web.send("<presence xmlns='jabber:client'/>").await;
    // Bob's client goes away without terminating: no more requests.
    for i in 0..N {
        alice
            .send_raw(&format!(
                "<message to='{bob_jid}' type='chat' id='m{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    alice
        .send_raw("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice
        .next_matching(|e| e.is("iq", ns::CLIENT) && e.attr("id") == Some("sync"))
        .await;
    // Past the inactivity limit the session ends; its messages wait offline.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sessions = admin_get(&server.admin, &server.token, "/api/v1/sessions").await;
        let bob_online = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["jid"].as_str() == Some(bob_jid.as_str()));
        if !bob_online {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob's session never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", None).await;
    bob.send_raw("<presence/>").await;
    for i in 0..N {
        let m = bob.next_matching(|e| e.name() == "message").await;
        assert_eq!(
            m.attr("id"),
            Some(format!("m{i}").as_str()),
            "in order: {m}"
        );
    }
}
