//! Draining a node before an upgrade: readiness goes to 503, listeners refuse new sessions,
//! bound sessions are sent elsewhere (`see-other-host` when `[drain] see_other_host` is
//! set, otherwise `system-shutdown` after `grace_period`), and the drain finishes when no
//! session is left or `deadline` passes (in a cluster without `see_other_host`, clients
//! are sent to the live node with the fewest sessions); the process then shuts down as on SIGTERM
//! (storage flushed, exit status 0).
//!
//! Nothing accepted is lost: a session closes through its normal path (the session driver
//! routes again whatever it had not written), and stanzas routed to an account with no
//! session left go to offline storage as usual. The drain flag itself is the core's
//! (`heliograph_core::drain`), seen by the listeners and the health check.

use std::sync::Arc;
use std::time::Duration;

use crate::Server;
use heliograph_xmpp::StreamErrorCondition;

/// Runs the drain to its end: asks every bound session to go, then waits for them to be
/// gone or for the deadline. Returns the deadline: a session gone from the routing table
/// may still be closing its connection (waiting for a slow client to read up to the
/// close and answer it), which the shutdown waits for until then.
pub async fn run(server: &Arc<Server>) -> tokio::time::Instant {
    let mut cfg = server.config().drain.clone();
    // In a cluster without a configured target, clients go to a live node.
    if cfg.see_other_host.is_empty()
        && let Some(target) = server.cluster.get().and_then(|c| c.redirect_target())
    {
        cfg.see_other_host = target;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cfg.deadline);
    let sessions = server.core.router.all_entries().len();
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
            && !server.core.router.all_entries().is_empty()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shut_down_rooms(server).await;
        for entry in server.core.router.all_entries() {
            entry.close(StreamErrorCondition::SystemShutdown, Some("node draining"));
        }
    } else {
        shut_down_rooms(server).await;
        for entry in server.core.router.all_entries() {
            entry.close(
                StreamErrorCondition::SeeOtherHost,
                Some(&cfg.see_other_host),
            );
        }
    }
    let mut last_close = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline && !server.core.router.all_entries().is_empty() {
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
            for entry in server.core.router.all_entries() {
                entry.close(cond, Some(text));
            }
        }
    }
    let left = server.core.router.all_entries().len();
    if left > 0 {
        tracing::warn!(sessions = left, "drain deadline passed with sessions left");
    } else {
        tracing::info!("drain finished: no session left");
    }
    deadline
}

/// Room occupants leave with 332 (the MUC service is shutting down) before their
/// sessions are closed; bounded so a busy room cannot hold the drain up.
async fn shut_down_rooms(server: &Arc<Server>) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        server.services.muc.shut_down_all(&server.core),
    )
    .await;
}
