//! Files of a folder served read-only on the HTTP listener (`static_dir` under
//! `static_prefix`), so a web app comes from the same origin as BOSH and WebSocket.
//!
//! GET and HEAD only; a folder is served as its `index.html` (never listed). Every request
//! path is percent-decoded segment by segment; a segment that is `.` or `..`, starts with
//! a dot (hidden files) or holds a NUL or a separator is refused, and the resolved file is
//! canonicalized and must lie inside the canonical root (so symlinks cannot lead out).
//! Anything else is 404.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

/// Why a request path names no servable file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StaticError {
    /// Not under the prefix, malformed, escaping the root, or no such file.
    #[error("not found")]
    NotFound,
    /// The folder itself cannot be used (missing, unreadable).
    #[error("static_dir {0} cannot be used: {1}")]
    Root(PathBuf, String),
}

/// A folder served under a URL prefix.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// Canonical path of the folder.
    root: PathBuf,
    /// Always ends with `/`.
    prefix: String,
}

impl StaticFiles {
    /// Serves `dir` under `prefix` (which starts with `/`).
    pub fn new(dir: &Path, prefix: &str) -> Result<Self, StaticError> {
        let root = dir
            .canonicalize()
            .map_err(|e| StaticError::Root(dir.to_path_buf(), e.to_string()))?;
        if !root.is_dir() {
            return Err(StaticError::Root(root, "not a folder".into()));
        }
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(StaticFiles { root, prefix })
    }

    /// Whether a request for `path` is this folder's to answer.
    pub fn claims(&self, path: &str) -> bool {
        path.starts_with(&self.prefix) || format!("{path}/") == self.prefix
    }

    /// The file a URL path names, inside the root.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, StaticError> {
        let rest = path
            .strip_prefix(&self.prefix)
            .or_else(|| (format!("{path}/") == self.prefix).then_some(""))
            .ok_or(StaticError::NotFound)?;
        let mut candidate = self.root.clone();
        for raw in rest.split('/').filter(|s| !s.is_empty()) {
            let segment = percent_decode(raw).ok_or(StaticError::NotFound)?;
            if segment == "."
                || segment == ".."
                || segment.contains(['/', '\\', '\0'])
                || segment.starts_with('.')
            {
                return Err(StaticError::NotFound);
            }
            candidate.push(segment);
        }
        let mut file = candidate
            .canonicalize()
            .map_err(|_| StaticError::NotFound)?;
        if file.is_dir() {
            file = file
                .join("index.html")
                .canonicalize()
                .map_err(|_| StaticError::NotFound)?;
        }
        if !file.starts_with(&self.root) || !file.is_file() {
            return Err(StaticError::NotFound);
        }
        Ok(file)
    }

    /// Answers a request for `path`: the file with its content type, 404, or 405.
    pub async fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Ok(file) = self.resolve(path) else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let data = match tokio::fs::read(&file).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "static file unreadable");
                return plain(StatusCode::NOT_FOUND, "not found\n");
            }
        };
        let len = data.len();
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(data)
        };
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type(&file))
            .header(header::CONTENT_LENGTH, len)
            .header(header::CACHE_CONTROL, "no-cache")
            .header("x-content-type-options", "nosniff")
            .body(Full::new(body))
            .expect("valid response")
    }
}

/// The `Content-Type` for a file, by its extension.
pub fn content_type(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

/// `%XX`-decodes a path segment; `None` when malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A served folder `app/` with files and a subfolder, and a secret file next to it.
    fn fixture() -> (tempfile::TempDir, StaticFiles) {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("lib")).unwrap();
        std::fs::create_dir_all(app.join("empty")).unwrap();
        for (name, text) in [
            ("index.html", "<!doctype html>"),
            ("app.mjs", "export {}"),
            ("lib/x.js", "1"),
            ("style.css", "a{}"),
            ("data.json", "{}"),
            ("mod.wasm", "\0asm"),
            ("with space.txt", "s"),
            (".hidden", "h"),
        ] {
            std::fs::write(app.join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), app.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path(), app.join("up")).unwrap();
        let files = StaticFiles::new(&app, "/").unwrap();
        (dir, files)
    }

    async fn get(files: &StaticFiles, path: &str) -> (StatusCode, String, Vec<u8>) {
        let r = files.respond(&Method::GET, path).await;
        let ct = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, ct, body)
    }

    #[tokio::test]
    async fn serves_files_with_their_content_types() {
        let (_dir, files) = fixture();
        for (path, ct, body) in [
            ("/", "text/html; charset=utf-8", "<!doctype html>"),
            ("/index.html", "text/html; charset=utf-8", "<!doctype html>"),
            ("/app.mjs", "text/javascript; charset=utf-8", "export {}"),
            ("/lib/x.js", "text/javascript; charset=utf-8", "1"),
            ("/style.css", "text/css; charset=utf-8", "a{}"),
            ("/data.json", "application/json", "{}"),
            ("/mod.wasm", "application/wasm", "\0asm"),
            ("/with%20space.txt", "text/plain; charset=utf-8", "s"),
        ] {
            let got = get(&files, path).await;
            assert_eq!(got, (StatusCode::OK, ct.to_string(), body.into()), "{path}");
        }
    }

    #[tokio::test]
    async fn traversal_and_missing_files_are_404() {
        let (_dir, files) = fixture();
        for path in [
            "/../secret.txt",
            "/lib/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/lib/%2e%2e/%2e%2e/secret.txt",
            "/..%5csecret.txt",
            "/leak.txt",
            "/up/secret.txt",
            "/.hidden",
            "/nope.html",
            "/empty",
            "/empty/",
            "/index.html%00.js",
            "/%zz",
            "/%c0%ae%c0%ae/secret.txt",
        ] {
            let (status, _, body) = get(&files, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_ne!(body, b"secret", "{path}");
        }
    }

    #[tokio::test]
    async fn head_has_no_body_and_other_methods_are_refused() {
        let (_dir, files) = fixture();
        let r = files.respond(&Method::HEAD, "/app.mjs").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "9");
        assert!(r.into_body().collect().await.unwrap().to_bytes().is_empty());
        let r = files.respond(&Method::POST, "/app.mjs").await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }

    #[tokio::test]
    async fn a_prefix_scopes_the_folder() {
        let (dir, _) = fixture();
        let files = StaticFiles::new(&dir.path().join("app"), "/app").unwrap();
        assert!(files.claims("/app") && files.claims("/app/x") && !files.claims("/apps"));
        assert_eq!(get(&files, "/app").await.0, StatusCode::OK);
        assert_eq!(get(&files, "/app/lib/x.js").await.0, StatusCode::OK);
        assert_eq!(get(&files, "/lib/x.js").await.0, StatusCode::NOT_FOUND);
        assert!(matches!(
            StaticFiles::new(&dir.path().join("missing"), "/"),
            Err(StaticError::Root(..))
        ));
    }
}
