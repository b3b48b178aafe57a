//! Incoming streams: the `[[listen.s2s]]` accept loop and one task per connection. The
//! stream header must name a local domain that federates (`host-unknown` otherwise);
//! TLS comes first (STARTTLS is required, or the listener is direct TLS); then the peer
//! authenticates: with SASL EXTERNAL (XEP-0178), offered when the certificate it
//! presented verifies for the domain in its header and the tenant allows it, which
//! authenticates that one pair; or with dialback (each `<db:result/>` is checked with the
//! peer's authoritative server, several pairs per stream, refused when the tenant
//! requires valid certificates and the peer's does not verify). It also answers
//! `<db:verify/>` for keys this server issued. Stanzas must come from and go to an authenticated pair
//! (`invalid-from`, `improper-addressing`) and are routed like any other, with the
//! remote domain as their origin.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use heliograph_config::{S2sListener, TlsMode};
use heliograph_core::Core;
use heliograph_core::pipeline::{self, Origin};
use heliograph_core::shutdown::Shutdown;
use heliograph_tenants::s2s_settings::S2sAuth;
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
        peer: String::new(),
        sasl_done: false,
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
    /// The domain the peer's header named (`from`), the one SASL EXTERNAL is for.
    peer: String,
    /// SASL succeeded on this connection (no second SASL; dialback may add pairs).
    sasl_done: bool,
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
        if self.opened {
            // A restarted stream (after TLS or SASL) gets a new id (RFC 6120 §4.7.3).
            self.stream_id = random_id();
        }
        self.opened = true;
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
        if !self.sasl_done {
            self.peer = from.to_ascii_lowercase();
        }
        let mut features = Element::new("features", ns::STREAM);
        if stream.is_tls() {
            if !self.sasl_done && self.external_allowed(stream) {
                features.push_child(Element::new("mechanisms", ns::SASL).with_child(
                    Element::new("mechanism", ns::SASL).with_text("EXTERNAL".to_string()),
                ));
            }
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
        if el.is("auth", ns::SASL) && stream.is_tls() {
            return self.on_sasl_auth(stream, &el).await;
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

    /// True if the certificate the peer presented verifies for `domain` (XEP-0178).
    fn peer_cert_verifies(&self, stream: &XmlStream, domain: &str) -> bool {
        stream
            .peer_certificates()
            .is_some_and(|chain| self.s2s.certs.verifies(&chain, domain))
    }

    /// True if the peer may authenticate its header's domain with SASL EXTERNAL here.
    fn external_allowed(&self, stream: &XmlStream) -> bool {
        !self.peer.is_empty()
            && S2s::permits(&self.core, &self.local, &self.peer)
            && self
                .core
                .tenant_of_any(&self.local)
                .is_some_and(|t| t.spec.s2s.accepts(S2sAuth::External))
            && self.peer_cert_verifies(stream, &self.peer)
    }

    /// True if one more incoming stream from `remote` would pass the per-domain limit.
    fn within_limit(&self, remote: &str) -> bool {
        let limit = self.core.config().s2s.max_connections_per_domain;
        let already = self.pairs.iter().any(|(_, r)| r == remote);
        already || limit == 0 || self.s2s.incoming_from(remote) < limit
    }

    /// SASL EXTERNAL (RFC 6120 §6, XEP-0178): the pair (local, peer) is authenticated by
    /// the peer's certificate; the authorization identity, if any, must be the peer's
    /// domain. A failure leaves the stream open (the peer may go on with dialback).
    async fn on_sasl_auth(&mut self, stream: &mut XmlStream, el: &Element) -> Result<(), Ended> {
        let condition = if self.sasl_done {
            Some("not-authorized")
        } else if el.attr("mechanism") != Some("EXTERNAL") {
            Some("invalid-mechanism")
        } else {
            match sasl_authzid(&el.text()) {
                None => Some("incorrect-encoding"),
                Some(id) if !id.is_empty() && id != self.peer => Some("invalid-authzid"),
                Some(_) if !self.external_allowed(stream) => Some("not-authorized"),
                Some(_) if !self.within_limit(&self.peer) => Some("temporary-auth-failure"),
                Some(_) => None,
            }
        };
        if let Some(condition) = condition {
            failure("external-refused");
            tracing::info!(local = %self.local, remote = %self.peer, condition, "SASL EXTERNAL refused");
            return stream
                .write(&format!(
                    "<failure xmlns='{}'><{condition}/></failure>",
                    ns::SASL
                ))
                .await
                .map_err(|_| Ended);
        }
        stream
            .write(&format!("<success xmlns='{}'/>", ns::SASL))
            .await
            .map_err(|_| Ended)?;
        stream.restart();
        self.sasl_done = true;
        let pair = (self.local.clone(), self.peer.clone());
        tracing::info!(local = %pair.0, remote = %pair.1, "incoming s2s pair authenticated (SASL EXTERNAL)");
        self.pairs.insert(pair.clone());
        self.s2s.update(self.id, |i| {
            i.pairs.insert(pair);
            i.auth = Some("external");
        });
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
        let settings = self.core.tenant_of_any(&local).map(|t| t.spec.s2s.clone());
        let allowed = !remote.is_empty()
            && S2s::permits(&self.core, &local, &remote)
            && settings.as_ref().is_some_and(|s| {
                s.accepts(S2sAuth::Dialback)
                    && (!s.require_valid_certs || self.peer_cert_verifies(stream, &remote))
            });
        if allowed && !self.within_limit(&remote) {
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

/// The authorization identity of a SASL EXTERNAL `<auth/>` (`=` or nothing: none, RFC
/// 6120 §6.4.2); `None` if it is not base64 of UTF-8.
fn sasl_authzid(text: &str) -> Option<String> {
    use base64::Engine;
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(String::new());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes)
        .ok()
        .map(|s| s.to_ascii_lowercase())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_authzid_is_empty_for_equals_or_nothing_and_decoded_otherwise() {
        assert_eq!(sasl_authzid("=").as_deref(), Some(""));
        assert_eq!(sasl_authzid("").as_deref(), Some(""));
        // base64("A.Example") -> lowercased
        assert_eq!(sasl_authzid("QS5FeGFtcGxl").as_deref(), Some("a.example"));
        assert_eq!(sasl_authzid("not base64!"), None);
    }
}
