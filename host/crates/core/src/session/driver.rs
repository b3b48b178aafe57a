//! The session driver: one task per stream, the same for every transport and for
//! component streams. It owns the stream's [`Protocol`] state, its mailbox and its
//! [`Link`], and does — once, for everyone — what used to be written per transport:
//!
//! - reading with the tenant's parser limits and stanza shaper (a fast sender waits;
//!   nothing is dropped), and the login attempt rate of the client's address;
//! - handing routing work off so a slow storage call delays only the sender's later
//!   stanzas (in order), never the delivery of what others send it;
//! - the mailbox, drained in batches into one write;
//! - timers: negotiation deadline, idle timeout, keepalive pings and their timeout, the
//!   write timeout (cut short at shutdown);
//! - closing: the stream error, the closing handshake (wait for the peer's close, write
//!   nothing after ours), and the rescue of everything accepted for the peer but not
//!   written (routed again or bounced by the protocol);
//! - shutdown and drain: what is queued goes out first, then `system-shutdown`;
//! - detaching: a link that dies (or stops answering) may leave the session alive for a
//!   new link to attach (stream management resumption), if the protocol asks for it;
//!   and handing this stream's link over to such a session when the peer resumes one;
//! - moving: a session whose client resumed on another cluster node hands its state over
//!   (see [`super::handoff`]) and ends without its end-of-session steps.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until, timeout};

use super::Action;
use super::handoff::{ExportRequest, Exported, HandOffError};
use super::link::{Attach, Inbound, Keepalive, Link, LinkError, NoLink, Written};
use super::protocol::{HandOver, Protocol, Work};
use crate::limits::LoginGate;
use crate::router::{Mail, MailboxRx, SessionMsg};
use crate::shutdown::Shutdown;
use crate::tenants::rate::TokenBucket;
use crate::xml::{Element, ParserLimits, StreamEvent};
use crate::xmpp::StreamErrorCondition;

/// Mailbox messages handled per wake-up before writing, to batch socket writes.
const MAILBOX_BATCH: usize = 64;
/// Routing work items queued before the driver stops taking the peer's stanzas.
const MAX_PENDING_WORK: usize = 16;
/// Events read past while the peer's stanzas are held back (routing backed up, shaper
/// pause) to reach the flow control behind them; at this many the reading stops.
const MAX_HELD_INBOUND: usize = 32;
/// How long a pending write may go on once shutdown is requested.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(2);
/// How long a resumption waits for room in the resumed session's mailbox.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// The timers of a stream.
#[derive(Debug, Clone)]
pub struct Timing {
    /// When negotiation (authentication, binding, handshake) must be over.
    pub negotiation_deadline: Instant,
    /// Quiet time after which an established stream is closed.
    pub idle: Duration,
    /// Quiet time after which the peer is pinged; `None`: never.
    pub ping_interval: Option<Duration>,
    /// How long a ping may go unanswered.
    pub ping_timeout: Duration,
    /// How long one write may take.
    pub write_timeout: Duration,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Our close is written (`peer_closed`: after the peer's own).
    Closed { peer_closed: bool },
    /// The link is gone (peer vanished, or a write failed).
    LinkGone,
    /// The link went to the session the peer resumed.
    HandedOver,
    /// The session moved to another cluster node.
    Moved,
}

/// How waiting for a new link ended.
enum Waited {
    Attached,
    Gone,
    Moved,
}

/// What woke the loop.
enum Wake {
    Inbound(Inbound),
    Mail(Option<Mail>),
    WorkDone,
    Timer,
    Unpaused,
    Shutdown,
}

/// One stream's task (see the module docs).
pub struct Driver<P: Protocol> {
    protocol: P,
    link: Box<dyn Link>,
    mailbox: MailboxRx,
    // Boxed, like the shaper and the login gate: a driver is in memory for every
    // session, and its size counts (see `tests/load/README.md`, "Idle session memory").
    timing: Box<Timing>,
    shutdown: Shutdown,
    login_gate: Option<Box<LoginGate>>,
    span: tracing::Span,
    // Loop state.
    last_rx: Instant,
    ping_sent: Option<Instant>,
    shaper: Option<Box<TokenBucket>>,
    paused_until: Instant,
    /// The link's deadlines' timer, made on the first wait (see [`Driver::arm_timer`]).
    timer: Option<Pin<Box<Sleep>>>,
    /// When `timer` fires.
    armed: Instant,
    /// The next event from the link, read while waiting.
    pending: Option<Inbound>,
    /// Events held back, in order, while the peer's stanzas may not be taken (routing
    /// backed up, shaper pause); flow control read behind them is handled at once.
    held: VecDeque<Inbound>,
    /// Since when the protocol has left the mailbox alone until the peer acknowledges
    /// what it was sent (see [`Protocol::mail_held`]).
    mail_held_since: Option<Instant>,
    work: VecDeque<Work>,
    limits: Option<ParserLimits>,
    /// (established, length of the domain) when the limits were last looked up.
    limits_key: Option<(bool, Option<usize>)>,
    identified: bool,
    shutting_down: bool,
    peer_closed: bool,
    link_gone: bool,
    /// A link or a request to move the session that arrived in the middle of a mailbox
    /// batch: handled on the next wake-up, after the batch is written.
    pending_mail: Option<Mail>,
    /// The peer resumed another session: this link goes to it (boxed: rare, and large).
    handover: Option<Box<HandOver>>,
    /// What to write first on a link that just attached.
    carry: Vec<Action>,
    /// Stanzas produced after the stream's close, for the rescue.
    stranded: Vec<crate::xml::Element>,
}

impl<P: Protocol> Driver<P> {
    pub fn new(
        protocol: P,
        link: Box<dyn Link>,
        mailbox: MailboxRx,
        timing: Timing,
        shutdown: Shutdown,
    ) -> Self {
        let now = Instant::now();
        Driver {
            protocol,
            link,
            mailbox,
            timing: Box::new(timing),
            shutdown,
            login_gate: None,
            span: tracing::Span::current(),
            last_rx: now,
            ping_sent: None,
            shaper: None,
            paused_until: now,
            timer: None,
            armed: now,
            pending: None,
            held: VecDeque::new(),
            mail_held_since: None,
            work: VecDeque::new(),
            limits: None,
            limits_key: None,
            identified: false,
            shutting_down: false,
            peer_closed: false,
            link_gone: false,
            pending_mail: None,
            handover: None,
            carry: Vec::new(),
            stranded: Vec::new(),
        }
    }

    /// Applies the login attempt rate of the client's address.
    pub fn with_login_gate(mut self, gate: LoginGate) -> Self {
        self.login_gate = Some(Box::new(gate));
        self
    }

    /// Records `jid` and `tenant` in this span once the stream is established.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// The protocol state (tests).
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Runs the stream to its end.
    ///
    /// The driver moves to the heap first: an `async fn` that takes `self` by value keeps
    /// two copies of it in its future (the argument and the binding it moves into), and
    /// that future is the session's task for the session's whole life.
    pub fn run(self) -> impl Future<Output = ()> {
        Box::new(self).run_boxed()
    }

    /// [`Driver::run`] for a driver already on the heap.
    pub async fn run_boxed(mut self: Box<Self>) {
        self.apply_limits();
        loop {
            let end = self.serve_link().await;
            if end == End::Moved {
                self.retire_link();
                return;
            }
            if end == End::LinkGone
                && let Some(keep) = self.protocol.link_lost()
            {
                match Box::pin(self.wait_for_link(keep)).await {
                    Waited::Attached => continue,
                    Waited::Moved => return,
                    Waited::Gone => {}
                }
            }
            Box::pin(self.finish(end)).await;
            return;
        }
    }

    /// Serves the current link until the stream closes or the link goes.
    async fn serve_link(&mut self) -> End {
        let mut actions = std::mem::take(&mut self.carry);
        loop {
            self.process_inbound(&mut actions).await;
            self.poll_work().await;
            if !actions.is_empty() {
                match self.write(std::mem::take(&mut actions)).await {
                    Ok(Written::Done) => {}
                    Ok(Written::Closed) => {
                        return End::Closed {
                            peer_closed: self.peer_closed,
                        };
                    }
                    Ok(Written::StartTls) => {
                        let domain = self.protocol.domain().map(str::to_string);
                        match self.link.start_tls(domain.as_deref()).await {
                            Some(cb) => self.protocol.tls_established(cb),
                            None => return End::LinkGone,
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "write failed");
                        return End::LinkGone;
                    }
                }
            }
            if let Some(handover) = self.handover.take() {
                match Box::pin(self.hand_over(*handover)).await {
                    Ok(()) => return End::HandedOver,
                    Err(sasl2) => actions.extend(self.protocol.handover_failed(sasl2)),
                }
                continue;
            }
            if self.link_gone {
                return End::LinkGone;
            }
            if self.protocol.is_closed() {
                return End::Closed {
                    peer_closed: self.peer_closed,
                };
            }
            self.protocol.flush_counters();
            match self.wait().await {
                Wake::Inbound(inbound) => {
                    self.pending = Some(inbound);
                }
                Wake::Mail(Some(mail)) => match *mail {
                    SessionMsg::Attach(attach) => {
                        // A new link takes over while the old one is still open (a client
                        // resuming from a new connection before the old one timed out).
                        actions.extend(Box::pin(self.take_over(*attach)).await);
                    }
                    SessionMsg::Export(req) => {
                        if Box::pin(self.export(*req)).await {
                            return End::Moved;
                        }
                    }
                    msg => {
                        actions.extend(self.protocol.on_mailbox(msg));
                        self.take_mail_batch(&mut actions);
                    }
                },
                Wake::Mail(None) => {}
                Wake::WorkDone => {
                    self.work.pop_front();
                }
                Wake::Timer => actions.extend(self.on_timer().await),
                Wake::Unpaused => {}
                Wake::Shutdown => {
                    self.shutting_down = true;
                    // What was queued before the shutdown (e.g. a room's 332 presences)
                    // goes out before the stream closes (what the peer may not be sent
                    // yet is rescued at the end).
                    while !self.protocol.mail_held()
                        && let Ok(m) = self.mailbox.try_recv()
                    {
                        actions.extend(self.protocol.on_mailbox(*m));
                    }
                    actions.extend(
                        self.protocol
                            .fail(StreamErrorCondition::SystemShutdown, None),
                    );
                }
            }
        }
    }

    /// Takes up to [`MAILBOX_BATCH`] more messages waiting in the mailbox, so that they
    /// go out in one write; stops at a link or a move, handled on the next wake-up.
    fn take_mail_batch(&mut self, actions: &mut Vec<Action>) {
        for _ in 0..MAILBOX_BATCH {
            if self.protocol.mail_held() {
                break;
            }
            let Ok(mail) = self.mailbox.try_recv() else {
                break;
            };
            if matches!(*mail, SessionMsg::Attach(_) | SessionMsg::Export(_)) {
                self.pending_mail = Some(mail);
                break;
            }
            actions.extend(self.protocol.on_mailbox(*mail));
        }
    }

    /// Waits for the next thing to do.
    async fn wait(&mut self) -> Wake {
        if let Some(mail) = self.pending_mail.take() {
            return Wake::Mail(Some(mail));
        }
        let now = Instant::now();
        let paused = now < self.paused_until;
        if !self.held.is_empty() && !self.stanzas_blocked() {
            // Held events may be taken now.
            return Wake::Unpaused;
        }
        // Reading goes on while routing is backed up or the shaper pauses: flow control
        // (stream management acks) is handled meanwhile, anything else is held (see
        // `process_inbound`) up to a bound.
        let can_read =
            self.pending.is_none() && self.may_read_past_held() && !self.protocol.is_closed();
        let take_mail = !self.protocol.mail_held();
        self.mail_held_since = match (take_mail, self.mail_held_since) {
            (true, _) => None,
            (false, since) => Some(since.unwrap_or(now)),
        };
        self.arm_timer(self.next_deadline(), now);
        let work_pending = !self.work.is_empty();
        let shutting_down = self.shutting_down;
        let Driver {
            link,
            mailbox,
            work,
            shutdown,
            paused_until,
            timer,
            ..
        } = self;
        let timer = timer.as_mut().expect("armed above");
        tokio::select! {
            inbound = link.recv(), if can_read => Wake::Inbound(inbound),
            msg = mailbox.recv(), if take_mail => Wake::Mail(msg),
            _ = poll_front(work), if work_pending => Wake::WorkDone,
            _ = timer.as_mut() => Wake::Timer,
            _ = sleep_until(*paused_until), if paused => Wake::Unpaused,
            _ = shutdown.requested(), if !shutting_down => Wake::Shutdown,
        }
    }

    /// Arms the timer for `deadline` unless it is set to fire before then. Every stanza
    /// read moves the idle deadline, and registering a new timer on each wake-up cost
    /// about as much as a delivery's write; a timer that fires early finds nothing due
    /// ([`Driver::on_timer`] checks each deadline) and is armed again on the next wait.
    fn arm_timer(&mut self, deadline: Instant, now: Instant) {
        match &mut self.timer {
            Some(_) if self.armed > now && self.armed <= deadline => {}
            Some(timer) => {
                timer.as_mut().reset(deadline);
                self.armed = deadline;
            }
            None => {
                self.timer = Some(Box::pin(sleep_until(deadline)));
                self.armed = deadline;
            }
        }
    }

    /// The peer's stanzas may not be taken now: too much routing work queued, or the
    /// shaper pauses them.
    fn stanzas_blocked(&self) -> bool {
        self.work.len() >= MAX_PENDING_WORK
            || (self.shaper.is_some() && Instant::now() < self.paused_until)
    }

    /// More may be read while events are held: fewer than [`MAX_HELD_INBOUND`], and none
    /// of them ends the input.
    fn may_read_past_held(&self) -> bool {
        self.held.len() < MAX_HELD_INBOUND
            && !matches!(
                self.held.back(),
                Some(Inbound::Gone | Inbound::Refused(..) | Inbound::Event(StreamEvent::Close))
            )
    }

    /// Hands received events to the protocol while it may take them: not paused by the
    /// shaper, not too much routing work queued, the stream not closed. Meanwhile flow
    /// control (see [`Protocol::is_flow_control`]) is still handled as it comes, and other
    /// events are held, in order, until the stanzas may be taken again. Stops after an
    /// event whose answer must be written first (STARTTLS, restart, close).
    async fn process_inbound(&mut self, actions: &mut Vec<Action>) {
        let mut now = None;
        loop {
            if self.protocol.is_closed() {
                return;
            }
            let blocked = self.stanzas_blocked();
            let next = match self.held.pop_front() {
                Some(held) if !blocked => Some(held),
                front => {
                    if let Some(front) = front {
                        self.held.push_front(front);
                    }
                    if self.may_read_past_held() {
                        self.pending.take().or_else(|| self.link.try_recv())
                    } else {
                        None
                    }
                }
            };
            let Some(inbound) = next else {
                return;
            };
            let flow_control =
                matches!(&inbound, Inbound::Event(ev) if self.protocol.is_flow_control(ev));
            if blocked && !flow_control && !matches!(inbound, Inbound::Heartbeat) {
                self.held.push_back(inbound);
                continue;
            }
            // One clock read per batch of events read together.
            self.last_rx = *now.get_or_insert_with(Instant::now);
            self.ping_sent = None;
            let ev = match inbound {
                Inbound::Event(ev) => ev,
                Inbound::Refused(cond, text) => {
                    actions.extend(self.protocol.fail(cond, Some(text)));
                    return;
                }
                Inbound::Heartbeat => continue,
                Inbound::Gone => {
                    self.link_gone = true;
                    return;
                }
            };
            if matches!(ev, StreamEvent::Close) {
                self.peer_closed = true;
            }
            if let (Some(bucket), StreamEvent::Stanza(_), false) =
                (self.shaper.as_mut(), &ev, flow_control)
            {
                let now = Instant::now();
                self.paused_until = now + bucket.take(now.into_std());
            }
            if let Some(gate) = &self.login_gate {
                // Boxed: only logins wait here; an idle stream should not carry room for it.
                Box::pin(gate.before(self.protocol.is_established(), &ev)).await;
            }
            let acts = match self.protocol.on_event_now(ev) {
                Ok(acts) => acts,
                // Boxed: negotiation futures are large, and an idle stream should not
                // carry room for them in its own state.
                Err(ev) => Box::pin(self.protocol.on_event(ev)).await,
            };
            while let Some(w) = self.protocol.take_work(self.work.is_empty()) {
                self.work.push_back(w);
            }
            if let Some(h) = self.protocol.take_handover() {
                // Whatever the peer sent after its `<resume/>` is for the resumed session:
                // stop reading here.
                self.handover = Some(Box::new(h));
                actions.extend(acts);
                return;
            }
            let boundary = acts
                .iter()
                .any(|a| matches!(a, Action::StartTls | Action::Restart | Action::Close(_)));
            actions.extend(acts);
            self.after_step();
            if boundary {
                return;
            }
        }
    }

    /// Runs queued routing work as far as it goes without waiting.
    async fn poll_work(&mut self) {
        while let Some(front) = self.work.front_mut() {
            let done =
                std::future::poll_fn(|cx| Poll::Ready(front.as_mut().poll(cx).is_ready())).await;
            if !done {
                return;
            }
            self.work.pop_front();
        }
    }

    /// Picks up what a step changed: parser limits, the shaper, the log span.
    fn after_step(&mut self) {
        // The limits depend on the stream's domain and whether it is established; look
        // them up again only when one of those changed, not for every stanza.
        let key = (
            self.protocol.is_established(),
            self.protocol.domain().map(str::len),
        );
        if self.limits_key != Some(key) {
            self.limits_key = Some(key);
            self.apply_limits();
        }
        if self.protocol.is_established() && !self.identified {
            self.identified = true;
            self.shaper = self.protocol.shaper().map(Box::new);
            if let Some(id) = self.protocol.identity() {
                self.span.record("jid", id.jid.as_str());
                self.span.record("tenant", id.tenant.as_str());
            }
        }
    }

    fn apply_limits(&mut self) {
        let limits = self.protocol.parser_limits();
        if self.limits != Some(limits) {
            self.limits = Some(limits);
            self.link.set_limits(limits);
        }
    }

    fn next_deadline(&self) -> Instant {
        if !self.protocol.is_established() {
            return self.timing.negotiation_deadline;
        }
        let mut next = self.next_link_deadline();
        if let Some(since) = self.mail_held_since {
            next = next.min(since + self.timing.write_timeout);
        }
        match self.protocol.deadline() {
            Some(own) => next.min(own),
            None => next,
        }
    }

    /// When the link is due for a ping or an idle close.
    fn next_link_deadline(&self) -> Instant {
        if let Some(sent) = self.ping_sent {
            return sent + self.timing.ping_timeout;
        }
        let idle = self.last_rx + self.timing.idle;
        match self.timing.ping_interval {
            Some(p) => idle.min(self.last_rx + p),
            None => idle,
        }
    }

    /// The timer fired: the protocol's own deadline (see [`Protocol::deadline`]), then
    /// the stream's.
    async fn on_timer(&mut self) -> Vec<Action> {
        let now = Instant::now();
        let mut actions = match self.protocol.deadline() {
            Some(own) if now >= own && self.protocol.is_established() => {
                self.protocol.on_deadline(now)
            }
            _ => Vec::new(),
        };
        actions.extend(self.on_stream_timer(now).await);
        actions
    }

    async fn on_stream_timer(&mut self, now: Instant) -> Vec<Action> {
        if !self.protocol.is_established() {
            if now >= self.timing.negotiation_deadline {
                return self.protocol.fail(
                    StreamErrorCondition::ConnectionTimeout,
                    Some("negotiation took too long".into()),
                );
            }
            return Vec::new();
        }
        if let Some(since) = self.mail_held_since
            && now >= since + self.timing.write_timeout
        {
            // As with a write that does not finish: the peer is sent nothing more and
            // does not acknowledge what it has.
            return self.protocol.fail(
                StreamErrorCondition::PolicyViolation,
                Some("too many unacknowledged stanzas".into()),
            );
        }
        if let Some(sent) = self.ping_sent {
            if now >= sent + self.timing.ping_timeout {
                return self.link_timed_out("no answer to ping");
            }
            return Vec::new();
        }
        if now >= self.last_rx + self.timing.idle {
            return self.link_timed_out("idle");
        }
        if let Some(interval) = self.timing.ping_interval
            && now >= self.last_rx + interval
        {
            match self.link.keepalive().await {
                Keepalive::Stanza => {
                    if let Some(ping) = self.protocol.keepalive_ping() {
                        self.ping_sent = Some(now);
                        return vec![Action::Send(ping)];
                    }
                    self.timing.ping_interval = None;
                }
                Keepalive::Sent => self.ping_sent = Some(now),
                Keepalive::None => self.timing.ping_interval = None,
            }
        }
        Vec::new()
    }

    /// The peer stopped answering: a resumable session keeps waiting for it on a new
    /// link (a phone that lost its network says nothing); others close.
    fn link_timed_out(&mut self, why: &str) -> Vec<Action> {
        if self.protocol.resumable() {
            tracing::debug!(
                reason = why,
                "link timed out; the session waits for a resumption"
            );
            self.link_gone = true;
            return Vec::new();
        }
        self.protocol
            .fail(StreamErrorCondition::ConnectionTimeout, Some(why.into()))
    }

    /// Writes within the write timeout, cut to [`SHUTDOWN_WRITE_GRACE`] once shutdown is
    /// requested (a peer that stopped reading must not hold up the drain).
    async fn write(&mut self, mut actions: Vec<Action>) -> Result<Written, LinkError> {
        // Nothing goes out after the close: stanzas queued behind it are routed again.
        if let Some(at) = actions.iter().position(|a| matches!(a, Action::Close(_))) {
            for a in actions.drain(at + 1..) {
                if let Action::Send(el) | Action::SendKept(el, _) = a {
                    self.stranded.push(el);
                }
            }
        }
        let limit = self.timing.write_timeout;
        let mut shutdown = self.shutdown.clone();
        let send = timeout(limit, self.link.send(actions));
        tokio::pin!(send);
        if !self.shutting_down {
            tokio::select! {
                r = &mut send => return r.unwrap_or(Err(LinkError::Timeout)),
                _ = shutdown.requested() => {}
            }
        }
        match timeout(SHUTDOWN_WRITE_GRACE, send).await {
            Ok(r) => r.unwrap_or(Err(LinkError::Timeout)),
            Err(_) => Err(LinkError::Timeout),
        }
    }

    /// The session lives on without a link for up to `keep`: mailbox messages go to the
    /// protocol (which keeps what it must replay; the actions themselves are dropped)
    /// until a new link attaches, or the session moves to another node.
    async fn wait_for_link(&mut self, keep: Duration) -> Waited {
        self.retire_link();
        let until = Instant::now() + keep;
        loop {
            let work_pending = !self.work.is_empty();
            // A link or a move held back from the last batch comes first: that batch's
            // write may be what lost the link.
            let msg = match self.pending_mail.take() {
                Some(mail) => Some(mail),
                None => tokio::select! {
                    m = self.mailbox.recv() => m,
                    // The peer's last stanzas are still routed meanwhile.
                    _ = poll_front(&mut self.work), if work_pending => {
                        self.work.pop_front();
                        continue;
                    }
                    _ = sleep_until(until) => return Waited::Gone,
                    _ = self.shutdown.requested(), if !self.shutting_down => return Waited::Gone,
                },
            };
            let Some(mail) = msg else {
                return Waited::Gone;
            };
            match *mail {
                SessionMsg::Attach(attach) => {
                    let Attach {
                        link,
                        handled,
                        sasl2,
                    } = *attach;
                    self.link = link;
                    self.reset_link_state();
                    self.carry = self.protocol.attached(handled, sasl2);
                    return Waited::Attached;
                }
                SessionMsg::Export(req) => {
                    if Box::pin(self.export(*req)).await {
                        return Waited::Moved;
                    }
                }
                other => {
                    let _ = self.protocol.on_mailbox(other);
                    if self.protocol.is_closed() {
                        return Waited::Gone;
                    }
                }
            }
        }
    }

    /// A new link takes over from one that is still open: the old one is closed without
    /// another word (what it did not write is replayed by the protocol).
    async fn take_over(&mut self, attach: Attach) -> Vec<Action> {
        if !self.protocol.resumable() {
            self.refuse(attach).await;
            return Vec::new();
        }
        self.retire_link();
        let Attach {
            link,
            handled,
            sasl2,
        } = attach;
        self.link = link;
        self.reset_link_state();
        self.protocol.attached(handled, sasl2)
    }

    /// Closes the current link in the background (a half-dead connection must not hold
    /// the session up) and puts a [`NoLink`] in its place.
    fn retire_link(&mut self) {
        let transport = self.link.transport();
        let mut old = std::mem::replace(&mut self.link, Box::new(NoLink::new(transport)));
        // The protocol keeps what it sent until acknowledged; the old link's unwritten
        // stanzas are among those.
        let _ = old.take_unsent();
        tokio::spawn(async move {
            let _ = timeout(SHUTDOWN_WRITE_GRACE, old.close(true)).await;
        });
    }

    /// Tells a link that came too late that there is no session to take over, and closes
    /// it.
    async fn refuse(&mut self, attach: Attach) {
        let mut link = attach.link;
        let answer = self.protocol.attach_refused();
        let _ = timeout(SHUTDOWN_WRITE_GRACE, link.send(answer)).await;
        link.close(true).await;
    }

    /// Hands this stream's link to the session the peer resumed. If that session ended
    /// before it could take it, the link stays here and the SASL2 elements come back.
    async fn hand_over(&mut self, handover: HandOver) -> Result<(), Option<(Element, Element)>> {
        let transport = self.link.transport();
        let link = std::mem::replace(&mut self.link, Box::new(NoLink::new(transport)));
        let attach = Attach {
            link,
            handled: handover.handled,
            sasl2: handover.sasl2,
        };
        let msg = Box::new(SessionMsg::Attach(Box::new(attach)));
        match handover.mailbox.send_timeout(msg, HANDOVER_WAIT).await {
            Ok(()) => Ok(()),
            Err(e) => match *e.into_inner() {
                SessionMsg::Attach(attach) => {
                    self.link = attach.link;
                    Err(attach.sasl2)
                }
                _ => Err(None),
            },
        }
    }

    /// The peer resumed the session on another cluster node: the routing work still
    /// queued runs first (it was the peer's, from this node), then the protocol hands over
    /// its state, and what the mailbox still holds goes with it (the stanzas routed from
    /// now on go to the other node). True if the session moved; it ends here then.
    async fn export(&mut self, req: ExportRequest) -> bool {
        while let Some(w) = self.work.pop_front() {
            w.await;
        }
        let ExportRequest {
            handled,
            forward,
            reply,
        } = req;
        let mut exported = match self.protocol.export(handled, forward) {
            Ok(exported) => exported,
            Err(e) => {
                let _ = reply.send(Err(e));
                return false;
            }
        };
        self.mailbox.close();
        while let Some(mail) = self.next_mail() {
            let moved = &mut exported.session;
            match *mail {
                SessionMsg::Stanza(el) => moved.pending.push(serialize(&el)),
                SessionMsg::Stored(stored) => {
                    let (el, receipt) = *stored;
                    // Its place: after the unacknowledged stanzas and the pending before it.
                    let place = moved.unacked.len() + moved.pending.len();
                    moved.pending.push(serialize(&el));
                    exported.receipts.push((place as u32, receipt));
                }
                // The count the other node takes over stops before the client's first
                // stanza not safe yet: the client sends it again there (docs/CLUSTER.md,
                // "Stream management across nodes", item 7).
                SessionMsg::Close(..) | SessionMsg::Settled(_) => {}
                SessionMsg::Attach(late) => Box::pin(self.refuse(*late)).await,
                SessionMsg::Export(other) => {
                    let _ = other.reply.send(Err(HandOffError::NotFound));
                }
            }
        }
        if let Err(Ok(Exported { session, receipts })) = reply.send(Ok(exported)) {
            // The node asking gave up waiting: what the client was not sure to have is
            // routed again (its forwarding entry leads them on to offline storage), but
            // what someone still holds is left to them (the receipts are dropped).
            tracing::warn!(jid = %session.full_jid, "the node resuming the session gave up");
            let held: std::collections::HashSet<usize> = receipts
                .into_iter()
                .map(|(place, _)| place as usize)
                .collect();
            let unread = session
                .unacked
                .iter()
                .chain(session.pending.iter())
                .enumerate()
                .filter(|(place, _)| !held.contains(place))
                .filter_map(|(_, x)| super::sm::read_back(x))
                .collect();
            Box::pin(self.protocol.rescue(Vec::new(), unread)).await;
        }
        Box::pin(self.protocol.moved()).await;
        true
    }

    /// The next message to handle without waiting: one held back from a batch first.
    fn next_mail(&mut self) -> Option<Mail> {
        self.pending_mail
            .take()
            .or_else(|| self.mailbox.try_recv().ok())
    }

    /// A new link is in place: fresh reading state and the stream's parser limits.
    fn reset_link_state(&mut self) {
        self.link_gone = false;
        self.peer_closed = false;
        // What the old link brought and was not handled, the peer sends again (it
        // learns what was handled from the resumption's `h`).
        self.pending = None;
        self.held.clear();
        self.mail_held_since = None;
        self.limits = None;
        self.limits_key = None;
        self.apply_limits();
        self.last_rx = Instant::now();
        self.ping_sent = None;
    }

    /// Ends the session: rescues what was never written, leaves the routing table, then
    /// completes the closing handshake. The rescue comes first so that once a session is
    /// gone from the table, what it did not deliver is already stored or delivered
    /// elsewhere (a client logging in again meets it there, in order).
    async fn finish(&mut self, end: End) {
        // Stanzas the peer sent before it left are routed all the same, while the session
        // is still in the routing table.
        while let Some(w) = self.work.pop_front() {
            w.await;
        }
        let mut unsent = self.link.take_unsent();
        unsent.append(&mut self.stranded);
        let mut unread = Vec::new();
        // From here on, stanzas for this session go elsewhere at once.
        self.mailbox.close();
        while let Some(mail) = self.next_mail() {
            match *mail {
                SessionMsg::Stanza(el) => unread.push(el),
                // Still stored: it waits there for the next session.
                SessionMsg::Stored(_) | SessionMsg::Close(..) | SessionMsg::Settled(_) => {}
                SessionMsg::Attach(late) => Box::pin(self.refuse(*late)).await,
                SessionMsg::Export(req) => {
                    let _ = req.reply.send(Err(HandOffError::NotFound));
                }
            }
        }
        if end == (End::Closed { peer_closed: true }) {
            self.protocol.ended_cleanly();
        }
        // Always asked: a protocol may hold stanzas of its own (unacknowledged ones).
        // Boxed, as every end-of-session step: their futures (routing, storage) would
        // otherwise be part of every connection's future, idle or not.
        Box::pin(self.protocol.rescue(unsent, unread)).await;
        Box::pin(self.protocol.finish()).await;
        if let End::Closed { peer_closed } = end {
            self.link.close(peer_closed).await;
        }
    }
}

fn serialize(el: &Element) -> String {
    super::sm::serialize(el).to_string()
}

/// Polls the front work item to completion.
async fn poll_front(work: &mut VecDeque<Work>) {
    if let Some(front) = work.front_mut() {
        front.await;
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
