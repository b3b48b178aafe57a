//! Small hardening checks against the real binary: an iq without an id and a presence
//! priority out of range are refused with `bad-request`; one user cannot own more than
//! `muc.max_rooms_per_user` rooms; a tenant token cannot tell another tenant's domains
//! from domains that do not exist.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common;

use common::stanza_error_condition as condition;
use common::{RawClient, TestServer, ping_barrier};
use heliograph::xml::ns;

/// An admin API call; the status and the JSON answer (`null` when there is none).
async fn admin(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let (status, doc, _) = common::web::admin_call(&server.admin, token, method, path, body).await;
    (status, doc)
}

/// Creates tenants (name, domain) with the operator's token.
async fn create_tenants(server: &TestServer, tenants: &[(&str, &str)]) {
    for (name, domain) in tenants {
        let t = json!({"name": name, "domains": [domain]});
        let (status, doc) = admin(server, "POST", "/api/v1/tenants", &server.token, t).await;
        assert_eq!(status, 201, "{doc}");
    }
}

/// STARTTLS, PLAIN login (password `pw`) and bind, on a domain other than `localhost`.
async fn login(server: &TestServer, domain: &str, user: &str) -> RawClient {
    RawClient::login_on(server, domain, user, "pw", "r").await
}

#[tokio::test]
async fn an_iq_without_id_and_a_priority_out_of_range_are_bad_requests() {
    let server = TestServer::start(&[("alice", "pw")], "");
    let (mut c, _) = RawClient::login(&server.starttls, "alice", "pw", Some("r")).await;
    // The RFC 3921 session no-op used to answer a result even without an id.
    for payload in [
        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
        "<ping xmlns='urn:xmpp:ping'/>",
    ] {
        c.send_raw(&format!("<iq type='set'>{payload}</iq>")).await;
        let reply = c.next_matching(|e| e.name() == "iq").await;
        assert_eq!(reply.attr("type"), Some("error"), "{reply}");
        assert_eq!(condition(&reply).as_deref(), Some("bad-request"), "{reply}");
    }

    for priority in ["300", "-129", "high"] {
        c.send_raw(&format!(
            "<presence id='p{priority}'><priority>{priority}</priority></presence>"
        ))
        .await;
        let reply = c.next_matching(|e| e.name() == "presence").await;
        assert_eq!(reply.attr("type"), Some("error"), "{reply}");
        assert_eq!(condition(&reply).as_deref(), Some("bad-request"), "{reply}");
    }
    // In range it is taken: the presence comes back to the session as its broadcast.
    c.send_raw("<presence id='ok'><priority>-128</priority></presence>")
        .await;
    let own = c.next_matching(|e| e.name() == "presence").await;
    assert_eq!(own.attr("type"), None, "{own}");
    ping_barrier(&mut c).await;
}

#[tokio::test]
async fn one_user_cannot_own_more_rooms_than_allowed() {
    let server = TestServer::start(&[], "");
    let op = server.token.clone();
    let tenant =
        json!({"name": "acme", "domains": ["acme.test"], "muc": {"max_rooms_per_user": 2}});
    assert_eq!(
        admin(&server, "POST", "/api/v1/tenants", &op, tenant)
            .await
            .0,
        201
    );
    for user in ["alice", "bob"] {
        let body = json!({"username": user, "password": "pw"});
        assert_eq!(
            admin(&server, "POST", "/api/v1/users/acme.test", &op, body)
                .await
                .0,
            201
        );
    }
    let join = |room: &str| {
        format!(
            "<presence to='{room}@conference.acme.test/me'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
    };
    let mut alice = login(&server, "acme.test", "alice").await;
    for room in ["one", "two"] {
        alice.send_raw(&join(room)).await;
        let p = alice
            .next_matching(|e| {
                e.name() == "presence" && e.attr("from").is_some_and(|f| f.starts_with(room))
            })
            .await;
        assert_eq!(p.attr("type"), None, "{p}");
    }
    alice.send_raw(&join("three")).await;
    let refused = alice
        .next_matching(|e| {
            e.name() == "presence" && e.attr("from").is_some_and(|f| f.starts_with("three"))
        })
        .await;
    assert_eq!(refused.attr("type"), Some("error"), "{refused}");
    assert_eq!(
        condition(&refused).as_deref(),
        Some("not-allowed"),
        "{refused}"
    );
    // Another user still may.
    let mut bob = login(&server, "acme.test", "bob").await;
    bob.send_raw(&join("three")).await;
    let p = bob
        .next_matching(|e| {
            e.name() == "presence" && e.attr("from").is_some_and(|f| f.starts_with("three"))
        })
        .await;
    assert_eq!(p.attr("type"), None, "{p}");
}

#[tokio::test]
async fn a_tenant_token_cannot_tell_other_domains_from_missing_ones() {
    let server = TestServer::start(&[], "");
    let op = server.token.clone();
    create_tenants(&server, &[("a", "a.test"), ("b", "b.test")]).await;
    let (status, doc) = admin(&server, "POST", "/api/v1/tenants/a/token", &op, Value::Null).await;
    assert_eq!(status, 201, "{doc}");
    let token = doc["token"].as_str().unwrap().to_string();
    assert_eq!(
        admin(&server, "GET", "/api/v1/users/a.test", &token, Value::Null)
            .await
            .0,
        200
    );
    for path in ["/api/v1/users/{}", "/api/v1/sessions/{}"] {
        let mut answers = Vec::new();
        for domain in ["b.test", "nosuch.test"] {
            let url = path.replace("{}", domain);
            let (status, doc) = admin(&server, "GET", &url, &token, Value::Null).await;
            answers.push((status, doc.to_string().replace(domain, "DOMAIN")));
        }
        assert_eq!(answers[0].0, 403, "{answers:?}");
        assert_eq!(
            answers[0], answers[1],
            "another tenant's domain, a missing one"
        );
    }
    // The operator still learns that a domain does not exist.
    assert_eq!(
        admin(
            &server,
            "GET",
            "/api/v1/users/nosuch.test",
            &op,
            Value::Null
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn a_tenant_cannot_claim_another_tenants_service_domains() {
    let server = TestServer::start(&[], "");
    let op = server.token.clone();
    create_tenants(&server, &[("n3", "n3.example"), ("m", "m.n3.example")]).await;
    let (_, doc) = admin(
        &server,
        "POST",
        "/api/v1/tenants/n3/token",
        &op,
        Value::Null,
    )
    .await;
    let token = doc["token"].as_str().unwrap().to_string();
    let component =
        |domain: &str| json!({"components": [{"domains": [domain], "secret": "s3cret"}]});
    // The report: n3's own token put a component on m's MUC service. Nor may it take
    // anything else under m's domain, with its token or the operator's.
    for domain in ["conference.m.n3.example", "bot.m.n3.example"] {
        for t in [&token, &op] {
            let (status, doc) =
                admin(&server, "PATCH", "/api/v1/tenants/n3", t, component(domain)).await;
            assert_eq!(status, 409, "{domain}: {doc}");
        }
    }
    let own = json!({"components": [
        {"domains": ["bot.n3.example"], "secret": "s3cret"},
        {"domains": ["bot.x.n3.example"], "secret": "s3cret"},
    ]});
    let (status, doc) = admin(&server, "PATCH", "/api/v1/tenants/n3", &token, own).await;
    assert_eq!(status, 200, "its own subdomains: {doc}");
    // A new tenant whose domain would take n3's component from it is refused too.
    let t = json!({"name": "q", "domains": ["x.n3.example"]});
    let (status, doc) = admin(&server, "POST", "/api/v1/tenants", &op, t).await;
    assert_eq!(status, 409, "{doc}");
    assert!(doc.to_string().contains("bot.x.n3.example"), "{doc}");
    // Nor may another tenant take m's MUC domain as one of its own.
    let t = json!({"name": "r", "domains": ["conference.m.n3.example"]});
    let (status, doc) = admin(&server, "POST", "/api/v1/tenants", &op, t).await;
    assert_eq!(status, 409, "{doc}");
}

#[tokio::test]
async fn roster_sets_past_the_tenants_limits_are_refused() {
    let server = TestServer::start(&[], "");
    let limits = json!({"max_roster_items": 3, "max_roster_groups": 2,
        "max_roster_name_length": 10, "max_roster_group_length": 5});
    let t = json!({"name": "acme", "domains": ["acme.test"], "limits": limits});
    let (status, doc) = admin(&server, "POST", "/api/v1/tenants", &server.token, t).await;
    assert_eq!(status, 201, "{doc}");
    let body = json!({"username": "alice", "password": "pw"});
    let (status, _) = admin(
        &server,
        "POST",
        "/api/v1/users/acme.test",
        &server.token,
        body,
    )
    .await;
    assert_eq!(status, 201);
    let mut c = login(&server, "acme.test", "alice").await;
    let mut n = 0;
    let mut set = async |c: &mut RawClient, item: &str| -> Option<String> {
        n += 1;
        let id = format!("set{n}");
        c.send_raw(&format!(
            "<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'>{item}</query></iq>"
        ))
        .await;
        let reply = c
            .next_matching(|e| e.name() == "iq" && e.attr("id") == Some(id.as_str()))
            .await;
        condition(&reply)
    };
    let refusals = [
        (
            "<item jid='a@x.test' name='elevenchars'/>",
            "not-acceptable",
        ),
        (
            "<item jid='a@x.test'><group>sixsix</group></item>",
            "not-acceptable",
        ),
        (
            "<item jid='a@x.test'><group>a</group><group>b</group><group>c</group></item>",
            "policy-violation",
        ),
        (
            "<item jid='a@x.test'><group>a</group><group>a</group></item>",
            "bad-request",
        ),
    ];
    for (item, cond) in refusals {
        assert_eq!(set(&mut c, item).await.as_deref(), Some(cond), "{item}");
    }
    for i in 0..3 {
        let item = format!(
            "<item jid='c{i}@x.test' name='tenchars{i}'><group>a</group><group>b</group></item>"
        );
        assert_eq!(set(&mut c, &item).await, None, "{item}");
    }
    let fourth = "<item jid='c3@x.test'/>";
    assert_eq!(
        set(&mut c, fourth).await.as_deref(),
        Some("policy-violation")
    );
    // Changing an item already there is still fine.
    assert_eq!(
        set(&mut c, "<item jid='c0@x.test' name='renamed'/>").await,
        None
    );
}

/// Messages the fast sender sends, and the size of each body.
const FLOOD: usize = 400;
const FLOOD_BODY: usize = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fast_sender_is_slowed_down_rather_than_its_recipient_disconnected() {
    // A small queue per session, so that a recipient whose socket is full soon has a full
    // queue too.
    let server =
        TestServer::start(&[("fast", "pw"), ("slow", "pw")], "").with_c2s("session_queue = 16");
    let (mut slow, slow_jid) = RawClient::login(&server.starttls, "slow", "pw", Some("r")).await;
    let (mut fast, _) = RawClient::login(&server.starttls, "fast", "pw", Some("r")).await;
    let body = "x".repeat(FLOOD_BODY);
    let sender = tokio::spawn(async move {
        for i in 0..FLOOD {
            fast.send_raw(&format!(
                "<message to='{slow_jid}' id='m{i}' type='chat'><body>{body}</body></message>"
            ))
            .await;
        }
        ping_barrier(&mut fast).await;
        fast
    });
    // The recipient reads nothing until the server says it slowed the sender down.
    let warning = "this session is slowed down";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.log_text().contains(warning) {
        assert!(
            Instant::now() < deadline,
            "the sender was never slowed down: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then it reads everything, and its session never ended.
    let mut received = 0;
    while received < FLOOD {
        let el = slow.next().await;
        assert!(
            !el.is("error", ns::STREAM),
            "the recipient was disconnected: {el}"
        );
        if el.name() == "message" {
            assert_eq!(
                el.attr("id"),
                Some(format!("m{received}").as_str()),
                "in order"
            );
            received += 1;
        }
    }
    ping_barrier(&mut slow).await;
    let mut fast = sender.await.unwrap();
    ping_barrier(&mut fast).await;
    let log = server.log_text();
    assert_eq!(log.matches(warning).count(), 1, "logged once per session");
    assert!(
        !log.contains("closing slow client"),
        "nobody was closed as slow"
    );
}
