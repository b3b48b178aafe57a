//! XEP-0363 file transfers on the public HTTP listener: `PUT` and `GET` of
//! `/upload/<tenant>/<owner>/<id>/<name>?...`, the URLs the upload service signed
//! (`heliograph_auth::tokens::upload`). Nothing is read from the body before the
//! signature, the expiry and the declared `Content-Length` and `Content-Type` are
//! checked against the slot:
//!
//! | request | answer |
//! | --- | --- |
//! | signature does not match (PUT) | 403 |
//! | signature does not match (GET: another tenant's path, a made-up one) | 404 |
//! | URL expired | 410 |
//! | `Content-Length` or `Content-Type` not the slot's | 400 |
//! | body longer than the slot (chunked) | 413, cut at the slot's size |
//! | a file already stored at that slot | 409 |
//! | the user's or tenant's quota would be exceeded (stored files and PUTs in progress) | 507 |
//! | name not one safe path segment (`..`, `/`) | 400 |
//!
//! A PUT is streamed to the store chunk by chunk and committed only when exactly the
//! slot's size arrived; anything else leaves nothing stored. A GET is streamed from the
//! store. Browsers get CORS headers for the listener's `allowed_origins`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};

use heliograph_auth::tokens::upload::{Access, GrantError, UploadGrant};
use heliograph_core::files::{FileKey, FileMeta, FileStore};
use heliograph_core::upload_reservations::UploadReservations;

use super::{HttpState, cors};

/// Where every upload URL starts.
pub const PREFIX: &str = "/upload/";

/// A response body: a small buffer, or a stored file streamed as it is read.
pub type UploadBody = Either<Full<Bytes>, FileBody>;

/// Streams a stored file in chunks of at most 64 KiB.
pub struct FileBody {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    remaining: u64,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = self.remaining.min(64 * 1024) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.reader).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "stored file shorter than recorded",
                    ))));
                }
                buf.truncate(n);
                self.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<UploadBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))))
        .expect("valid response")
}

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| decode(v))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The file an upload path names, if it names one safely.
fn key_of(path: &str) -> Option<FileKey> {
    let rest = path.strip_prefix(PREFIX)?;
    let parts: Vec<String> = rest.split('/').map(decode).collect::<Option<_>>()?;
    let [tenant, owner, id, name] = parts.as_slice() else {
        return None;
    };
    FileKey::new(tenant, owner, id, name).ok()
}

/// Serves one request under [`PREFIX`].
pub async fn handle(state: &Arc<HttpState>, req: Request<Incoming>) -> Response<UploadBody> {
    let allow = cors::allow_origin(req.headers(), &state.config.allowed_origins);
    let mut resp = match *req.method() {
        Method::OPTIONS => {
            let mut r = cors::preflight(req.headers(), allow.is_some()).map(Either::Left);
            r.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("PUT, GET, HEAD, OPTIONS"),
            );
            r
        }
        Method::PUT => put(state, req).await,
        Method::GET | Method::HEAD => get(state, req).await,
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    };
    cors::decorate(&mut resp, allow);
    resp
}

/// The tenant's signing key, `None` when it cannot be read.
async fn signing_key(state: &HttpState, tenant: &str) -> Option<Vec<u8>> {
    let store = state.core.storage.tokens.clone();
    let name = tenant.to_string();
    match heliograph_core_blocking(move || store.signing_key(&name)).await {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(tenant, error = %e, "reading the signing key for an upload");
            None
        }
    }
}

async fn heliograph_core_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn put(state: &Arc<HttpState>, req: Request<Incoming>) -> Response<UploadBody> {
    let Some(uploads) = state.core.uploads.get() else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let Some(key) = key_of(req.uri().path()) else {
        return text(StatusCode::BAD_REQUEST, "not an upload path\n");
    };
    let query = req.uri().query().unwrap_or_default().to_string();
    let (Some(size), Some(content_type), Some(expires), Some(sig)) = (
        query_param(&query, "len").and_then(|v| v.parse::<u64>().ok()),
        query_param(&query, "type"),
        query_param(&query, "exp").and_then(|v| v.parse::<u64>().ok()),
        query_param(&query, "sig"),
    ) else {
        return text(StatusCode::FORBIDDEN, "not a signed upload URL\n");
    };
    let grant = UploadGrant {
        access: Access::Put,
        tenant: &key.tenant,
        owner: &key.owner,
        id: &key.id,
        name: &key.name,
        size,
        content_type: &content_type,
        expires,
    };
    let Some(secret) = signing_key(state, &key.tenant).await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "try again later\n");
    };
    match grant.verify(&secret, &sig, now_secs()) {
        Ok(()) => {}
        Err(GrantError::BadSignature) => return text(StatusCode::FORBIDDEN, "bad signature\n"),
        Err(GrantError::Expired) => return text(StatusCode::GONE, "upload slot expired\n"),
    }
    let headers = req.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse::<u64>());
    match declared {
        Some(Ok(n)) if n == size => {}
        None => {} // chunked: counted below, cut at the slot's size
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "Content-Length is not the slot's size\n",
            );
        }
    }
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    if !sent_type.eq_ignore_ascii_case(&content_type) {
        return text(StatusCode::BAD_REQUEST, "Content-Type is not the slot's\n");
    }
    let mut sink = match uploads.files.create(&key).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return text(StatusCode::CONFLICT, "already uploaded\n");
        }
        Err(e) => {
            tracing::warn!(error = %e, "starting an upload");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot store\n");
        }
    };
    // Quotas again, with the space PUTs in progress hold: two slots granted at once
    // may not both fit. Checked and reserved under one gate; released when this ends.
    let mut _reservation = None;
    if let Some(tenant) = state.core.tenants.by_name(&key.tenant) {
        let settings = &tenant.spec.upload;
        let quotas = Quotas {
            user: settings.user_quota,
            tenant: settings.tenant_quota,
        };
        let ledger = &uploads.reservations;
        let gate = ledger.gate().await;
        match fits(uploads.files.as_ref(), ledger, &key, size, quotas).await {
            Ok(true) => {}
            Ok(false) => {
                return text(StatusCode::INSUFFICIENT_STORAGE, "over the upload quota\n");
            }
            Err(e) => {
                tracing::warn!(error = %e, "measuring upload usage");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot store\n");
            }
        }
        _reservation = Some(ledger.reserve(&gate, &key.tenant, &key.owner, size));
    }
    let mut body = req.into_body();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The client went away: the sink is dropped, nothing stays.
            return text(StatusCode::BAD_REQUEST, "body not received\n");
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        received += chunk.len() as u64;
        if received > size {
            tracing::info!(tenant = %key.tenant, size, "upload longer than its slot cut off");
            let mut r = text(StatusCode::PAYLOAD_TOO_LARGE, "longer than the slot\n");
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        if let Err(e) = sink.write(&chunk).await {
            tracing::warn!(error = %e, "writing an upload");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot store\n");
        }
    }
    if received != size {
        return text(StatusCode::BAD_REQUEST, "shorter than the slot\n");
    }
    let meta = FileMeta { size, content_type };
    if let Err(e) = sink.commit(meta).await {
        tracing::warn!(error = %e, "committing an upload");
        return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot store\n");
    }
    text(StatusCode::CREATED, "stored\n")
}

/// A tenant's upload quotas in bytes (0: none).
#[derive(Debug, Clone, Copy)]
struct Quotas {
    user: u64,
    tenant: u64,
}

/// Whether a PUT of `size` bytes for `key` fits the quotas, counting the committed files
/// and the space PUTs in progress hold; the caller holds the ledger's gate.
///
/// The reservations are read before the files are measured. Another PUT may finish
/// meanwhile without the gate: its file appears, then its reservation goes. Read in this
/// order it is counted once or (in that short window) twice, never zero times; measured
/// the other way round, a walk of the files that ran before its commit and a read of the
/// reservations after its release both missed it, and two PUTs over the quota both got in.
async fn fits(
    files: &dyn FileStore,
    ledger: &UploadReservations,
    key: &FileKey,
    size: u64,
    quotas: Quotas,
) -> std::io::Result<bool> {
    let pending_user = ledger.pending(&key.tenant, Some(&key.owner));
    let pending_all = ledger.pending(&key.tenant, None);
    let user = files.usage(&key.tenant, Some(&key.owner)).await?;
    let all = files.usage(&key.tenant, None).await?;
    let over = |used: u64, pending: u64, quota: u64| {
        quota > 0 && used.saturating_add(pending).saturating_add(size) > quota
    };
    Ok(!over(user, pending_user, quotas.user) && !over(all, pending_all, quotas.tenant))
}

async fn get(state: &Arc<HttpState>, req: Request<Incoming>) -> Response<UploadBody> {
    let not_found = || text(StatusCode::NOT_FOUND, "not found\n");
    let Some(uploads) = state.core.uploads.get() else {
        return not_found();
    };
    let Some(key) = key_of(req.uri().path()) else {
        return not_found();
    };
    let query = req.uri().query().unwrap_or_default();
    let (Some(expires), Some(sig)) = (
        query_param(query, "exp").and_then(|v| v.parse::<u64>().ok()),
        query_param(query, "sig"),
    ) else {
        return not_found();
    };
    let grant = UploadGrant {
        access: Access::Get,
        tenant: &key.tenant,
        owner: &key.owner,
        id: &key.id,
        name: &key.name,
        size: 0,
        content_type: "",
        expires,
    };
    // A tenant that does not exist has no key to sign with: not found either.
    if state.core.tenants.by_name(&key.tenant).is_none() {
        return not_found();
    }
    let Some(secret) = signing_key(state, &key.tenant).await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "try again later\n");
    };
    match grant.verify(&secret, &sig, now_secs()) {
        Ok(()) => {}
        Err(GrantError::BadSignature) => return not_found(),
        Err(GrantError::Expired) => return text(StatusCode::GONE, "expired\n"),
    }
    let file = match uploads.files.open(&key).await {
        Ok(Some(f)) => f,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "opening an upload");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read\n");
        }
    };
    let content_type = HeaderValue::from_str(&file.meta.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let body = if req.method() == Method::HEAD {
        Either::Left(Full::new(Bytes::new()))
    } else {
        Either::Right(FileBody {
            reader: file.reader,
            remaining: file.meta.size,
        })
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, file.meta.size)
        .header(header::CACHE_CONTROL, "private, max-age=86400")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_DISPOSITION, "attachment")
        .body(body)
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_traversal_or_extra_segments_name_no_file() {
        assert!(key_of("/upload/acme/o/id/a.png").is_some());
        assert!(key_of("/upload/acme/o/id/a%20b.png").is_some());
        assert!(key_of("/upload/acme/o/id/..").is_none());
        assert!(key_of("/upload/acme/o/id/%2E%2E").is_none());
        assert!(key_of("/upload/acme/o/id/a%2Fb").is_none());
        assert!(key_of("/upload/acme/o/id/x/y").is_none());
        assert!(key_of("/upload/acme/o/id").is_none());
    }

    /// A store whose usage walk runs while another PUT finishes: the walk still misses
    /// that PUT's file, and the PUT releases its reservation before the walk returns.
    struct FinishingMeanwhile {
        committed_before: u64,
        finishing: std::sync::Mutex<Option<heliograph_core::upload_reservations::Reservation>>,
    }

    impl FileStore for FinishingMeanwhile {
        fn create<'a>(
            &'a self,
            _: &'a FileKey,
        ) -> futures_util::future::BoxFuture<
            'a,
            std::io::Result<Box<dyn heliograph_core::files::FileSink>>,
        > {
            unimplemented!("not used by the quota check")
        }
        fn open<'a>(
            &'a self,
            _: &'a FileKey,
        ) -> futures_util::future::BoxFuture<
            'a,
            std::io::Result<Option<heliograph_core::files::StoredFile>>,
        > {
            unimplemented!("not used by the quota check")
        }
        fn usage<'a>(
            &'a self,
            _: &'a str,
            _: Option<&'a str>,
        ) -> futures_util::future::BoxFuture<'a, std::io::Result<u64>> {
            self.finishing.lock().unwrap().take();
            Box::pin(std::future::ready(Ok(self.committed_before)))
        }
        fn delete_owner<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> futures_util::future::BoxFuture<'a, std::io::Result<()>> {
            unimplemented!("not used by the quota check")
        }
        fn delete_tenant<'a>(
            &'a self,
            _: &'a str,
        ) -> futures_util::future::BoxFuture<'a, std::io::Result<()>> {
            unimplemented!("not used by the quota check")
        }
        fn expire<'a>(
            &'a self,
            _: &'a str,
            _: std::time::Duration,
        ) -> futures_util::future::BoxFuture<'a, std::io::Result<usize>> {
            unimplemented!("not used by the quota check")
        }
    }

    #[tokio::test]
    async fn a_put_finishing_during_the_check_is_still_counted() {
        // 800,000 stored, a 600,000 PUT in progress that finishes during the check, and
        // a 600,000 PUT asking: 2,000,000 against a quota of 1,500,000.
        let ledger = Arc::new(UploadReservations::default());
        let gate = ledger.gate().await;
        let third = ledger.reserve(&gate, "acme", "alice", 600_000);
        let files = FinishingMeanwhile {
            committed_before: 800_000,
            finishing: std::sync::Mutex::new(Some(third)),
        };
        let key = key_of("/upload/acme/alice/id/four.bin").unwrap();
        let quotas = Quotas {
            user: 1_500_000,
            tenant: 0,
        };
        assert!(!fits(&files, &ledger, &key, 600_000, quotas).await.unwrap());
        assert_eq!(ledger.pending("acme", None), 0, "the other PUT did finish");
        // Alone it fits.
        assert!(fits(&files, &ledger, &key, 600_000, quotas).await.unwrap());
        drop(gate);
    }
}
