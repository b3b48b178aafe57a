//! XMPP over WebSocket (RFC 7395): the upgrade (`xmpp` subprotocol, Origin check), then
//! a session driver over a [`WsLink`] that frames the stream as text frames — one element
//! each, the stream framed by `<open/>` and `<close/>`. The link answers with WebSocket
//! pings as keepalives, enforces the maximum message size and the tenant's stanza size,
//! and can send every client elsewhere with `see-other-uri`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use futures_util::future::BoxFuture;
use heliograph_auth::sasl::ChannelBindings;
use heliograph_core::limits::{LoginGate, UnauthPermit};
use heliograph_core::router::Transport;
use heliograph_core::session::{
    Action, ConnFacts, Driver, Inbound, Keepalive, Link, LinkError, StreamCore,
    StreamErrorCondition, Timing, Written,
};
use heliograph_xml::{Element, ParserLimits, StreamEvent};
use heliograph_xmpp::framing::frame_event;
use tokio::time::timeout;

use super::gauge::{Gauge, Gauged};
use super::limits::AddressGuard;
use super::{ClientInfo, HttpState, cors};
use crate::listener::ConnectionGuard;

pub use heliograph_xmpp::framing::{NS_FRAMING, frame_text};
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

type Body = Full<Bytes>;

fn refuse(status: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .expect("valid response")
}

fn header_has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Checks an upgrade request and answers 101 (spawning the connection task) or an error.
pub fn upgrade(
    state: Arc<HttpState>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let client = state.client_info(peer, req.headers());
    if !header_has_token(&req, header::UPGRADE, "websocket")
        || !header_has_token(&req, header::CONNECTION, "upgrade")
    {
        return refuse(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required\n");
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut r = refuse(StatusCode::BAD_REQUEST, "unsupported WebSocket version\n");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return refuse(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    // The pages this listener serves itself (`static_dir`) may use it from its own origin.
    let own_page = state.files.is_some() && cors::same_origin(req.headers());
    if !own_page && !cors::origin_allowed(req.headers(), &state.config.allowed_origins) {
        tracing::info!(address = %client.addr.display, origin = ?req.headers().get(header::ORIGIN), "WebSocket origin refused");
        return refuse(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    if !header_has_token(&req, header::SEC_WEBSOCKET_PROTOCOL, "xmpp") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the xmpp subprotocol is required (RFC 7395)\n",
        );
    }
    if state.refusing_sessions() {
        heliograph_metrics::connection_refused("websocket", "draining");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is draining\n");
    }
    let Some(limit) = state.limiter.enter(client.addr.ip) else {
        tracing::info!(address = %client.addr.display, "too many sessions from this address");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sessions from this address\n",
        );
    };
    let max_unauth = state.core.config().limits.max_unauthenticated;
    let Ok(unauth) = state.core.limits.admit_unauthenticated(max_unauth) else {
        heliograph_metrics::connection_refused("websocket", "unauthenticated_limit");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many unauthenticated connections\n",
        );
    };
    let guard = state.tracker.enter();
    let socket = req.extensions().get::<super::Socket>().map(|s| s.0);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let st = state.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let max = st.config.max_body_size;
                let cfg = WebSocketConfig::default()
                    .max_message_size(Some(max))
                    .max_frame_size(Some(max));
                // Before authentication the stream's limit is the small one; the
                // session raises it once bound.
                let config = st.core.config();
                let unauth_limit = config.c2s.max_unauthenticated_stanza_size;
                let total =
                    unauth.buffer(&st.core.limits, config.limits.max_unauthenticated_buffered);
                let gauge = Gauge::new(unauth_limit.min(max), Some(total));
                let ws = WebSocketStream::from_raw_socket(
                    Gauged::new(TokioIo::new(upgraded), gauge.clone()),
                    Role::Server,
                    Some(cfg),
                )
                .await;
                run(st, client, ws, socket, gauge, unauth, guard, limit).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()))
        .header(header::SEC_WEBSOCKET_PROTOCOL, "xmpp")
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

type Ws = WebSocketStream<Gauged<TokioIo<hyper::upgrade::Upgraded>>>;

/// How long, after our `<close/>`, the client gets to close the WebSocket, counted from
/// the last sign of progress: a frame from the client, or more of what we wrote taken
/// (a slow reader behind a buffering proxy answers only once it reaches our close).
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// The longest wait for the client's close, progress or not.
const CLOSE_MAX: Duration = Duration::from_secs(30);
/// After our side is closed, how long we go on reading (and discarding) until the client
/// ends the connection: input meeting a closed socket makes the kernel reset the
/// connection, throwing away what it had not sent yet.
const LINGER: Duration = Duration::from_secs(2);

/// Runs one WebSocket session to its end.
#[allow(clippy::too_many_arguments)]
async fn run(
    state: Arc<HttpState>,
    client: ClientInfo,
    ws: Ws,
    socket: Option<crate::io::SocketId>,
    gauge: Arc<Gauge>,
    unauth: UnauthPermit,
    _guard: ConnectionGuard,
    _limit: AddressGuard,
) {
    let core = state.core.clone();
    let config = state.config.clone();
    let (tx, rx) = mpsc::channel(core.config().c2s.session_queue.max(16));
    let facts = ConnFacts {
        address: client.addr.display.clone(),
        tls: client.secure,
        channel_bindings: Default::default(),
        starttls_available: false,
        transport: Transport::WebSocket,
        policy: client.policy,
    };
    tracing::debug!(address = %facts.address, "WebSocket connected");
    let mut stream = StreamCore::new(core.clone(), facts, tx);
    stream.hold_until_bound(unauth);
    let _open = heliograph_metrics::connection_opened("websocket");
    let link = WsLink {
        ws,
        socket,
        gauge,
        limits: core.parser_limits(),
        see_other_uri: config.see_other_uri.clone(),
        close_code: None,
        unsent: Vec::new(),
        closed: false,
    };
    let c2s = core.config().c2s.clone();
    let timing = Timing {
        negotiation_deadline: Instant::now()
            + Duration::from_secs(config.negotiation_timeout.max(1)),
        idle: Duration::from_secs(config.idle_timeout.max(1)),
        ping_interval: (config.websocket_ping_interval > 0)
            .then(|| Duration::from_secs(config.websocket_ping_interval)),
        ping_timeout: Duration::from_secs(c2s.ping_timeout.max(1)),
        write_timeout: Duration::from_secs(c2s.write_timeout.max(1)),
    };
    let gate = LoginGate {
        core: core.clone(),
        ip: client.addr.ip,
    };
    Driver::new(stream, Box::new(link), rx, timing, state.shutdown.clone())
        .with_login_gate(gate)
        .run()
        .await;
}

/// A stream in WebSocket text frames (see the module docs).
pub struct WsLink {
    ws: Ws,
    /// The TCP socket under the WebSocket (its unacknowledged output, while closing).
    socket: Option<crate::io::SocketId>,
    /// What the socket holds of an unfinished message, against the stream's limit.
    gauge: Arc<Gauge>,
    limits: ParserLimits,
    see_other_uri: String,
    /// The close code and reason a refusal asks for.
    close_code: Option<(CloseCode, &'static str)>,
    unsent: Vec<Element>,
    closed: bool,
}

impl WsLink {
    /// RFC 7395 §3.6.1: open the stream, then close it pointing at another endpoint.
    async fn see_other(&mut self, to: Option<&str>) {
        let from = to.unwrap_or("");
        let open = format!(
            "<open xmlns=\"{NS_FRAMING}\" from=\"{}\" id=\"redirect\" version=\"1.0\"/>",
            heliograph_xml::element::escaped_text(from)
        );
        let mut close = String::from("<close xmlns=\"");
        close.push_str(NS_FRAMING);
        close.push_str("\" see-other-uri=\"");
        heliograph_xml::element::escape_attr(&self.see_other_uri, &mut close);
        close.push_str("\"/>");
        tracing::info!(uri = %self.see_other_uri, "WebSocket client sent elsewhere");
        let _ = self.ws.feed(Message::text(open)).await;
        let _ = self.ws.feed(Message::text(close)).await;
        let _ = self
            .ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "see-other-uri".into(),
            })))
            .await;
        self.closed = true;
    }
}

impl Link for WsLink {
    fn transport(&self) -> Transport {
        Transport::WebSocket
    }

    fn try_recv(&mut self) -> Option<Inbound> {
        None
    }

    fn recv(&mut self) -> BoxFuture<'_, Inbound> {
        Box::pin(async move {
            loop {
                if self.closed {
                    return Inbound::Gone;
                }
                let next = self.ws.next().await;
                if matches!(next, Some(Ok(_))) {
                    self.gauge.message_read();
                }
                match next {
                    None => return Inbound::Gone,
                    Some(Err(_)) if self.gauge.is_over_total() => {
                        tracing::info!(
                            "unauthenticated connections hold too much; closing this one"
                        );
                        return Inbound::Refused(
                            StreamErrorCondition::ResourceConstraint,
                            "the server holds too much for unauthenticated connections".into(),
                        );
                    }
                    Some(Err(_)) if self.gauge.is_over() => {
                        let max = self.limits.max_stanza_bytes;
                        tracing::info!(max, "WebSocket message over the stream's limit");
                        self.close_code = Some((CloseCode::Size, "message too large"));
                        return Inbound::Refused(
                            StreamErrorCondition::PolicyViolation,
                            format!("stanza larger than {max} bytes"),
                        );
                    }
                    Some(Ok(Message::Text(text))) => {
                        return match frame_event(text.as_str(), self.limits) {
                            Ok(StreamEvent::Open(h)) if !self.see_other_uri.is_empty() => {
                                self.see_other(h.attr("to")).await;
                                Inbound::Gone
                            }
                            Ok(ev) => Inbound::Event(ev),
                            Err(e) => Inbound::Refused(
                                StreamErrorCondition::from_parse_error(&e),
                                e.to_string(),
                            ),
                        };
                    }
                    Some(Ok(Message::Binary(_))) => {
                        self.close_code =
                            Some((CloseCode::Unsupported, "binary frames are not allowed"));
                        return Inbound::Refused(
                            StreamErrorCondition::UnsupportedEncoding,
                            "binary frames are not XMPP (RFC 7395)".into(),
                        );
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Inbound::Heartbeat,
                    Some(Ok(Message::Frame(_))) => {}
                    // The WebSocket closed without the stream's `<close/>` first: the
                    // connection is gone, not the stream (RFC 7395 §3.6; a stream
                    // management session waits to be resumed). The close reply goes out.
                    Some(Ok(Message::Close(_))) => {
                        let _ = self.ws.flush().await;
                        return Inbound::Gone;
                    }
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                        tracing::info!(error = %e, "WebSocket message too large");
                        self.close_code = Some((CloseCode::Size, "message too large"));
                        return Inbound::Refused(
                            StreamErrorCondition::PolicyViolation,
                            "message too large".into(),
                        );
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "WebSocket error");
                        return Inbound::Gone;
                    }
                }
            }
        })
    }

    fn send(&mut self, actions: Vec<Action>) -> BoxFuture<'_, Result<Written, LinkError>> {
        // Every frame is made before anything is written, and the messages wait in
        // `unsent` until the flush that carries them succeeds: a write that fails, or
        // that the driver's timeout cuts short, loses none of them.
        let before = self.unsent.len();
        let mut frames = Vec::with_capacity(actions.len());
        let mut written = Written::Done;
        for action in actions {
            match action {
                Action::Header { id, from } => {
                    let mut open = heliograph_xml::element::open_tag(
                        "open",
                        &[
                            ("xmlns", NS_FRAMING),
                            ("id", &id),
                            ("from", &from),
                            ("version", "1.0"),
                            ("xml:lang", "en"),
                        ],
                    );
                    open.pop();
                    open.push_str("/>");
                    frames.push(Message::text(open));
                }
                Action::Send(el) => {
                    frames.push(Message::text(frame_text(&el)));
                    if el.name() == "message" {
                        self.unsent.push(el);
                    }
                }
                // A frame declares its own namespace: serialized here, not as kept.
                // Stream management keeps the stanza until acknowledged.
                Action::SendKept(el, _) => frames.push(Message::text(frame_text(&el))),
                // Never offered: TLS is the HTTP listener's.
                Action::Restart | Action::StartTls => {}
                Action::Close(error) => {
                    if let Some((cond, text)) = error {
                        let el = cond.to_element(text.as_deref());
                        frames.push(Message::text(frame_text(&el)));
                    }
                    frames.push(Message::text(format!("<close xmlns=\"{NS_FRAMING}\"/>")));
                    let (code, reason) = self.close_code.unwrap_or((CloseCode::Normal, ""));
                    frames.push(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })));
                    self.closed = true;
                    written = Written::Closed;
                    break;
                }
            }
        }
        Box::pin(async move {
            for frame in frames {
                if self.ws.feed(frame).await.is_err() {
                    return Err(LinkError::Io(std::io::Error::other(
                        "WebSocket write failed",
                    )));
                }
            }
            if self.ws.flush().await.is_err() {
                return Err(LinkError::Io(std::io::Error::other(
                    "WebSocket write failed",
                )));
            }
            self.unsent.truncate(before);
            Ok(written)
        })
    }

    fn start_tls<'a>(
        &'a mut self,
        _domain: Option<&'a str>,
    ) -> BoxFuture<'a, Option<ChannelBindings>> {
        Box::pin(async { None })
    }

    fn set_limits(&mut self, limits: ParserLimits) {
        self.limits = limits;
        self.gauge.set_limit(limits.max_stanza_bytes);
    }

    fn keepalive(&mut self) -> BoxFuture<'_, Keepalive> {
        Box::pin(async move {
            match self.ws.send(Message::Ping(Bytes::from_static(b"hg"))).await {
                Ok(()) => Keepalive::Sent,
                Err(_) => Keepalive::None,
            }
        })
    }

    fn close(&mut self, _peer_closed: bool) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The client answers our close frame with its own; tungstenite completes the
            // handshake while we read.
            let started = Instant::now();
            let mut progress = started;
            let unacknowledged =
                |socket: Option<crate::io::SocketId>| socket.and_then(crate::io::unacknowledged);
            let mut queued = unacknowledged(self.socket);
            let mut answered = false;
            loop {
                let until = (progress + CLOSE_WAIT).min(started + CLOSE_MAX);
                match tokio::time::timeout_at(until, self.ws.next()).await {
                    Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => {
                        answered = true;
                        break;
                    }
                    Ok(Some(Ok(_))) => progress = Instant::now(),
                    Err(_) => {
                        let now = unacknowledged(self.socket);
                        match (queued, now) {
                            (Some(before), Some(now))
                                if now < before && Instant::now() < started + CLOSE_MAX =>
                            {
                                queued = Some(now);
                                progress = Instant::now();
                            }
                            _ => break,
                        }
                    }
                }
            }
            let _ = self.ws.close(None).await;
            if !answered {
                let _ = timeout(LINGER, async {
                    while let Some(Ok(_)) = self.ws.next().await {}
                })
                .await;
            }
        })
    }

    fn take_unsent(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.unsent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
