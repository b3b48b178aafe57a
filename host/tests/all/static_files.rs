//! End-to-end tests of `[[listen.http]] static_dir` against the real binary: files with
//! their content types next to BOSH and WebSocket, traversal attempts sent as raw bytes
//! (so no client normalizes them first) answered 404 without the file, methods other
//! than GET and HEAD refused, and the WebSocket open to the listener's own pages.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common;

use common::TestServer;
use common::web::{http, ws_connect_status};

/// One request written byte for byte; the status code and the whole response.
async fn raw_request(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_served_next_to_bosh_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(app.join("lib")).unwrap();
    std::fs::write(app.join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::write(app.join("lib/app.mjs"), "export const x = 1;").unwrap();
    std::fs::write(app.join("data.json"), "{}").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "top secret").unwrap();
    let server = TestServer::start_http(
        &[],
        &format!("static_dir = {:?}\n", app.display().to_string()),
    );
    let a = server.http.clone();

    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/lib/app.mjs", "text/javascript; charset=utf-8"),
        ("/data.json", "application/json"),
    ] {
        let r = http("GET", &format!("http://{a}{path}"), &[], "").await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], ty, "{path}");
    }

    for path in [
        "/../secret.txt",
        "/lib/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%5csecret.txt",
        "/lib/",
        "/missing.js",
    ] {
        let (status, text) = raw_request(&a, "GET", path).await;
        assert_eq!(status, 404, "{path}: {text}");
        assert!(!text.contains("top secret"), "{path}");
    }
    assert_eq!(raw_request(&a, "POST", "/index.html").await.0, 405);
    let (status, text) = raw_request(&a, "HEAD", "/lib/app.mjs").await;
    assert_eq!(status, 200);
    assert!(
        text.to_ascii_lowercase().contains("content-length: 19"),
        "{text}"
    );
    assert!(!text.contains("export const"), "HEAD has no body");

    // BOSH and WebSocket are still there; the listener's own pages may use the
    // WebSocket (Origin = the Host it was sent to), other origins may not.
    assert_eq!(raw_request(&a, "GET", "/http-bind").await.0, 405);
    assert_eq!(
        ws_connect_status(&a, Some("xmpp"), Some(&format!("http://{a}"))).await,
        101
    );
    assert_eq!(
        ws_connect_status(&a, Some("xmpp"), Some("http://evil.test")).await,
        403
    );
}
