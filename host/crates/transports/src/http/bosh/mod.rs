//! BOSH (XEP-0124 with XEP-0206): XMPP sessions carried by HTTP request/response pairs.
//!
//! [`handle`] takes a parsed request body: without `sid` it creates a session (a session
//! driver over a [`link::BoshLink`]), with one it hands the request to that session's
//! link and waits for the answer. [`body`] parses and renders `<body/>`, [`window`] keeps
//! the rid window and response cache, [`pacing`] the polling, inactivity and pause rules.

pub mod body;
pub mod link;
pub mod pacing;
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

/// Live sessions of a listener by `sid`.
#[derive(Default)]
pub struct Registry {
    sessions: DashMap<String, Live>,
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

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
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
        Some(sid) => {
            let Some(tx) = state.bosh.get(&sid) else {
                tracing::debug!(sid = %sid, address = %client.addr.display, "unknown BOSH sid");
                return Bytes::from(body::terminate("item-not-found"));
            };
            let (reply, rx) = oneshot::channel();
            if tx.send(Incoming { req, size, reply }).await.is_err() {
                return Bytes::from(body::terminate("item-not-found"));
            }
            // The session answers within `wait`; a dropped reply means the session ended
            // or a repeat of this rid took its place.
            rx.await
                .unwrap_or_else(|_| Bytes::from(body::terminate("item-not-found")))
        }
    }
}

async fn create(
    state: &Arc<HttpState>,
    req: BodyRequest,
    size: usize,
    client: &ClientInfo,
) -> Bytes {
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
    let sid = new_sid();
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
        core.parser_limits(),
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
