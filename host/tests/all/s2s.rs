//! Federation between two Heliograph servers on loopback (`a.test` and `b.test`, each
//! with its s2s listener on a port the test picked free and the other in its static
//! host map): messages and iq both ways over STARTTLS + dialback, the streams shown by
//! the admin API, and the failures: a peer that is down, a peer that never answers, a
//! tenant that does not federate or denies the domain.

use crate::common::*;

mod flow;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server for `domain` (tenant `t`, federation on with `tenant_s2s`), its s2s
/// listener on `own_port`, with static host entries (domain, address).
pub(crate) fn federated(
    domain: &str,
    own_port: u16,
    hosts: &[(&str, String)],
    tenant_s2s: &str,
    s2s_extra: &str,
    accounts: &[(&str, &str, &str)],
) -> TestServer {
    let hosts: String = hosts
        .iter()
        .map(|(d, a)| format!("\"{d}\" = \"{a}\"\n"))
        .collect();
    let body = format!(
        "hosts = [\"localhost\"]\n\
         [listen]\nhttp = []\ncomponent = []\n\
         [[listen.c2s]]\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\n\
         [[listen.s2s]]\naddress = \"127.0.0.1:{own_port}\"\n\
         [listen.admin]\naddress = \"127.0.0.1:0\"\n\
         [s2s]\nenabled = true\n{s2s_extra}\n\
         [s2s.hosts]\n{hosts}\n\
         [tenants.t]\ndomains = [\"{domain}\"]\n\
         [tenants.t.s2s]\n{tenant_s2s}\n"
    );
    TestServer::start_config(accounts, &body)
}

/// Two servers federating with each other.
fn pair() -> (TestServer, TestServer) {
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
        "enabled = true",
        "",
        &[("bob", "b.test", "pw-b")],
    );
    (a, b)
}

/// Prints the servers' logs if the test fails while it is alive.
pub(crate) struct LogsOnFailure(Vec<std::path::PathBuf>);

impl LogsOnFailure {
    pub(crate) fn of(servers: &[&TestServer]) -> LogsOnFailure {
        LogsOnFailure(servers.iter().map(|s| s.log.clone()).collect())
    }
}

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.0 {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                eprintln!("--- server log {} ---\n{text}", log.display());
            }
        }
    }
}

pub(crate) fn is_message_from(e: &heliograph::xml::Element, from: &str) -> bool {
    e.name() == "message" && e.attr("from") == Some(from)
}

#[tokio::test]
async fn messages_and_iq_cross_between_two_heliograph_servers() {
    let (mut a, b) = pair();
    let _logs = LogsOnFailure::of(&[&a, &b]);
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "phone").await;
    let mut bob = RawClient::login_on(&b, "b.test", "bob", "pw-b", "desk").await;
    // Available, so a message to the bare JID reaches this session (RFC 6121 §8.5).
    bob.send_raw("<presence/>").await;
    ping_barrier(&mut bob).await;

    alice
        .send_raw(
            "<message to='bob@b.test' type='chat' id='m1'><body>hello from a</body></message>",
        )
        .await;
    let got = bob
        .next_matching(|e| is_message_from(e, "alice@a.test/phone"))
        .await;
    assert_eq!(
        got.child_text("body", heliograph::xml::ns::CLIENT)
            .as_deref(),
        Some("hello from a"),
        "{got}"
    );
    assert_eq!(got.attr("to"), Some("bob@b.test"));

    bob.send_raw(
        "<message to='alice@a.test/phone' type='chat' id='m2'><body>hello from b</body></message>",
    )
    .await;
    let got = alice
        .next_matching(|e| is_message_from(e, "bob@b.test/desk"))
        .await;
    assert_eq!(
        got.child_text("body", heliograph::xml::ns::CLIENT)
            .as_deref(),
        Some("hello from b"),
        "{got}"
    );

    // An iq to the other server itself (XEP-0199 ping) is answered across.
    alice
        .send_raw("<iq type='get' to='b.test' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = alice
        .next_matching(|e| e.name() == "iq" && e.attr("id") == Some("p1"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    assert_eq!(r.attr("from"), Some("b.test"), "{r}");

    // The streams are in the admin API: one outgoing and one incoming on each side.
    let streams = admin_get(&a, "/api/v1/s2s").await;
    let list = streams["streams"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|s| s["direction"] == "outgoing" && s["tls"] == true && s["auth"] == "dialback"),
        "{streams}"
    );
    assert!(
        list.iter()
            .any(|s| s["direction"] == "incoming" && s["pairs"][0][1] == "b.test"),
        "{streams}"
    );

    // a.test shuts down: its streams close cleanly and b.test's side of them ends.
    drop(alice);
    assert_eq!(a.stop(), Some(0), "clean shutdown");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let streams = admin_get(&b, "/api/v1/s2s").await;
        if streams["streams"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "streams left: {streams}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_peer_that_is_down_bounces_with_remote_server_not_found() {
    let closed = free_port();
    let a = federated(
        "a.test",
        free_port(),
        &[("down.test", format!("127.0.0.1:{closed}"))],
        "enabled = true",
        "",
        &[("alice", "a.test", "pw-a")],
    );
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "phone").await;
    alice
        .send_raw("<message to='x@down.test' type='chat' id='d1'><body>anyone?</body></message>")
        .await;
    let err = alice.next_matching(|e| e.attr("id") == Some("d1")).await;
    assert_eq!(err.attr("type"), Some("error"), "{err}");
    assert_eq!(
        stanza_error_condition(&err).as_deref(),
        Some("remote-server-not-found"),
        "{err}"
    );
    assert_eq!(err.attr("from"), Some("x@down.test"), "{err}");
}

#[tokio::test]
async fn a_peer_that_never_answers_bounces_with_remote_server_timeout() {
    // Accepts TCP connections and never sends a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let a = federated(
        "a.test",
        free_port(),
        &[("hang.test", silent_addr.to_string())],
        "enabled = true",
        "connect_timeout = 2",
        &[("alice", "a.test", "pw-a")],
    );
    let _logs = LogsOnFailure::of(&[&a]);
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "phone").await;
    for i in 0..3 {
        alice
            .send_raw(&format!(
                "<message to='x@hang.test' type='chat' id='h{i}'><body>hello?</body></message>"
            ))
            .await;
    }
    // Every queued stanza bounces, none vanishes.
    for i in 0..3 {
        let id = format!("h{i}");
        let err = alice
            .next_matching(|e| e.attr("id") == Some(id.as_str()))
            .await;
        assert_eq!(
            stanza_error_condition(&err).as_deref(),
            Some("remote-server-timeout"),
            "{err}"
        );
    }
    holder.abort();
}

#[tokio::test]
async fn tenants_without_federation_or_denying_the_domain_never_open_a_stream() {
    let peer = free_port();
    let a = federated(
        "a.test",
        free_port(),
        &[("b.test", format!("127.0.0.1:{peer}"))],
        "enabled = true\ndeny = [\"b.test\"]",
        "",
        &[("alice", "a.test", "pw-a")],
    );
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "phone").await;
    alice
        .send_raw("<message to='bob@b.test' type='chat' id='n1'><body>hi</body></message>")
        .await;
    let err = alice.next_matching(|e| e.attr("id") == Some("n1")).await;
    assert_eq!(
        stanza_error_condition(&err).as_deref(),
        Some("remote-server-not-found"),
        "{err}"
    );
    let streams = admin_get(&a, "/api/v1/s2s").await;
    assert_eq!(streams["streams"].as_array().unwrap().len(), 0, "{streams}");
}

/// GET on the admin API with the operator token; the JSON body.
pub(crate) async fn admin_get(server: &TestServer, path: &str) -> serde_json::Value {
    crate::common::web::admin_get(&server.admin, &server.token, path).await
}

/// Opens an s2s stream as `from` to `to` (after STARTTLS, a fresh one); the stream id
/// and the features.
pub(crate) async fn s2s_open(
    c: &mut RawClient,
    from: &str,
    to: &str,
) -> (String, heliograph::xml::Element) {
    c.send_raw(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         from='{from}' to='{to}' version='1.0'>"
    ))
    .await;
    let id = loop {
        match c.next_event().await {
            Some(heliograph::xml::StreamEvent::Open(h)) => {
                break h.attr("id").unwrap_or_default().to_string();
            }
            Some(_) => continue,
            None => panic!("closed before the stream header"),
        }
    };
    let features = c
        .next_matching(|e| e.is("features", heliograph::xml::ns::STREAM))
        .await;
    (id, features)
}

/// A TLS stream to `server`'s s2s listener as `from`, ready for dialback; its id.
async fn s2s_tls(server: &TestServer, from: &str, to: &str) -> (RawClient, String) {
    let mut c = RawClient::connect(&server.s2s).await;
    let (_, features) = s2s_open(&mut c, from, to).await;
    assert!(
        features.has_child("starttls", heliograph::xml::ns::TLS),
        "{features}"
    );
    c.starttls().await;
    let (id, features) = s2s_open(&mut c, from, to).await;
    assert!(
        features.has_child("dialback", "urn:xmpp:features:dialback"),
        "{features}"
    );
    (c, id)
}

#[tokio::test]
async fn bad_input_on_the_s2s_listener_gets_the_rfc_stream_errors() {
    let a = federated(
        "a.test",
        free_port(),
        &[],
        "enabled = true",
        "negotiation_timeout = 1",
        &[],
    );
    let _logs = LogsOnFailure::of(&[&a]);

    // A stream header for a domain not hosted here.
    let mut c = RawClient::connect(&a.s2s).await;
    c.send_raw(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' from='x.example' to='nobody.test' \
         version='1.0'>",
    )
    .await;
    assert_eq!(c.expect_stream_error().await, "host-unknown");

    // Bytes of a TLS ClientHello where the stream header should be.
    let mut c = RawClient::connect(&a.s2s).await;
    c.send_raw("\u{16}\u{3}\u{1}\u{2}\u{0}\u{1}\u{0}\u{1}")
        .await;
    assert_eq!(c.expect_stream_error().await, "not-well-formed");

    // A stanza before TLS.
    let mut c = RawClient::connect(&a.s2s).await;
    s2s_open(&mut c, "evil.test", "a.test").await;
    c.send_raw("<message from='m@evil.test' to='alice@a.test'><body>x</body></message>")
        .await;
    assert_eq!(c.expect_stream_error().await, "policy-violation");

    // A connection that never says anything is closed at the negotiation deadline.
    let mut c = RawClient::connect(&a.s2s).await;
    assert_eq!(c.expect_stream_error().await, "connection-timeout");
}

#[tokio::test]
async fn dialback_keys_are_checked_and_authenticated_peers_cannot_claim_other_domains() {
    let (pa, pb) = (free_port(), free_port());
    let secret = "dialback-secret-of-b";
    let a = federated(
        "a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        "enabled = true",
        "max_connections_per_domain = 1",
        &[("alice", "a.test", "pw-a")],
    );
    let b = federated(
        "b.test",
        pb,
        &[("a.test", format!("127.0.0.1:{pa}"))],
        "enabled = true",
        &format!("dialback_secret = \"{secret}\""),
        &[],
    );
    let _logs = LogsOnFailure::of(&[&a, &b]);

    // A key b.test never issued: a.test asks b.test, which says invalid.
    let (mut c, _) = s2s_tls(&a, "b.test", "a.test").await;
    c.send_raw("<db:result from='b.test' to='a.test'>0123456789abcdef</db:result>")
        .await;
    let r = c
        .next_matching(|e| e.is("result", "jabber:server:dialback"))
        .await;
    assert_eq!(r.attr("type"), Some("invalid"), "{r}");
    assert_eq!(c.expect_stream_error().await, "not-authorized");

    // With b.test's real key (its secret is known here) the pair is accepted...
    let authenticated = || async {
        let (mut c, id) = s2s_tls(&a, "b.test", "a.test").await;
        let key = heliograph::transports::s2s::dialback::key(secret, "a.test", "b.test", &id);
        c.send_raw(&format!(
            "<db:result from='b.test' to='a.test'>{key}</db:result>"
        ))
        .await;
        let r = c
            .next_matching(|e| e.is("result", "jabber:server:dialback"))
            .await;
        assert_eq!(r.attr("type"), Some("valid"), "{r}");
        c
    };
    // ...but a stanza from another domain is refused,
    let mut c = authenticated().await;
    // (one incoming stream per remote domain here: a second one is refused)
    let (mut second, id) = s2s_tls(&a, "b.test", "a.test").await;
    let key = heliograph::transports::s2s::dialback::key(secret, "a.test", "b.test", &id);
    second
        .send_raw(&format!(
            "<db:result from='b.test' to='a.test'>{key}</db:result>"
        ))
        .await;
    let r = second
        .next_matching(|e| e.is("result", "jabber:server:dialback"))
        .await;
    assert_eq!(r.attr("type"), Some("error"), "{r}");
    c.send_raw("<message from='mallory@evil.test' to='alice@a.test'><body>x</body></message>")
        .await;
    assert_eq!(c.expect_stream_error().await, "invalid-from");
    // and one without addresses too (once the refused stream is gone).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while admin_get(&a, "/api/v1/s2s").await["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["direction"] == "incoming" && !s["pairs"].as_array().unwrap().is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the refused stream stays"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut c = authenticated().await;
    c.send_raw("<message to='alice@a.test'><body>x</body></message>")
        .await;
    assert_eq!(c.expect_stream_error().await, "improper-addressing");
}

/// CPU time (user + system) a process has used, from /proc (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Throughput of one federated pair: `S2S_BENCH_MESSAGES` (default 20000) chat messages
/// from alice@a.test to bob@b.test over one s2s stream, in windows of 1000, with the CPU both servers spent
/// per message. Run it on its own (it prints the figures):
/// `cargo test -p heliograph --test all s2s::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let n: usize = std::env::var("S2S_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (a, b) = pair();
    let _logs = LogsOnFailure::of(&[&a, &b]);
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "phone").await;
    let mut bob = RawClient::login_on(&b, "b.test", "bob", "pw-b", "desk").await;
    bob.send_raw("<presence/>").await;
    ping_barrier(&mut bob).await;
    // Warm-up: the stream comes up.
    alice
        .send_raw("<message to='bob@b.test/desk' type='chat' id='w'><body>warm</body></message>")
        .await;
    bob.next_matching(|e| e.attr("id") == Some("w")).await;

    let (cpu_a, cpu_b) = (cpu_seconds(a.pid()), cpu_seconds(b.pid()));
    let started = std::time::Instant::now();
    // Windows of WINDOW messages, each sent in one go and fully received before the
    // next: the test client (one parser, debug build) reads slower than the servers
    // deliver, and a client that does not keep up is disconnected.
    const WINDOW: usize = 1000;
    let mut received = 0;
    let mut sent = 0;
    while sent < n {
        let end = (sent + WINDOW).min(n);
        let mut batch = String::new();
        for i in sent..end {
            batch.push_str(&format!(
                "<message to='bob@b.test/desk' type='chat' id='b{i}'><body>message {i}</body></message>"
            ));
        }
        alice.send_raw(&batch).await;
        let last = format!("b{}", end - 1);
        loop {
            let m = bob.next_matching(|e| e.name() == "message").await;
            received += 1;
            if m.attr("id") == Some(last.as_str()) {
                break;
            }
        }
        sent = end;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_a, cpu_b) = (cpu_seconds(a.pid()) - cpu_a, cpu_seconds(b.pid()) - cpu_b);
    assert_eq!(received, n, "every message arrives, in order");
    println!(
        "s2s throughput: {n} messages in {elapsed:.2}s = {:.0} msg/s; CPU per message: \
         sender server {:.1} us, receiving server {:.1} us",
        n as f64 / elapsed,
        cpu_a / n as f64 * 1e6,
        cpu_b / n as f64 * 1e6
    );
}
