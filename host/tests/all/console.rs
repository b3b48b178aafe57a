//! The web console on the real server's admin listener: its files carry the security
//! headers (CSP, frame and sniffing protection, no referrer) and no CORS header, nothing
//! outside its file table is served (`..` and unknown names are 404), the admin API sends
//! no `Access-Control-*` header either; and the admin API figures the console reads:
//! `GET /api/v1/me`, ending one session, per-tenant login counts.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::web::http;
use common::{RawClient, TestServer};
use heliograph::xml::ns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The exact security headers of every console response.
const SECURITY: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// An HTTP/1.1 response read off a raw socket: status, headers (lower-case names).
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn assert_no_cors(&self, what: &str) {
        let cors: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{what}: CORS headers {cors:?}");
    }

    fn assert_security_headers(&self, what: &str) {
        for (name, value) in SECURITY {
            assert_eq!(self.all(name), vec![value], "{what}: {name}");
        }
        self.assert_no_cors(what);
    }
}

/// Sends `METHOD path` exactly as written (no client-side path normalization, so `..`
/// reaches the server) with `Origin` from another site, and reads the whole response.
async fn raw(admin: &str, method: &str, path: &str, extra: &str) -> Raw {
    let mut s = TcpStream::connect(admin).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://evil.example\r\n\
         Connection: close\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("admin listener answers")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn api(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let r = http(
        method,
        &format!("http://{}{path}", server.admin),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Bytes::from(body.to_string()),
    )
    .await;
    (
        r.status.as_u16(),
        serde_json::from_slice(&r.body).unwrap_or_default(),
    )
}

#[tokio::test]
async fn console_files_carry_the_security_headers_and_nothing_else_is_served() {
    let server = TestServer::start(&[], "");
    let admin = server.admin.clone();

    for (path, content_type, marker) in [
        (
            "/console/",
            "text/html; charset=utf-8",
            "<title>Heliograph console",
        ),
        ("/console/index.html", "text/html; charset=utf-8", "app.js"),
        (
            "/console/app.js",
            "text/javascript; charset=utf-8",
            "/api/v1/me",
        ),
        (
            "/console/api.js",
            "text/javascript; charset=utf-8",
            "sessionStorage",
        ),
        ("/console/console.css", "text/css; charset=utf-8", "@media"),
    ] {
        let r = raw(&admin, "GET", path, "").await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert!(r.body.contains(marker), "{path}: {}", r.body);
        r.assert_security_headers(path);
        // Revalidation with the ETag answers 304, with the same headers.
        let etag = r.header("etag").expect("etag").to_string();
        let again = raw(&admin, "GET", path, &format!("If-None-Match: {etag}\r\n")).await;
        assert_eq!(again.status, 304, "{path}");
        again.assert_security_headers(path);
    }

    let redirect = raw(&admin, "GET", "/console", "").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/console/"));
    redirect.assert_security_headers("/console");

    for path in [
        "/console/../",
        "/console/../api/v1/tenants",
        "/console/..%2f..%2fCargo.toml",
        "/console/%2e%2e/%2e%2e/README.md",
        "/console/./app.js",
        "/console//app.js",
        "/console/app.js/",
        "/console/nope.js",
        "/console/tenants",
    ] {
        let r = raw(&admin, "GET", path, "").await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(!r.body.contains("import "), "{path} served a file");
        r.assert_security_headers(path);
    }

    let post = raw(&admin, "POST", "/console/", "Content-Length: 0\r\n").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    post.assert_security_headers("POST /console/");
}

#[tokio::test]
async fn the_admin_api_sends_no_cors_headers() {
    let server = TestServer::start(&[], "");
    let admin = server.admin.clone();
    let auth = format!("Authorization: Bearer {}\r\n", server.token);
    for (method, path, headers, status) in [
        ("GET", "/api/v1/tenants", auth.as_str(), 200),
        ("GET", "/api/v1/me", auth.as_str(), 200),
        ("GET", "/api/v1/tenants", "", 401),
        ("GET", "/api/v1/openapi.json", "", 200),
        (
            "OPTIONS",
            "/api/v1/tenants",
            "Access-Control-Request-Method: DELETE\r\nAccess-Control-Request-Headers: authorization\r\n",
            405,
        ),
        ("GET", "/metrics", "", 200),
        ("GET", "/health/ready", "", 200),
    ] {
        let r = raw(&admin, method, path, headers).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        r.assert_no_cors(&format!("{method} {path}"));
    }
}

#[test]
fn the_admin_listener_is_loopback_by_default() {
    let config = heliograph::config::Config::default();
    assert!(
        config.listen.admin.address.ip().is_loopback(),
        "{}",
        config.listen.admin.address
    );
}

#[tokio::test]
async fn me_end_session_and_tenant_login_counts() {
    let server = TestServer::start(&[("alice", "alice-pw")], "");
    let op = server.token.clone();
    assert_eq!(
        api(&server, "GET", "/api/v1/me", &op, "").await,
        (200, serde_json::json!({ "principal": "operator" }))
    );
    let (s, _) = api(
        &server,
        "POST",
        "/api/v1/tenants",
        &op,
        r#"{"name": "other", "domains": ["other.test"]}"#,
    )
    .await;
    assert_eq!(s, 201);
    let (s, t) = api(&server, "POST", "/api/v1/tenants/other/token", &op, "").await;
    assert_eq!(s, 201);
    let other = t["token"].as_str().unwrap().to_string();
    assert_eq!(
        api(&server, "GET", "/api/v1/me", &other, "").await,
        (
            200,
            serde_json::json!({ "principal": "tenant", "tenant": "other", "domains": ["other.test"] })
        )
    );

    let (_, before) = api(&server, "GET", "/api/v1/tenants/default", &op, "").await;
    let logins0 = before["logins_total"].as_u64().unwrap();
    let failures0 = before["login_failures_total"].as_u64().unwrap();

    let (mut alice, jid) =
        RawClient::login(&server.starttls, "alice", "alice-pw", Some("r1")).await;
    assert_eq!(jid, "alice@localhost/r1");
    let mut wrong = RawClient::connect(&server.starttls).await;
    wrong.open_and_features().await;
    wrong.starttls().await;
    wrong.open_and_features().await;
    assert!(
        wrong
            .auth_plain("alice", "nope")
            .await
            .is("failure", ns::SASL)
    );

    let (_, after) = api(&server, "GET", "/api/v1/tenants/default", &op, "").await;
    assert_eq!(after["logins_total"].as_u64().unwrap(), logins0 + 1);
    assert_eq!(
        after["login_failures_total"].as_u64().unwrap(),
        failures0 + 1
    );
    let (_, o) = api(&server, "GET", "/api/v1/tenants/other", &op, "").await;
    assert_eq!(
        (
            o["logins_total"].as_u64(),
            o["login_failures_total"].as_u64()
        ),
        (Some(0), Some(0))
    );

    // Another tenant's token cannot end the session, nor tell that it exists.
    let (s, e) = api(
        &server,
        "DELETE",
        "/api/v1/sessions/localhost/alice/r1",
        &other,
        "",
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (403, Some("forbidden")), "{e}");
    let (s, _) = api(
        &server,
        "DELETE",
        "/api/v1/sessions/localhost/alice/r1",
        &op,
        "",
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(alice.expect_stream_error().await, "policy-violation");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, s) = api(&server, "GET", "/api/v1/sessions/localhost", &op, "").await;
        if s["sessions"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "session still listed: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, e) = api(
        &server,
        "DELETE",
        "/api/v1/sessions/localhost/alice/r1",
        &op,
        "",
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (404, Some("session_not_found")),
        "{e}"
    );
}
