//! XMPP over WebSocket (RFC 7395): the upgrade (`xmpp` subprotocol, Origin check), then a
//! task per connection that moves text frames — one element each, the stream framed by
//! `<open/>` and `<close/>` — between the socket and the session core. Sends WebSocket
//! pings, enforces the maximum message size, negotiation and idle timeouts, and can send
//! every client elsewhere with `see-other-uri`.

use std::collections::VecDeque;
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
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::limits::AddressGuard;
use super::{ClientInfo, HttpState, cors};
use crate::router::Transport;
use crate::session::{Action, ConnFacts, StreamCore, StreamErrorCondition};
use crate::transport::listener::ConnectionGuard;
use crate::xml::parser::parse_element;
use crate::xml::{Element, StreamEvent, StreamHeader, ns};

/// `urn:ietf:params:xml:ns:xmpp-framing`
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAILBOX_BATCH: usize = 64;

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
    if !cors::origin_allowed(req.headers(), &state.config.allowed_origins) {
        tracing::info!(address = %client.addr.display, origin = ?req.headers().get(header::ORIGIN), "WebSocket origin refused");
        return refuse(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    if !header_has_token(&req, header::SEC_WEBSOCKET_PROTOCOL, "xmpp") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the xmpp subprotocol is required (RFC 7395)\n",
        );
    }
    let Some(limit) = state.limiter.enter(client.addr.ip) else {
        tracing::info!(address = %client.addr.display, "too many sessions from this address");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sessions from this address\n",
        );
    };
    let max_unauth = state.server.config().limits.max_unauthenticated;
    let Ok(unauth) = state.server.edge.limits.admit_unauthenticated(max_unauth) else {
        crate::metrics::connection_refused("websocket", "unauthenticated_limit");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many unauthenticated connections\n",
        );
    };
    let guard = state.tracker.enter();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let st = state.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let max = st.config.max_body_size;
                let cfg = WebSocketConfig::default()
                    .max_message_size(Some(max))
                    .max_frame_size(Some(max));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(cfg),
                )
                .await;
                Connection {
                    state: st,
                    client,
                    ws,
                    unauth: Some(unauth),
                    _guard: guard,
                    _limit: limit,
                }
                .run()
                .await;
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

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

struct Connection {
    state: Arc<HttpState>,
    client: ClientInfo,
    ws: Ws,
    /// Handed to the session core, which gives it back once bound.
    unauth: Option<crate::edge::limits::UnauthPermit>,
    _guard: ConnectionGuard,
    _limit: AddressGuard,
}

/// One client frame, as the core sees it.
fn frame_event(
    text: &str,
    limits: crate::xml::ParserLimits,
) -> Result<StreamEvent, crate::xml::ParseError> {
    let el = parse_element(text.as_bytes(), ns::CLIENT, limits)?;
    if el.ns() == NS_FRAMING {
        match el.name() {
            "open" => {
                return Ok(StreamEvent::Open(StreamHeader {
                    name: "stream".into(),
                    ns: ns::STREAM.into(),
                    default_ns: ns::CLIENT.into(),
                    attrs: el
                        .attrs()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }));
            }
            "close" => return Ok(StreamEvent::Close),
            _ => {}
        }
    }
    Ok(StreamEvent::Stanza(el))
}

/// Serializes an element as a standalone frame (namespaces declared).
pub fn frame_text(el: &Element) -> String {
    let mut s = el.to_string_in("");
    if el.ns() == ns::STREAM {
        let at = "<stream:".len() + el.name().len();
        s.insert_str(at, &format!(" xmlns:stream=\"{}\"", ns::STREAM));
    }
    s
}

impl Connection {
    async fn run(mut self) {
        let server = self.state.server.clone();
        let config = self.state.config.clone();
        let (tx, mut rx) = mpsc::channel(server.config().c2s.session_queue.max(16));
        let facts = ConnFacts {
            address: self.client.addr.display.clone(),
            tls: self.client.secure,
            channel_bindings: Default::default(),
            starttls_available: false,
            transport: Transport::WebSocket,
            policy: self.client.policy,
        };
        tracing::debug!(address = %facts.address, "WebSocket connected");
        let mut core = StreamCore::new(server.clone(), facts, tx);
        if let Some(permit) = self.unauth.take() {
            core.hold_until_bound(permit);
        }
        let _open = crate::metrics::connection_opened("websocket");
        let login_gate = crate::edge::limits::LoginGate {
            server: server.clone(),
            ip: self.client.addr.ip,
        };
        let limits = server.parser_limits();
        let negotiation_deadline =
            Instant::now() + Duration::from_secs(config.negotiation_timeout.max(1));
        let idle = Duration::from_secs(config.idle_timeout.max(1));
        let ping_every = (config.websocket_ping_interval > 0)
            .then(|| Duration::from_secs(config.websocket_ping_interval));
        let ping_timeout = Duration::from_secs(server.config().c2s.ping_timeout.max(1));
        let mut last_rx = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut shutdown = self.state.shutdown.clone();
        // The tenant's stanza shaper, once bound (as for TCP): while it pauses, the frame
        // waits in `inbound` and no further frame is read, so nothing is dropped.
        let mut shaper: Option<crate::tenants::rate::TokenBucket> = None;
        let mut inbound: VecDeque<StreamEvent> = VecDeque::new();
        let mut paused_until = Instant::now();
        loop {
            let deadline = if core.bound().is_none() {
                negotiation_deadline.min(last_rx + idle)
            } else if let Some(sent) = ping_sent {
                sent + ping_timeout
            } else {
                let d = last_rx + idle;
                ping_every.map_or(d, |p| d.min(last_rx + p))
            };
            let mut actions = Vec::new();
            let mut close_code: Option<(CloseCode, &'static str)> = None;
            tokio::select! {
                frame = self.ws.next(), if inbound.is_empty() => {
                    last_rx = Instant::now();
                    ping_sent = None;
                    match frame {
                        None => break,
                        Some(Ok(Message::Text(text))) => {
                            match frame_event(text.as_str(), limits) {
                                Ok(StreamEvent::Open(h)) if !config.see_other_uri.is_empty() => {
                                    let _ = h;
                                    self.see_other(&server).await;
                                    break;
                                }
                                Ok(ev) => inbound.push_back(ev),
                                Err(e) => actions.extend(core.fail(StreamErrorCondition::from_parse_error(&e), Some(e.to_string()))),
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            actions.extend(core.fail(StreamErrorCondition::UnsupportedEncoding, Some("binary frames are not XMPP (RFC 7395)".into())));
                            close_code = Some((CloseCode::Unsupported, "binary frames are not allowed"));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Close(_))) => inbound.push_back(StreamEvent::Close),
                        Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                            tracing::info!(address = %self.client.addr.display, error = %e, "WebSocket message too large");
                            actions.extend(core.fail(StreamErrorCondition::PolicyViolation, Some("message too large".into())));
                            close_code = Some((CloseCode::Size, "message too large"));
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "WebSocket error");
                            break;
                        }
                    }
                }
                msg = rx.recv() => {
                    if let Some(msg) = msg {
                        actions.extend(core.on_mailbox(msg));
                        for _ in 0..MAILBOX_BATCH {
                            match rx.try_recv() {
                                Ok(m) => actions.extend(core.on_mailbox(m)),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    if core.bound().is_none() && now >= negotiation_deadline {
                        actions.extend(core.fail(StreamErrorCondition::ConnectionTimeout, Some("negotiation took too long".into())));
                    } else if ping_sent.is_some_and(|s| now >= s + ping_timeout) {
                        actions.extend(core.fail(StreamErrorCondition::ConnectionTimeout, Some("no answer to ping".into())));
                    } else if now >= last_rx + idle {
                        actions.extend(core.fail(StreamErrorCondition::ConnectionTimeout, Some("idle".into())));
                    } else if ping_every.is_some() && ping_sent.is_none() {
                        ping_sent = Some(now);
                        if self.ws.send(Message::Ping(Bytes::from_static(b"hg"))).await.is_err() {
                            break;
                        }
                    }
                }
                _ = sleep_until(paused_until), if !inbound.is_empty() => {}
                _ = shutdown.requested() => {
                    // What was queued before the shutdown (e.g. a room's 332 presences)
                    // goes out before the stream closes.
                    while let Ok(m) = rx.try_recv() {
                        actions.extend(core.on_mailbox(m));
                    }
                    actions.extend(core.fail(StreamErrorCondition::SystemShutdown, None));
                }
            }
            while Instant::now() >= paused_until && !core.is_closed() {
                let Some(ev) = inbound.pop_front() else { break };
                if let (Some(bucket), StreamEvent::Stanza(_)) = (shaper.as_mut(), &ev) {
                    let now = Instant::now();
                    paused_until = now + bucket.take(now.into_std());
                }
                login_gate.before(core.bound().is_some(), &ev).await;
                actions.extend(core.on_event(ev).await);
                if shaper.is_none() {
                    shaper = core.stanza_shaper();
                }
            }
            if !self.apply(actions, close_code).await || core.is_closed() {
                break;
            }
        }
        core.finish().await;
        let _ = self.ws.close(None).await;
    }

    /// Sends the actions' frames; false when the connection is done.
    async fn apply(
        &mut self,
        actions: Vec<Action>,
        close_code: Option<(CloseCode, &'static str)>,
    ) -> bool {
        for action in actions {
            let frame = match action {
                Action::Header { id, from } => {
                    let mut open = crate::xml::element::open_tag(
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
                    open
                }
                Action::Send(el) => frame_text(&el),
                Action::Restart => continue,
                Action::StartTls => return false,
                Action::Close(error) => {
                    if let Some((cond, text)) = error {
                        let el = cond.to_element(text.as_deref());
                        let _ = self.ws.feed(Message::text(frame_text(&el))).await;
                    }
                    let _ = self
                        .ws
                        .feed(Message::text(format!("<close xmlns=\"{NS_FRAMING}\"/>")))
                        .await;
                    let (code, reason) = close_code.unwrap_or((CloseCode::Normal, ""));
                    let _ = self
                        .ws
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    return false;
                }
            };
            if self.ws.feed(Message::text(frame)).await.is_err() {
                return false;
            }
        }
        self.ws.flush().await.is_ok()
    }

    /// RFC 7395 §3.6.1: open the stream, then close it pointing at another endpoint.
    async fn see_other(&mut self, server: &crate::server::Server) {
        let from = server.config().general.hosts[0].clone();
        let open = format!(
            "<open xmlns=\"{NS_FRAMING}\" from=\"{}\" id=\"redirect\" version=\"1.0\"/>",
            crate::xml::element::escaped_text(&from)
        );
        let mut close = String::from("<close xmlns=\"");
        close.push_str(NS_FRAMING);
        close.push_str("\" see-other-uri=\"");
        crate::xml::element::escape_attr(&self.state.config.see_other_uri, &mut close);
        close.push_str("\"/>");
        tracing::info!(address = %self.client.addr.display, uri = %self.state.config.see_other_uri, "WebSocket client sent elsewhere");
        let _ = self.ws.feed(Message::text(open)).await;
        let _ = self.ws.feed(Message::text(close)).await;
        let _ = self
            .ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "see-other-uri".into(),
            })))
            .await;
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

    #[test]
    fn frames_map_to_stream_events() {
        let l = crate::xml::ParserLimits::default();
        match frame_event(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
            l,
        )
        .unwrap()
        {
            StreamEvent::Open(h) => {
                assert_eq!(h.attr("to"), Some("localhost"));
                assert_eq!(h.default_ns, ns::CLIENT);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            frame_event("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>", l).unwrap(),
            StreamEvent::Close
        );
        assert!(matches!(
            frame_event("<message xmlns='jabber:client' to='a@b'/>", l).unwrap(),
            StreamEvent::Stanza(_)
        ));
        assert!(frame_event("<message", l).is_err());
    }

    #[test]
    fn stream_elements_declare_their_prefix() {
        let f = Element::new("features", ns::STREAM).with_child(Element::new("bind", ns::BIND));
        assert_eq!(
            frame_text(&f),
            "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>"
        );
    }
}
