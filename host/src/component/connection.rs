//! One XEP-0114 component connection: stream header (`jabber:component:accept`, `to` =
//! the component domain), `<handshake>` with hex SHA-1(stream id + secret), then stanzas
//! in both directions until either side closes.
//!
//! Refusals follow XEP-0114 and RFC 6120 §4.9: an unknown domain gets `host-unknown`, a
//! wrong secret `not-authorized`, a domain already served (with `on_conflict = "refuse"`)
//! `conflict`, a stanza whose `from` is not on the component's domains `invalid-from`,
//! anything but message/presence/iq `unsupported-stanza-type`, and bad XML the same
//! conditions as on c2s (the same parser and size limits). Silent components are pinged
//! (XEP-0199) every `[c2s] ping_interval` and closed after the listener's `idle_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout_at};

use super::external::{CloseReason, ExternalComponent};
use super::{handshake, namespace};
use crate::config::ComponentListener;
use crate::server::Server;
use crate::services::hosted::{HostedDomain, route_from_hosted};
use crate::session::StreamErrorCondition;
use crate::stanza::{self, Condition};
use crate::tenants::spec::ComponentSpec;
use crate::transport::io::ClientIo;
use crate::transport::listener::Shutdown;
use crate::transport::tls::TlsStore;
use crate::xml::{Element, StreamEvent, StreamHeader, StreamParser, ns};

/// How long a handshake waits for a conflicting route to go away before refusing.
const RECONNECT_GRACE: Duration = Duration::from_secs(1);

/// What a connection task needs.
pub struct Params {
    pub id: u64,
    pub server: Arc<Server>,
    pub listener: Arc<ComponentListener>,
    pub tls: Option<Arc<TlsStore>>,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// End of the negotiation window (header and handshake).
    pub deadline: Instant,
    pub shutdown: Shutdown,
}

/// Where the stream is.
enum Phase {
    /// Waiting for the stream header.
    Header,
    /// Header answered; waiting for `<handshake>`.
    Handshake { tenant: String, spec: ComponentSpec },
    /// Authenticated and routed.
    Ready(Ready),
    /// Header answered, stream being refused.
    Refused,
}

struct Ready {
    component: Arc<ExternalComponent>,
    hosted: Arc<dyn HostedDomain>,
    outbox: mpsc::Receiver<Element>,
    closer: watch::Receiver<Option<CloseReason>>,
    /// Sender of keepalive pings: one of the tenant's own domains.
    ping_from: String,
}

/// What the loop does next.
enum Step {
    Continue,
    Close(Option<CloseReason>),
}

struct Conn {
    server: Arc<Server>,
    listener: Arc<ComponentListener>,
    id: u64,
    stream_id: String,
    io: ClientIo,
    out: String,
    phase: Phase,
}

/// Runs the connection to its end.
pub async fn run(p: Params) {
    let _ = p.stream.set_nodelay(true);
    let io = match &p.tls {
        Some(tls) if p.listener.tls => {
            match timeout_at(p.deadline, tls.accept(p.stream, None)).await {
                Ok(Ok((s, _))) => ClientIo::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    tracing::debug!(peer = %p.peer, error = %e, "component TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
        _ => ClientIo::Plain(p.stream),
    };
    let mut conn = Conn {
        server: p.server.clone(),
        listener: p.listener,
        id: p.id,
        stream_id: handshake::new_stream_id(),
        io,
        out: String::new(),
        phase: Phase::Header,
    };
    let mut shutdown = p.shutdown;
    let mut parser = StreamParser::new(p.server.parser_limits());
    let config = p.server.config();
    let ping_interval =
        (config.c2s.ping_interval > 0).then(|| Duration::from_secs(config.c2s.ping_interval));
    let ping_timeout = Duration::from_secs(config.c2s.ping_timeout.max(1));
    let idle = Duration::from_secs(conn.listener.idle_timeout.max(1));
    let mut last_rx = Instant::now();
    let mut ping_sent: Option<Instant> = None;

    let end: Option<CloseReason> = loop {
        let deadline = match &conn.phase {
            Phase::Ready(_) => {
                let idle_at = last_rx + idle;
                match (ping_sent, ping_interval) {
                    (Some(sent), _) => (sent + ping_timeout).min(idle_at),
                    (None, Some(every)) => (last_rx + every).min(idle_at),
                    (None, None) => idle_at,
                }
            }
            _ => p.deadline,
        };
        let step = tokio::select! {
            r = conn.io.read_with(|data| { let _ = parser.feed(data); }) => match r {
                Ok(0) | Err(_) => break None,
                Ok(_) => {
                    last_rx = Instant::now();
                    ping_sent = None;
                    conn.on_input(&mut parser).await
                }
            },
            signal = server_signal(&mut conn.phase) => match signal {
                Signal::Stanza(el) => {
                    conn.write_stanza(el);
                    Step::Continue
                }
                Signal::Close(reason) => Step::Close(Some(reason)),
            },
            _ = sleep_until(deadline) => {
                let now = Instant::now();
                match &conn.phase {
                    Phase::Ready(r) => {
                        if now >= last_rx + idle || ping_sent.is_some_and(|s| now >= s + ping_timeout) {
                            Step::Close(Some((StreamErrorCondition::ConnectionTimeout, Some("idle".into()))))
                        } else if ping_sent.is_none() && ping_interval.is_some() {
                            let ping = keepalive_ping(&r.ping_from, &r.component.spec.domains[0], conn.id);
                            conn.write_stanza(ping);
                            ping_sent = Some(now);
                            Step::Continue
                        } else {
                            Step::Continue
                        }
                    }
                    _ => Step::Close(Some((StreamErrorCondition::ConnectionTimeout, Some("handshake took too long".into())))),
                }
            }
            _ = shutdown.requested() => Step::Close(Some((StreamErrorCondition::SystemShutdown, None))),
        };
        if !conn.flush().await {
            break None;
        }
        if let Step::Close(reason) = step {
            break reason;
        }
    };
    if let Some((cond, text)) = &end {
        tracing::debug!(
            condition = cond.name(),
            text = text.as_deref().unwrap_or(""),
            "closing component stream with error"
        );
        if matches!(conn.phase, Phase::Header) {
            conn.open_stream(None);
        }
        cond.to_element(text.as_deref())
            .write_to(&mut conn.out, ns::COMPONENT);
    }
    if end.is_some() || !matches!(conn.phase, Phase::Header) {
        conn.out.push_str("</stream:stream>");
    }
    let _ = conn.flush().await;
    conn.io.shutdown().await;
    if let Phase::Ready(mut ready) = conn.phase {
        conn.server
            .components
            .detach(&conn.server, &ready.component);
        metrics::gauge!("heliograph_components_connected").decrement(1.0);
        tracing::info!(domain = %ready.component.spec.domains[0], "component disconnected");
        // Stanzas still queued for the component bounce like those of an absent one.
        ready.outbox.close();
        while let Ok(s) = ready.outbox.try_recv() {
            if let Some(e) = stanza::error_reply(&s, Condition::ServiceUnavailable, None) {
                route_from_hosted(&conn.server, &ready.hosted, e).await;
            }
        }
    }
}

/// What the server has for the connection.
enum Signal {
    /// A stanza for the component.
    Stanza(Element),
    /// Close the stream (replaced, removed, settings changed).
    Close(CloseReason),
}

/// The next [`Signal`]; never resolves before the handshake. A close request wins over
/// queued stanzas.
async fn server_signal(phase: &mut Phase) -> Signal {
    let Phase::Ready(r) = phase else {
        return std::future::pending().await;
    };
    loop {
        if let Some(reason) = r.closer.borrow_and_update().clone() {
            return Signal::Close(reason);
        }
        tokio::select! {
            biased;
            changed = r.closer.changed() => {
                if changed.is_err() {
                    // The component object is gone; nothing will ask again.
                    return match r.outbox.recv().await {
                        Some(el) => Signal::Stanza(el),
                        None => std::future::pending().await,
                    };
                }
            }
            el = r.outbox.recv() => match el {
                Some(el) => return Signal::Stanza(el),
                None => return std::future::pending().await,
            },
        }
    }
}

/// An XEP-0199 ping from the tenant's domain to the component.
fn keepalive_ping(from: &str, to: &str, conn: u64) -> Element {
    let n: u32 = rand::random();
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", format!("keepalive-{conn}-{n:08x}"))
        .with_attr("from", from)
        .with_attr("to", to)
        .with_child(Element::new("ping", ns::PING))
}

impl Conn {
    /// Handles every complete event the parser has.
    async fn on_input(&mut self, parser: &mut StreamParser) -> Step {
        loop {
            let ev = match parser.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => return Step::Continue,
                Err(e) => {
                    return Step::Close(Some((
                        StreamErrorCondition::from_parse_error(&e),
                        Some(e.to_string()),
                    )));
                }
            };
            let step = match ev {
                StreamEvent::Open(header) => self.on_header(header),
                StreamEvent::Close => Step::Close(None),
                StreamEvent::Stanza(el) => match self.phase {
                    Phase::Header => Step::Close(Some((StreamErrorCondition::NotWellFormed, None))),
                    Phase::Handshake { .. } => self.on_handshake(el, parser).await,
                    Phase::Ready(_) => self.on_stanza(el).await,
                    Phase::Refused => Step::Continue,
                },
            };
            if let Step::Close(_) = step {
                return step;
            }
        }
    }

    fn open_stream(&mut self, from: Option<&str>) {
        self.out.push_str("<?xml version='1.0'?>");
        let mut attrs = vec![
            ("xmlns:stream", ns::STREAM),
            ("xmlns", ns::COMPONENT),
            ("id", self.stream_id.as_str()),
        ];
        if let Some(f) = from {
            attrs.push(("from", f));
        }
        self.out
            .push_str(&crate::xml::element::open_tag("stream:stream", &attrs));
    }

    fn on_header(&mut self, header: StreamHeader) -> Step {
        if !matches!(self.phase, Phase::Header) {
            return Step::Close(Some((StreamErrorCondition::NotWellFormed, None)));
        }
        let to = header
            .attr("to")
            .and_then(crate::tenants::spec::normalize_domain);
        self.open_stream(to.as_deref());
        if header.name != "stream" || header.ns != ns::STREAM || header.default_ns != ns::COMPONENT
        {
            self.phase = Phase::Refused;
            return Step::Close(Some((
                StreamErrorCondition::InvalidNamespace,
                Some(format!("expected a {} stream", ns::COMPONENT)),
            )));
        }
        let found = to.as_deref().and_then(|domain| {
            let snapshot = self.server.tenants.snapshot();
            let tenant = snapshot.by_component(domain)?.clone();
            let spec = tenant.component(domain)?.clone();
            (tenant.enabled() && spec.is_external()).then(|| (tenant.name.clone(), spec))
        });
        match found {
            Some((tenant, spec)) => {
                let span = tracing::Span::current();
                span.record("domain", to.as_deref().unwrap_or(""));
                span.record("tenant", tenant.as_str());
                self.phase = Phase::Handshake { tenant, spec };
                Step::Continue
            }
            None => {
                self.phase = Phase::Refused;
                Step::Close(Some((StreamErrorCondition::HostUnknown, None)))
            }
        }
    }

    async fn on_handshake(&mut self, el: Element, parser: &mut StreamParser) -> Step {
        let Phase::Handshake { tenant, spec } = &self.phase else {
            return Step::Continue;
        };
        let secret = spec.secret.as_deref().unwrap_or_default();
        let ok = el.is("handshake", ns::COMPONENT)
            && !secret.is_empty()
            && handshake::verify(&self.stream_id, secret, &el.text());
        if !ok {
            metrics::counter!("heliograph_component_handshakes_total", "outcome" => "not_authorized").increment(1);
            tracing::info!("component handshake refused: wrong secret");
            return Step::Close(Some((StreamErrorCondition::NotAuthorized, None)));
        }
        let queue = self.server.config().c2s.session_queue.max(4096);
        let (component, outbox, closer) =
            ExternalComponent::new(self.id, tenant, spec.clone(), queue);
        let mut attached = self.server.components.attach(&self.server, &component);
        // A component that just dropped its connection may reconnect before the server
        // has read the old connection's end: give the old route a moment to go away
        // before refusing (XEP-0114 servers are known for refusing such reconnects).
        let give_up = Instant::now() + RECONNECT_GRACE;
        while attached.is_err() && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(25)).await;
            attached = self.server.components.attach(&self.server, &component);
        }
        if let Err(e) = attached {
            metrics::counter!("heliograph_component_handshakes_total", "outcome" => "conflict")
                .increment(1);
            tracing::info!(error = %e, "component refused: domain already connected");
            return Step::Close(Some((StreamErrorCondition::Conflict, Some(e.to_string()))));
        }
        metrics::counter!("heliograph_component_handshakes_total", "outcome" => "ok").increment(1);
        metrics::gauge!("heliograph_components_connected").increment(1.0);
        tracing::info!(domains = ?component.spec.domains, "component connected");
        let ping_from = self
            .server
            .tenants
            .by_name(tenant)
            .and_then(|t| t.spec.domains.first().cloned())
            .unwrap_or_default();
        self.out.push_str("<handshake/>");
        // The component's stanzas may be larger than the default if its tenant says so.
        parser.set_limits(
            self.server.parser_limits_for(
                self.server
                    .tenants
                    .by_name(tenant)
                    .and_then(|t| t.spec.domains.first().cloned())
                    .as_deref(),
            ),
        );
        self.phase = Phase::Ready(Ready {
            hosted: component.clone(),
            component,
            outbox,
            closer,
            ping_from,
        });
        Step::Continue
    }

    async fn on_stanza(&mut self, el: Element) -> Step {
        let Phase::Ready(ready) = &self.phase else {
            return Step::Continue;
        };
        if el.ns() != ns::COMPONENT || !matches!(el.name(), "message" | "presence" | "iq") {
            return Step::Close(Some((
                StreamErrorCondition::UnsupportedStanzaType,
                Some(format!("<{}/> is not a stanza", el.name())),
            )));
        }
        let el = namespace::into_server(el);
        let from_ok = el
            .attr("from")
            .and_then(|f| jid::Jid::new(f).ok())
            .is_some_and(|j| ready.component.serves(j.domain().as_str()));
        if !from_ok {
            return Step::Close(Some((
                StreamErrorCondition::InvalidFrom,
                Some("'from' must be a JID on the component's domains".into()),
            )));
        }
        metrics::counter!("heliograph_stanzas_in_total", "transport" => "component",
            "kind" => crate::metrics::stanza_kind(el.name()))
        .increment(1);
        if let Some(error) = check_iq(&el) {
            self.write_stanza(error);
            return Step::Continue;
        }
        let (server, hosted) = (self.server.clone(), ready.hosted.clone());
        Box::pin(route_from_hosted(&server, &hosted, el)).await;
        Step::Continue
    }

    fn write_stanza(&mut self, el: Element) {
        metrics::counter!("heliograph_stanzas_out_total", "transport" => "component",
            "kind" => crate::metrics::stanza_kind(el.name()))
        .increment(1);
        namespace::into_component(el).write_to(&mut self.out, ns::COMPONENT);
    }

    /// Writes what is buffered; false if the socket is gone.
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let res = self.io.write_all(self.out.as_bytes()).await;
        if self.out.capacity() > 4096 {
            self.out = String::new();
        } else {
            self.out.clear();
        }
        res.is_ok()
    }
}

/// A `bad-request` answer to an iq the component got wrong (RFC 6120 §8.2.3), if any.
fn check_iq(el: &Element) -> Option<Element> {
    if el.name() != "iq" {
        return None;
    }
    match stanza::stanza_type(el) {
        "get" | "set" if el.children().count() != 1 => stanza::error_reply(
            el,
            Condition::BadRequest,
            Some("an iq request has exactly one payload"),
        ),
        "get" | "set" | "result" | "error" => None,
        _ => stanza::error_reply(el, Condition::BadRequest, Some("invalid iq type")),
    }
}
