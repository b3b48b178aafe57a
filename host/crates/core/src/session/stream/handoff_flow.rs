//! Stream management resumption across cluster nodes on the client stream (see
//! [`crate::session::handoff`]): a `<resume/>` for a session of another node fetches it
//! and binds it on this stream (`<resumed/>`, the unacknowledged stanzas again, then what
//! it was never sent); and a session of this node whose client resumed elsewhere hands
//! its state over and leaves quietly.

use std::time::Duration;

use super::*;
use crate::router::RemoteSink;
use crate::session::handoff::{Exported, HandOffError, MovedSession, RemoteSessions};
use crate::session::resumption::LiveSession;
use crate::session::sasl2::ResumeRequest;
use crate::session::sm::{self, SmLimits, StreamManagement};

/// A session fetched from another node, bound here: `<resumed/>`, then what the client is
/// sent again (the stanzas it had not acknowledged, kept bytes: not counted again) and
/// anew (what it was never sent).
pub(super) struct Adopted {
    pub entry: Arc<SessionEntry>,
    pub resumed: Element,
    pub then: Vec<Action>,
}

impl StreamCore {
    /// Fetches the session `req` names from the cluster node holding it and binds it
    /// here, or says why not (`<failed/>`: the node is dead, the id unknown, or the session
    /// ended).
    pub(super) async fn resume_elsewhere(
        &mut self,
        req: &ResumeRequest,
        node: Option<String>,
    ) -> Result<Adopted, Element> {
        let (Some(remote), Some(account)) = (
            self.core.remote_sessions.get().cloned(),
            self.authenticated.clone(),
        ) else {
            return Err(self.no_such_session(None));
        };
        match remote.fetch(&req.previd, &account, req.handled, node).await {
            Ok(moved) => self.adopt_moved(remote.as_ref(), account, moved),
            Err(HandOffError::Ended { handled }) => Err(self.no_such_session(Some(handled))),
            Err(HandOffError::HandledTooHigh { h }) => {
                tracing::info!(jid = %account, h, "resumption refused: h too high");
                crate::metrics::stream_management("resume_failed");
                Err(sm::failed("undefined-condition", None))
            }
            Err(e) => {
                tracing::info!(jid = %account, error = %e, "resumption on another node failed");
                Err(self.no_such_session(None))
            }
        }
    }

    /// Binds a session fetched from another node on this stream: same full JID, presence
    /// state, counters and unacknowledged stanzas; registered through the cluster layer,
    /// which queues what reached this node for it meanwhile.
    fn adopt_moved(
        &mut self,
        remote: &dyn RemoteSessions,
        account: Account,
        moved: MovedSession,
    ) -> Result<Adopted, Element> {
        let tenant = self.core.tenant_of(&account.domain);
        let Some((tenant, slot)) = tenant.and_then(|t| t.acquire_session().map(|s| (t, s))) else {
            tracing::warn!(jid = %moved.full_jid, "a session resumed from another node cannot be bound here");
            remote.abandon(&account);
            self.rescue_moved(remote, account, moved);
            return Err(self.no_such_session(None));
        };
        self.tenant_slot = Some(slot);
        self.unauth = None;
        self.bound_metric = Some(crate::metrics::session_bound(
            self.facts.transport.as_str(),
            &tenant.name,
        ));
        let entry = Arc::new(
            SessionEntry::new(
                crate::router::next_session_id(),
                account,
                moved.resource.clone(),
                self.transport(),
                self.facts.address.clone(),
                self.session_tx.clone(),
            )
            .with_user_facts(self.user_facts.take().map(|f| *f).unwrap_or_default()),
        );
        // Before it is registered, so the cluster announces the session with its presence.
        let last = moved.presence.as_deref().and_then(sm::read_back);
        entry.update_presence(|p| {
            p.last = last;
            p.priority = moved.priority;
            p.roster_requested = moved.roster_requested;
            p.directed = moved.directed.clone();
        });
        self.core
            .hooks
            .restore_session_flags(&self.core, &entry, &moved.flags);
        if let Some(old) = remote.adopt(&entry)
            && !old.is_remote()
        {
            old.close(
                StreamErrorCondition::Conflict,
                Some("replaced by a new session"),
            );
        }
        if let Some(expires_at) = self.auth_expires {
            super::end_at_expiry(&entry, expires_at);
        }
        self.entry = Some(entry.clone());
        self.stage = Stage::Bound;
        let c2s = &self.core.config().c2s;
        let limits = SmLimits {
            ack_request_interval: c2s.ack_request_interval,
            max_unacked: c2s.max_unacked.max(1),
            resume_timeout: Duration::from_secs(moved.resume_timeout_secs),
        };
        let unacked = moved
            .unacked
            .iter()
            .map(|s| Arc::from(s.as_str()))
            .collect();
        let mut restored = StreamManagement::restored(
            moved.resume_id.clone(),
            limits,
            moved.handled,
            moved.sent,
            unacked,
        );
        // Receipts the node it left keeps: for unacknowledged stanzas, confirmed by the
        // client's acknowledgements here; for pending ones, sent with them.
        let mut pending_receipts = std::collections::HashMap::new();
        if let Some(held) = &moved.held {
            let receipts = remote.moved_receipts(held);
            let count = moved.unacked.len();
            for (place, receipt) in held.places.iter().zip(receipts) {
                let place = *place as usize;
                if place < count {
                    restored.hold_receipt_at(place, receipt);
                } else {
                    pending_receipts.insert(place - count, receipt);
                }
            }
        }
        self.core.resumptions.register(
            &moved.resume_id,
            LiveSession {
                account: entry.account.clone(),
                full_jid: entry.full_jid.clone(),
                mailbox: self.session_tx.clone(),
            },
        );
        let mut then: Vec<Action> = restored
            .replay_kept()
            .into_iter()
            .map(|(el, xml)| Action::SendKept(el, xml))
            .collect();
        let resumed = sm::resumed(restored.handled(), &moved.resume_id);
        self.sm = Some(Box::new(restored));
        if moved.csi_inactive {
            self.csi.get_or_insert_default().set_inactive();
        }
        for (i, xml) in moved.pending.iter().enumerate() {
            let Some(el) = sm::read_back(xml) else {
                continue;
            };
            let msg = match pending_receipts.remove(&i) {
                Some(receipt) => SessionMsg::Stored(Box::new((el, receipt))),
                None => SessionMsg::Stanza(el),
            };
            then.extend(self.on_mailbox(msg));
        }
        crate::metrics::stream_management("resumed");
        tracing::info!(jid = %entry.full_jid, replayed = moved.unacked.len(), pending = moved.pending.len(), "session resumed from another node");
        Ok(Adopted {
            entry,
            resumed,
            then,
        })
    }

    /// A session fetched from another node that could not be bound here: its messages
    /// are routed again (other resources, offline storage), as at the end of a session,
    /// except those someone still holds: their receipts are dropped, so their holders
    /// route them again.
    fn rescue_moved(&self, remote: &dyn RemoteSessions, account: Account, moved: MovedSession) {
        let held: std::collections::HashSet<usize> = match &moved.held {
            Some(held) => {
                drop(remote.moved_receipts(held));
                held.places.iter().map(|p| *p as usize).collect()
            }
            None => Default::default(),
        };
        let core = self.core.clone();
        tokio::spawn(async move {
            let all = moved.unacked.iter().chain(moved.pending.iter()).enumerate();
            let unheld = all.filter(|(place, _)| !held.contains(place));
            for el in unheld.filter_map(|(_, x)| sm::read_back(x)) {
                if el.name() == "message" {
                    crate::pipeline::message::redeliver(&core, &account, el).await;
                }
            }
        });
    }

    /// The client resumed this session on another node: the session leaves this one (see
    /// [`crate::session::handoff`]). An entry forwarding to that node takes its place in
    /// the routing table, so nothing routed meanwhile is lost; the session ends without
    /// its end-of-session steps (no unavailable presence, nothing to offline storage).
    pub(super) fn sm_export(
        &mut self,
        handled: u32,
        forward: Arc<dyn RemoteSink>,
    ) -> Result<Exported, HandOffError> {
        if !self.sm_resumable() {
            return Err(HandOffError::NotMovable);
        }
        let (Some(entry), Some(sm)) = (self.entry.clone(), self.sm.as_mut()) else {
            return Err(HandOffError::NotMovable);
        };
        sm.on_ack(handled)
            .map_err(|e| HandOffError::HandledTooHigh { h: e.h })?;
        let node = forward.node().to_string();
        let presence = entry.presence();
        let forwarding = Arc::new(SessionEntry::remote(
            entry.account.clone(),
            entry.resource.clone(),
            entry.since,
            forward,
            0,
        ));
        forwarding.update_presence(|p| *p = presence.clone());
        if !self.core.router.replace(entry.id, forwarding) {
            return Err(HandOffError::NotMovable);
        }
        let resume_id = sm.resume_id().unwrap_or_default().to_string();
        let resume_timeout_secs = sm.limits().resume_timeout.as_secs();
        let (unacked, receipts) = sm.take_for_move();
        let held = self.csi.as_mut().map(|c| c.flush()).unwrap_or_default();
        let moved = MovedSession {
            full_jid: entry.full_jid.clone(),
            resource: entry.resource.clone(),
            resume_id: resume_id.clone(),
            resume_timeout_secs,
            handled: sm.handled(),
            sent: sm.sent_count(),
            unacked: unacked.iter().map(|s| s.to_string()).collect(),
            pending: held
                .iter()
                .map(|el| sm::serialize(el).to_string())
                .collect(),
            presence: presence.last.as_ref().map(|el| el.to_string()),
            priority: presence.priority,
            roster_requested: presence.roster_requested,
            directed: presence.directed,
            csi_inactive: self.csi.as_ref().is_some_and(|c| c.is_inactive()),
            flags: self.core.hooks.session_flags(&self.core, &entry),
            // The cluster layer fills it in when the receipts go along.
            held: None,
        };
        self.core.resumptions.moved(&resume_id, &node);
        // The session is over here, quietly.
        self.sm = None;
        self.csi = None;
        self.stage = Stage::Closed;
        self.entry = None;
        self.ended = Some(entry.clone());
        self.tenant_slot = None;
        self.bound_metric = None;
        crate::metrics::stream_management("moved");
        tracing::info!(jid = %entry.full_jid, to = %node, unacked = moved.unacked.len(), "session moved to another node");
        Ok(Exported {
            session: moved,
            receipts,
        })
    }
}
