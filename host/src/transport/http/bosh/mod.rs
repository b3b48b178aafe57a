//! BOSH (XEP-0124 with XEP-0206): XMPP sessions carried by HTTP request/response pairs.
//!
//! [`handle`] takes a parsed request body: without `sid` it creates a session (a task
//! running [`session::BoshSession`]), with one it hands the request to that session's
//! task and waits for the answer. [`body`] parses and renders `<body/>`, [`window`] keeps
//! the rid window and response cache, [`pacing`] the polling, inactivity and pause rules.

pub mod body;
pub mod pacing;
pub mod session;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use self::body::BodyRequest;
use self::session::{BoshSession, Incoming, Negotiated};
use super::{ClientInfo, HttpState};
use crate::config::HttpListener;
use crate::router::Transport;
use crate::session::{ConnFacts, StreamCore};

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
    sessions: DashMap<String, mpsc::Sender<Incoming>>,
}

impl Registry {
    fn remove(&self, sid: &str) {
        self.sessions.remove(sid);
    }

    fn get(&self, sid: &str) -> Option<mpsc::Sender<Incoming>> {
        self.sessions.get(sid).map(|s| s.clone())
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Answers one BOSH request (already parsed), creating the session if it has no `sid`.
pub async fn handle(state: &Arc<HttpState>, req: BodyRequest, client: &ClientInfo) -> Bytes {
    match req.sid.clone() {
        None => create(state, req, client).await,
        Some(sid) => {
            let Some(tx) = state.bosh.get(&sid) else {
                tracing::debug!(sid = %sid, address = %client.addr.display, "unknown BOSH sid");
                return Bytes::from(body::terminate("item-not-found"));
            };
            let (reply, rx) = oneshot::channel();
            if tx.send(Incoming { req, reply }).await.is_err() {
                return Bytes::from(body::terminate("item-not-found"));
            }
            // The session answers within `wait`; a dropped reply means the session ended
            // or a repeat of this rid took its place.
            rx.await
                .unwrap_or_else(|_| Bytes::from(body::terminate("item-not-found")))
        }
    }
}

async fn create(state: &Arc<HttpState>, req: BodyRequest, client: &ClientInfo) -> Bytes {
    let Some(to) = req.to.clone() else {
        return Bytes::from(body::terminate("improper-addressing"));
    };
    let domain = to.trim_end_matches('.').to_ascii_lowercase();
    if !state.server.serves_domain(&domain) {
        return Bytes::from(body::terminate("host-unknown"));
    }
    let Some(limit_guard) = state.limiter.enter(client.addr.ip) else {
        tracing::info!(address = %client.addr.display, "too many sessions from this address");
        return Bytes::from(body::terminate("policy-violation"));
    };
    let max_unauth = state.server.config().limits.max_unauthenticated;
    let Ok(unauth) = state.server.edge.limits.admit_unauthenticated(max_unauth) else {
        crate::metrics::connection_refused("bosh", "unauthenticated_limit");
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
    let (tx, rx) = mpsc::channel(state.server.config().c2s.session_queue.max(16));
    let facts = ConnFacts {
        address: client.addr.display.clone(),
        tls: client.secure,
        channel_bindings: Default::default(),
        starttls_available: false,
        transport: Transport::Bosh,
        policy: client.policy,
    };
    let mut core = StreamCore::new(state.server.clone(), facts, tx);
    core.hold_until_bound(unauth);
    let (req_tx, req_rx) = mpsc::channel(8);
    state.bosh.sessions.insert(sid.clone(), req_tx);
    let guards: Vec<Box<dyn Send>> = vec![
        Box::new(state.tracker.enter()),
        Box::new(limit_guard),
        Box::new(crate::metrics::connection_opened("bosh")),
    ];
    let session = BoshSession::new(
        sid.clone(),
        core,
        rx,
        req_rx,
        Arc::new(settings),
        state.bosh.clone(),
        req.rid,
        &negotiated,
        state.shutdown.clone(),
        guards,
    )
    .with_login_gate(crate::edge::limits::LoginGate {
        server: state.server.clone(),
        ip: client.addr.ip,
    });
    tracing::info!(sid = %sid, address = %client.addr.display, wait = wait.as_secs(), hold, "BOSH session created");
    let (reply, rx) = oneshot::channel();
    tokio::spawn(session.run(Incoming { req, reply }, negotiated));
    rx.await
        .unwrap_or_else(|_| Bytes::from(body::terminate("internal-server-error")))
}

fn new_sid() -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}
