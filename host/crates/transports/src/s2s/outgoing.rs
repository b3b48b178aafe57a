//! Outgoing streams: one per (local domain, remote domain) pair, multiplexed for every
//! local sender. The task resolves the remote domain, connects, negotiates TLS (required,
//! presenting the local domain's certificate) and authenticates: with SASL EXTERNAL when
//! the peer offers it (XEP-0178: it does when our certificate verifies for the local
//! domain) and the tenant allows it, else, or when EXTERNAL fails, with dialback if the
//! tenant allows that; stanzas queue meanwhile and bounce if it fails
//! (`remote-server-not-found`, or `remote-server-timeout` when it took too long). Once
//! up, it writes what is queued until it is idle for `idle_timeout`, told to stop, or the
//! peer closes. [`verify_key`] is the short stream a receiving server opens to ask the
//! authoritative server whether a dialback key is valid.

use std::sync::Arc;
use std::time::Duration;

use heliograph_core::Core;
use heliograph_tenants::s2s_settings::{S2sAuth, S2sSettings};
use heliograph_xml::{Element, ParserLimits, StreamEvent, ns};
use heliograph_xmpp::stanza::Condition;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use super::stream::{DIALBACK, XmlStream, header};
use super::{Direction, S2s, bounce_all, dialback, failure, resolve};

/// Why an outgoing stream could not be established.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error("no address of {0} accepted the connection")]
    Unreachable(String),
    #[error("{0} does not offer TLS")]
    NoTls(String),
    #[error("TLS with {domain}: {source}")]
    Tls {
        domain: String,
        source: std::io::Error,
    },
    #[error("{domain}: certificate does not verify and valid certificates are required")]
    BadCertificate { domain: String },
    #[error("{0} refused dialback")]
    Refused(String),
    #[error("{0} refused SASL EXTERNAL and dialback is not allowed")]
    ExternalRefused(String),
    #[error("{0} offers no authentication method the tenant allows")]
    NoMethod(String),
    #[error("stream with {domain}: {message}")]
    Stream { domain: String, message: String },
}

impl ConnectError {
    fn cause(&self) -> &'static str {
        match self {
            ConnectError::Resolve(_) => "resolve",
            ConnectError::Unreachable(_) => "connect",
            ConnectError::NoTls(_) | ConnectError::Tls { .. } => "tls",
            ConnectError::BadCertificate { .. } => "certificate",
            ConnectError::Refused(_)
            | ConnectError::ExternalRefused(_)
            | ConnectError::NoMethod(_) => "auth",
            ConnectError::Stream { .. } => "stream",
        }
    }
}

fn stream_err(domain: &str, e: impl std::fmt::Display) -> ConnectError {
    ConnectError::Stream {
        domain: domain.into(),
        message: e.to_string(),
    }
}

/// An open, encrypted stream to `remote`, the id the remote side gave it and the
/// features it offered.
struct Opened {
    stream: XmlStream,
    id: String,
    features: Element,
}

/// Connects to `remote`'s server and negotiates TLS, as `local`.
async fn open(s2s: &S2s, core: &Core, local: &str, remote: &str) -> Result<Opened, ConnectError> {
    let config = core.config();
    let targets = s2s.dns.targets(&config.s2s, remote).await?;
    let attempt = Duration::from_secs(config.s2s.attempt_timeout.max(1));
    let mut connected = None;
    for t in &targets {
        match timeout(attempt, TcpStream::connect(t.addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                connected = Some((tcp, t.direct_tls));
                break;
            }
            Ok(Err(e)) => tracing::debug!(remote, addr = %t.addr, error = %e, "s2s connect failed"),
            Err(_) => tracing::debug!(remote, addr = %t.addr, "s2s connect timed out"),
        }
    }
    let Some((tcp, direct_tls)) = connected else {
        return Err(ConnectError::Unreachable(remote.into()));
    };
    let limits = ParserLimits {
        max_stanza_bytes: config.s2s.max_stanza_size,
        ..ParserLimits::default()
    };
    let mut stream = XmlStream::new(tcp, limits);
    let tls_err = |source| ConnectError::Tls {
        domain: remote.into(),
        source,
    };
    let client_tls = s2s
        .client_tls(local, direct_tls)
        .map_err(|e| ConnectError::Tls {
            domain: remote.into(),
            source: std::io::Error::other(e),
        })?;
    if direct_tls {
        stream
            .connect_tls(client_tls.clone(), remote)
            .await
            .map_err(tls_err)?;
    }
    let (mut id, mut features) = restart(&mut stream, local, remote).await?;
    if !stream.is_tls() {
        if !features.has_child("starttls", ns::TLS) {
            return Err(ConnectError::NoTls(remote.into()));
        }
        stream
            .write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await
            .map_err(|e| stream_err(remote, e))?;
        let answer = stream
            .next_element()
            .await
            .map_err(|e| stream_err(remote, e))?;
        if answer.name() != "proceed" {
            return Err(ConnectError::NoTls(remote.into()));
        }
        stream
            .connect_tls(client_tls, remote)
            .await
            .map_err(tls_err)?;
        (id, features) = restart(&mut stream, local, remote).await?;
    }
    let cert_valid = stream
        .peer_certificates()
        .is_some_and(|chain| s2s.certs.verifies(&chain, remote));
    let require_valid = core
        .tenant_of_any(local)
        .is_some_and(|t| t.spec.s2s.require_valid_certs);
    if require_valid && !cert_valid {
        return Err(ConnectError::BadCertificate {
            domain: remote.into(),
        });
    }
    Ok(Opened {
        stream,
        id,
        features,
    })
}

/// Sends our header and reads the peer's header and features.
async fn restart(
    stream: &mut XmlStream,
    local: &str,
    remote: &str,
) -> Result<(String, Element), ConnectError> {
    stream
        .write(&header(local, remote, None))
        .await
        .map_err(|e| stream_err(remote, e))?;
    let id = match stream.next().await.map_err(|e| stream_err(remote, e))? {
        StreamEvent::Open(h) => h.attr("id").unwrap_or_default().to_string(),
        _ => return Err(stream_err(remote, "no stream header")),
    };
    let features = stream
        .next_element()
        .await
        .map_err(|e| stream_err(remote, e))?;
    if !features.is("features", ns::STREAM) {
        return Err(stream_err(
            remote,
            format!("expected features, got <{}/>", features.name()),
        ));
    }
    Ok((id, features))
}

/// True if `features` offer the SASL mechanism EXTERNAL.
fn offers_external(features: &Element) -> bool {
    features.child("mechanisms", ns::SASL).is_some_and(|m| {
        m.children()
            .any(|c| c.is("mechanism", ns::SASL) && c.text().trim() == "EXTERNAL")
    })
}

/// SASL EXTERNAL as `local` (XEP-0178); on success the stream is restarted. `Ok(false)`:
/// the peer refused (the stream stays usable for dialback).
async fn external(stream: &mut XmlStream, local: &str, remote: &str) -> Result<bool, ConnectError> {
    use base64::Engine;
    let authzid = base64::engine::general_purpose::STANDARD.encode(local);
    stream
        .write(&format!(
            "<auth xmlns='{}' mechanism='EXTERNAL'>{authzid}</auth>",
            ns::SASL
        ))
        .await
        .map_err(|e| stream_err(remote, e))?;
    let answer = stream
        .next_element()
        .await
        .map_err(|e| stream_err(remote, e))?;
    if answer.is("success", ns::SASL) {
        stream.restart();
        restart(stream, local, remote).await?;
        return Ok(true);
    }
    if answer.is("failure", ns::SASL) {
        let why = answer.first_child().map(|c| c.name().to_string());
        tracing::info!(local, remote, condition = ?why, "SASL EXTERNAL refused");
        return Ok(false);
    }
    if answer.is("error", ns::STREAM) {
        return Err(stream_err(remote, stream_error_text(&answer)));
    }
    Err(stream_err(
        remote,
        format!("unexpected <{}/> after SASL EXTERNAL", answer.name()),
    ))
}

/// Opens and authenticates the stream: SASL EXTERNAL when offered and allowed, else
/// dialback (see the module docs). Returns the stream and the method that worked.
async fn establish(
    s2s: &S2s,
    core: &Core,
    local: &str,
    remote: &str,
) -> Result<(XmlStream, &'static str), ConnectError> {
    let Opened {
        mut stream,
        id,
        features,
    } = open(s2s, core, local, remote).await?;
    let settings: S2sSettings = core
        .tenant_of_any(local)
        .map(|t| t.spec.s2s.clone())
        .unwrap_or_default();
    if settings.accepts(S2sAuth::External) && offers_external(&features) {
        if external(&mut stream, local, remote).await? {
            return Ok((stream, "external"));
        }
        if !settings.accepts(S2sAuth::Dialback) {
            return Err(ConnectError::ExternalRefused(remote.into()));
        }
    }
    if !settings.accepts(S2sAuth::Dialback) {
        return Err(ConnectError::NoMethod(remote.into()));
    }
    let key = dialback::key(&s2s.secret, remote, local, &id);
    stream
        .write(&format!(
            "<db:result from='{}' to='{}'>{key}</db:result>",
            esc(local),
            esc(remote)
        ))
        .await
        .map_err(|e| stream_err(remote, e))?;
    loop {
        let el = stream
            .next_element()
            .await
            .map_err(|e| stream_err(remote, e))?;
        if el.is("result", DIALBACK) {
            return match el.attr("type") {
                Some("valid") => Ok((stream, "dialback")),
                _ => Err(ConnectError::Refused(remote.into())),
            };
        }
        if el.is("error", ns::STREAM) {
            return Err(stream_err(remote, stream_error_text(&el)));
        }
    }
}

fn stream_error_text(el: &Element) -> String {
    el.first_child()
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "stream error".into())
}

/// Attribute-escapes a domain (they are normalized, but never trusted).
fn esc(s: &str) -> String {
    let mut out = String::new();
    heliograph_xml::element::escape_attr(s, &mut out);
    out
}

/// The task of one outgoing stream (see the module docs).
pub(crate) async fn run(
    s2s: Arc<S2s>,
    core: Arc<Core>,
    key: (String, String),
    stream_id: u64,
    mut rx: mpsc::Receiver<Element>,
    mut stop: watch::Receiver<bool>,
) {
    let (local, remote) = (key.0.as_str(), key.1.as_str());
    let config = core.config().s2s.clone();
    let connect = timeout(
        Duration::from_secs(config.connect_timeout),
        establish(&s2s, &core, local, remote),
    );
    let established = tokio::select! {
        r = connect => r,
        _ = stop.changed() => Ok(Err(ConnectError::Refused(remote.into()))),
    };
    let (mut stream, method) = match established {
        Ok(Ok(up)) => up,
        Ok(Err(e)) => {
            tracing::info!(local, remote, error = %e, "outgoing s2s stream failed");
            failure(e.cause());
            return give_up(
                &s2s,
                &core,
                &key,
                stream_id,
                rx,
                Condition::RemoteServerNotFound,
            );
        }
        Err(_) => {
            tracing::info!(local, remote, "outgoing s2s stream timed out");
            failure("timeout");
            return give_up(
                &s2s,
                &core,
                &key,
                stream_id,
                rx,
                Condition::RemoteServerTimeout,
            );
        }
    };
    tracing::info!(local, remote, method, "outgoing s2s stream up");
    s2s.update(stream_id, |i| {
        i.auth = Some(method);
        i.tls = stream.is_tls();
    });
    let idle = Duration::from_secs(config.idle_timeout.max(1));
    let mut batch = String::new();
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some(first) = first else { break };
                batch.clear();
                first.write_to(&mut batch, ns::CLIENT);
                s2s.count_stanza(stream_id, Direction::Outgoing);
                while batch.len() < 64 * 1024 {
                    let Ok(next) = rx.try_recv() else { break };
                    next.write_to(&mut batch, ns::CLIENT);
                    s2s.count_stanza(stream_id, Direction::Outgoing);
                }
                if let Err(e) = stream.write(&batch).await {
                    tracing::info!(local, remote, error = %e, "outgoing s2s stream lost");
                    failure("write");
                    break;
                }
            }
            ev = stream.next() => match ev {
                Ok(StreamEvent::Stanza(_)) => {}
                _ => break,
            },
            _ = tokio::time::sleep(idle) => {
                tracing::debug!(local, remote, "outgoing s2s stream idle; closing");
                break;
            }
            _ = stop.changed() => break,
        }
    }
    s2s.drop_queue(&key, stream_id);
    let _ = stream.write("</stream:stream>").await;
    stream.shutdown().await;
    s2s.unregister(stream_id);
    // What was queued after the stream ended goes through a new one.
    rx.close();
    while let Ok(el) = rx.try_recv() {
        s2s.enqueue(&core, local, remote, el);
    }
}

/// Ends a stream that never came up: its queue is removed, and everything queued
/// bounces with `condition`.
fn give_up(
    s2s: &S2s,
    core: &Arc<Core>,
    key: &(String, String),
    stream_id: u64,
    mut rx: mpsc::Receiver<Element>,
    condition: Condition,
) {
    s2s.drop_queue(key, stream_id);
    s2s.unregister(stream_id);
    rx.close();
    let mut queued = Vec::new();
    while let Ok(el) = rx.try_recv() {
        queued.push(el);
    }
    bounce_all(s2s, core, &key.1, queued, condition);
}

/// Asks `originating`'s authoritative server whether `key` is the dialback key it issued
/// for a stream `id` that `receiving` (a local domain) opened for it.
pub async fn verify_key(
    s2s: &S2s,
    core: &Core,
    receiving: &str,
    originating: &str,
    id: &str,
    key: &str,
) -> Result<bool, ConnectError> {
    let mut opened = open(s2s, core, receiving, originating).await?;
    let stream = &mut opened.stream;
    stream
        .write(&format!(
            "<db:verify from='{}' to='{}' id='{}'>{}</db:verify>",
            esc(receiving),
            esc(originating),
            esc(id),
            esc(key)
        ))
        .await
        .map_err(|e| stream_err(originating, e))?;
    let valid = loop {
        let el = stream
            .next_element()
            .await
            .map_err(|e| stream_err(originating, e))?;
        if el.is("verify", DIALBACK) {
            break el.attr("type") == Some("valid");
        }
        if el.is("error", ns::STREAM) {
            return Err(stream_err(originating, stream_error_text(&el)));
        }
    };
    let _ = stream.write("</stream:stream>").await;
    stream.shutdown().await;
    Ok(valid)
}
