//! End-to-end tests of the admin API over HTTP, with in-memory storage.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::testing::{TOKEN, TestApi};
use crate::storage::UserStore;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// Sends a request; `body` is sent as `application/json` unless `content_type` says
/// otherwise.
async fn send(
    api: &TestApi,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{}", api.url(), path));
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(api: &TestApi, path: &str) -> Reply {
    send(api, Method::GET, path, Some(TOKEN), None, b"").await
}

async fn with_json(api: &TestApi, method: Method, path: &str, body: Value) -> Reply {
    send(
        api,
        method,
        path,
        Some(TOKEN),
        Some("application/json"),
        body.to_string().as_bytes(),
    )
    .await
}

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{:?}", r.body);
    assert_eq!(r.body["error"], code, "{:?}", r.body);
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:?}",
        r.body
    );
}

#[tokio::test]
async fn requires_a_valid_token() {
    let api = TestApi::start().await;
    for token in [None, Some("wrong"), Some("")] {
        let r = send(
            &api,
            Method::GET,
            "/api/v1/users/example.com",
            token,
            None,
            b"",
        )
        .await;
        assert_error(&r, 401, "unauthorized");
        assert!(
            r.headers[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let r = send(
        &api,
        Method::POST,
        "/api/v1/users/example.com",
        None,
        Some("application/json"),
        b"{}",
    )
    .await;
    assert_error(&r, 401, "unauthorized");
    assert_eq!(
        get(&api, "/api/v1/users/example.com").await.status,
        StatusCode::OK
    );
    api.stop().await;
}

#[tokio::test]
async fn user_lifecycle() {
    let api = TestApi::start().await;
    let r = get(&api, "/api/v1/users/example.com").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"domain": "example.com", "users": []}));

    let users = "/api/v1/users/example.com";
    let r = with_json(
        &api,
        Method::POST,
        users,
        json!({"username": "Bob", "password": "pw-b"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body, json!({"jid": "bob@example.com"}));
    let r = with_json(
        &api,
        Method::POST,
        users,
        json!({"username": "alice", "password": "pw-a"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        get(&api, users).await.body["users"],
        json!(["alice", "bob"])
    );
    assert_eq!(
        get(&api, "/api/v1/users/other.test").await.body["users"],
        json!([])
    );

    // Duplicate, also after normalization.
    let r = with_json(
        &api,
        Method::POST,
        users,
        json!({"username": "ALICE", "password": "x"}),
    )
    .await;
    assert_error(&r, 409, "user_exists");
    assert_eq!(
        api.password_of("alice", "example.com").as_deref(),
        Some("pw-a")
    );

    // Password change.
    let r = with_json(
        &api,
        Method::PUT,
        "/api/v1/users/example.com/alice/password",
        json!({"password": "new"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.password_of("alice", "example.com").as_deref(),
        Some("new")
    );
    let r = with_json(
        &api,
        Method::PUT,
        "/api/v1/users/example.com/nobody/password",
        json!({"password": "x"}),
    )
    .await;
    assert_error(&r, 404, "user_not_found");

    // Delete.
    let r = send(
        &api,
        Method::DELETE,
        "/api/v1/users/example.com/BOB",
        Some(TOKEN),
        None,
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&api, users).await.body["users"], json!(["alice"]));
    let r = send(
        &api,
        Method::DELETE,
        "/api/v1/users/example.com/bob",
        Some(TOKEN),
        None,
        b"",
    )
    .await;
    assert_error(&r, 404, "user_not_found");
    api.stop().await;
}

#[tokio::test]
async fn percent_encoded_usernames() {
    let api = TestApi::start().await;
    let r = with_json(
        &api,
        Method::POST,
        "/api/v1/users/example.com",
        json!({"username": "jürgen", "password": "p"}),
    )
    .await;
    assert_eq!(r.body, json!({"jid": "jürgen@example.com"}));
    let r = send(
        &api,
        Method::DELETE,
        "/api/v1/users/example.com/j%C3%BCrgen",
        Some(TOKEN),
        None,
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(
        &api,
        Method::DELETE,
        "/api/v1/users/example.com/%ZZ",
        Some(TOKEN),
        None,
        b"",
    )
    .await;
    assert_error(&r, 400, "bad_path");
    api.stop().await;
}

#[tokio::test]
async fn invalid_bodies_and_names() {
    let api = TestApi::start().await;
    let users = "/api/v1/users/example.com";
    let ct = Some("application/json");
    assert_error(
        &send(&api, Method::POST, users, Some(TOKEN), ct, b"{not json").await,
        400,
        "bad_json",
    );
    assert_error(
        &send(&api, Method::POST, users, Some(TOKEN), ct, b"").await,
        400,
        "bad_json",
    );
    assert_error(
        &with_json(&api, Method::POST, users, json!({"username": "a"})).await,
        400,
        "bad_json",
    );
    assert_error(
        &with_json(
            &api,
            Method::POST,
            users,
            json!({"username": "a", "password": "p", "x": 1}),
        )
        .await,
        400,
        "bad_json",
    );
    assert_error(
        &with_json(
            &api,
            Method::POST,
            users,
            json!({"username": 5, "password": "p"}),
        )
        .await,
        400,
        "bad_json",
    );
    for bad in ["", "a@b", "a b", "a/b", "<x>"] {
        let r = with_json(
            &api,
            Method::POST,
            users,
            json!({"username": bad, "password": "p"}),
        )
        .await;
        assert_error(&r, 400, "invalid_username");
    }
    let r = with_json(
        &api,
        Method::POST,
        users,
        json!({"username": "a", "password": ""}),
    )
    .await;
    assert_error(&r, 400, "invalid_password");
    let r = with_json(
        &api,
        Method::POST,
        users,
        json!({"username": "a", "password": "bell\u{7}"}),
    )
    .await;
    assert_error(&r, 400, "invalid_password");
    let r = send(
        &api,
        Method::DELETE,
        "/api/v1/users/example.com/a%40b",
        Some(TOKEN),
        None,
        b"",
    )
    .await;
    assert_error(&r, 400, "invalid_username");
    assert!(api.users.accounts.lock().unwrap().is_empty());

    // Content type.
    let body = br#"{"username":"a","password":"p"}"#;
    assert_error(
        &send(
            &api,
            Method::POST,
            users,
            Some(TOKEN),
            Some("text/plain"),
            body,
        )
        .await,
        415,
        "unsupported_media_type",
    );
    assert_error(
        &send(&api, Method::POST, users, Some(TOKEN), None, body).await,
        415,
        "unsupported_media_type",
    );
    let r = send(
        &api,
        Method::POST,
        users,
        Some(TOKEN),
        Some("Application/JSON; charset=utf-8"),
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    api.stop().await;
}

#[tokio::test]
async fn unknown_domain_route_and_method() {
    let api = TestApi::start().await;
    assert_error(
        &get(&api, "/api/v1/users/nope.test").await,
        404,
        "unknown_domain",
    );
    let r = with_json(
        &api,
        Method::POST,
        "/api/v1/users/nope.test",
        json!({"username": "a", "password": "p"}),
    )
    .await;
    assert_error(&r, 404, "unknown_domain");
    assert_error(
        &get(&api, "/api/v1/sessions/nope.test").await,
        404,
        "unknown_domain",
    );
    // Domains are normalized (case).
    assert_eq!(
        get(&api, "/api/v1/users/Example.COM").await.status,
        StatusCode::OK
    );

    assert_error(&get(&api, "/api/v1/nothing").await, 404, "not_found");
    assert_error(&get(&api, "/").await, 404, "not_found");
    assert_error(
        &get(&api, "/api/v1/users/example.com/alice/extra/x").await,
        404,
        "not_found",
    );

    let r = send(
        &api,
        Method::PATCH,
        "/api/v1/users/example.com",
        Some(TOKEN),
        None,
        b"",
    )
    .await;
    assert_error(&r, 405, "method_not_allowed");
    assert_eq!(r.headers[ALLOW], "GET, POST");
    let r = get(&api, "/api/v1/users/example.com/alice").await;
    assert_error(&r, 405, "method_not_allowed");
    assert_eq!(r.headers[ALLOW], "DELETE");
    api.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let api = TestApi::start().await;
    let big = format!(
        r#"{{"username":"a","password":"{}"}}"#,
        "x".repeat(super::MAX_BODY)
    );
    let r = send(
        &api,
        Method::POST,
        "/api/v1/users/example.com",
        Some(TOKEN),
        Some("application/json"),
        big.as_bytes(),
    )
    .await;
    assert_error(&r, 413, "payload_too_large");

    // Chunked, without Content-Length: enforced while reading.
    let mut s = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/users/example.com HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..5 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || s.write_all(&chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(api.users.accounts.lock().unwrap().is_empty());
    api.stop().await;
}

#[tokio::test]
async fn sessions_are_listed() {
    let api = TestApi::start().await;
    let r = get(&api, "/api/v1/sessions").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"sessions": []}));
    let r = get(&api, "/api/v1/sessions/example.com").await;
    assert_eq!(r.body, json!({"sessions": []}));
    api.stop().await;
}

#[tokio::test]
async fn storage_failure_is_a_generic_500() {
    let api = TestApi::start().await;
    api.users
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = get(&api, "/api/v1/users/example.com").await;
    assert_error(&r, 500, "internal_error");
    assert!(
        !r.body["message"].as_str().unwrap().contains("simulated"),
        "{:?}",
        r.body
    );
    api.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops_accepting() {
    let api = TestApi::start().await;
    let addr = api.addr;
    // An idle keep-alive connection must not hold shutdown up.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{addr}/api/v1/sessions"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), api.stop())
        .await
        .expect("shutdown hung");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let api = TestApi::start().await;
    // Send headers of a request whose body is still coming, then shut down.
    let mut s = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let body = br#"{"username":"late","password":"p"}"#;
    let head = format!(
        "POST /api/v1/users/example.com HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let users = api.users.clone();
    let stopping = tokio::spawn(api.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!stopping.is_finished());
    s.write_all(&body[5..]).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        users.list_users("example.com").unwrap(),
        vec!["late".to_string()]
    );
}
