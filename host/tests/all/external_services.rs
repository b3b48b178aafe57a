//! XEP-0215 external service discovery against the real binary: a tenant's users get its
//! STUN and TURN servers with TURN REST API credentials that verify with the tenant's
//! secret, ask for one service's credentials (`item-not-found` for one it does not have),
//! are pushed the differences when the admin API changes the services, and the API never
//! shows the secret. Users of another tenant, and clients that have not authenticated,
//! get nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use crate::common;

/// The stanza error condition of an error reply (shared with the call tests).
pub use common::stanza_error_condition as condition;
use common::{RawClient, TestServer, ping_barrier};
use heliograph::xml::{Element, ns};

const EXTDISCO: &str = "urn:xmpp:extdisco:2";
const SECRET: &str = "north-wind-secret";

/// An admin API call with the operator token; the status, the JSON answer (`null` when
/// there is none) and the answer as text.
pub async fn admin(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value, String) {
    common::web::admin_call(&server.admin, &server.token, method, path, body).await
}

/// Creates an API tenant and its users (password `pw`).
pub async fn create_tenant(server: &TestServer, spec: Value, users: &[&str]) {
    let domain = spec["domains"][0].as_str().unwrap().to_string();
    let (status, doc, _) = admin(server, "POST", "/api/v1/tenants", spec).await;
    assert_eq!(status, 201, "{doc}");
    for user in users {
        let body = json!({"username": user, "password": "pw"});
        let path = format!("/api/v1/users/{domain}");
        assert_eq!(admin(server, "POST", &path, body).await.0, 201);
    }
}

/// STARTTLS, PLAIN login (password `pw`) and bind on `domain`.
pub async fn login(server: &TestServer, domain: &str, user: &str, resource: &str) -> RawClient {
    RawClient::login_on(server, domain, user, "pw", resource).await
}

/// Sends an iq get with `payload` and returns the answer.
async fn ask(c: &mut RawClient, to: &str, id: &str, payload: &str) -> Element {
    c.send_raw(&format!(
        "<iq type='get' id='{id}' to='{to}'>{payload}</iq>"
    ))
    .await;
    c.next_matching(|e| e.name() == "iq" && e.attr("id") == Some(id))
        .await
}

fn services_of(answer: &Element, wrapper: &str) -> Vec<Element> {
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    answer
        .child(wrapper, EXTDISCO)
        .unwrap_or_else(|| panic!("no <{wrapper}/> in {answer}"))
        .children()
        .filter(|s| s.name() == "service")
        .cloned()
        .collect()
}

/// Checks a restricted service's credentials: `<expiry>:<bare JID>`, the HMAC-SHA1 of
/// the username with the secret, and an `expires` matching the expiry about `ttl` ahead.
fn check_credentials(service: &Element, user: &str, secret: &str, ttl: u64) {
    let username = service.attr("username").expect("a username");
    let (expiry, who) = username.split_once(':').expect("<expiry>:<user>");
    assert_eq!(who, user, "{service}");
    let expiry: u64 = expiry.parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expiry >= now + ttl - 120 && expiry <= now + ttl + 5,
        "expiry {expiry} is not about now + {ttl}"
    );
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(
        service.attr("password"),
        Some(expected.as_str()),
        "{service}"
    );
    let expires = humantime_like(service.attr("expires").expect("expires"));
    assert_eq!(expires, expiry, "{service}");
}

/// Seconds since the epoch of a XEP-0082 `YYYY-MM-DDThh:mm:ssZ` date-time.
fn humantime_like(s: &str) -> u64 {
    let b = s.as_bytes();
    assert!(s.len() == 20 && b[10] == b'T' && b[19] == b'Z', "{s}");
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

fn acme() -> Value {
    json!({
        "name": "acme",
        "domains": ["acme.test"],
        "federate_with": ["other"],
        "external_services": {
            "turn_secret": SECRET,
            "credential_ttl": 3600,
            "services": [
                {"type": "turn", "host": "127.0.0.1", "port": 3478, "transport": "udp", "name": "Relay"},
                {"type": "stun", "host": "127.0.0.1", "port": 3478}
            ]
        }
    })
}

#[tokio::test]
async fn users_get_services_and_credentials_signed_with_the_tenant_secret() {
    let server = TestServer::start(&[], "");
    create_tenant(&server, acme(), &["alice"]).await;
    let other = json!({"name": "other", "domains": ["other.test"], "federate_with": ["acme"]});
    create_tenant(&server, other, &["mallory"]).await;
    let mut alice = login(&server, "acme.test", "alice", "pc").await;

    let info = ask(
        &mut alice,
        "acme.test",
        "info",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert!(
        info.to_string().contains(EXTDISCO),
        "disco#info lists extdisco: {info}"
    );

    let all = ask(
        &mut alice,
        "acme.test",
        "all",
        &format!("<services xmlns='{EXTDISCO}'/>"),
    )
    .await;
    let all = services_of(&all, "services");
    assert_eq!(all.len(), 2, "{all:?}");
    let turn = all.iter().find(|s| s.attr("type") == Some("turn")).unwrap();
    assert_eq!(turn.attr("restricted"), Some("true"));
    assert_eq!(turn.attr("transport"), Some("udp"));
    assert_eq!(turn.attr("name"), Some("Relay"));
    check_credentials(turn, "alice@acme.test", SECRET, 3600);
    let stun = all.iter().find(|s| s.attr("type") == Some("stun")).unwrap();
    assert_eq!(
        stun.attr("username"),
        None,
        "STUN needs no credentials: {stun}"
    );
    assert_eq!(stun.attr("restricted"), None, "{stun}");

    let only_stun = ask(
        &mut alice,
        "acme.test",
        "stun",
        &format!("<services xmlns='{EXTDISCO}' type='stun'/>"),
    )
    .await;
    let only_stun = services_of(&only_stun, "services");
    assert_eq!(only_stun.len(), 1);
    assert_eq!(only_stun[0].attr("type"), Some("stun"));

    let creds = ask(
        &mut alice,
        "acme.test",
        "creds",
        &format!(
            "<credentials xmlns='{EXTDISCO}'><service type='turn' host='127.0.0.1' port='3478'/></credentials>"
        ),
    )
    .await;
    let creds = services_of(&creds, "credentials");
    assert_eq!(creds.len(), 1);
    check_credentials(&creds[0], "alice@acme.test", SECRET, 3600);

    // A service the tenant does not have: item-not-found.
    for (id, service) in [
        (
            "unknown-host",
            "<service type='turn' host='turn.elsewhere.test' port='3478'/>",
        ),
        (
            "unknown-port",
            "<service type='turn' host='127.0.0.1' port='5349'/>",
        ),
        ("unknown-type", "<service type='turns' host='127.0.0.1'/>"),
    ] {
        let r = ask(
            &mut alice,
            "acme.test",
            id,
            &format!("<credentials xmlns='{EXTDISCO}'>{service}</credentials>"),
        )
        .await;
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(condition(&r).as_deref(), Some("item-not-found"), "{r}");
    }

    // A user of another (federated) tenant asks acme's domain: refused.
    let mut mallory = login(&server, "other.test", "mallory", "pc").await;
    for (id, payload) in [
        ("m1", format!("<services xmlns='{EXTDISCO}'/>")),
        (
            "m2",
            format!(
                "<credentials xmlns='{EXTDISCO}'><service type='turn' host='127.0.0.1'/></credentials>"
            ),
        ),
    ] {
        let r = ask(&mut mallory, "acme.test", id, &payload).await;
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(condition(&r).as_deref(), Some("forbidden"), "{r}");
        assert!(!r.to_string().contains("password"), "{r}");
    }
    // Mallory's own tenant has no services.
    let own = ask(
        &mut mallory,
        "other.test",
        "m3",
        &format!("<services xmlns='{EXTDISCO}'/>"),
    )
    .await;
    assert!(services_of(&own, "services").is_empty());
}

#[tokio::test]
async fn an_unauthenticated_client_gets_no_credentials() {
    let server = TestServer::start(&[], "");
    create_tenant(&server, acme(), &["alice"]).await;
    // Before authentication: the stream ends with not-authorized, no answer.
    let mut c = RawClient::connect(&server.starttls).await;
    c.open_to("acme.test").await;
    c.starttls().await;
    c.open_to("acme.test").await;
    c.send_raw(&format!(
        "<iq type='get' id='x' to='acme.test'><credentials xmlns='{EXTDISCO}'><service type='turn' host='127.0.0.1'/></credentials></iq>"
    ))
    .await;
    assert_eq!(c.expect_stream_error().await, "not-authorized");
    // Authenticated but not bound yet: no answer with credentials either.
    let mut c = RawClient::connect(&server.starttls).await;
    c.open_to("acme.test").await;
    c.starttls().await;
    c.open_to("acme.test").await;
    assert!(c.auth_plain("alice", "pw").await.is("success", ns::SASL));
    c.open_to("acme.test").await;
    c.send_raw(&format!(
        "<iq type='get' id='y' to='acme.test'><services xmlns='{EXTDISCO}'/></iq>"
    ))
    .await;
    match c.next_event().await {
        Some(heliograph::xml::StreamEvent::Stanza(e)) => {
            assert_eq!(e.attr("type"), Some("error"), "{e}");
            assert!(!e.to_string().contains("password"), "{e}");
        }
        other => assert!(!format!("{other:?}").contains("password"), "{other:?}"),
    }
}

#[tokio::test]
async fn changes_through_the_admin_api_are_pushed_and_the_secret_never_shown() {
    let server = TestServer::start(&[], "");
    create_tenant(&server, acme(), &["alice", "bob"]).await;
    let mut alice = login(&server, "acme.test", "alice", "pc").await;
    let mut bob = login(&server, "acme.test", "bob", "pc").await;
    // Alice asks for the services (and is pushed changes from now on); Bob never does.
    let r = ask(
        &mut alice,
        "acme.test",
        "all",
        &format!("<services xmlns='{EXTDISCO}'/>"),
    )
    .await;
    assert_eq!(services_of(&r, "services").len(), 2);

    // The API shows that a secret is set, never the secret.
    let (status, view, text) = admin(&server, "GET", "/api/v1/tenants/acme", Value::Null).await;
    assert_eq!(status, 200);
    assert!(!text.contains(SECRET), "{text}");
    assert_eq!(
        view["external_services"]["turn_secret_set"],
        json!(true),
        "{view}"
    );
    assert!(
        view["external_services"].get("turn_secret").is_none(),
        "{view}"
    );
    let (_, list, text) = admin(&server, "GET", "/api/v1/tenants", Value::Null).await;
    assert!(!text.contains(SECRET), "{list}");

    // The view sent back with a change: the STUN server goes, a TURNS relay comes, the
    // TURN relay is renamed. The secret is kept.
    let mut services = view["external_services"].clone();
    services["services"] = json!([
        {"type": "turn", "host": "127.0.0.1", "port": 3478, "transport": "udp", "name": "Main relay"},
        {"type": "turns", "host": "turn.acme.test", "port": 5349, "transport": "tcp"}
    ]);
    let (status, changed, text) = admin(
        &server,
        "PATCH",
        "/api/v1/tenants/acme",
        json!({"external_services": services}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert!(!text.contains(SECRET), "{text}");

    let push = alice
        .next_matching(|e| e.name() == "iq" && e.attr("type") == Some("set"))
        .await;
    assert_eq!(push.attr("from"), Some("acme.test"), "{push}");
    let items = push
        .child("services", EXTDISCO)
        .unwrap_or_else(|| panic!("a services push: {push}"));
    let action = |ty: &str| {
        items
            .children()
            .find(|s| s.attr("type") == Some(ty))
            .and_then(|s| s.attr("action"))
            .map(str::to_string)
    };
    assert_eq!(action("stun").as_deref(), Some("delete"), "{push}");
    assert_eq!(action("turns").as_deref(), Some("add"), "{push}");
    assert_eq!(action("turn").as_deref(), Some("modify"), "{push}");
    let modified = items
        .children()
        .find(|s| s.attr("type") == Some("turn"))
        .unwrap();
    assert_eq!(modified.attr("name"), Some("Main relay"));
    // The kept secret still signs the credentials.
    check_credentials(modified, "alice@acme.test", SECRET, 3600);
    // The client acknowledges the push; the server takes the result quietly.
    alice
        .send_raw(&format!(
            "<iq type='result' id='{}' to='acme.test'/>",
            push.attr("id").unwrap()
        ))
        .await;
    ping_barrier(&mut alice).await;

    // Bob, who never asked, is not pushed anything: his next iq is his ping's answer.
    bob.send_raw("<iq type='get' id='bob-ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let next = bob.next_matching(|e| e.name() == "iq").await;
    assert_eq!(next.attr("id"), Some("bob-ping"), "{next}");

    // A new secret: the restricted services are pushed with credentials signed by it.
    let (status, doc, _) = admin(
        &server,
        "PATCH",
        "/api/v1/tenants/acme",
        json!({"external_services": {
            "turn_secret": "south-wind",
            "credential_ttl": 600,
            "services": services["services"],
        }}),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let push = alice
        .next_matching(|e| e.name() == "iq" && e.attr("type") == Some("set"))
        .await;
    let turn = push
        .child("services", EXTDISCO)
        .unwrap()
        .children()
        .find(|s| s.attr("type") == Some("turn"))
        .cloned()
        .unwrap_or_else(|| panic!("{push}"));
    assert_eq!(turn.attr("action"), Some("modify"));
    check_credentials(&turn, "alice@acme.test", "south-wind", 600);

    // Invalid settings are refused with their reason, and change nothing.
    let (status, doc, _) = admin(
        &server,
        "PATCH",
        "/api/v1/tenants/acme",
        json!({"external_services": {"services": [{"type": "turn", "host": "h.test", "port": 3478}]}}),
    )
    .await;
    assert_eq!(status, 400, "{doc}");
    assert!(doc.to_string().contains("turn_secret"), "{doc}");
    let creds = ask(
        &mut alice,
        "acme.test",
        "after",
        &format!(
            "<credentials xmlns='{EXTDISCO}'><service type='turn' host='127.0.0.1'/></credentials>"
        ),
    )
    .await;
    check_credentials(
        &services_of(&creds, "credentials")[0],
        "alice@acme.test",
        "south-wind",
        600,
    );
}

#[test]
fn config_file_settings_are_served() {
    // `[tenants.NAME.external_services]` in the config file, for a config tenant.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = TestServer::start(
        &[("alice", "pw")],
        "[tenants.default]\ndomains = []\n[tenants.default.external_services]\nturn_secret = \"from-file\"\ncredential_ttl = 120\n\
         [[tenants.default.external_services.services]]\ntype = \"turn\"\nhost = \"127.0.0.1\"\nport = 3478\ntransport = \"udp\"\n",
    );
    rt.block_on(async {
        let (mut alice, _) = RawClient::login(&server.starttls, "alice", "pw", Some("pc")).await;
        let r = ask(
            &mut alice,
            "localhost",
            "all",
            &format!("<services xmlns='{EXTDISCO}'/>"),
        )
        .await;
        let all = services_of(&r, "services");
        assert_eq!(all.len(), 1);
        check_credentials(&all[0], "alice@localhost", "from-file", 120);

        // The relay moves to another port in the file; a reload applies it and pushes
        // the change: the old service deleted, the new one added with credentials.
        let path = server.dir.path().join("heliograph.toml");
        let cfg = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, cfg.replace("port = 3478", "port = 3479")).unwrap();
        let (status, report, _) = admin(&server, "POST", "/api/v1/reload", Value::Null).await;
        assert_eq!(status, 200, "{report}");
        let push = alice
            .next_matching(|e| e.name() == "iq" && e.attr("type") == Some("set"))
            .await;
        let items: Vec<Element> = push
            .child("services", EXTDISCO)
            .unwrap_or_else(|| panic!("a services push: {push}"))
            .children()
            .cloned()
            .collect();
        assert_eq!(items.len(), 2, "{push}");
        let deleted = items
            .iter()
            .find(|s| s.attr("action") == Some("delete"))
            .unwrap();
        assert_eq!(deleted.attr("port"), Some("3478"));
        assert_eq!(deleted.attr("password"), None, "{push}");
        let added = items
            .iter()
            .find(|s| s.attr("action") == Some("add"))
            .unwrap();
        assert_eq!(added.attr("port"), Some("3479"));
        check_credentials(added, "alice@localhost", "from-file", 120);
    });
}

#[tokio::test]
async fn a_component_of_the_tenant_gets_no_credentials() {
    use sha1::Digest as _;
    let server = TestServer::start(&[], "");
    let mut spec = acme();
    spec["components"] = json!([{"domains": ["bot.acme.test"], "secret": "bot-secret"}]);
    create_tenant(&server, spec, &[]).await;
    let mut c = RawClient::connect(&server.component).await;
    c.send_raw(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='bot.acme.test'>",
    )
    .await;
    let id = match c.next_event().await {
        Some(heliograph::xml::StreamEvent::Open(h)) => h.attr("id").unwrap().to_string(),
        other => panic!("expected a stream header, got {other:?}"),
    };
    let digest: String = Sha1::digest(format!("{id}bot-secret").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    c.send_raw(&format!("<handshake>{digest}</handshake>"))
        .await;
    assert_eq!(c.next().await.name(), "handshake");
    c.send_raw(&format!(
        "<iq type='get' id='c1' from='bot.acme.test' to='acme.test'>\
         <credentials xmlns='{EXTDISCO}'><service type='turn' host='127.0.0.1'/></credentials></iq>"
    ))
    .await;
    let r = c.next_matching(|e| e.attr("id") == Some("c1")).await;
    assert_eq!(r.attr("type"), Some("error"), "{r}");
    assert!(!r.to_string().contains("password"), "{r}");
    let cond = r.children().find(|e| e.name() == "error").and_then(|e| {
        e.children()
            .find(|c| c.ns() == ns::STANZAS_ERRORS)
            .map(|c| c.name().to_string())
    });
    assert_eq!(cond.as_deref(), Some("forbidden"), "{r}");
}
