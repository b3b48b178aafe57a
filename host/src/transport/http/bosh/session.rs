//! One BOSH session: a task that owns the [`StreamCore`] and the session's mailbox, and
//! receives the HTTP requests of the session through a channel. It orders requests by
//! `rid` ([`RidWindow`]), holds up to `hold` of them for server-to-client data, answers
//! each with the pending payload or empty after `wait`, and ends the session on
//! `terminate` from either side, inactivity, or a broken rule.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::body::{self, BodyRequest};
use super::pacing::Pacing;
use super::window::{Offer, Refused, RidWindow, WindowError};
use super::{Registry, Settings};
use crate::router::SessionMsg;
use crate::session::{Action, StreamCore, StreamErrorCondition};
use crate::tenants::rate::TokenBucket;
use crate::transport::listener::Shutdown;
use crate::xml::{Element, StreamEvent, StreamHeader, ns};

/// Mailbox messages handled per wake-up.
const MAILBOX_BATCH: usize = 64;
/// A response not acknowledged after this long is reported as missing (§9.2).
const REPORT_AFTER: Duration = Duration::from_secs(2);
/// How long a session closed by the server waits for a request to carry the news.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// A request handed to the session task; the task answers through `reply`.
pub struct Incoming {
    pub req: BodyRequest,
    pub reply: oneshot::Sender<Bytes>,
}

/// How the session ends.
#[derive(Debug, Clone)]
enum Termination {
    /// `type='terminate'` without condition (the client asked, or a normal close).
    Normal,
    /// A binding condition (`policy-violation`, `item-not-found`, `system-shutdown`...).
    Binding(&'static str),
    /// A stream error from the core: `remote-stream-error` carrying `<stream:error/>`.
    Stream(StreamErrorCondition, Option<String>),
}

struct Held {
    reply: oneshot::Sender<Bytes>,
    deadline: Instant,
}

/// The session task's state.
pub struct BoshSession {
    pub sid: String,
    core: StreamCore,
    mailbox: mpsc::Receiver<SessionMsg>,
    requests: mpsc::Receiver<Incoming>,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    window: RidWindow<Incoming>,
    pacing: Pacing,
    held: BTreeMap<u64, Held>,
    outbox: Vec<Element>,
    wait: Duration,
    hold: usize,
    use_acks: bool,
    report: Option<(u64, u64)>,
    domain: String,
    stream_id: String,
    ending: Option<Termination>,
    /// The termination reached at least one request.
    delivered: bool,
    /// Ended by inactivity: nobody is listening.
    expired: bool,
    negotiation_deadline: Instant,
    shutdown: Shutdown,
    /// The tenant's stanza shaper, once bound (as for TCP: a session sending faster than
    /// `stanza_rate` is slowed, its stanzas wait in `inbound`, nothing is dropped).
    shaper: Option<TokenBucket>,
    /// Client events not yet handed to the core, in order, while the shaper pauses.
    inbound: VecDeque<StreamEvent>,
    paused_until: Instant,
    /// The login attempt rate of the client's address.
    login_gate: Option<crate::edge::limits::LoginGate>,
    _guards: Vec<Box<dyn Send>>,
}

/// What the session was created with (after the server's limits).
pub struct Negotiated {
    pub wait: Duration,
    pub hold: usize,
    pub use_acks: bool,
    pub domain: String,
    pub secure: bool,
}

impl BoshSession {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sid: String,
        core: StreamCore,
        mailbox: mpsc::Receiver<SessionMsg>,
        requests: mpsc::Receiver<Incoming>,
        settings: Arc<Settings>,
        registry: Arc<Registry>,
        first_rid: u64,
        n: &Negotiated,
        shutdown: Shutdown,
        guards: Vec<Box<dyn Send>>,
    ) -> Self {
        let now = Instant::now().into_std();
        BoshSession {
            sid,
            core,
            mailbox,
            requests,
            window: RidWindow::new(first_rid, n.hold as u64 + 1),
            pacing: Pacing::new(
                settings.polling,
                settings.inactivity,
                settings.max_pause,
                now,
            ),
            negotiation_deadline: Instant::now() + settings.negotiation_timeout,
            settings,
            registry,
            held: BTreeMap::new(),
            outbox: Vec::new(),
            wait: n.wait,
            hold: n.hold,
            use_acks: n.use_acks,
            report: None,
            domain: n.domain.clone(),
            stream_id: String::new(),
            ending: None,
            delivered: false,
            expired: false,
            shutdown,
            shaper: None,
            inbound: VecDeque::new(),
            paused_until: Instant::now(),
            login_gate: None,
            _guards: guards,
        }
    }

    /// Applies the login attempt rate of the client's address to this session.
    pub fn with_login_gate(mut self, gate: crate::edge::limits::LoginGate) -> Self {
        self.login_gate = Some(gate);
        self
    }

    /// Answers the creation request and runs the session until it ends.
    pub async fn run(mut self, first: Incoming, n: Negotiated) {
        let header = StreamHeader {
            name: "stream".into(),
            ns: ns::STREAM.into(),
            default_ns: ns::CLIENT.into(),
            attrs: vec![
                ("to".into(), n.domain.clone()),
                ("version".into(), "1.0".into()),
            ],
        };
        let actions = self.core.on_event(StreamEvent::Open(header)).await;
        self.apply(actions);
        let rid = first.req.rid;
        let requests = (self.hold + 1).to_string();
        let wait = self.wait.as_secs().to_string();
        let hold = self.hold.to_string();
        let inactivity = self.settings.inactivity.as_secs().to_string();
        let polling = self.settings.polling.as_secs().to_string();
        let maxpause = self.settings.max_pause.as_secs().to_string();
        let ack = rid.to_string();
        let sid = self.sid.clone();
        let stream_id = self.stream_id.clone();
        let domain = self.domain.clone();
        let mut attrs: Vec<(&str, &str)> = vec![
            ("sid", &sid),
            ("wait", &wait),
            ("requests", &requests),
            ("hold", &hold),
            ("inactivity", &inactivity),
            ("polling", &polling),
            ("maxpause", &maxpause),
            ("ver", "1.11"),
            ("from", &domain),
            ("authid", &stream_id),
            ("secure", if n.secure { "true" } else { "false" }),
            ("xmpp:version", "1.0"),
            ("xmpp:restartlogic", "true"),
        ];
        if self.use_acks {
            attrs.push(("ack", &ack));
        }
        let text = match self.ending.clone() {
            Some(t) => terminate_body(&t, &std::mem::take(&mut self.outbox)),
            None => body::render(&attrs, &std::mem::take(&mut self.outbox)),
        };
        let bytes = Bytes::from(text);
        self.window
            .responded(rid, bytes.clone(), Instant::now().into_std());
        let _ = first.reply.send(bytes);
        if self.ending.is_none() {
            self.main_loop().await;
        }
        self.registry.remove(&self.sid);
        self.core.finish().await;
        tracing::debug!(sid = %self.sid, "BOSH session ended");
    }

    async fn main_loop(&mut self) {
        let mut closed_at: Option<Instant> = None;
        loop {
            let deadline = self.next_deadline(closed_at);
            tokio::select! {
                incoming = self.requests.recv() => match incoming {
                    Some(inc) => self.on_request(inc).await,
                    None => return,
                },
                msg = self.mailbox.recv(), if self.ending.is_none() => {
                    if let Some(msg) = msg {
                        let mut actions = self.core.on_mailbox(msg);
                        for _ in 0..MAILBOX_BATCH {
                            match self.mailbox.try_recv() {
                                Ok(m) => actions.extend(self.core.on_mailbox(m)),
                                Err(_) => break,
                            }
                        }
                        self.apply(actions);
                    }
                }
                _ = sleep_until(deadline) => self.on_timer(),
                _ = sleep_until(self.paused_until), if !self.inbound.is_empty() => {
                    self.drain_inbound().await;
                }
                _ = self.shutdown.requested(), if self.ending.is_none() => {
                    // What was queued before the shutdown (e.g. a room's 332 presences)
                    // goes out with the terminating response, which says system-shutdown
                    // whatever close request is queued with it.
                    let mut actions = Vec::new();
                    while let Ok(m) = self.mailbox.try_recv() {
                        actions.extend(self.core.on_mailbox(m));
                    }
                    actions.retain(|a| !matches!(a, Action::Close(_)));
                    self.apply(actions);
                    self.end(Termination::Binding("system-shutdown"));
                }
            }
            self.flush();
            if let Some(ending) = &self.ending {
                if self.held.is_empty() && closed_at.is_none() {
                    closed_at = Some(Instant::now());
                }
                // Delivered, expired, or nobody left to tell after the grace: done.
                let _ = ending;
                if self.delivered
                    || self.expired
                    || self.shutdown_requested_and_idle()
                    || closed_at.is_some_and(|t| t.elapsed() >= CLOSE_GRACE)
                {
                    return;
                }
            }
        }
    }

    fn shutdown_requested_and_idle(&self) -> bool {
        matches!(self.ending, Some(Termination::Binding("system-shutdown"))) && self.held.is_empty()
    }

    fn next_deadline(&self, closed_at: Option<Instant>) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut d = far;
        if let Some(h) = self.held.values().map(|h| h.deadline).min() {
            d = d.min(h);
        }
        if let Some(t) = self.pacing.expires_at() {
            d = d.min(Instant::from_std(t));
        }
        if self.core.bound().is_none() && self.ending.is_none() {
            d = d.min(self.negotiation_deadline);
        }
        if let Some(t) = closed_at {
            d = d.min(t + CLOSE_GRACE);
        }
        d
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.ending.is_some() {
            return;
        }
        if self
            .pacing
            .expires_at()
            .is_some_and(|t| Instant::from_std(t) <= now)
        {
            tracing::info!(sid = %self.sid, "BOSH session inactive, ending it");
            self.expired = true;
            self.end(Termination::Normal);
            return;
        }
        if self.core.bound().is_none() && now >= self.negotiation_deadline {
            let actions = self.core.fail(
                StreamErrorCondition::ConnectionTimeout,
                Some("negotiation took too long".into()),
            );
            self.apply(actions);
        }
        // Expired waits are answered empty by flush().
    }

    async fn on_request(&mut self, inc: Incoming) {
        let now = Instant::now();
        if let Some(t) = &self.ending {
            // The session is over: this request carries the news.
            let _ = inc.reply.send(Bytes::from(terminate_body(t, &[])));
            self.delivered = true;
            return;
        }
        let rid = inc.req.rid;
        if let Some(ack) = inc.req.ack
            && self.use_acks
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
                    self.process(rid, inc, now).await;
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
            }
        }
    }

    async fn process(&mut self, rid: u64, inc: Incoming, now: Instant) {
        let Incoming { req, reply } = inc;
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
            return;
        }
        self.held.insert(
            rid,
            Held {
                reply,
                deadline: now + self.wait,
            },
        );
        if let Some(p) = req.pause {
            if self.pacing.pause(p).is_err() {
                self.end(Termination::Binding("policy-violation"));
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
                        req.to.clone().unwrap_or_else(|| self.domain.clone()),
                    ),
                    ("version".into(), "1.0".into()),
                ],
            };
            self.inbound.push_back(StreamEvent::Open(header));
        }
        self.inbound
            .extend(req.payload.into_iter().map(StreamEvent::Stanza));
        if req.terminate {
            self.inbound.push_back(StreamEvent::Close);
        }
        self.drain_inbound().await;
    }

    /// Hands queued client events to the core in order until none is left or the stanza
    /// shaper asks for a pause (the main loop resumes at `paused_until`).
    async fn drain_inbound(&mut self) {
        while Instant::now() >= self.paused_until {
            if self.ending.is_some() {
                self.inbound.clear();
                return;
            }
            let Some(ev) = self.inbound.pop_front() else {
                return;
            };
            if let (Some(bucket), StreamEvent::Stanza(_)) = (self.shaper.as_mut(), &ev) {
                let now = Instant::now();
                self.paused_until = now + bucket.take(now.into_std());
            }
            let close = matches!(ev, StreamEvent::Close);
            if let Some(gate) = &self.login_gate {
                gate.before(self.core.bound().is_some(), &ev).await;
            }
            let actions = self.core.on_event(ev).await;
            self.apply(actions);
            if close && self.ending.is_none() {
                self.end(Termination::Normal);
            }
            if self.shaper.is_none() {
                self.shaper = self.core.stanza_shaper();
            }
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Header { id, .. } => self.stream_id = id,
                Action::Send(el) => self.outbox.push(el),
                Action::Restart => {}
                Action::StartTls => self.end(Termination::Normal),
                Action::Close(None) => self.end(Termination::Normal),
                Action::Close(Some((cond, text))) => self.end(Termination::Stream(cond, text)),
            }
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
                self.send(rid, h, terminate_body(&t, &payload), !payload.is_empty());
            }
            self.pacing.set_held(0, now.into_std());
            return;
        }
        while let Some((&rid, oldest)) = self.held.first_key_value() {
            let due =
                !self.outbox.is_empty() || self.held.len() > self.hold || oldest.deadline <= now;
            if !due {
                break;
            }
            let h = self.held.remove(&rid).expect("present");
            let payload = std::mem::take(&mut self.outbox);
            let mut attrs: Vec<(&str, String)> = Vec::new();
            if self.use_acks && rid != self.window.highest_in_order() {
                attrs.push(("ack", self.window.highest_in_order().to_string()));
            }
            if let Some((report, time)) = self.report.take() {
                attrs.push(("report", report.to_string()));
                attrs.push(("time", time.to_string()));
            }
            let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let text = body::render(&attrs, &payload);
            self.send(rid, h, text, !payload.is_empty());
        }
        self.pacing.set_held(self.held.len(), now.into_std());
    }

    fn send(&mut self, rid: u64, h: Held, text: String, had_payload: bool) {
        let bytes = Bytes::from(text);
        self.window
            .responded(rid, bytes.clone(), Instant::now().into_std());
        self.pacing.on_response(rid, had_payload);
        let _ = h.reply.send(bytes);
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
