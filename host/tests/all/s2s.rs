//! Federation between two Heliograph servers on loopback (`a.test` and `b.test`, each
//! with its s2s listener on a port the test picked free and the other in its static
//! host map): messages and iq both ways over STARTTLS + dialback, the streams shown by
//! the admin API, and the failures: a peer that is down, a peer that never answers, a
//! tenant that does not federate or denies the domain.

use crate::common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server for `domain` (tenant `t`, federation on with `tenant_s2s`), its s2s
/// listener on `own_port`, with static host entries (domain, address).
fn federated(
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
struct LogsOnFailure<'a>(Vec<&'a TestServer>);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for s in &self.0 {
                eprintln!("--- server log {} ---\n{}", s.log.display(), s.log_text());
            }
        }
    }
}

fn is_message_from(e: &heliograph::xml::Element, from: &str) -> bool {
    e.name() == "message" && e.attr("from") == Some(from)
}

#[tokio::test]
async fn messages_and_iq_cross_between_two_heliograph_servers() {
    let (a, b) = pair();
    let _logs = LogsOnFailure(vec![&a, &b]);
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
    let _logs = LogsOnFailure(vec![&a]);
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
async fn admin_get(server: &TestServer, path: &str) -> serde_json::Value {
    crate::common::web::admin_get(&server.admin, &server.token, path).await
}
