//! The public HTTP listener (default port 5280, optional TLS): BOSH at `bosh_path`
//! ([`bosh`]) and XMPP over WebSocket at `websocket_path` ([`websocket`]), with CORS for
//! browsers ([`cors`]), the real client address behind trusted proxies ([`proxy`]) and a
//! per-address session limit ([`limits`]), optionally the files of a folder
//! ([`static_files`]) for a web app on the same origin, and XEP-0363 file transfers
//! under `/upload/` ([`upload`]).
//!
//! A connection is *secure* when the listener has TLS or a trusted proxy reports that the
//! client used HTTPS. Authentication on insecure connections is refused when
//! `require_tls` is set, except for loopback clients while `allow_insecure_loopback` is
//! set (local development).
//!
//! During a drain (and a shutdown) the listener keeps accepting connections: BOSH
//! requests of existing sessions come on new ones whenever a proxy or browser opens
//! them, and must reach their session until it has delivered its terminate. New
//! sessions are refused instead (BOSH session creation gets `system-shutdown`, a
//! WebSocket upgrade 503). Once shutdown is requested and no BOSH session is left, the
//! listener stops and idle connections close.

pub mod bosh;
pub mod cors;
pub mod gauge;
pub mod limits;
pub mod proxy;
pub mod static_files;
pub mod upload;
pub mod websocket;

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use heliograph_config::HttpListener;
use heliograph_core::Core;
use heliograph_core::session::ListenerPolicy;
use heliograph_core::shutdown::Shutdown;

use self::limits::AddressLimiter;
use self::proxy::{ClientAddr, IpRange};
use crate::listener::ConnectionTracker;
use crate::tls::TlsStore;

/// `Content-Type` of every BOSH response.
pub const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";
/// Responses at least this large are gzipped when the client accepts it.
const GZIP_MIN: usize = 256;

type Body = Full<Bytes>;

/// What every request handler of a listener shares.
pub struct HttpState {
    pub core: Arc<Core>,
    pub config: Arc<HttpListener>,
    pub trusted: Vec<IpRange>,
    pub bosh: Arc<bosh::Registry>,
    pub bosh_settings: bosh::Settings,
    pub limiter: Arc<AddressLimiter>,
    pub tracker: Arc<ConnectionTracker>,
    pub shutdown: Shutdown,
    pub tls: bool,
    /// Open TCP connections on this listener (for `max_connections`).
    pub live: Arc<std::sync::atomic::AtomicUsize>,
    /// The `static_dir` folder, when one is served.
    pub files: Option<static_files::StaticFiles>,
}

/// Who sent a request, as the session core should see it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub addr: ClientAddr,
    /// TLS on the listener, or HTTPS reported by a trusted proxy.
    pub secure: bool,
    pub policy: ListenerPolicy,
}

impl HttpState {
    /// Resolves once the listener is done: shutdown requested and no BOSH session left
    /// (one that ended may still be waiting for a request to tell its client).
    async fn done(&self) {
        self.shutdown.clone().requested().await;
        self.bosh.wait_empty().await;
    }

    /// No new session (BOSH or WebSocket): the node drains or shuts down.
    pub(crate) fn refusing_sessions(&self) -> bool {
        self.core.drain.is_draining() || self.shutdown.is_requested()
    }

    fn client_info(&self, peer: SocketAddr, headers: &hyper::HeaderMap) -> ClientInfo {
        let addr = proxy::client_addr(peer, headers, &self.trusted);
        let secure = self.tls || addr.forwarded_https;
        let loopback_ok = self.config.allow_insecure_loopback && addr.ip.is_loopback();
        let require_tls = self.config.require_tls && !loopback_ok;
        ClientInfo {
            policy: ListenerPolicy {
                require_tls,
                allow_plain_without_tls: !require_tls,
                max_auth_attempts: self.config.max_auth_attempts,
            },
            addr,
            secure,
        }
    }
}

/// Accepts HTTP connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    config: Arc<HttpListener>,
    core: Arc<Core>,
    tls: Option<Arc<TlsStore>>,
    tracker: Arc<ConnectionTracker>,
    shutdown: Shutdown,
) {
    let state = Arc::new(HttpState {
        trusted: config
            .trusted_proxies
            .iter()
            .filter_map(|p| IpRange::parse(p))
            .collect(),
        bosh: Arc::new(bosh::Registry::default()),
        bosh_settings: bosh::Settings::from_listener(&config),
        limiter: Arc::new(AddressLimiter::new(config.max_sessions_per_address)),
        tracker: tracker.clone(),
        shutdown,
        tls: tls.is_some(),
        live: Arc::default(),
        files: config.static_dir.as_deref().and_then(|dir| {
            static_files::StaticFiles::new(dir, &config.static_prefix)
                .inspect_err(|e| tracing::error!(error = %e, "static files not served"))
                .ok()
        }),
        config,
        core,
    });
    if !state.config.bosh_path.is_empty() {
        state
            .core
            .bosh_relays
            .add_endpoint(bosh::relay::Endpoint::new(&state));
    }
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = state.done() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let guard = tracker.enter();
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let socket = crate::io::socket_of(&stream);
                    let (mut stream, mut peer) = (stream, peer);
                    if state.config.proxy_protocol {
                        let limit = Duration::from_secs(state.config.request_timeout.max(1));
                        let proxy = crate::proxy_protocol::accept(
                            &mut stream,
                            peer,
                            &state.trusted,
                            limit,
                            "http",
                        );
                        match proxy.await {
                            Some(client) => peer = client,
                            None => return,
                        }
                    }
                    let permit = state.core.limits.admit(
                        peer.ip(),
                        &state.live,
                        state.config.max_connections,
                        state.config.max_connections_per_address,
                    );
                    let _permit = match permit {
                        Ok(p) => p,
                        Err(r) => {
                            tracing::debug!(peer = %peer, reason = r.label(), "HTTP connection refused");
                            heliograph_metrics::connection_refused("http", r.label());
                            return;
                        }
                    };
                    match tls {
                        None => serve_connection(state, stream, peer, socket).await,
                        Some(tls) => {
                            let timeout = Duration::from_secs(state.config.request_timeout.max(1));
                            match tokio::time::timeout(timeout, tls.accept(stream, None)).await {
                                Ok(Ok((s, _))) => serve_connection(state, s, peer, socket).await,
                                Ok(Err(e)) => {
                                    tracing::debug!(peer = %peer, error = %e, "HTTPS handshake failed")
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    drop(guard);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one HTTP connection. `socket` is its TCP socket, which every request carries
/// in its extensions (a WebSocket's closing handshake watches it).
async fn serve_connection<S>(
    state: Arc<HttpState>,
    stream: S,
    peer: SocketAddr,
    socket: crate::io::SocketId,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let st = state.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let st = st.clone();
        req.extensions_mut().insert(Socket(socket));
        async move {
            let resp = if req.uri().path().starts_with(upload::PREFIX) {
                upload::handle(&st, req).await
            } else {
                route(st, peer, req).await.map(http_body_util::Either::Left)
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let timeout = Duration::from_secs(state.config.request_timeout.max(1));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = state.done() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "HTTP connection ended with an error");
    }
}

/// The TCP socket a request came on (in the request's extensions).
#[derive(Clone, Copy)]
pub(crate) struct Socket(pub(crate) crate::io::SocketId);

async fn route(state: Arc<HttpState>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let cfg = &state.config;
    if !cfg.bosh_path.is_empty() && path == cfg.bosh_path {
        let cors = cors::allow_origin(req.headers(), &cfg.allowed_origins);
        let mut resp = match *req.method() {
            Method::OPTIONS => cors::preflight(req.headers(), cors.is_some()),
            Method::POST => bosh_request(&state, peer, req).await,
            _ => method_not_allowed("POST, OPTIONS"),
        };
        cors::decorate(&mut resp, cors);
        return resp;
    }
    if !cfg.websocket_path.is_empty() && path == cfg.websocket_path {
        return match *req.method() {
            Method::GET => websocket::upgrade(state, peer, req),
            _ => method_not_allowed("GET"),
        };
    }
    if let Some(files) = state.files.as_ref().filter(|f| f.claims(&path)) {
        return files.respond(req.method(), &path).await;
    }
    text_response(StatusCode::NOT_FOUND, "not found\n")
}

async fn bosh_request(
    state: &Arc<HttpState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let client = state.client_info(peer, req.headers());
    let gzip = accepts_gzip(req.headers());
    let max = state.config.max_body_size;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        tracing::info!(address = %client.addr.display, "BOSH body too large");
        return xml_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            bosh::body::terminate("policy-violation").into(),
            false,
        );
    }
    let timeout = Duration::from_secs(state.config.request_timeout.max(1));
    let collected =
        tokio::time::timeout(timeout, read_bosh_body(state, req.into_body(), max)).await;
    let data = match collected {
        Err(_) => {
            tracing::info!(address = %client.addr.display, "BOSH body too slow");
            return text_response(StatusCode::REQUEST_TIMEOUT, "request body too slow\n");
        }
        Ok(Err(BoshBodyError::TooLarge(allowed))) => {
            tracing::info!(address = %client.addr.display, allowed, "BOSH body too large");
            return xml_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                bosh::body::terminate("policy-violation").into(),
                false,
            );
        }
        Ok(Err(BoshBodyError::Busy)) => {
            tracing::info!(address = %client.addr.display, "unauthenticated connections hold too much; BOSH body refused");
            return xml_response(
                StatusCode::SERVICE_UNAVAILABLE,
                bosh::body::terminate("policy-violation").into(),
                false,
            );
        }
        Ok(Err(BoshBodyError::Read)) => {
            return text_response(StatusCode::BAD_REQUEST, "cannot read body\n");
        }
        Ok(Ok(data)) => data,
    };
    // The body is bounded already (by `max_body_size`, or the unauthenticated limit);
    // each stanza is checked against its stream's limit by the session.
    let mut limits = state.core.parser_limits();
    limits.max_stanza_bytes = limits.max_stanza_bytes.max(max);
    let parsed = bosh::body::BodyRequest::parse(&data, limits);
    let body = match parsed {
        // A session of another cluster node: answered there.
        Ok(r)
            if let Some(sid) = r.sid.as_deref()
                && let Some(answer) = bosh::relay::elsewhere(state, sid, &data).await =>
        {
            answer
        }
        Ok(r) => bosh::handle(state, r, data.len(), &client).await,
        Err(e) => {
            tracing::info!(address = %client.addr.display, error = %e, "bad BOSH request");
            Bytes::from(bosh::body::terminate("bad-request"))
        }
    };
    xml_response(StatusCode::OK, body, gzip)
}

/// Room for the `<body/>` wrapper around a stanza.
const BOSH_WRAPPER: usize = 1024;

/// Why a BOSH request body was not read.
#[derive(Debug)]
enum BoshBodyError {
    /// Longer than allowed (the limit in bytes).
    TooLarge(usize),
    /// Unauthenticated connections hold too much together.
    Busy,
    Read,
}

/// Reads a BOSH request body: up to what a session that has not authenticated may send
/// (`[c2s] max_unauthenticated_stanza_size`, with room for the wrapper), or up to
/// `max` when its `sid` names a session whose stream takes larger stanzas (it is bound).
/// A client that never authenticates makes the server hold little, however long the body
/// it starts.
async fn read_bosh_body(
    state: &HttpState,
    mut body: Incoming,
    max: usize,
) -> Result<Bytes, BoshBodyError> {
    let config = state.core.config();
    let unauth = config.c2s.max_unauthenticated_stanza_size;
    let mut allowed = unauth.saturating_add(BOSH_WRAPPER).min(max);
    // Counted in the total of unauthenticated connections until known to be for a
    // bound session.
    let total = state
        .core
        .limits
        .unauth_buffer(config.limits.max_unauthenticated_buffered);
    let mut counted = true;
    let mut data = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BoshBodyError::Read)?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if data.len() + chunk.len() > allowed {
            let bound = allowed < max
                && body_sid(&data, &chunk).is_some_and(|sid| {
                    state
                        .bosh
                        .stanza_limit(&sid)
                        .is_some_and(|limit| limit > unauth)
                        // Another node's session: that node's session checks its stanzas.
                        || (!state.bosh.holds(&sid) && relayed_sid(state, &sid))
                });
            if !bound {
                return Err(BoshBodyError::TooLarge(allowed));
            }
            allowed = max;
            counted = false;
            total.hold(0);
            if data.len() + chunk.len() > allowed {
                return Err(BoshBodyError::TooLarge(allowed));
            }
        }
        if counted && !total.hold(data.len() + chunk.len()) {
            return Err(BoshBodyError::Busy);
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data.freeze())
}

/// `sid` names a session of another cluster node.
fn relayed_sid(state: &HttpState, sid: &str) -> bool {
    state
        .core
        .bosh_relays
        .relay()
        .is_some_and(|r| r.owner(sid).is_some())
}

/// The `sid` of the `<body/>` start tag at the beginning of a request (`data` then
/// `more`), if the whole tag is there.
fn body_sid(data: &[u8], more: &[u8]) -> Option<String> {
    let mut parser = heliograph_xml::StreamParser::new(heliograph_xml::ParserLimits {
        max_stanza_bytes: data.len() + more.len() + 1,
        max_depth: 4,
    });
    let _ = parser.feed(data);
    let _ = parser.feed(more);
    match parser.next_event() {
        Ok(Some(heliograph_xml::StreamEvent::Open(header))) => {
            header.attr("sid").map(str::to_string)
        }
        _ => None,
    }
}

fn accepts_gzip(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

/// An XML response, gzipped when allowed and worth it.
fn xml_response(status: StatusCode, body: Bytes, gzip_ok: bool) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, XML_CONTENT_TYPE)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::VARY, "Accept-Encoding");
    let body = if gzip_ok && body.len() >= GZIP_MIN {
        match gzip(&body) {
            Some(z) => {
                builder = builder.header(header::CONTENT_ENCODING, "gzip");
                Bytes::from(z)
            }
            None => body,
        }
    } else {
        body
    };
    builder.body(Full::new(body)).expect("valid response")
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .expect("valid response")
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
