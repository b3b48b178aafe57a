//! XMPP client connections over TCP: the accept loop and the per-connection task that
//! moves bytes between the socket and the session core ([`StreamCore`]), performs the
//! STARTTLS upgrade, and enforces negotiation, idle and keepalive-ping timeouts.
//!
//! Edge concerns (see `crate::edge`) happen here first: the PROXY protocol header from a
//! trusted proxy, connection limits per listener and address, the unauthenticated
//! connection limit, the login attempt rate per address, refusal while draining, metrics,
//! and a log span per connection with `conn`, `peer`, `jid` and `tenant` fields.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tracing::Instrument as _;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use super::io::ClientIo;
use super::listener::{ConnectionTracker, Shutdown};
use super::tls::TlsStore;
use crate::config::{C2sListener, TlsMode};
use crate::edge::limits::{LoginGate, Refusal, UnauthPermit};
use crate::router::SessionMsg;
use crate::server::Server;
use crate::session::{Action, ConnFacts, ListenerPolicy, StreamCore, StreamErrorCondition};
use crate::tenants::rate::TokenBucket;
use crate::transport::http::proxy::IpRange;
use crate::xml::{StreamEvent, StreamParser, ns};

/// Mailbox messages handled per wake-up before writing, to batch socket writes.
const MAILBOX_BATCH: usize = 64;

/// Accepts client connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    config: Arc<C2sListener>,
    server: Arc<Server>,
    tls: Arc<TlsStore>,
    tracker: Arc<ConnectionTracker>,
    mut shutdown: Shutdown,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let trusted: Arc<Vec<IpRange>> = Arc::new(
        config
            .trusted_proxies
            .iter()
            .filter_map(|p| IpRange::parse(p))
            .collect(),
    );
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.requested() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                if server.edge.drain.is_draining() {
                    refused(Refusal::Draining);
                    drop(stream);
                    continue;
                }
                let guard = tracker.enter();
                let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
                let span = tracing::info_span!(
                    "c2s",
                    conn = id,
                    peer = %peer,
                    jid = tracing::field::Empty,
                    tenant = tracing::field::Empty,
                );
                let conn = Connection {
                    server: server.clone(),
                    listener: config.clone(),
                    tls: tls.clone(),
                    peer,
                    shutdown: shutdown.clone(),
                    span: span.clone(),
                };
                let live = live.clone();
                let trusted = trusted.clone();
                tokio::spawn(
                    async move {
                        let open = crate::metrics::connection_opened("tcp");
                        conn.admit_and_run(stream, &live, &trusted).await;
                        drop(open);
                        drop(guard);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How long a pending write may go on once shutdown is requested.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(2);

/// Connection ids for logs, unique in the process.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

fn refused(reason: Refusal) {
    crate::metrics::connection_refused("tcp", reason.label());
}

struct Connection {
    server: Arc<Server>,
    listener: Arc<C2sListener>,
    tls: Arc<TlsStore>,
    peer: SocketAddr,
    shutdown: Shutdown,
    span: tracing::Span,
}

/// What to do after a batch of actions was applied.
enum Flow {
    Continue,
    StartTls,
    Stop,
}

impl Connection {
    /// The PROXY header (when configured) and the limits, then [`Connection::run`].
    async fn admit_and_run(
        mut self,
        mut stream: TcpStream,
        live: &Arc<AtomicUsize>,
        trusted: &[IpRange],
    ) {
        let negotiation = Duration::from_secs(self.listener.negotiation_timeout.max(1));
        let negotiation_deadline = Instant::now() + negotiation;
        if self.listener.proxy_protocol {
            let read = crate::edge::proxy_protocol::accept(
                &mut stream,
                self.peer,
                trusted,
                negotiation,
                "tcp",
            );
            match read.await {
                Some(client) => {
                    self.peer = client;
                    self.span.record("peer", tracing::field::display(client));
                }
                None => return,
            }
        }
        let limits = &self.server.edge.limits;
        let _permit = match limits.admit(
            self.peer.ip(),
            live,
            self.listener.max_connections,
            self.listener.max_connections_per_address,
        ) {
            Ok(p) => p,
            Err(r) => {
                tracing::debug!(reason = r.label(), "connection refused");
                refused(r);
                return;
            }
        };
        let max_unauth = self.server.config().limits.max_unauthenticated;
        let unauth = match limits.admit_unauthenticated(max_unauth) {
            Ok(p) => p,
            Err(r) => {
                tracing::debug!(reason = r.label(), "connection refused");
                refused(r);
                return;
            }
        };
        self.run(stream, negotiation_deadline, unauth).await;
    }

    async fn run(mut self, stream: TcpStream, negotiation_deadline: Instant, unauth: UnauthPermit) {
        let _ = stream.set_nodelay(true);
        let negotiation = negotiation_deadline.saturating_duration_since(Instant::now());
        let mut unauth = Some(unauth);
        let login_gate = LoginGate {
            server: self.server.clone(),
            ip: self.peer.ip(),
        };
        let (mut io, initial_bindings) = match self.listener.tls {
            TlsMode::Direct => match timeout(negotiation, self.tls.accept(stream, None)).await {
                Ok(Ok((s, cb))) => (ClientIo::Tls(Box::new(s)), cb),
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            },
            TlsMode::Starttls => (ClientIo::Plain(stream), Default::default()),
        };
        let facts = ConnFacts {
            address: self.peer.to_string(),
            tls: io.is_tls(),
            channel_bindings: initial_bindings,
            starttls_available: !io.is_tls(),
            transport: crate::router::Transport::Tcp,
            policy: ListenerPolicy::from(&*self.listener),
        };
        let (tx, mut rx) = mpsc::channel(self.server.config().c2s.session_queue.max(16));
        let mut core = StreamCore::new(self.server.clone(), facts, tx);
        let mut parser = StreamParser::new(self.server.parser_limits());
        let mut out = String::new();
        // Messages serialized into `out` but not yet written out (see `apply`).
        let mut unwritten: Vec<crate::xml::Element> = Vec::new();
        let timers = Timers::new(&self.server, &self.listener);
        let mut last_rx = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut shaper: Option<TokenBucket> = None;
        let mut limits_domain: Option<String> = None;
        let mut read_paused_until = Instant::now();

        loop {
            let mut deadline = timers.next_deadline(
                core.bound().is_some(),
                negotiation_deadline,
                last_rx,
                ping_sent,
            );
            let mut actions = Vec::new();
            let read_ready = Instant::now() >= read_paused_until;
            if read_ready && parser.has_events() {
                actions.extend(
                    drain(
                        &mut core,
                        &mut parser,
                        &mut shaper,
                        &mut read_paused_until,
                        &login_gate,
                    )
                    .await,
                );
            }
            let read_ready = Instant::now() >= read_paused_until;
            if !read_ready {
                deadline = deadline.min(read_paused_until);
            }
            tokio::select! {
                // A refusal is also queued in the parser, after the stanzas that
                // completed before it; `drain` handles both in order.
                r = io.read_with(|data| { let _ = parser.feed(data); }), if read_ready => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        last_rx = Instant::now();
                        ping_sent = None;
                        actions.extend(drain(&mut core, &mut parser, &mut shaper, &mut read_paused_until, &login_gate).await);
                    }
                },
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
                    // Also wakes when a shaping pause ends; the timers check their own times.
                    actions.extend(self.on_timer(&mut core, &timers, negotiation_deadline, last_rx, &mut ping_sent));
                }
                _ = self.shutdown.requested() => {
                    // What was queued before the shutdown (e.g. a room's 332 presences)
                    // goes out before the stream closes.
                    while let Ok(m) = rx.try_recv() {
                        actions.extend(core.on_mailbox(m));
                    }
                    actions.extend(core.fail(StreamErrorCondition::SystemShutdown, None));
                }
            }
            if core.domain() != limits_domain.as_deref() {
                limits_domain = core.domain().map(str::to_string);
                parser.set_limits(self.server.parser_limits_for(core.domain()));
            }
            if unauth.is_some()
                && let Some(entry) = core.bound()
            {
                unauth = None;
                let tenant = self
                    .server
                    .tenant_of(&entry.account.domain)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                self.span.record("jid", entry.full_jid.as_str());
                self.span.record("tenant", tenant.as_str());
            }
            if shaper.is_none()
                && let Some(entry) = core.bound()
                && let Some(tenant) = self.server.tenant_of(&entry.account.domain)
            {
                let limits = tenant.spec.limits;
                shaper = TokenBucket::new(
                    limits.stanza_rate,
                    limits.stanza_burst,
                    Instant::now().into_std(),
                );
            }
            match self
                .apply(&mut io, &mut out, &mut unwritten, &mut parser, actions)
                .await
            {
                Flow::Continue => {}
                Flow::Stop => break,
                Flow::StartTls => match self.upgrade(io, core.domain(), negotiation_deadline).await
                {
                    Some((tls_io, cb)) => {
                        io = tls_io;
                        core.tls_established(cb);
                        parser.reset();
                    }
                    None => {
                        core.finish().await;
                        return;
                    }
                },
            }
            if core.is_closed() {
                break;
            }
        }
        let account = core.bound().map(|e| e.account.clone());
        core.finish().await;
        if let Some(account) = account {
            crate::edge::drain::rescue_unwritten(&self.server, &account, unwritten).await;
            crate::edge::drain::rescue_queued(&self.server, &account, &mut rx).await;
        }
        io.shutdown().await;
    }

    fn on_timer(
        &self,
        core: &mut StreamCore,
        timers: &Timers,
        negotiation_deadline: Instant,
        last_rx: Instant,
        ping_sent: &mut Option<Instant>,
    ) -> Vec<Action> {
        let now = Instant::now();
        if core.bound().is_none() {
            if now >= negotiation_deadline {
                return core.fail(
                    StreamErrorCondition::ConnectionTimeout,
                    Some("negotiation took too long".into()),
                );
            }
            return Vec::new();
        }
        if let Some(sent) = *ping_sent {
            if now >= sent + timers.ping_timeout {
                return core.fail(
                    StreamErrorCondition::ConnectionTimeout,
                    Some("no answer to ping".into()),
                );
            }
            return Vec::new();
        }
        if now >= last_rx + timers.idle {
            return core.fail(StreamErrorCondition::ConnectionTimeout, Some("idle".into()));
        }
        if let Some(interval) = timers.ping_interval
            && now >= last_rx + interval
            && let Some(ping) = core.keepalive_ping()
        {
            *ping_sent = Some(now);
            return vec![Action::Send(ping)];
        }
        Vec::new()
    }

    /// Writes the actions' output. Messages stay in `unwritten` until the write that
    /// carries them completes, so a session ending mid-write (client not reading, write
    /// timeout, shutdown) can route them again instead of losing them.
    async fn apply(
        &self,
        io: &mut ClientIo,
        out: &mut String,
        unwritten: &mut Vec<crate::xml::Element>,
        parser: &mut StreamParser,
        actions: Vec<Action>,
    ) -> Flow {
        let mut flow = Flow::Continue;
        for action in actions {
            match action {
                Action::Header { id, from } => {
                    out.push_str("<?xml version='1.0'?>");
                    let mut attrs = vec![
                        ("xmlns", ns::CLIENT),
                        ("xmlns:stream", ns::STREAM),
                        ("id", id.as_str()),
                    ];
                    if !from.is_empty() {
                        attrs.push(("from", from.as_str()));
                    }
                    attrs.extend([("version", "1.0"), ("xml:lang", "en")]);
                    out.push_str(&crate::xml::element::open_tag("stream:stream", &attrs));
                }
                Action::Send(el) => {
                    el.write_to(out, ns::CLIENT);
                    if el.name() == "message" {
                        unwritten.push(el);
                    }
                }
                Action::StartTls => flow = Flow::StartTls,
                Action::Restart => parser.reset(),
                Action::Close(error) => {
                    if let Some((cond, text)) = error {
                        tracing::debug!(peer = %self.peer, condition = cond.name(), text = text.as_deref().unwrap_or(""), "closing stream with error");
                        cond.to_element(text.as_deref()).write_to(out, ns::CLIENT);
                    }
                    out.push_str("</stream:stream>");
                    flow = Flow::Stop;
                }
            }
        }
        if !out.is_empty() {
            let res = self.write_bounded(io, out).await;
            // Keep a small buffer for the next write; give big ones back so idle
            // sessions hold little memory.
            if out.capacity() > 1024 {
                *out = String::new();
            } else {
                out.clear();
            }
            if res.is_err() {
                return Flow::Stop;
            }
            unwritten.clear();
        }
        flow
    }

    /// Writes `out` within `[c2s] write_timeout`, cut to [`SHUTDOWN_WRITE_GRACE`] once
    /// shutdown is requested (a client that stopped reading must not hold up the drain).
    async fn write_bounded(&self, io: &mut ClientIo, out: &str) -> std::io::Result<()> {
        let limit = Duration::from_secs(self.server.config().c2s.write_timeout.max(1));
        let mut shutdown = self.shutdown.clone();
        let write = timeout(limit, io.write_all(out.as_bytes()));
        tokio::pin!(write);
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout");
        tokio::select! {
            r = &mut write => return r.unwrap_or_else(|_| Err(timed_out())),
            _ = shutdown.requested() => {}
        }
        match timeout(SHUTDOWN_WRITE_GRACE, write).await {
            Ok(r) => r.unwrap_or_else(|_| Err(timed_out())),
            Err(_) => Err(timed_out()),
        }
    }

    async fn upgrade(
        &self,
        io: ClientIo,
        domain: Option<&str>,
        deadline: Instant,
    ) -> Option<(ClientIo, crate::sasl::ChannelBindings)> {
        let ClientIo::Plain(stream) = io else {
            return None;
        };
        match tokio::time::timeout_at(deadline, self.tls.accept(stream, domain)).await {
            Ok(Ok((s, cb))) => Some((ClientIo::Tls(Box::new(s)), cb)),
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "STARTTLS handshake failed");
                None
            }
            Err(_) => None,
        }
    }
}

/// Hands buffered events to the core until none is left, the tenant's stanza shaper asks
/// for a pause (the rest stays buffered, and the socket is not read, until it ends), or a
/// stream boundary (STARTTLS, restart, close) needs the transport first.
async fn drain(
    core: &mut StreamCore,
    parser: &mut StreamParser,
    shaper: &mut Option<TokenBucket>,
    paused_until: &mut Instant,
    login_gate: &LoginGate,
) -> Vec<Action> {
    let mut actions = Vec::new();
    while Instant::now() >= *paused_until {
        let ev = match parser.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(e) => {
                actions.extend(core.fail(
                    StreamErrorCondition::from_parse_error(&e),
                    Some(e.to_string()),
                ));
                break;
            }
        };
        login_gate.before(core.bound().is_some(), &ev).await;
        if let (Some(bucket), StreamEvent::Stanza(_)) = (shaper.as_mut(), &ev) {
            let now = Instant::now();
            *paused_until = now + bucket.take(now.into_std());
        }
        // Boxed: the services' futures are large, and an idle connection should not carry
        // room for them in its own state.
        let acts = Box::pin(core.on_event(ev)).await;
        let boundary = acts
            .iter()
            .any(|a| matches!(a, Action::StartTls | Action::Restart | Action::Close(_)));
        actions.extend(acts);
        if boundary || core.is_closed() {
            break;
        }
    }
    actions
}

/// Keepalive and idle timing of bound sessions.
struct Timers {
    ping_interval: Option<Duration>,
    ping_timeout: Duration,
    idle: Duration,
}

impl Timers {
    fn new(server: &Server, listener: &C2sListener) -> Self {
        let config = server.config();
        let c2s = &config.c2s;
        Timers {
            ping_interval: (c2s.ping_interval > 0).then(|| Duration::from_secs(c2s.ping_interval)),
            ping_timeout: Duration::from_secs(c2s.ping_timeout.max(1)),
            idle: Duration::from_secs(listener.idle_timeout.max(1)),
        }
    }

    fn next_deadline(
        &self,
        bound: bool,
        negotiation: Instant,
        last_rx: Instant,
        ping_sent: Option<Instant>,
    ) -> Instant {
        if !bound {
            return negotiation;
        }
        if let Some(sent) = ping_sent {
            return sent + self.ping_timeout;
        }
        let idle = last_rx + self.idle;
        match self.ping_interval {
            Some(p) => idle.min(last_rx + p),
            None => idle,
        }
    }
}

/// Messages the router sends to sessions, re-exported for transports.
pub type Mailbox = mpsc::Receiver<SessionMsg>;
