//! Incoming streams: the `[[listen.s2s]]` accept loop and one task per connection. The
//! stream header must name a local domain that federates (`host-unknown` otherwise);
//! TLS comes first (STARTTLS is required, or the listener is direct TLS); then the peer
//! authenticates domain pairs with dialback (each `<db:result/>` is checked with the
//! peer's authoritative server, several pairs per stream), and answers `<db:verify/>`
//! for keys this server issued. Stanzas must come from and go to an authenticated pair
//! (`invalid-from`, `improper-addressing`) and are routed like any other, with the
//! remote domain as their origin.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use heliograph_config::{S2sListener, TlsMode};
use heliograph_core::Core;
use heliograph_core::pipeline::{self, Origin};
use heliograph_core::shutdown::Shutdown;
use heliograph_xml::{Element, ParserLimits, StreamEvent, ns};
use heliograph_xmpp::stream_error::StreamErrorCondition;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::stream::{DIALBACK, DIALBACK_FEATURE, XmlStream, header, to_client_ns};
use super::{Direction, S2s, dialback, failure, outgoing};
use crate::listener::ConnectionTracker;

/// Accepts s2s connections until shutdown.
pub async fn serve_s2s(
    listener: TcpListener,
    settings: Arc<S2sListener>,
    s2s: Arc<S2s>,
    core: Arc<Core>,
    tracker: Arc<ConnectionTracker>,
    mut shutdown: Shutdown,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.requested() => break,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        if core.drain.is_draining() {
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let guard = tracker.enter();
        let (s2s, core, settings, shutdown) = (
            s2s.clone(),
            core.clone(),
            settings.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _guard = guard;
            let span = tracing::info_span!("s2s-in", %peer);
            let _ = tracing::Instrument::instrument(
                serve_connection(s2s, core, settings, tcp, shutdown),
                span,
            )
            .await;
        });
    }
}

/// A dialback check finished.
struct Verified {
    local: String,
    remote: String,
    valid: bool,
}

async fn serve_connection(
    s2s: Arc<S2s>,
    core: Arc<Core>,
    settings: Arc<S2sListener>,
    tcp: tokio::net::TcpStream,
    mut shutdown: Shutdown,
) {
    let config = core.config().s2s.clone();
    let limits = ParserLimits {
        max_stanza_bytes: config.max_stanza_size,
        ..ParserLimits::default()
    };
    let (id, mut stop) = s2s.register(Direction::Incoming);
    let mut stream = XmlStream::new(tcp, limits);
    let mut conn = Incoming {
        s2s: s2s.clone(),
        core,
        id,
        stream_id: random_id(),
        local: String::new(),
        pairs: BTreeSet::new(),
        require_tls: settings.require_tls,
        opened: false,
        verified: mpsc::unbounded_channel(),
    };
    let deadline = Instant::now() + Duration::from_secs(config.negotiation_timeout.max(1));
    if settings.tls == TlsMode::Direct && stream.accept_tls(&s2s.tls, None).await.is_err() {
        failure("tls");
        s2s.unregister(id);
        return;
    }
    loop {
        let authenticated = !conn.pairs.is_empty();
        let ev = tokio::select! {
            ev = stream.next() => ev,
            Some(v) = conn.verified.1.recv() => {
                if conn.on_verified(&mut stream, v).await.is_err() { break; }
                continue;
            }
            _ = tokio::time::sleep_until(deadline), if !authenticated => {
                failure("negotiation-timeout");
                conn.fail(&mut stream, StreamErrorCondition::ConnectionTimeout, None).await;
                break;
            }
            _ = stop.changed() => {
                conn.fail(&mut stream, StreamErrorCondition::HostGone, Some("federation ended for this domain")).await;
                break;
            }
            _ = shutdown.requested() => {
                conn.fail(&mut stream, StreamErrorCondition::SystemShutdown, None).await;
                break;
            }
        };
        let result = match ev {
            Ok(StreamEvent::Open(h)) => conn.on_header(&mut stream, &h).await,
            Ok(StreamEvent::Stanza(el)) => conn.on_element(&mut stream, el).await,
            Ok(StreamEvent::Close) => {
                let _ = stream.write("</stream:stream>").await;
                stream.shutdown().await;
                break;
            }
            Err(e) => {
                if let Some(c) = e.condition() {
                    failure("bad-xml");
                    conn.fail(&mut stream, c, None).await;
                }
                break;
            }
        };
        if result.is_err() {
            break;
        }
    }
    s2s.unregister(id);
}

/// The stream has ended (a stream error was sent).
struct Ended;

struct Incoming {
    s2s: Arc<S2s>,
    core: Arc<Core>,
    /// The id in the stream registry.
    id: u64,
    /// The stream id sent in our header (dialback keys are bound to it).
    stream_id: String,
    /// The local domain the header named.
    local: String,
    /// Authenticated (local, remote) pairs.
    pairs: BTreeSet<(String, String)>,
    require_tls: bool,
    /// Our stream header was sent (a stream error needs one before it).
    opened: bool,
    verified: (
        mpsc::UnboundedSender<Verified>,
        mpsc::UnboundedReceiver<Verified>,
    ),
}

impl Incoming {
    /// Sends a stream error (after a stream header if none was sent yet) and closes.
    async fn fail(
        &mut self,
        stream: &mut XmlStream,
        condition: StreamErrorCondition,
        text: Option<&str>,
    ) {
        if !self.opened {
            self.opened = true;
            let _ = stream.write(&header("", "", Some(&self.stream_id))).await;
        }
        stream.fail(condition, text).await;
    }

    async fn on_header(
        &mut self,
        stream: &mut XmlStream,
        h: &heliograph_xml::StreamHeader,
    ) -> Result<(), Ended> {
        let to = h.attr("to").unwrap_or_default().to_ascii_lowercase();
        let from = h.attr("from").unwrap_or_default();
        let _ = stream
            .write(&header(&to, from, Some(&self.stream_id)))
            .await;
        if h.default_ns != ns::SERVER {
            stream
                .fail(StreamErrorCondition::InvalidNamespace, None)
                .await;
            return Err(Ended);
        }
        let federates = self
            .core
            .tenant_of_any(&to)
            .is_some_and(|t| t.spec.s2s.enabled);
        if !federates {
            failure("host-unknown");
            stream.fail(StreamErrorCondition::HostUnknown, None).await;
            return Err(Ended);
        }
        self.local = to;
        let mut features = Element::new("features", ns::STREAM);
        if stream.is_tls() {
            features.push_child(
                Element::new("dialback", DIALBACK_FEATURE)
                    .with_child(Element::new("errors", DIALBACK_FEATURE)),
            );
        } else {
            let mut tls = Element::new("starttls", ns::TLS);
            if self.require_tls {
                tls.push_child(Element::new("required", ns::TLS));
            }
            features.push_child(tls);
        }
        stream
            .write(&features.to_string_in(ns::SERVER))
            .await
            .map_err(|_| Ended)
    }

    async fn on_element(&mut self, stream: &mut XmlStream, mut el: Element) -> Result<(), Ended> {
        if el.is("starttls", ns::TLS) && !stream.is_tls() {
            stream
                .write("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .await
                .map_err(|_| Ended)?;
            if stream
                .accept_tls(&self.s2s.tls, Some(&self.local))
                .await
                .is_err()
            {
                failure("tls");
                return Err(Ended);
            }
            self.s2s.update(self.id, |i| i.tls = true);
            return Ok(());
        }
        if self.require_tls && !stream.is_tls() {
            stream
                .fail(
                    StreamErrorCondition::PolicyViolation,
                    Some("TLS is required"),
                )
                .await;
            return Err(Ended);
        }
        if el.is("result", DIALBACK) {
            return self.on_dialback_result(stream, &el).await;
        }
        if el.is("verify", DIALBACK) {
            return self.on_dialback_verify(stream, &el).await;
        }
        if !matches!(el.name(), "message" | "presence" | "iq") || el.ns() != ns::SERVER {
            stream
                .fail(StreamErrorCondition::UnsupportedStanzaType, None)
                .await;
            return Err(Ended);
        }
        let (Some(from), Some(to)) = (jid_of(el.attr("from")), jid_of(el.attr("to"))) else {
            failure("improper-addressing");
            stream
                .fail(StreamErrorCondition::ImproperAddressing, None)
                .await;
            return Err(Ended);
        };
        let pair = (to.domain().to_string(), from.domain().to_string());
        if !self.pairs.contains(&pair) {
            failure("invalid-from");
            stream.fail(StreamErrorCondition::InvalidFrom, None).await;
            return Err(Ended);
        }
        el.set_attr("from", from.to_string());
        el.set_attr("to", to.to_string());
        to_client_ns(&mut el);
        self.s2s.count_stanza(self.id, Direction::Incoming);
        self.pace(&pair.1).await;
        pipeline::route(&self.core, &Origin::Remote(pair.1), el).await;
        Ok(())
    }

    /// Holds the stream (nothing more is read from its socket) while `remote` is over
    /// the per-peer rate (`[s2s] rate`, `burst`).
    async fn pace(&self, remote: &str) {
        let (rate, burst) = {
            let config = self.core.config();
            (config.s2s.rate, config.s2s.burst)
        };
        let wait = self.s2s.rates.take(remote, rate, burst);
        if !wait.is_zero() {
            self.s2s
                .counters
                .throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    /// A peer asks to be accepted for (to, from): checked with its authoritative server.
    async fn on_dialback_result(
        &mut self,
        stream: &mut XmlStream,
        el: &Element,
    ) -> Result<(), Ended> {
        let local = el.attr("to").unwrap_or_default().to_ascii_lowercase();
        let remote = el.attr("from").unwrap_or_default().to_ascii_lowercase();
        let allowed = !remote.is_empty()
            && S2s::permits(&self.core, &local, &remote)
            && self.core.tenant_of_any(&local).is_some_and(|t| {
                t.spec
                    .s2s
                    .accepts(heliograph_tenants::s2s_settings::S2sAuth::Dialback)
            });
        let limit = self.core.config().s2s.max_connections_per_domain;
        let already = self.pairs.iter().any(|(_, r)| *r == remote);
        if allowed && !already && limit > 0 && self.s2s.incoming_from(&remote) >= limit {
            failure("limit");
            let reply = format!(
                "<db:result from='{}' to='{}' type='error'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
                esc(&local),
                esc(&remote)
            );
            return stream.write(&reply).await.map_err(|_| Ended);
        }
        if !allowed {
            failure("not-allowed");
            let reply = format!(
                "<db:result from='{}' to='{}' type='error'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
                esc(&local),
                esc(&remote)
            );
            return stream.write(&reply).await.map_err(|_| Ended);
        }
        let key = el.text();
        let (s2s, core, tx, id) = (
            self.s2s.clone(),
            self.core.clone(),
            self.verified.0.clone(),
            self.stream_id.clone(),
        );
        tokio::spawn(async move {
            let timeout = Duration::from_secs(core.config().s2s.connect_timeout.max(1));
            let valid = matches!(
                tokio::time::timeout(
                    timeout,
                    outgoing::verify_key(&s2s, &core, &local, &remote, &id, key.trim())
                )
                .await,
                Ok(Ok(true))
            );
            let _ = tx.send(Verified {
                local,
                remote,
                valid,
            });
        });
        Ok(())
    }

    async fn on_verified(&mut self, stream: &mut XmlStream, v: Verified) -> Result<(), Ended> {
        let ty = if v.valid { "valid" } else { "invalid" };
        stream
            .write(&format!(
                "<db:result from='{}' to='{}' type='{ty}'/>",
                esc(&v.local),
                esc(&v.remote)
            ))
            .await
            .map_err(|_| Ended)?;
        if !v.valid {
            failure("dialback-invalid");
            stream.fail(StreamErrorCondition::NotAuthorized, None).await;
            return Err(Ended);
        }
        tracing::info!(local = %v.local, remote = %v.remote, "incoming s2s pair authenticated (dialback)");
        self.pairs.insert((v.local.clone(), v.remote.clone()));
        self.s2s.update(self.id, |i| {
            i.pairs.insert((v.local, v.remote));
            i.auth = Some("dialback");
        });
        Ok(())
    }

    /// A receiving server asks whether a key we issued (as `to`) is valid.
    async fn on_dialback_verify(
        &mut self,
        stream: &mut XmlStream,
        el: &Element,
    ) -> Result<(), Ended> {
        let receiving = el.attr("from").unwrap_or_default();
        let originating = el.attr("to").unwrap_or_default();
        let id = el.attr("id").unwrap_or_default();
        let valid = self.core.tenant_of_any(originating).is_some()
            && dialback::verify(
                &self.s2s.secret,
                receiving,
                originating,
                id,
                el.text().trim(),
            );
        let ty = if valid { "valid" } else { "invalid" };
        stream
            .write(&format!(
                "<db:verify from='{}' to='{}' id='{}' type='{ty}'/>",
                esc(originating),
                esc(receiving),
                esc(id)
            ))
            .await
            .map_err(|_| Ended)
    }
}

fn jid_of(value: Option<&str>) -> Option<jid::Jid> {
    jid::Jid::new(value?).ok()
}

fn esc(s: &str) -> String {
    let mut out = String::new();
    heliograph_xml::element::escape_attr(s, &mut out);
    out
}

fn random_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| format!("{:x}", rng.random::<u8>() & 0xf))
        .collect()
}
