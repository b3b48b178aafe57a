//! The web console: static files (HTML, JavaScript modules, CSS) kept in
//! `host/crates/control/console/`, embedded in the binary with `include_bytes!` and served
//! by the admin listener under `/console/` (`/console` redirects there).
//!
//! The console holds no privilege of its own: the page asks for a token and calls the
//! admin API with it (`Authorization: Bearer`), so the API decides what each token sees.
//! Every response here carries [`SECURITY_HEADERS`]: a Content-Security-Policy that allows
//! only this origin's scripts, styles and requests (no inline script or style, no
//! framing, no form posts), `X-Frame-Options: DENY`, `nosniff` and `no-referrer`; none
//! carries a CORS header. Files are matched by exact name from a fixed table, so no path
//! (`..`, encoded or not) reaches anything else; unknown names get 404.
//! Caching: `no-cache` with a strong `ETag`, so a browser revalidates and an upgraded
//! server's console is picked up at once.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::admin::response::ApiResponse;

/// Where the console lives on the admin listener.
pub const PREFIX: &str = "/console/";

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

/// Headers on every console response (files, redirect, 404, 405, 304).
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// One embedded file.
pub struct Asset {
    /// Its name under [`PREFIX`] (`""` is the index page).
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($url:literal, $file:literal, $type:expr) => {
        Asset {
            name: $url,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
pub static ASSETS: &[Asset] = &[
    asset!("", "index.html", "text/html; charset=utf-8"),
    asset!("index.html", "index.html", "text/html; charset=utf-8"),
    asset!("console.css", "console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "favicon.svg", "image/svg+xml"),
    asset!("app.js", "app.js", JS),
    asset!("api.js", "api.js", JS),
    asset!("dom.js", "dom.js", JS),
    asset!("charts.js", "charts.js", JS),
    asset!("prometheus.js", "prometheus.js", JS),
    asset!("tenants.js", "tenants.js", JS),
    asset!("users.js", "users.js", JS),
    asset!("plugins.js", "plugins.js", JS),
    asset!("meetings.js", "meetings.js", JS),
    asset!("metrics.js", "metrics.js", JS),
    asset!("node.js", "node.js", JS),
];

/// The answer for a request to `path`, if the path is the console's.
pub fn handle(method: &Method, path: &str, headers: &HeaderMap) -> Option<ApiResponse> {
    if path == "/console" {
        let mut resp = respond(StatusCode::PERMANENT_REDIRECT, "text/plain", Bytes::new());
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static(PREFIX));
        return Some(resp);
    }
    let name = path.strip_prefix(PREFIX)?;
    if method != Method::GET && method != Method::HEAD {
        let mut resp = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"method not allowed\n"),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(resp);
    }
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return Some(respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"no such console file\n"),
        ));
    };
    let etag = etag(asset.body);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        respond(StatusCode::NOT_MODIFIED, asset.content_type, Bytes::new())
    } else {
        respond(
            StatusCode::OK,
            asset.content_type,
            Bytes::from_static(asset.body),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Some(resp)
}

/// A strong validator: the start of the file's SHA-256.
fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> ApiResponse {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache");
    for (name, value) in SECURITY_HEADERS {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(body))
        .expect("static response parts")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<ApiResponse> {
        handle(&Method::GET, path, &HeaderMap::new())
    }

    #[test]
    fn every_asset_is_non_empty_and_names_are_unique() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(!a.body.is_empty(), "{}", a.name);
            assert!(
                ASSETS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn the_index_loads_only_files_that_exist_and_nothing_inline() {
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(
            !index.contains("<script>") && !index.contains(" style="),
            "inline code"
        );
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.body).unwrap();
            // Imports are relative to /console/ and name embedded files.
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let file = line.rsplit("'./").next().unwrap().trim_end_matches("';");
                assert!(ASSETS.iter().any(|b| b.name == file), "{}: {line}", a.name);
            }
            assert!(!text.contains("innerHTML"), "{} writes innerHTML", a.name);
            assert!(
                !text.contains("localStorage"),
                "{} uses localStorage",
                a.name
            );
        }
    }

    #[test]
    fn paths_outside_the_table_are_not_served() {
        assert!(get("/api/v1/tenants").is_none());
        assert!(get("/consoles").is_none());
        for path in [
            "/console/../Cargo.toml",
            "/console/%2e%2e/",
            "/console/x.js",
            "/console//app.js",
        ] {
            assert_eq!(get(path).unwrap().status(), StatusCode::NOT_FOUND, "{path}");
        }
        let r = get("/console").unwrap();
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], PREFIX);
    }

    #[test]
    fn revalidation_answers_not_modified() {
        let first = get("/console/app.js").unwrap();
        let tag = first.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        let again = handle(&Method::GET, "/console/app.js", &h).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()["x-frame-options"], "DENY");
    }
}
