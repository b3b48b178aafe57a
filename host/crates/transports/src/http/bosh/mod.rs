//! BOSH (XEP-0124 with XEP-0206): XMPP sessions carried by HTTP request/response pairs.
//!
//! [`handle`] takes a parsed request body: without `sid` it creates a session (a session
//! driver over a [`link::BoshLink`]), with one it hands the request to that session's
//! link and waits for the answer. [`body`] parses and renders `<body/>`, [`window`] keeps
//! the rid window and response cache, [`pacing`] the polling, inactivity and pause rules,
//! [`relay`] the requests for sessions of other cluster nodes.
//!
//! While the node drains or shuts down, requests for existing sessions are served as
//! usual (on whatever HTTP connection they come: a proxy opens new ones at will) until
//! the session has told its client why it ends; only session creation is refused
//! (`system-shutdown`). A session the server ended with a stream error leaves that
//! terminate behind for a while ([`ENDED_KEPT`]), so a request that was on its way
//! when the session went still gets it, not `item-not-found`.

pub mod body;
pub mod link;
pub mod pacing;
pub mod relay;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use heliograph_config::HttpListener;
use heliograph_core::limits::LoginGate;
use heliograph_core::router::Transport;
use heliograph_core::session::{ConnFacts, Driver, StreamCore, Timing};
use tokio::time::Instant;

use self::body::BodyRequest;
use self::link::{BoshLink, Incoming, Negotiated};
use super::{ClientInfo, HttpState};

/// BOSH limits of a listener.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_wait: Duration,
    pub max_hold: u32,
    pub inactivity: Duration,
    pub polling: Duration,
    pub max_pause: Duration,
    pub negotiation_timeout: Duration,
}

impl Settings {
    pub fn from_listener(l: &HttpListener) -> Self {
        Settings {
            max_wait: Duration::from_secs(l.bosh_max_wait.max(1)),
            max_hold: l.bosh_max_hold.max(1),
            inactivity: Duration::from_secs(l.bosh_inactivity.max(1)),
            polling: Duration::from_secs(l.bosh_polling),
            max_pause: Duration::from_secs(l.bosh_max_pause),
            negotiation_timeout: Duration::from_secs(l.negotiation_timeout.max(1)),
        }
    }
}

/// How long the terminate of a session the server ended with a stream error is kept for
/// requests that come after the session is gone.
pub const ENDED_KEPT: Duration = Duration::from_secs(30);

/// Live sessions of a listener by `sid`, and the terminates of sessions the server ended
/// recently.
#[derive(Default)]
pub struct Registry {
    sessions: DashMap<String, Live>,
    /// `sid` → the terminate its next request gets, and until when.
    ended: DashMap<String, (Bytes, std::time::Instant)>,
    /// Woken when the last live session goes.
    emptied: tokio::sync::Notify,
}

/// A live session: its request queue and the largest stanza its stream takes now (small
/// before authentication).
struct Live {
    requests: mpsc::Sender<Incoming>,
    stanza_limit: usize,
}

impl Registry {
    fn insert(&self, sid: String, requests: mpsc::Sender<Incoming>, stanza_limit: usize) {
        let live = Live {
            requests,
            stanza_limit,
        };
        self.sessions.insert(sid, live);
    }

    fn remove(&self, sid: &str) {
        self.sessions.remove(sid);
        if self.sessions.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// The session `sid` ended with this terminate: requests that still come for it get
    /// it (for [`ENDED_KEPT`]).
    fn ended(&self, sid: &str, terminate: Bytes) {
        let now = std::time::Instant::now();
        self.ended.retain(|_, (_, until)| *until > now);
        self.ended
            .insert(sid.to_string(), (terminate, now + ENDED_KEPT));
    }

    /// The terminate of a session the server ended recently.
    fn ended_with(&self, sid: &str) -> Option<Bytes> {
        let now = std::time::Instant::now();
        self.ended
            .get(sid)
            .filter(|e| e.1 > now)
            .map(|e| e.0.clone())
    }

    fn get(&self, sid: &str) -> Option<mpsc::Sender<Incoming>> {
        self.sessions.get(sid).map(|s| s.requests.clone())
    }

    /// The session's stream took new parser limits.
    fn set_stanza_limit(&self, sid: &str, limit: usize) {
        if let Some(mut live) = self.sessions.get_mut(sid) {
            live.stanza_limit = limit;
        }
    }

    /// The largest stanza the session's stream takes now; `None` for an unknown `sid`.
    pub fn stanza_limit(&self, sid: &str) -> Option<usize> {
        self.sessions.get(sid).map(|s| s.stanza_limit)
    }

    /// `sid` is a live session here, or one that ended recently.
    pub fn holds(&self, sid: &str) -> bool {
        self.sessions.contains_key(sid) || self.ended_with(sid).is_some()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Resolves once no session is live.
    pub async fn wait_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.sessions.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

/// Answers one BOSH request (already parsed; `size` bytes), creating the session if it
/// has no `sid`.
pub async fn handle(
    state: &Arc<HttpState>,
    req: BodyRequest,
    size: usize,
    client: &ClientInfo,
) -> Bytes {
    match req.sid.clone() {
        None => create(state, req, size, client).await,
        Some(sid) => answer(state, &sid, req, size, &client.addr.display).await,
    }
}

/// Answers a request for the existing session `sid` (from `address`, for the log).
pub async fn answer(
    state: &Arc<HttpState>,
    sid: &str,
    req: BodyRequest,
    size: usize,
    address: &str,
) -> Bytes {
    // A session that ended under way leaves its terminate before its request queue goes:
    // looked up only once the queue is gone.
    let gone = || {
        state
            .bosh
            .ended_with(sid)
            .unwrap_or_else(|| Bytes::from(body::terminate("item-not-found")))
    };
    let Some(tx) = state.bosh.get(sid) else {
        tracing::debug!(sid = %sid, address = %address, "unknown BOSH sid");
        return gone();
    };
    let (reply, rx) = oneshot::channel();
    if tx.send(Incoming { req, size, reply }).await.is_err() {
        return gone();
    }
    // The session answers within `wait`; a dropped reply means the session ended or a
    // repeat of this rid took its place.
    rx.await.unwrap_or_else(|_| gone())
}

async fn create(
    state: &Arc<HttpState>,
    req: BodyRequest,
    size: usize,
    client: &ClientInfo,
) -> Bytes {
    if state.refusing_sessions() {
        heliograph_metrics::connection_refused("bosh", "draining");
        return Bytes::from(body::terminate("system-shutdown"));
    }
    let Some(to) = req.to.clone() else {
        return Bytes::from(body::terminate("improper-addressing"));
    };
    let domain = to.trim_end_matches('.').to_ascii_lowercase();
    if !state.core.serves_domain(&domain) {
        return Bytes::from(body::terminate("host-unknown"));
    }
    let Some(limit_guard) = state.limiter.enter(client.addr.ip) else {
        tracing::info!(address = %client.addr.display, "too many sessions from this address");
        return Bytes::from(body::terminate("policy-violation"));
    };
    let max_unauth = state.core.config().limits.max_unauthenticated;
    let Ok(unauth) = state.core.limits.admit_unauthenticated(max_unauth) else {
        heliograph_metrics::connection_refused("bosh", "unauthenticated_limit");
        return Bytes::from(body::terminate("policy-violation"));
    };
    let settings = state.bosh_settings.clone();
    let wait =
        Duration::from_secs(req.wait.unwrap_or(settings.max_wait.as_secs())).min(settings.max_wait);
    let hold = req.hold.unwrap_or(1).min(settings.max_hold) as usize;
    let negotiated = Negotiated {
        wait,
        hold,
        use_acks: req.ack.is_some(),
        domain,
        secure: client.secure,
    };
    let sid = state.core.bosh_relays.new_sid().unwrap_or_else(new_sid);
    let core = state.core.clone();
    let (tx, rx) = mpsc::channel(core.config().c2s.session_queue.max(16));
    let facts = ConnFacts {
        address: client.addr.display.clone(),
        tls: client.secure,
        channel_bindings: Default::default(),
        starttls_available: false,
        transport: Transport::Bosh,
        policy: client.policy,
    };
    let mut stream = StreamCore::new(core.clone(), facts, tx);
    stream.hold_until_bound(unauth);
    let (req_tx, req_rx) = mpsc::channel(8);
    let unauth_limit = core.config().c2s.max_unauthenticated_stanza_size;
    state.bosh.insert(sid.clone(), req_tx, unauth_limit);
    tracing::info!(sid = %sid, address = %client.addr.display, wait = wait.as_secs(), hold, "BOSH session created");
    let (reply, answer) = oneshot::channel();
    let link = BoshLink::new(
        sid,
        req_rx,
        Arc::new(settings.clone()),
        state.bosh.clone(),
        Incoming { req, size, reply },
        negotiated,
        core.clone(),
    );
    let timing = Timing {
        negotiation_deadline: Instant::now() + settings.negotiation_timeout,
        // Inactivity is the link's (BOSH pacing): no idle timer of the driver's.
        idle: Duration::from_secs(365 * 24 * 3600),
        ping_interval: None,
        ping_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(core.config().c2s.write_timeout.max(1)),
    };
    let gate = LoginGate {
        core: core.clone(),
        ip: client.addr.ip,
    };
    let driver = Driver::new(stream, Box::new(link), rx, timing, state.shutdown.clone())
        .with_login_gate(gate);
    let guards = (
        state.tracker.enter(),
        limit_guard,
        heliograph_metrics::connection_opened("bosh"),
    );
    tokio::spawn(async move {
        driver.run().await;
        drop(guards);
    });
    answer
        .await
        .unwrap_or_else(|_| Bytes::from(body::terminate("internal-server-error")))
}

fn new_sid() -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}
