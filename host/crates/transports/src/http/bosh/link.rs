//! [`BoshLink`]: one BOSH session as a session driver's link. HTTP requests of the
//! session arrive through a channel; the link orders them by `rid` ([`RidWindow`]), holds
//! up to `hold` of them for server-to-client data, answers each with the pending payload
//! or empty after `wait`, and reports the session gone on inactivity or a broken rule.
//! Stanzas of a request become stream events; what the session sends waits in the outbox
//! for the next request to carry it, and is rescued by the driver if the session ends
//! before any does.
//!
//! A session the server ends (a stream error: `system-shutdown` in a drain,
//! `see-other-host`, `conflict`, ...) answers every held request with the terminate
//! carrying the error; if none is held, the next request gets it (the link waits for one
//! for [`CLOSE_GRACE`]), and after the link is gone the registry keeps the terminate for
//! requests still on their way. Requests waiting in the queue when the session ends are
//! answered with it too, never dropped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heliograph_auth::sasl::ChannelBindings;
use heliograph_core::Core;
use heliograph_core::router::Transport;
use heliograph_core::session::{Action, Inbound, Keepalive, Link, LinkError, Written};
use heliograph_xml::{Element, ParserLimits, StreamEvent, StreamHeader, ns};
use heliograph_xmpp::StreamErrorCondition;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

use super::body::{self, BodyRequest};
use super::pacing::Pacing;
use super::window::{Offer, Refused, RidWindow, WindowError};
use super::{Registry, Settings};

/// A response not acknowledged after this long is reported as missing (§9.2).
const REPORT_AFTER: Duration = Duration::from_secs(2);
/// How long a session closed by the server waits for a request to carry the news.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// A request handed to the session; the link answers through `reply`.
pub struct Incoming {
    pub req: BodyRequest,
    /// Bytes of the request body (the tenant's stanza size limit is checked per stanza
    /// only when the whole body is larger).
    pub size: usize,
    pub reply: oneshot::Sender<Bytes>,
}

/// How the session ends.
#[derive(Debug, Clone)]
enum Termination {
    /// `type='terminate'` without condition (the client asked, or a normal close).
    Normal,
    /// A binding condition (`policy-violation`, `item-not-found`, ...).
    Binding(&'static str),
    /// A stream error from the core: `remote-stream-error` carrying `<stream:error/>`.
    Stream(StreamErrorCondition, Option<String>),
}

struct Held {
    reply: oneshot::Sender<Bytes>,
    deadline: Instant,
}

/// What the session was created with (after the server's limits).
pub struct Negotiated {
    pub wait: Duration,
    pub hold: usize,
    pub use_acks: bool,
    pub domain: String,
    pub secure: bool,
}

/// See the module docs.
pub struct BoshLink {
    sid: String,
    requests: mpsc::Receiver<Incoming>,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    window: RidWindow<Incoming>,
    pacing: Pacing,
    held: BTreeMap<u64, Held>,
    outbox: Vec<Element>,
    negotiated: Negotiated,
    report: Option<(u64, u64)>,
    stream_id: String,
    /// The session creation request, answered with the first header and features.
    creation: Option<Incoming>,
    /// Events of the requests, in order, for the session.
    inbound: VecDeque<Inbound>,
    limits: ParserLimits,
    /// For the drain flag.
    core: Arc<Core>,
    ending: Option<Termination>,
    /// The termination reached at least one request.
    delivered: bool,
    /// Ended by inactivity or a broken rule: nobody is listening.
    gone: bool,
}

impl BoshLink {
    pub fn new(
        sid: String,
        requests: mpsc::Receiver<Incoming>,
        settings: Arc<Settings>,
        registry: Arc<Registry>,
        first: Incoming,
        negotiated: Negotiated,
        core: Arc<Core>,
    ) -> Self {
        let now = Instant::now().into_std();
        let header = StreamHeader {
            name: "stream".into(),
            ns: ns::STREAM.into(),
            default_ns: ns::CLIENT.into(),
            attrs: vec![
                ("to".into(), negotiated.domain.clone()),
                ("version".into(), "1.0".into()),
            ],
        };
        BoshLink {
            sid,
            requests,
            window: RidWindow::new(first.req.rid, negotiated.hold as u64 + 1),
            pacing: Pacing::new(
                settings.polling,
                settings.inactivity,
                settings.max_pause,
                now,
            ),
            settings,
            registry,
            held: BTreeMap::new(),
            outbox: Vec::new(),
            negotiated,
            report: None,
            stream_id: String::new(),
            creation: Some(first),
            inbound: VecDeque::from([Inbound::Event(StreamEvent::Open(header))]),
            limits: core.parser_limits(),
            core,
            ending: None,
            delivered: false,
            gone: false,
        }
    }

    /// Answers the creation request: the session's attributes and the first features.
    fn answer_creation(&mut self) {
        let Some(first) = self.creation.take() else {
            return;
        };
        let n = &self.negotiated;
        let rid = first.req.rid;
        let requests = (n.hold + 1).to_string();
        let wait = n.wait.as_secs().to_string();
        let hold = n.hold.to_string();
        let inactivity = self.settings.inactivity.as_secs().to_string();
        let polling = self.settings.polling.as_secs().to_string();
        let maxpause = self.settings.max_pause.as_secs().to_string();
        let ack = rid.to_string();
        let mut attrs: Vec<(&str, &str)> = vec![
            ("sid", &self.sid),
            ("wait", &wait),
            ("requests", &requests),
            ("hold", &hold),
            ("inactivity", &inactivity),
            ("polling", &polling),
            ("maxpause", &maxpause),
            ("ver", "1.11"),
            ("from", &n.domain),
            ("authid", &self.stream_id),
            ("secure", if n.secure { "true" } else { "false" }),
            ("xmpp:version", "1.0"),
            ("xmpp:restartlogic", "true"),
        ];
        if n.use_acks {
            attrs.push(("ack", &ack));
        }
        let text = match &self.ending {
            Some(t) => terminate_body(t, &self.outbox),
            None => body::render(&attrs, &self.outbox),
        };
        self.outbox.clear();
        let bytes = Bytes::from(text);
        self.window
            .responded(rid, bytes.clone(), Instant::now().into_std());
        if self.ending.is_some() {
            self.delivered = true;
        }
        let _ = first.reply.send(bytes);
    }

    fn next_deadline(&self) -> Instant {
        let mut d = Instant::now() + Duration::from_secs(3600);
        if let Some(h) = self.held.values().map(|h| h.deadline).min() {
            d = d.min(h);
        }
        if let Some(t) = self.pacing.expires_at() {
            d = d.min(Instant::from_std(t));
        }
        d
    }

    fn on_timer(&mut self) {
        if self.ending.is_some() {
            return;
        }
        if self
            .pacing
            .expires_at()
            .is_some_and(|t| Instant::from_std(t) <= Instant::now())
        {
            tracing::info!(sid = %self.sid, "BOSH session inactive, ending it");
            self.end(Termination::Normal);
            self.gone = true;
        }
        // Expired waits are answered empty by flush().
    }

    fn on_request(&mut self, inc: Incoming) {
        let now = Instant::now();
        if let Some(t) = &self.ending {
            // The session is over: this request carries the news.
            let _ = inc.reply.send(Bytes::from(terminate_body(t, &[])));
            self.delivered = true;
            return;
        }
        let rid = inc.req.rid;
        if let Some(ack) = inc.req.ack
            && self.negotiated.use_acks
            && let Some(report) = self.window.ack(ack, now.into_std(), REPORT_AFTER)
        {
            self.report = Some(report);
        }
        let exempt = inc.req.pause.is_some() || inc.req.terminate;
        match self.window.offer(rid, inc, exempt) {
            Ok(Offer::Retransmit(bytes, inc)) => {
                tracing::debug!(sid = %self.sid, rid, "BOSH retransmission");
                let _ = inc.reply.send(bytes);
            }
            Ok(Offer::Buffered) => {}
            Ok(Offer::Repeat(inc)) => {
                if let Some(h) = self.held.get_mut(&rid) {
                    h.reply = inc.reply;
                }
            }
            Ok(Offer::Ready(list)) => {
                for (rid, inc) in list {
                    self.process(rid, inc, now);
                    if self.ending.is_some() {
                        break;
                    }
                }
            }
            Err(Refused { error, item }) => {
                tracing::info!(sid = %self.sid, rid, error = %error, "BOSH request refused");
                let cond = match error {
                    WindowError::OutOfWindow(_) => "item-not-found",
                    WindowError::Overactive(_) => "policy-violation",
                };
                let t = Termination::Binding(cond);
                let _ = item.reply.send(Bytes::from(terminate_body(&t, &[])));
                self.delivered = true;
                self.end(t);
                self.gone = true;
            }
        }
    }

    fn process(&mut self, rid: u64, inc: Incoming, now: Instant) {
        let Incoming { req, size, reply } = inc;
        if let Err(e) = self
            .pacing
            .on_request(rid, req.is_empty_poll(), now.into_std())
        {
            tracing::info!(sid = %self.sid, error = %e, "BOSH polling violation");
            self.held.insert(
                rid,
                Held {
                    reply,
                    deadline: now,
                },
            );
            self.end(Termination::Binding("policy-violation"));
            self.gone = true;
            return;
        }
        self.held.insert(
            rid,
            Held {
                reply,
                deadline: now + self.negotiated.wait,
            },
        );
        if let Some(p) = req.pause {
            if self.pacing.pause(p).is_err() {
                self.end(Termination::Binding("policy-violation"));
                self.gone = true;
                return;
            }
            // §10: answer everything now; the pause is the inactivity limit until the
            // next request.
            for h in self.held.values_mut() {
                h.deadline = now;
            }
        }
        if req.restart {
            let header = StreamHeader {
                name: "stream".into(),
                ns: ns::STREAM.into(),
                default_ns: ns::CLIENT.into(),
                attrs: vec![
                    (
                        "to".into(),
                        req.to
                            .clone()
                            .unwrap_or_else(|| self.negotiated.domain.clone()),
                    ),
                    ("version".into(), "1.0".into()),
                ],
            };
            self.inbound
                .push_back(Inbound::Event(StreamEvent::Open(header)));
        }
        let check_size = size > self.limits.max_stanza_bytes;
        for el in req.payload {
            if check_size && el.to_string_in(ns::CLIENT).len() > self.limits.max_stanza_bytes {
                self.inbound.push_back(Inbound::Refused(
                    StreamErrorCondition::PolicyViolation,
                    format!("stanza larger than {} bytes", self.limits.max_stanza_bytes),
                ));
                return;
            }
            self.inbound
                .push_back(Inbound::Event(StreamEvent::Stanza(el)));
        }
        if req.terminate {
            self.inbound.push_back(Inbound::Event(StreamEvent::Close));
        }
    }

    fn end(&mut self, t: Termination) {
        if self.ending.is_none() {
            tracing::debug!(sid = %self.sid, termination = ?t, "BOSH session terminating");
            self.ending = Some(t);
        }
    }

    /// Answers what can be answered: everything when ending; otherwise the oldest held
    /// request when there is data, when more than `hold` are held, or when its wait ran
    /// out.
    fn flush(&mut self) {
        if self.creation.is_some() {
            return;
        }
        let now = Instant::now();
        if let Some(t) = self.ending.clone() {
            let mut first = true;
            while let Some((rid, h)) = self.held.pop_first() {
                let payload = if first {
                    std::mem::take(&mut self.outbox)
                } else {
                    Vec::new()
                };
                first = false;
                self.delivered = true;
                self.respond(rid, h, terminate_body(&t, &payload), !payload.is_empty());
            }
            self.pacing.set_held(0, now.into_std());
            return;
        }
        while let Some((&rid, oldest)) = self.held.first_key_value() {
            let due = !self.outbox.is_empty()
                || self.held.len() > self.negotiated.hold
                || oldest.deadline <= now;
            if !due {
                break;
            }
            let h = self.held.remove(&rid).expect("present");
            let payload = std::mem::take(&mut self.outbox);
            let mut attrs: Vec<(&str, String)> = Vec::new();
            if self.negotiated.use_acks && rid != self.window.highest_in_order() {
                attrs.push(("ack", self.window.highest_in_order().to_string()));
            }
            if let Some((report, time)) = self.report.take() {
                attrs.push(("report", report.to_string()));
                attrs.push(("time", time.to_string()));
            }
            let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let text = body::render(&attrs, &payload);
            self.respond(rid, h, text, !payload.is_empty());
        }
        self.pacing.set_held(self.held.len(), now.into_std());
    }

    fn respond(&mut self, rid: u64, h: Held, text: String, had_payload: bool) {
        let bytes = Bytes::from(text);
        self.window
            .responded(rid, bytes.clone(), Instant::now().into_std());
        self.pacing.on_response(rid, had_payload);
        let _ = h.reply.send(bytes);
    }
}

impl Drop for BoshLink {
    fn drop(&mut self) {
        // Before the request queue goes (the fields are dropped after this): a request
        // that finds the queue gone finds the terminate.
        if let Some(t @ Termination::Stream(..)) = &self.ending {
            self.registry
                .ended(&self.sid, Bytes::from(terminate_body(t, &[])));
        }
        self.registry.remove(&self.sid);
        tracing::debug!(sid = %self.sid, "BOSH session ended");
    }
}

impl Link for BoshLink {
    fn transport(&self) -> Transport {
        Transport::Bosh
    }

    fn try_recv(&mut self) -> Option<Inbound> {
        self.inbound.pop_front()
    }

    fn recv(&mut self) -> BoxFuture<'_, Inbound> {
        Box::pin(async move {
            loop {
                if let Some(inbound) = self.inbound.pop_front() {
                    return inbound;
                }
                if self.gone {
                    return Inbound::Gone;
                }
                let deadline = self.next_deadline();
                tokio::select! {
                    incoming = self.requests.recv() => match incoming {
                        Some(inc) => self.on_request(inc),
                        None => return Inbound::Gone,
                    },
                    _ = sleep_until(deadline) => self.on_timer(),
                }
                self.flush();
            }
        })
    }

    fn send(&mut self, actions: Vec<Action>) -> BoxFuture<'_, Result<Written, LinkError>> {
        let mut written = Written::Done;
        for a in actions {
            match a {
                Action::Header { id, .. } => self.stream_id = id,
                Action::Send(el) | Action::SendKept(el, _) => self.outbox.push(el),
                Action::Restart => {}
                Action::StartTls | Action::Close(None) => {
                    self.end(Termination::Normal);
                    written = Written::Closed;
                }
                Action::Close(Some((cond, text))) => {
                    self.end(Termination::Stream(cond, text));
                    written = Written::Closed;
                }
            }
        }
        self.answer_creation();
        self.flush();
        Box::pin(async move { Ok(written) })
    }

    fn start_tls<'a>(
        &'a mut self,
        _domain: Option<&'a str>,
    ) -> BoxFuture<'a, Option<ChannelBindings>> {
        Box::pin(async { None })
    }

    fn set_limits(&mut self, limits: ParserLimits) {
        self.limits = limits;
        // The HTTP layer reads the next request bodies of this session up to it.
        self.registry
            .set_stanza_limit(&self.sid, limits.max_stanza_bytes);
    }

    fn keepalive(&mut self) -> BoxFuture<'_, Keepalive> {
        Box::pin(async { Keepalive::None })
    }

    /// The termination reaches the client with the next request (held ones already have
    /// it); without one within the grace, nobody is listening. Requests already queued
    /// get it at once. On a plain shutdown (not a drain) the process is exiting: no wait
    /// for a request to come.
    fn close(&mut self, peer_closed: bool) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            while let Ok(inc) = self.requests.try_recv() {
                self.on_request(inc);
            }
            let shutting_down = matches!(
                self.ending,
                Some(Termination::Stream(StreamErrorCondition::SystemShutdown, _))
            ) && !self.core.drain.is_draining();
            if self.delivered || self.gone || peer_closed || shutting_down {
                return;
            }
            let _ = timeout(CLOSE_GRACE, async {
                while let Some(inc) = self.requests.recv().await {
                    self.on_request(inc);
                    if self.delivered {
                        return;
                    }
                }
            })
            .await;
        })
    }

    fn take_unsent(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.outbox)
    }
}

fn terminate_body(t: &Termination, payload: &[Element]) -> String {
    match t {
        Termination::Normal => body::render(&[("type", "terminate")], payload),
        Termination::Binding(cond) => {
            body::render(&[("type", "terminate"), ("condition", cond)], payload)
        }
        Termination::Stream(cond, text) => {
            let binding = match cond {
                StreamErrorCondition::HostUnknown => "host-unknown",
                StreamErrorCondition::SystemShutdown => "system-shutdown",
                StreamErrorCondition::PolicyViolation => "policy-violation",
                _ => "remote-stream-error",
            };
            let mut all = payload.to_vec();
            all.push(cond.to_element(text.as_deref()));
            body::render(&[("type", "terminate"), ("condition", binding)], &all)
        }
    }
}
