//! XMPP streams over TCP: client connections (`[[listen.c2s]]`, STARTTLS or direct TLS)
//! and XEP-0114 component connections (`[[listen.component]]`).
//!
//! [`TcpLink`] frames a stream on a socket: bytes in through the incremental parser,
//! actions out as a stream header, elements and the closing tag, STARTTLS, and the
//! closing handshake (RFC 6120 §4.4). [`serve_c2s`] and [`serve_components`] are the
//! accept loops; what happens before a stream starts is shared ([`accept_loop`]): refusal
//! while draining, the PROXY protocol header from trusted proxies, connection limits per
//! listener and per address, metrics, and a log span per connection. The rest (timers,
//! shaping, mailbox, rescue) is the session driver's.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use heliograph_auth::sasl::ChannelBindings;
use heliograph_config::{C2sListener, ComponentListener, IpRange, TlsMode};
use heliograph_core::Core;
use heliograph_core::limits::LoginGate;
use heliograph_core::limits::UnauthBuffer;
use heliograph_core::router::{Mailbox, Transport};
use heliograph_core::session::{
    Action, ConnFacts, Driver, Inbound, Keepalive, Link, LinkError, ListenerPolicy, Protocol,
    StreamCore, StreamErrorCondition, Timing, Written,
};
use heliograph_core::shutdown::Shutdown;
use heliograph_xml::{Element, ParserLimits, StreamEvent, StreamParser, ns};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::Instrument as _;

use crate::io::ClientIo;
use crate::listener::ConnectionTracker;
use crate::tls::TlsStore;

/// How long, after our closing tag, the peer gets to send its own before the connection
/// is shut down (RFC 6120 §4.4), counted from the last sign of progress: the peer sent
/// something or took more of what we wrote (a slow reader still working through a
/// backlog, behind a proxy that buffers, answers only once it reaches our close).
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// The longest wait for the peer's close, progress or not.
const CLOSE_MAX: Duration = Duration::from_secs(30);
/// After our shutdown, how long we go on reading (and discarding) until the peer ends
/// the connection too. A socket closed with input still arriving is reset by the
/// kernel, which throws away whatever it had not sent yet, and a proxy in between drops
/// the tail it still holds for the client.
const LINGER: Duration = Duration::from_secs(2);

/// Connection ids for logs, unique in the process.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// What kind of stream a TCP listener carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `jabber:client`, with `version='1.0'` (RFC 6120).
    Client,
    /// `jabber:component:accept` (XEP-0114, no version).
    Component,
}

impl StreamKind {
    fn default_ns(self) -> &'static str {
        match self {
            StreamKind::Client => ns::CLIENT,
            StreamKind::Component => ns::COMPONENT,
        }
    }

    fn label(self) -> &'static str {
        match self {
            StreamKind::Client => "tcp",
            StreamKind::Component => "component",
        }
    }
}

/// A stream on a TCP socket (see the module docs).
pub struct TcpLink {
    io: Option<ClientIo>,
    parser: StreamParser,
    kind: StreamKind,
    out: String,
    /// Messages of the write in progress (rescued if it fails).
    writing: Vec<Element>,
    /// Messages of a write that failed.
    unsent: Vec<Element>,
    /// What the link needs until the client has authenticated; dropped then.
    pre_auth: Option<Box<PreAuth>>,
}

/// The parts of a [`TcpLink`] for the time before the client authenticates: boxed and
/// given back after, since every idle session would otherwise keep them.
struct PreAuth {
    /// Where a STARTTLS upgrade gets its certificates (none: not offered).
    tls: Option<Arc<TlsStore>>,
    /// When a STARTTLS handshake must be done.
    negotiation_deadline: Instant,
    /// What the parser holds, counted while the client is unauthenticated.
    unauth: Option<UnauthBuffer>,
}

impl TcpLink {
    pub fn new(
        io: ClientIo,
        kind: StreamKind,
        limits: ParserLimits,
        tls: Option<Arc<TlsStore>>,
        negotiation_deadline: Instant,
    ) -> TcpLink {
        TcpLink {
            io: Some(io),
            parser: StreamParser::new(limits),
            kind,
            out: String::new(),
            writing: Vec::new(),
            unsent: Vec::new(),
            pre_auth: Some(Box::new(PreAuth {
                tls,
                negotiation_deadline,
                unauth: None,
            })),
        }
    }

    /// Counts what the parser holds against the server's total for unauthenticated
    /// connections while the client has not authenticated.
    pub fn with_unauth_buffer(mut self, buffer: UnauthBuffer) -> TcpLink {
        if let Some(pre_auth) = self.pre_auth.as_mut() {
            pre_auth.unauth = Some(buffer);
        }
        self
    }

    /// Counts what the parser holds while the client is unauthenticated (see
    /// [`UnauthBuffer`]); false when that is refused. Once the client has authenticated,
    /// the pre-authentication parts are dropped.
    fn hold_unauthenticated(&mut self) -> bool {
        let Some(unauth) = self.pre_auth.as_ref().and_then(|p| p.unauth.as_ref()) else {
            return true;
        };
        let held = unauth.hold(self.parser.buffered());
        if unauth.authenticated() {
            self.pre_auth = None;
        }
        held
    }

    fn next_buffered(&mut self) -> Option<Inbound> {
        match self.parser.next_event() {
            Ok(Some(ev)) => {
                // What the event took is no longer held (shrinking is never refused).
                self.hold_unauthenticated();
                Some(Inbound::Event(ev))
            }
            Ok(None) => None,
            Err(e) => Some(Inbound::Refused(
                StreamErrorCondition::from_parse_error(&e),
                e.to_string(),
            )),
        }
    }

    fn write_header(&mut self, id: &str, from: &str) {
        self.out.push_str("<?xml version='1.0'?>");
        let mut attrs = vec![
            ("xmlns", self.kind.default_ns()),
            ("xmlns:stream", ns::STREAM),
            ("id", id),
        ];
        if !from.is_empty() {
            attrs.push(("from", from));
        }
        if self.kind == StreamKind::Client {
            attrs.extend([("version", "1.0"), ("xml:lang", "en")]);
        }
        self.out
            .push_str(&heliograph_xml::element::open_tag("stream:stream", &attrs));
    }

    async fn flush(&mut self) -> Result<(), LinkError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let io = self.io.as_mut().ok_or(LinkError::Timeout)?;
        let res = io.write_all(self.out.as_bytes()).await;
        // The buffers are given back after every write: an idle session holds none, and
        // allocating them again costs far less than the write itself.
        self.out = String::new();
        match res {
            Ok(()) => {
                self.writing = Vec::new();
                Ok(())
            }
            Err(e) => {
                self.unsent.append(&mut self.writing);
                Err(e.into())
            }
        }
    }
}

impl Link for TcpLink {
    fn transport(&self) -> Transport {
        match (&self.io, self.kind) {
            (Some(io), StreamKind::Client) if io.is_tls() => Transport::Tls,
            _ => Transport::Tcp,
        }
    }

    fn try_recv(&mut self) -> Option<Inbound> {
        self.next_buffered()
    }

    fn recv(&mut self) -> BoxFuture<'_, Inbound> {
        Box::pin(async move {
            loop {
                if let Some(inbound) = self.next_buffered() {
                    return inbound;
                }
                let Some(io) = self.io.as_mut() else {
                    return Inbound::Gone;
                };
                let parser = &mut self.parser;
                // A refusal is queued in the parser after the events that completed
                // before it; `next_buffered` returns both in order.
                match io
                    .read_with(|data| {
                        let _ = parser.feed(data);
                    })
                    .await
                {
                    Ok(0) | Err(_) => return Inbound::Gone,
                    Ok(_) => {}
                }
                if !self.hold_unauthenticated() {
                    tracing::info!("unauthenticated connections hold too much; closing this one");
                    return Inbound::Refused(
                        StreamErrorCondition::ResourceConstraint,
                        "the server holds too much for unauthenticated connections".into(),
                    );
                }
            }
        })
    }

    fn send(&mut self, actions: Vec<Action>) -> BoxFuture<'_, Result<Written, LinkError>> {
        // Serialized before anything is written: the messages are in `writing` even if the
        // driver drops the write half-way.
        let mut written = Written::Done;
        for action in actions {
            match action {
                Action::Header { id, from } => self.write_header(&id, &from),
                Action::Send(el) => {
                    el.write_to(&mut self.out, self.kind.default_ns());
                    if el.name() == "message" {
                        self.writing.push(el);
                    }
                }
                // Stream management keeps these until acknowledged (no copy here), as
                // the bytes a client stream writes.
                Action::SendKept(el, xml) => match self.kind {
                    StreamKind::Client => self.out.push_str(&xml),
                    _ => el.write_to(&mut self.out, self.kind.default_ns()),
                },
                Action::StartTls => written = Written::StartTls,
                Action::Restart => self.parser.reset(),
                Action::Close(error) => {
                    if let Some((cond, text)) = error {
                        tracing::debug!(
                            condition = cond.name(),
                            text = text.as_deref().unwrap_or(""),
                            "closing stream with error"
                        );
                        cond.to_element(text.as_deref())
                            .write_to(&mut self.out, self.kind.default_ns());
                    }
                    self.out.push_str("</stream:stream>");
                    written = Written::Closed;
                    // Nothing goes out after the closing tag.
                    break;
                }
            }
        }
        Box::pin(async move {
            self.flush().await?;
            Ok(written)
        })
    }

    fn start_tls<'a>(
        &'a mut self,
        domain: Option<&'a str>,
    ) -> BoxFuture<'a, Option<ChannelBindings>> {
        Box::pin(async move {
            let pre_auth = self.pre_auth.as_ref()?;
            let (tls, deadline) = (pre_auth.tls.clone()?, pre_auth.negotiation_deadline);
            let Some(ClientIo::Plain(stream)) = self.io.take() else {
                return None;
            };
            match timeout_at(deadline, tls.accept(stream, domain)).await {
                Ok(Ok((s, cb))) => {
                    self.io = Some(ClientIo::Tls(Box::new(s)));
                    self.parser.reset();
                    Some(cb)
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "STARTTLS handshake failed");
                    None
                }
                Err(_) => None,
            }
        })
    }

    fn set_limits(&mut self, limits: ParserLimits) {
        self.parser.set_limits(limits);
    }

    fn keepalive(&mut self) -> BoxFuture<'_, Keepalive> {
        Box::pin(async { Keepalive::Stanza })
    }

    fn close(&mut self, peer_closed: bool) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(mut io) = self.io.take() else {
                return;
            };
            // Read (and discard) until the peer's closing tag or the end of the
            // connection; never write.
            let mut ended = false;
            if !peer_closed {
                let parser = &mut self.parser;
                let started = Instant::now();
                let mut progress = started;
                let mut queued = io.unacknowledged();
                'wait: loop {
                    loop {
                        match parser.next_event() {
                            Ok(Some(StreamEvent::Close)) | Err(_) => break 'wait,
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                        }
                    }
                    let until = (progress + CLOSE_WAIT).min(started + CLOSE_MAX);
                    let read = io.read_with(|data| {
                        let _ = parser.feed(data);
                    });
                    match timeout_at(until, read).await {
                        Ok(Ok(0) | Err(_)) => {
                            ended = true;
                            break;
                        }
                        Ok(Ok(_)) => progress = Instant::now(),
                        Err(_) => {
                            // Quiet: still waiting only if the peer took more of what
                            // we wrote meanwhile.
                            let now = io.unacknowledged();
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
            }
            io.shutdown().await;
            if !ended && !peer_closed {
                let _ = timeout(LINGER, async {
                    while let Ok(n) = io.read_with(|_| {}).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            }
        })
    }

    /// Messages of a failed write, and of one cut short (the driver's write timeout
    /// drops the `send` future mid-write).
    fn take_unsent(&mut self) -> Vec<Element> {
        let mut out = std::mem::take(&mut self.unsent);
        out.append(&mut self.writing);
        out
    }
}

/// What a listener enforces before a stream starts.
#[derive(Debug, Clone)]
struct Edge {
    kind: StreamKind,
    proxy_protocol: bool,
    trusted: Arc<Vec<IpRange>>,
    negotiation_timeout: Duration,
    max_connections: usize,
    max_connections_per_address: usize,
}

/// An admitted connection, ready for its stream.
struct Admitted {
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    negotiation_deadline: Instant,
    span: tracing::Span,
}

fn refused(kind: StreamKind, reason: &'static str) {
    heliograph_metrics::connection_refused(kind.label(), reason);
}

fn conn_span(kind: StreamKind, id: u64, peer: SocketAddr) -> tracing::Span {
    match kind {
        StreamKind::Client => tracing::info_span!(
            "c2s",
            conn = id,
            peer = %peer,
            jid = tracing::field::Empty,
            tenant = tracing::field::Empty,
        ),
        StreamKind::Component => tracing::info_span!(
            "component",
            conn = id,
            peer = %peer,
            domain = tracing::field::Empty,
            tenant = tracing::field::Empty,
        ),
    }
}

/// Accepts connections until shutdown and runs `serve` on each admitted one, in a task
/// of its own inside the connection's log span.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    edge: Edge,
    core: Arc<Core>,
    tracker: Arc<ConnectionTracker>,
    mut shutdown: Shutdown,
    serve: F,
) where
    F: Fn(Box<Admitted>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.requested() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if core.drain.is_draining() {
            refused(edge.kind, "draining");
            continue;
        }
        let guard = tracker.enter();
        let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        let span = conn_span(edge.kind, id, peer);
        let (core, edge, live, serve) = (core.clone(), edge.clone(), live.clone(), serve.clone());
        let task_span = span.clone();
        // The task holds its future for the whole session: the admission is a boxed
        // future of its own, made here and freed when done, so that the task keeps room
        // only for what `serve` runs and the guards.
        let admission = Box::pin(admit(stream, peer, id, span, core, edge, live));
        tokio::spawn(
            async move {
                if let Some((admitted, held)) = admission.await {
                    serve(admitted).await;
                    drop(held);
                }
                drop(guard);
            }
            .instrument(task_span),
        );
    }
}

/// What an admitted connection holds until it ends: its place under the connection
/// limits and in the open-connections gauge.
struct Held {
    _permit: heliograph_core::limits::ConnPermit,
    _open: heliograph_metrics::OpenConnection,
}

/// Reads the PROXY protocol header from a trusted proxy (when the listener expects one)
/// and admits the connection under the limits per listener and per address; `None` if
/// the header was bad or the connection is refused.
async fn admit(
    mut stream: TcpStream,
    mut peer: SocketAddr,
    id: u64,
    span: tracing::Span,
    core: Arc<Core>,
    edge: Edge,
    live: Arc<AtomicUsize>,
) -> Option<(Box<Admitted>, Held)> {
    let negotiation_deadline = Instant::now() + edge.negotiation_timeout;
    if edge.proxy_protocol {
        let client = crate::proxy_protocol::accept(
            &mut stream,
            peer,
            &edge.trusted,
            edge.negotiation_timeout,
            edge.kind.label(),
        )
        .await?;
        peer = client;
        span.record("peer", tracing::field::display(client));
    }
    let permit = match core.limits.admit(
        peer.ip(),
        &live,
        edge.max_connections,
        edge.max_connections_per_address,
    ) {
        Ok(p) => p,
        Err(r) => {
            tracing::debug!(reason = r.label(), "connection refused");
            refused(edge.kind, r.label());
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    let held = Held {
        _permit: permit,
        _open: heliograph_metrics::connection_opened(edge.kind.label()),
    };
    let admitted = Admitted {
        stream,
        peer,
        id,
        negotiation_deadline,
        span,
    };
    Some((Box::new(admitted), held))
}

/// The driver's timers for a stream of this listener.
fn timing(core: &Core, deadline: Instant, idle_timeout: u64) -> Timing {
    let config = core.config();
    let c2s = &config.c2s;
    Timing {
        negotiation_deadline: deadline,
        idle: Duration::from_secs(idle_timeout.max(1)),
        ping_interval: (c2s.ping_interval > 0).then(|| Duration::from_secs(c2s.ping_interval)),
        ping_timeout: Duration::from_secs(c2s.ping_timeout.max(1)),
        write_timeout: Duration::from_secs(c2s.write_timeout.max(1)),
    }
}

fn trusted(list: &[String]) -> Arc<Vec<IpRange>> {
    Arc::new(list.iter().filter_map(|p| IpRange::parse(p)).collect())
}

/// Accepts XMPP client connections until shutdown.
pub async fn serve_c2s(
    listener: TcpListener,
    config: Arc<C2sListener>,
    core: Arc<Core>,
    tls: Arc<TlsStore>,
    tracker: Arc<ConnectionTracker>,
    shutdown: Shutdown,
) {
    let edge = Edge {
        kind: StreamKind::Client,
        proxy_protocol: config.proxy_protocol,
        trusted: trusted(&config.trusted_proxies),
        negotiation_timeout: Duration::from_secs(config.negotiation_timeout.max(1)),
        max_connections: config.max_connections,
        max_connections_per_address: config.max_connections_per_address,
    };
    let (c, sd) = (core.clone(), shutdown.clone());
    accept_loop(listener, edge, core, tracker, shutdown, move |a| {
        run_c2s(c.clone(), config.clone(), tls.clone(), sd.clone(), a)
    })
    .await
}

/// An accepted client connection's task. Its setup (admission, the TLS handshake) runs
/// in a boxed future of its own, freed once done: the task keeps room only for the
/// running driver, for the session's whole life.
#[expect(
    clippy::boxed_local,
    reason = "the accept loop hands every connection over boxed (see `accept_loop`)"
)]
fn run_c2s(
    core: Arc<Core>,
    config: Arc<C2sListener>,
    tls: Arc<TlsStore>,
    shutdown: Shutdown,
    a: Box<Admitted>,
) -> impl Future<Output = ()> {
    let setup = Box::pin(c2s_setup(core, config, tls, shutdown, *a));
    async move {
        // Boxed by the setup: a driver held by value here would keep its space in the
        // task beside the running driver's.
        if let Some(driver) = setup.await {
            driver.run_boxed().await;
        }
    }
}

/// Admits an accepted client connection and does its TLS handshake if it starts with
/// one; `None` if it was refused or failed.
async fn c2s_setup(
    core: Arc<Core>,
    config: Arc<C2sListener>,
    tls: Arc<TlsStore>,
    shutdown: Shutdown,
    a: Admitted,
) -> Option<Box<Driver<StreamCore>>> {
    let max_unauth = core.config().limits.max_unauthenticated;
    let unauth = match core.limits.admit_unauthenticated(max_unauth) {
        Ok(p) => p,
        Err(r) => {
            tracing::debug!(reason = r.label(), "connection refused");
            refused(StreamKind::Client, r.label());
            return None;
        }
    };
    let (io, bindings) = match config.tls {
        TlsMode::Direct => {
            match timeout_at(a.negotiation_deadline, tls.accept(a.stream, None)).await {
                Ok(Ok((s, cb))) => (ClientIo::Tls(Box::new(s)), cb),
                Ok(Err(e)) => {
                    tracing::debug!(peer = %a.peer, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => return None,
            }
        }
        TlsMode::Starttls => (ClientIo::Plain(a.stream), Default::default()),
    };
    Some(Box::new(c2s_driver(
        &core,
        &config,
        tls,
        shutdown,
        a.peer,
        a.span,
        io,
        bindings,
        unauth,
        a.negotiation_deadline,
    )))
}

/// The session driver of an accepted client connection.
#[allow(clippy::too_many_arguments)]
fn c2s_driver(
    core: &Arc<Core>,
    config: &C2sListener,
    tls: Arc<TlsStore>,
    shutdown: Shutdown,
    peer: SocketAddr,
    span: tracing::Span,
    io: ClientIo,
    bindings: ChannelBindings,
    unauth: heliograph_core::limits::UnauthPermit,
    negotiation_deadline: Instant,
) -> Driver<StreamCore> {
    let facts = ConnFacts {
        address: peer.to_string(),
        tls: io.is_tls(),
        channel_bindings: bindings,
        starttls_available: !io.is_tls(),
        transport: Transport::Tcp,
        policy: ListenerPolicy::from(config),
    };
    let (tx, rx) = mpsc::channel(core.config().c2s.session_queue.max(16));
    let mut stream = StreamCore::new(core.clone(), facts, tx);
    let buffer = unauth.buffer(
        &core.limits,
        core.config().limits.max_unauthenticated_buffered,
    );
    stream.hold_until_bound(unauth);
    let link = TcpLink::new(
        io,
        StreamKind::Client,
        core.parser_limits(),
        Some(tls),
        negotiation_deadline,
    )
    .with_unauth_buffer(buffer);
    let timing = timing(core, negotiation_deadline, config.idle_timeout);
    let gate = LoginGate {
        core: core.clone(),
        ip: peer.ip(),
    };
    Driver::new(stream, Box::new(link), rx, timing, shutdown)
        .with_login_gate(gate)
        .with_span(span)
}

/// What a component stream needs to start: its mailbox and its connection id.
pub struct ComponentStart {
    pub mailbox: Mailbox,
    pub id: u64,
}

/// Accepts XEP-0114 component connections until shutdown; `protocol` makes each
/// connection's stream (the services layer's component stream).
pub async fn serve_components<F, P>(
    listener: TcpListener,
    config: Arc<ComponentListener>,
    core: Arc<Core>,
    tls: Option<Arc<TlsStore>>,
    tracker: Arc<ConnectionTracker>,
    shutdown: Shutdown,
    protocol: F,
) where
    F: Fn(ComponentStart) -> P + Send + Sync + 'static,
    P: Protocol,
{
    let edge = Edge {
        kind: StreamKind::Component,
        proxy_protocol: config.proxy_protocol,
        trusted: trusted(&config.trusted_proxies),
        negotiation_timeout: Duration::from_secs(config.negotiation_timeout.max(1)),
        max_connections: config.max_connections,
        max_connections_per_address: config.max_connections_per_address,
    };
    let protocol = Arc::new(protocol);
    let (c, sd) = (core.clone(), shutdown.clone());
    accept_loop(listener, edge, core, tracker, shutdown, move |a| {
        let (core, config, tls, shutdown, protocol) =
            (c.clone(), config.clone(), tls.clone(), sd.clone(), protocol.clone());
        async move {
            let a = *a;
            let io = match &tls {
                Some(tls) if config.tls => {
                    match timeout_at(a.negotiation_deadline, tls.accept(a.stream, None)).await {
                        Ok(Ok((s, _))) => ClientIo::Tls(Box::new(s)),
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %a.peer, error = %e, "component TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                _ => ClientIo::Plain(a.stream),
            };
            let (tx, rx) = mpsc::channel(core.config().c2s.session_queue.max(4096));
            let stream = protocol(ComponentStart {
                mailbox: tx,
                id: a.id,
            });
            let link = TcpLink::new(
                io,
                StreamKind::Component,
                core.parser_limits(),
                None,
                a.negotiation_deadline,
            );
            let timing = timing(&core, a.negotiation_deadline, config.idle_timeout);
            Driver::new(stream, Box::new(link), rx, timing, shutdown)
                .with_span(a.span)
                .run()
                .await;
        }
    })
    .await
}
