//! Draining a node before an upgrade: readiness goes to 503, listeners stop accepting,
//! bound sessions are sent elsewhere (`see-other-host` when `[drain] see_other_host` is
//! set, otherwise `system-shutdown` after `grace_period`), and the drain finishes when no
//! session is left or `deadline` passes; the process then shuts down as on SIGTERM
//! (storage flushed, exit status 0).
//!
//! Nothing accepted is lost: a session closes through its normal path, and stanzas routed
//! to an account with no session left go to offline storage as usual.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::router::SessionMsg;
use crate::server::Server;
use crate::session::StreamErrorCondition;
use crate::storage::Account;

/// The drain flag, set once by the API and observed by the listeners and the health check.
pub struct Drain {
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tx: watch::channel(false).0,
        }
    }
}

impl Drain {
    /// Starts draining; false if already draining.
    pub fn start(&self) -> bool {
        self.tx.send_if_modified(|d| !std::mem::replace(d, true))
    }

    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once draining has started.
    pub async fn started(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// Runs the drain to its end: asks every bound session to go, then waits for them to be
/// gone or for the deadline.
pub async fn run(server: &Arc<Server>) {
    let cfg = server.config().drain.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cfg.deadline);
    let sessions = server.router.all_entries().len();
    tracing::info!(
        sessions,
        see_other_host = %cfg.see_other_host,
        grace_period = cfg.grace_period,
        deadline = cfg.deadline,
        "draining"
    );
    if cfg.see_other_host.is_empty() {
        // Clients may leave on their own during the grace period.
        let grace = tokio::time::Instant::now() + Duration::from_secs(cfg.grace_period);
        while tokio::time::Instant::now() < grace.min(deadline)
            && !server.router.all_entries().is_empty()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shut_down_rooms(server).await;
        for entry in server.router.all_entries() {
            entry.close(StreamErrorCondition::SystemShutdown, Some("node draining"));
        }
    } else {
        shut_down_rooms(server).await;
        for entry in server.router.all_entries() {
            entry.close(
                StreamErrorCondition::SeeOtherHost,
                Some(&cfg.see_other_host),
            );
        }
    }
    let mut last_close = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline && !server.router.all_entries().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Sessions bound since (negotiations already under way) are asked to go too.
        if last_close.elapsed() >= Duration::from_secs(1) {
            last_close = tokio::time::Instant::now();
            let (cond, text) = if cfg.see_other_host.is_empty() {
                (StreamErrorCondition::SystemShutdown, "node draining")
            } else {
                (
                    StreamErrorCondition::SeeOtherHost,
                    cfg.see_other_host.as_str(),
                )
            };
            for entry in server.router.all_entries() {
                entry.close(cond, Some(text));
            }
        }
    }
    let left = server.router.all_entries().len();
    if left > 0 {
        tracing::warn!(sessions = left, "drain deadline passed with sessions left");
    } else {
        tracing::info!("drain finished: no session left");
    }
}

/// After a session ended in the middle of a write: the messages that write carried may
/// not have reached the client, so they are routed again (another resource or offline
/// storage). A client that did receive part of them may see one twice; none is lost.
pub async fn rescue_unwritten(
    server: &Arc<Server>,
    account: &Account,
    unwritten: Vec<crate::xml::Element>,
) {
    if unwritten.is_empty() {
        return;
    }
    tracing::info!(
        messages = unwritten.len(),
        "messages of an unfinished write routed again after the session ended"
    );
    for el in unwritten {
        crate::services::message::deliver(server, account, None, el, None).await;
    }
}

/// Room occupants leave with 332 (the MUC service is shutting down) before their
/// sessions are closed; bounded so a busy room cannot hold the drain up.
async fn shut_down_rooms(server: &Arc<Server>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), server.muc.shut_down_all(server)).await;
}

/// After a session ended (drain, or any close): messages still in its queue were accepted
/// by the router but never written to the client. They are routed again, now without
/// this session, so they reach another resource or offline storage instead of being lost
/// (RFC 6121 §8.5.3: a message to a resource gone offline is treated as sent to the bare
/// JID). Other queued stanzas (presence, iq) are dropped as for any closed session.
pub async fn rescue_queued(
    server: &Arc<Server>,
    account: &Account,
    rx: &mut tokio::sync::mpsc::Receiver<SessionMsg>,
) {
    rx.close();
    let mut rescued = 0usize;
    while let Ok(msg) = rx.try_recv() {
        if let SessionMsg::Stanza(el) = msg
            && el.name() == "message"
        {
            crate::services::message::deliver(server, account, None, *el, None).await;
            rescued += 1;
        }
    }
    if rescued > 0 {
        tracing::info!(
            messages = rescued,
            "queued messages routed again after the session ended"
        );
    }
}
