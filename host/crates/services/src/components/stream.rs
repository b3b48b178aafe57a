//! The XEP-0114 component stream as a [`Protocol`] for the session driver: stream header
//! (`jabber:component:accept`, `to` = the component domain), `<handshake>` with hex
//! SHA-1(stream id + secret), then stanzas in both directions until either side closes.
//! The transport (a TCP listener, with TLS if configured) only frames it.
//!
//! Refusals follow XEP-0114 and RFC 6120 §4.9: an unknown domain gets `host-unknown`, a
//! wrong secret `not-authorized`, a domain already served (with `on_conflict = "refuse"`)
//! `conflict`, a stanza whose `from` is not on the component's domains `invalid-from`,
//! anything but message/presence/iq `unsupported-stanza-type`, and bad XML the same
//! conditions as on c2s (the same parser and size limits). Silent components are pinged
//! (XEP-0199) and closed after the listener's idle timeout, by the driver.

use std::sync::Arc;
use std::time::Duration;

use heliograph_core::Core;
use tokio::time::Instant;

use super::external::{Connections, ExternalComponent};
use super::{handshake, namespace};
use crate::pipeline::route_from_hosted;
use crate::router::{HostedDomain, Mailbox, SessionMsg};
use crate::session::{Action, Identity, Protocol, StreamErrorCondition, Work};
use crate::stanza::{self, Condition};
use crate::tenants::rate::TokenBucket;
use crate::tenants::spec::ComponentSpec;
use crate::xml::{Element, ParserLimits, StreamEvent, StreamHeader, ns};

/// How long a handshake waits for a conflicting route to go away before refusing.
const RECONNECT_GRACE: Duration = Duration::from_secs(1);

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
    /// Sender of keepalive pings: one of the tenant's own domains.
    tenant_domain: String,
}

/// One component connection's stream (see the module docs).
pub struct ComponentStream {
    core: Arc<Core>,
    connections: Arc<Connections>,
    /// Connection id (logs, the live table).
    id: u64,
    stream_id: String,
    header_sent: bool,
    /// The connection's own mailbox, handed to the component once it is routed.
    mailbox: Mailbox,
    phase: Phase,
    /// The close is written (or about to be): nothing more is read or sent.
    closed: bool,
    work: Vec<Element>,
    next_ping: u64,
}

impl ComponentStream {
    pub fn new(
        core: Arc<Core>,
        connections: Arc<Connections>,
        id: u64,
        mailbox: Mailbox,
    ) -> ComponentStream {
        ComponentStream {
            core,
            connections,
            id,
            stream_id: handshake::new_stream_id(),
            header_sent: false,
            mailbox,
            phase: Phase::Header,
            closed: false,
            work: Vec::new(),
            next_ping: 0,
        }
    }

    fn header(&mut self, from: Option<&str>) -> Action {
        self.header_sent = true;
        Action::Header {
            id: self.stream_id.clone(),
            from: from.unwrap_or_default().to_string(),
        }
    }

    fn close(&mut self, error: Option<(StreamErrorCondition, Option<String>)>) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        let mut out = Vec::new();
        if !self.header_sent {
            out.push(self.header(None));
        }
        if let Some((cond, text)) = &error {
            tracing::debug!(
                condition = cond.name(),
                text = text.as_deref().unwrap_or(""),
                "closing component stream with error"
            );
        }
        out.push(Action::Close(error));
        out
    }

    fn on_header(&mut self, header: StreamHeader) -> Vec<Action> {
        if !matches!(self.phase, Phase::Header) {
            return self.close(Some((StreamErrorCondition::NotWellFormed, None)));
        }
        let to = header
            .attr("to")
            .and_then(heliograph_xmpp::jid::normalize_domain);
        let mut out = vec![self.header(to.as_deref())];
        if header.name != "stream" || header.ns != ns::STREAM || header.default_ns != ns::COMPONENT
        {
            self.phase = Phase::Refused;
            out.extend(self.close(Some((
                StreamErrorCondition::InvalidNamespace,
                Some(format!("expected a {} stream", ns::COMPONENT)),
            ))));
            return out;
        }
        let found = to.as_deref().and_then(|domain| {
            let snapshot = self.core.tenants.snapshot();
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
            }
            None => {
                self.phase = Phase::Refused;
                out.extend(self.close(Some((StreamErrorCondition::HostUnknown, None))));
            }
        }
        out
    }

    async fn on_handshake(&mut self, el: Element) -> Vec<Action> {
        let Phase::Handshake { tenant, spec } = &self.phase else {
            return Vec::new();
        };
        let (tenant, spec) = (tenant.clone(), spec.clone());
        let secret = spec.secret.as_deref().unwrap_or_default();
        let ok = el.is("handshake", ns::COMPONENT)
            && !secret.is_empty()
            && handshake::verify(&self.stream_id, secret, &el.text());
        if !ok {
            metrics::counter!("heliograph_component_handshakes_total", "outcome" => "not_authorized").increment(1);
            tracing::info!("component handshake refused: wrong secret");
            return self.close(Some((StreamErrorCondition::NotAuthorized, None)));
        }
        let component = ExternalComponent::new(self.id, &tenant, spec, self.mailbox.clone());
        let mut attached = self.connections.attach(&self.core, &component);
        // A component that just dropped its connection may reconnect before the server
        // has read the old connection's end: give the old route a moment to go away
        // before refusing (XEP-0114 servers are known for refusing such reconnects).
        let give_up = Instant::now() + RECONNECT_GRACE;
        while attached.is_err() && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(25)).await;
            attached = self.connections.attach(&self.core, &component);
        }
        if let Err(e) = attached {
            metrics::counter!("heliograph_component_handshakes_total", "outcome" => "conflict")
                .increment(1);
            tracing::info!(error = %e, "component refused: domain already connected");
            return self.close(Some((StreamErrorCondition::Conflict, Some(e.to_string()))));
        }
        metrics::counter!("heliograph_component_handshakes_total", "outcome" => "ok").increment(1);
        metrics::gauge!("heliograph_components_connected").increment(1.0);
        tracing::info!(domains = ?component.spec.domains, "component connected");
        let tenant_domain = self
            .core
            .tenants
            .by_name(&tenant)
            .and_then(|t| t.spec.domains.first().cloned())
            .unwrap_or_default();
        self.phase = Phase::Ready(Ready {
            component,
            tenant_domain,
        });
        vec![Action::Send(Element::new("handshake", ns::COMPONENT))]
    }

    fn on_stanza(&mut self, el: Element) -> Vec<Action> {
        let Phase::Ready(ready) = &self.phase else {
            return Vec::new();
        };
        if el.ns() != ns::COMPONENT || !matches!(el.name(), "message" | "presence" | "iq") {
            return self.close(Some((
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
            return self.close(Some((
                StreamErrorCondition::InvalidFrom,
                Some("'from' must be a JID on the component's domains".into()),
            )));
        }
        metrics::counter!("heliograph_stanzas_in_total", "transport" => "component",
            "kind" => heliograph_metrics::stanza_kind(el.name()))
        .increment(1);
        if let Some(error) = check_iq(&el) {
            return vec![self.outgoing(error)];
        }
        self.work.push(el);
        Vec::new()
    }

    /// A stanza for the component, in its namespace.
    fn outgoing(&self, el: Element) -> Action {
        metrics::counter!("heliograph_stanzas_out_total", "transport" => "component",
            "kind" => heliograph_metrics::stanza_kind(el.name()))
        .increment(1);
        Action::Send(namespace::into_component(el))
    }

    fn hosted(&self) -> Option<Arc<dyn HostedDomain>> {
        match &self.phase {
            Phase::Ready(r) => Some(r.component.clone() as Arc<dyn HostedDomain>),
            _ => None,
        }
    }
}

impl Protocol for ComponentStream {
    async fn on_event(&mut self, ev: StreamEvent) -> Vec<Action> {
        match ev {
            StreamEvent::Open(header) => self.on_header(header),
            StreamEvent::Close => self.close(None),
            StreamEvent::Stanza(el) => match self.phase {
                Phase::Header => self.close(Some((StreamErrorCondition::NotWellFormed, None))),
                Phase::Handshake { .. } => self.on_handshake(el).await,
                Phase::Ready(_) => self.on_stanza(el),
                Phase::Refused => Vec::new(),
            },
        }
    }

    fn on_mailbox(&mut self, msg: SessionMsg) -> Vec<Action> {
        match msg {
            SessionMsg::Stanza(el) => vec![self.outgoing(el)],
            // Nothing stored is delivered to a component; it would stay stored.
            SessionMsg::Stored(stored) => vec![self.outgoing(stored.0)],
            SessionMsg::Close(cond, text) => self.close(Some((cond, text))),
            // A component's stanzas are not counted by stream management.
            SessionMsg::Attach(_) | SessionMsg::Settled(_) => Vec::new(),
            SessionMsg::Export(req) => {
                let _ = req
                    .reply
                    .send(Err(crate::session::handoff::HandOffError::NotMovable));
                Vec::new()
            }
        }
    }

    fn take_work(&mut self, _idle: bool) -> Option<Work> {
        if self.work.is_empty() {
            return None;
        }
        let hosted = self.hosted()?;
        let el = self.work.remove(0);
        let core = self.core.clone();
        Some(Box::pin(async move {
            route_from_hosted(&core, hosted, el).await
        }))
    }

    fn fail(&mut self, cond: StreamErrorCondition, text: Option<String>) -> Vec<Action> {
        self.close(Some((cond, text)))
    }

    fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Ready(_))
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn domain(&self) -> Option<&str> {
        None
    }

    fn parser_limits(&self) -> ParserLimits {
        // The component's stanzas may be larger than the default if its tenant says so.
        match &self.phase {
            Phase::Ready(r) => self.core.parser_limits_for(Some(&r.tenant_domain)),
            _ => self.core.parser_limits(),
        }
    }

    fn shaper(&self) -> Option<TokenBucket> {
        None
    }

    fn identity(&self) -> Option<Identity> {
        None
    }

    /// An XEP-0199 ping from the tenant's domain to the component.
    fn keepalive_ping(&mut self) -> Option<Element> {
        let Phase::Ready(r) = &self.phase else {
            return None;
        };
        self.next_ping += 1;
        let ping = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", format!("keepalive-{}-{}", self.id, self.next_ping))
            .with_attr("from", r.tenant_domain.clone())
            .with_attr("to", r.component.spec.domains[0].clone())
            .with_child(Element::new("ping", ns::PING));
        Some(namespace::into_component(ping))
    }

    async fn finish(&mut self) {
        self.closed = true;
        if let Phase::Ready(ready) = &self.phase {
            self.connections.detach(&self.core, &ready.component);
            metrics::gauge!("heliograph_components_connected").decrement(1.0);
            tracing::info!(domain = %ready.component.spec.domains[0], "component disconnected");
        }
    }

    /// Stanzas still queued for the component bounce like those of an absent one.
    async fn rescue(&mut self, unsent: Vec<Element>, unread: Vec<Element>) {
        let Some(hosted) = self.hosted() else {
            return;
        };
        for s in unsent.into_iter().chain(unread) {
            let s = namespace::into_server(s);
            if let Some(e) = stanza::error_reply(&s, Condition::ServiceUnavailable, None) {
                route_from_hosted(&self.core, hosted.clone(), e).await;
            }
        }
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
