//! s2s resolution through DNS (RFC 6120 §3.2, RFC 2782, XEP-0368): `a.test` finds
//! `b.test` through a small DNS server the test runs on a loopback UDP port (real DNS wire
//! format, hickory-proto's messages), named by `[s2s] resolver`. SRV targets in priority
//! order (lowest first, past one that is down), an `_xmpps-server` target reached with direct TLS, the A
//! record on the fallback port without SRV, and a "." target that bounces at once.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record};

use crate::common::*;
use crate::s2s::{LogsOnFailure, admin_get, free_port, is_message_from};

/// A DNS server on a loopback UDP port answering from a fixed table; unknown names get
/// NXDOMAIN, known names without the asked type an empty answer. Stops when dropped.
struct TestDns {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestDns {
    async fn start(records: Vec<Record>) -> TestDns {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mut table: HashMap<String, Vec<Record>> = HashMap::new();
        for r in records {
            table
                .entry(r.name.to_ascii().to_ascii_lowercase())
                .or_default()
                .push(r);
        }
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::response(query.metadata.id, OpCode::Query);
                reply.metadata.message_type = MessageType::Response;
                reply.metadata.authoritative = true;
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                for q in &query.queries {
                    reply.add_query(q.clone());
                    match table.get(&q.name().to_ascii().to_ascii_lowercase()) {
                        None => reply.metadata.response_code = ResponseCode::NXDomain,
                        Some(rs) => {
                            reply.add_answers(
                                rs.iter()
                                    .filter(|r| r.record_type() == q.query_type())
                                    .cloned(),
                            );
                        }
                    }
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        TestDns { addr, task }
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn a_record(host: &str) -> Record {
    Record::from_rdata(name(host), 60, RData::A(A(Ipv4Addr::LOCALHOST)))
}

fn srv_record(service: &str, priority: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(service),
        60,
        RData::SRV(SRV::new(priority, 0, port, name(target))),
    )
}

/// A server for `domain` with these `[[listen.s2s]]` listeners and `[s2s]` extras,
/// federation on for its tenant, the static host entries given.
fn server(
    domain: &str,
    listeners: &str,
    s2s_extra: &str,
    hosts: &[(&str, String)],
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
         {listeners}\n\
         [listen.admin]\naddress = \"127.0.0.1:0\"\n\
         [s2s]\nenabled = true\n{s2s_extra}\n\
         [s2s.hosts]\n{hosts}\n\
         [tenants.t]\ndomains = [\"{domain}\"]\n\
         [tenants.t.s2s]\nenabled = true\n"
    );
    TestServer::start_config(accounts, &body)
}

fn starttls_listener(port: u16) -> String {
    format!("[[listen.s2s]]\naddress = \"127.0.0.1:{port}\"\n")
}

/// `a.test` resolving through `dns` (with `extra` in its `[s2s]`), and `b.test` on
/// `b_listeners`, which reaches `a.test` through its static map (dialback checks).
fn resolving_pair(dns: &TestDns, extra: &str, b_listeners: &str) -> (TestServer, TestServer) {
    let pa = free_port();
    let a = server(
        "a.test",
        &starttls_listener(pa),
        &format!("resolver = \"{}\"\n{extra}", dns.addr),
        &[],
        &[("alice", "a.test", "pw-a")],
    );
    let b = server(
        "b.test",
        b_listeners,
        "",
        &[("a.test", format!("127.0.0.1:{pa}"))],
        &[("bob", "b.test", "pw-b")],
    );
    (a, b)
}

async fn alice_reaches_bob(a: &TestServer, b: &TestServer) {
    let mut alice = RawClient::login_on(a, "a.test", "alice", "pw-a", "phone").await;
    let mut bob = RawClient::login_on(b, "b.test", "bob", "pw-b", "desk").await;
    bob.send_raw("<presence/>").await;
    ping_barrier(&mut bob).await;
    alice
        .send_raw("<message to='bob@b.test' type='chat' id='r1'><body>via DNS</body></message>")
        .await;
    let got = bob
        .next_matching(|e| is_message_from(e, "alice@a.test/phone"))
        .await;
    assert_eq!(
        got.child_text("body", heliograph::xml::ns::CLIENT)
            .as_deref(),
        Some("via DNS"),
        "{got}"
    );
}

#[tokio::test]
async fn srv_targets_are_tried_in_priority_order_past_one_that_is_down() {
    let (down, pb) = (free_port(), free_port());
    let dns = TestDns::start(vec![
        srv_record("_xmpp-server._tcp.b.test.", 10, down, "dead.b.test."),
        srv_record("_xmpp-server._tcp.b.test.", 20, pb, "live.b.test."),
        a_record("dead.b.test."),
        a_record("live.b.test."),
    ])
    .await;
    let (a, b) = resolving_pair(&dns, "", &starttls_listener(pb));
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_reaches_bob(&a, &b).await;
}

#[tokio::test]
async fn the_lowest_priority_number_is_tried_first() {
    // Priority 20 accepts connections and never answers: trying it first would end
    // in remote-server-timeout instead of a delivery.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let pb = free_port();
    let dns = TestDns::start(vec![
        srv_record(
            "_xmpp-server._tcp.b.test.",
            20,
            silent_port,
            "silent.b.test.",
        ),
        srv_record("_xmpp-server._tcp.b.test.", 10, pb, "live.b.test."),
        a_record("silent.b.test."),
        a_record("live.b.test."),
    ])
    .await;
    let (a, b) = resolving_pair(&dns, "connect_timeout = 10", &starttls_listener(pb));
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_reaches_bob(&a, &b).await;
    holder.abort();
}

#[tokio::test]
async fn an_xmpps_server_target_is_reached_with_direct_tls() {
    let pb = free_port();
    let dns = TestDns::start(vec![
        srv_record("_xmpps-server._tcp.b.test.", 10, pb, "tls.b.test."),
        a_record("tls.b.test."),
    ])
    .await;
    // b.test listens with direct TLS only: STARTTLS would not get a stream header.
    let direct = format!("[[listen.s2s]]\naddress = \"127.0.0.1:{pb}\"\ntls = \"direct\"\n");
    let (a, b) = resolving_pair(&dns, "", &direct);
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_reaches_bob(&a, &b).await;
    let streams = admin_get(&a, "/api/v1/s2s").await;
    assert!(
        streams["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["direction"] == "outgoing" && s["tls"] == true),
        "{streams}"
    );
}

#[tokio::test]
async fn without_srv_records_the_a_record_on_the_fallback_port_is_used() {
    let pb = free_port();
    let dns = TestDns::start(vec![a_record("b.test.")]).await;
    let (a, b) = resolving_pair(
        &dns,
        &format!("fallback_port = {pb}"),
        &starttls_listener(pb),
    );
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_reaches_bob(&a, &b).await;
}

#[tokio::test]
async fn a_dot_srv_target_bounces_with_remote_server_not_found() {
    // The domain has an A record, and its fallback port accepts connections and never
    // answers: a resolver that ignored the "." would end in remote-server-timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let dns = TestDns::start(vec![
        srv_record("_xmpp-server._tcp.none.test.", 0, 0, "."),
        a_record("none.test."),
    ])
    .await;
    let a = server(
        "a.test",
        &starttls_listener(free_port()),
        &format!(
            "resolver = \"{}\"\nfallback_port = {silent_port}\nconnect_timeout = 5",
            dns.addr
        ),
        &[],
        &[("alice", "a.test", "pw-a")],
    );
    let _logs = LogsOnFailure::of(&[&a]);
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "phone").await;
    alice
        .send_raw("<message to='x@none.test' type='chat' id='dot'><body>?</body></message>")
        .await;
    let err = alice.next_matching(|e| e.attr("id") == Some("dot")).await;
    assert_eq!(
        stanza_error_condition(&err).as_deref(),
        Some("remote-server-not-found"),
        "{err}"
    );
    holder.abort();
}
