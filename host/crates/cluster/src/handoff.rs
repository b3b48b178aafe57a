//! Stream management resumption on another node: a client whose connection to node A
//! dropped resumes (XEP-0198 `<resume/>`, plain or inline in SASL2) on node B, and the
//! session moves from A to B.
//!
//! - The resumption id names the node that issued it (`NODE~random`); a node that handed a
//!   session on remembers where it went, so a later resumption on a third node follows.
//! - B asks A on `heliograph.handoff.A` (NATS request/reply, with a deadline): A's session
//!   drops what the client acknowledged, leaves an entry forwarding to B in its place in
//!   A's routing table, and answers with its state (full JID, counters, unacknowledged
//!   stanzas in order, what it never sent, presence state, CSI); it ends without
//!   unavailable presence and without sending anything to offline storage.
//! - Meanwhile B holds what reaches it for the account's missing session; once the
//!   session is bound on B (same full JID), those stanzas go to it after the resent ones
//!   ([`crate::arriving`]).
//! - B's session is announced like any new one: every node's registry points the full JID
//!   at B (the newer session). A keeps announcing its own record until it hears B's
//!   announcement, then drops it: the JID never disappears from any registry, and what
//!   reaches A in between is forwarded to B.
//! - A dead, or the id unknown: B's client gets `<failed/>` with `item-not-found`.
//! - Receipts of the moved stanzas that someone still holds stay with A until B says the
//!   client has those stanzas ([`crate::moved_receipts`]); B's notices travel on the same
//!   subject, without a reply address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::arriving::Arriving;
use crate::core::Core;
use crate::core::router::Receipt;
use crate::core::router::{Mailbox, SessionEntry, SessionMsg};
use crate::core::session::handoff::{
    ExportRequest, Exported, HandOffError, HeldReceipts, MovedSession, RemoteSessions,
};
use crate::core::session::resumption::Lookup;
use crate::local::LocalSessions;
use crate::moved_receipts::{self, HeldMoves, ReceiptNotice};
use crate::outbox::{Outgoing, PeerSink};
use crate::peers::Peers;
use crate::readers::Readers;
use crate::xml::Element;
use crate::xmpp::Account;

/// Where a node answers requests for its sessions.
pub fn subject(node: &str) -> String {
    format!("heliograph.handoff.{node}")
}

/// How many times a request follows a session that moved on.
const MAX_HOPS: usize = 3;

/// How long a node keeps forwarding to a session it handed on while the new node's
/// announcement has not come (then its own record and forwarding entry go).
const ANNOUNCE_WAIT: Duration = Duration::from_secs(30);

/// The separator between the node and the random part of a resumption id.
const ID_SEPARATOR: char = '~';

/// The node a resumption id names.
pub fn node_of(resume_id: &str) -> Option<&str> {
    resume_id
        .split_once(ID_SEPARATOR)
        .map(|(node, _)| node)
        .filter(|n| !n.is_empty())
}

/// B's request to A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeOver {
    pub previd: String,
    /// The authenticated user's bare JID: only the owner finds the session.
    pub account: String,
    /// The client's `h`.
    pub handled: u32,
    /// The node the client resumed on.
    pub to: String,
}

/// A's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Answer {
    /// The session, which has left A.
    Session { session: Box<MovedSession> },
    /// It ended, having handled `handled` stanzas from the client.
    Ended { handled: u32 },
    /// It moved on to `node`.
    Moved { node: String },
    /// No such session of this user.
    Unknown,
    /// The client acknowledged more than it was sent.
    TooHigh { h: u32 },
    /// The session did not let go in time.
    Busy,
}

/// A session this node handed on, until the new node announced it.
struct Departed {
    node: String,
    /// Its id in this node's announcements.
    id: u64,
}

struct Shared {
    core: Arc<Core>,
    node: String,
    client: async_nats::Client,
    out: mpsc::Sender<Outgoing>,
    peers: Arc<Mutex<Peers>>,
    local: Arc<LocalSessions>,
    deadline: Duration,
    arriving: Arriving,
    departed: Mutex<HashMap<String, Departed>>,
    readers: Arc<Readers>,
    /// Receipts of sessions that left (see [`crate::moved_receipts`]).
    held: Arc<HeldMoves>,
}

/// Resumption across nodes (see the module docs); cheap to clone.
#[derive(Clone)]
pub struct HandOff {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_account(bare: &str) -> Option<Account> {
    let j = jid::BareJid::new(bare).ok()?;
    Some(Account::new(j.node()?.as_str(), j.domain().as_str()))
}

/// What the handoff shares with the rest of its node.
pub struct NodeParts {
    /// The node's publisher.
    pub out: mpsc::Sender<Outgoing>,
    /// The other nodes, as their heartbeats and events said.
    pub peers: Arc<Mutex<Peers>>,
    /// This node's sessions as announced.
    pub local: Arc<LocalSessions>,
    /// What the other nodes read.
    pub readers: Arc<Readers>,
}

impl HandOff {
    pub fn new(
        core: Arc<Core>,
        node: String,
        client: async_nats::Client,
        parts: NodeParts,
        deadline: Duration,
    ) -> HandOff {
        let NodeParts {
            out,
            peers,
            local,
            readers,
        } = parts;
        HandOff {
            shared: Arc::new(Shared {
                arriving: Arriving::new(core.clone()),
                core,
                node,
                client,
                out,
                peers,
                local,
                deadline,
                departed: Mutex::new(HashMap::new()),
                readers,
                held: Arc::default(),
            }),
        }
    }

    /// Answers other nodes' requests for this node's sessions, and takes their notices
    /// about moved receipts (which come without a reply address).
    pub async fn serve(self, mut sub: async_nats::Subscriber) {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                match serde_json::from_slice::<ReceiptNotice>(&msg.payload) {
                    Ok(notice) => self.shared.held.apply(notice),
                    Err(e) => tracing::warn!(error = %e, "cluster: receipt notice not understood"),
                }
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let answer = match serde_json::from_slice::<TakeOver>(&msg.payload) {
                    Ok(req) => me.answer(req).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: session request not understood");
                        Answer::Unknown
                    }
                };
                let payload = serde_json::to_vec(&answer).unwrap_or_default();
                if let Err(e) = me.shared.client.publish(reply, payload.into()).await {
                    tracing::warn!(error = %e, "cluster: answer to a session request not sent");
                }
            });
        }
    }

    async fn answer(&self, req: TakeOver) -> Answer {
        let Some(account) = parse_account(&req.account) else {
            return Answer::Unknown;
        };
        match self.shared.core.resumptions.lookup(&req.previd, &account) {
            Lookup::Live(live) => self.export(live.mailbox, &live.full_jid, req).await,
            Lookup::Ended { handled } => Answer::Ended { handled },
            Lookup::Moved { node } => Answer::Moved { node },
            Lookup::Unknown => Answer::Unknown,
        }
    }

    /// Asks the session behind `mailbox` to move to `req.to`.
    async fn export(&self, mailbox: Mailbox, full_jid: &str, req: TakeOver) -> Answer {
        let s = &self.shared;
        let forward = lock(&s.peers)
            .sink(&req.to)
            .unwrap_or_else(|| PeerSink::new(&req.to, s.out.clone()));
        // The id this node announced the session under, read before it can change.
        let announced = s.local.id_of(full_jid);
        let (reply, answer) = oneshot::channel();
        let msg = Box::new(SessionMsg::Export(Box::new(ExportRequest {
            handled: req.handled,
            forward,
            reply,
        })));
        // Half the deadline each for the mailbox and the answer: the asking node must
        // get an answer before its own deadline.
        let half = s.deadline / 2;
        if mailbox.send_timeout(msg, half).await.is_err() {
            return Answer::Busy;
        }
        match tokio::time::timeout(half, answer).await {
            Ok(Ok(Ok(Exported {
                mut session,
                receipts,
            }))) => {
                if let Some(id) = announced {
                    self.departed(&session.full_jid, &req.to, id);
                }
                session.held = self.keep_receipts(&req.to, &session, receipts);
                metrics::counter!("heliograph_cluster_sessions_moved_total", "way" => "out")
                    .increment(1);
                Answer::Session {
                    session: Box::new(session),
                }
            }
            Ok(Ok(Err(HandOffError::HandledTooHigh { h }))) => Answer::TooHigh { h },
            // Not resumable any more, or it ended while asked.
            Ok(Ok(Err(_))) | Ok(Err(_)) => Answer::Unknown,
            Err(_) => Answer::Busy,
        }
    }

    /// Keeps the receipts of a session leaving for `to` until `to` says what became of
    /// the stanzas, if it can say so; confirms them now otherwise (a node of the previous
    /// version).
    fn keep_receipts(
        &self,
        to: &str,
        session: &MovedSession,
        receipts: Vec<(u32, Receipt)>,
    ) -> Option<HeldReceipts> {
        let s = &self.shared;
        if !s.readers.carries_receipts(to) {
            for (_, receipt) in receipts {
                receipt.confirm();
            }
            return None;
        }
        let held = s.held.keep(&s.node, to, receipts)?;
        let (moves, id) = (s.held.clone(), held.id);
        let wait = moved_receipts::keep_at_most(Duration::from_secs(session.resume_timeout_secs));
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            moves.expire(id);
        });
        Some(held)
    }

    /// Drops the receipts kept for sessions that moved to nodes no longer alive: their
    /// holders route the stanzas again.
    pub fn forget_dead(&self, alive: &[String]) {
        self.shared.held.forget_dead(alive);
    }

    /// Remembers a session handed to `node` until that node announces it; gives up
    /// after [`ANNOUNCE_WAIT`] (the node died meanwhile).
    fn departed(&self, jid: &str, node: &str, id: u64) {
        lock(&self.shared.departed).insert(
            jid.to_string(),
            Departed {
                node: node.to_string(),
                id,
            },
        );
        let me = self.clone();
        let jid = jid.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(ANNOUNCE_WAIT).await;
            let gone = lock(&me.shared.departed).remove(&jid);
            if let Some(d) = gone {
                tracing::warn!(
                    jid,
                    node = d.node,
                    "cluster: a moved session was never announced"
                );
                me.shared.local.forget(&jid, d.id);
                me.drop_forwarding(&jid);
            }
        });
    }

    /// Removes the entry forwarding `jid` to the node it moved to, if still there.
    fn drop_forwarding(&self, jid: &str) {
        let Some((account, resource)) = split_full(jid) else {
            return;
        };
        let router = &self.shared.core.router;
        if let Some(entry) = router.resource(&account, &resource)
            && is_forwarding(&entry)
        {
            router.unregister(&account, entry.id);
        }
    }

    /// `node` announced a session of `jid`: if this node handed it there, its own record
    /// goes now (every node has the newer one).
    pub fn announced(&self, node: &str, jid: &str) {
        let mut departed = lock(&self.shared.departed);
        if departed.get(jid).is_some_and(|d| d.node == node)
            && let Some(d) = departed.remove(jid)
        {
            drop(departed);
            self.shared.local.forget(jid, d.id);
        }
    }

    /// A stanza from another node for `jid`, which has no local session here: held if a
    /// session of the account is being fetched, forwarded if `jid` moved on from here.
    /// The stanza comes back otherwise.
    pub fn take(&self, jid: &str, stanza: Element) -> Result<(), Element> {
        let Some((account, resource)) = split_full(jid) else {
            return Err(stanza);
        };
        let router = &self.shared.core.router;
        let current = router.resource(&account, &resource);
        if let Some(entry) = &current
            && is_forwarding(entry)
        {
            return entry.try_deliver(stanza);
        }
        self.shared.arriving.hold(&account, &resource, jid, stanza)
    }

    async fn ask(
        shared: &Shared,
        mut node: String,
        previd: &str,
        account: &Account,
        handled: u32,
    ) -> Result<MovedSession, HandOffError> {
        for _ in 0..MAX_HOPS {
            let req = TakeOver {
                previd: previd.to_string(),
                account: account.to_string(),
                handled,
                to: shared.node.clone(),
            };
            let payload = serde_json::to_vec(&req).unwrap_or_default();
            let unreachable = |why: String| HandOffError::Unreachable {
                node: node.clone(),
                why,
            };
            let request = async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(shared.deadline));
            let msg = match shared.client.send_request(subject(&node), request).await {
                Err(e) => return Err(unreachable(e.to_string())),
                Ok(msg) => msg,
            };
            match serde_json::from_slice::<Answer>(&msg.payload) {
                Ok(Answer::Session { session }) => return Ok(*session),
                Ok(Answer::Ended { handled }) => return Err(HandOffError::Ended { handled }),
                Ok(Answer::Moved { node: next }) if next != shared.node => node = next,
                Ok(Answer::Moved { .. } | Answer::Unknown) => return Err(HandOffError::NotFound),
                Ok(Answer::TooHigh { h }) => return Err(HandOffError::HandledTooHigh { h }),
                Ok(Answer::Busy) => return Err(HandOffError::Busy),
                Err(e) => return Err(unreachable(format!("answer not understood: {e}"))),
            }
        }
        Err(HandOffError::NotFound)
    }
}

/// An entry a node left in its routing table for a session it handed on (its id on the
/// other node is not known yet: 0).
fn is_forwarding(entry: &SessionEntry) -> bool {
    entry.is_remote() && entry.origin_id() == 0
}

fn split_full(full: &str) -> Option<(Account, String)> {
    let j = jid::FullJid::new(full).ok()?;
    Some((
        Account::new(j.node()?.as_str(), j.domain().as_str()),
        j.resource().as_str().to_string(),
    ))
}

impl RemoteSessions for HandOff {
    fn new_resume_id(&self) -> String {
        format!(
            "{}{ID_SEPARATOR}{}",
            self.shared.node,
            crate::core::session::sm::new_resume_id()
        )
    }

    fn fetch(
        &self,
        previd: &str,
        account: &Account,
        handled: u32,
        node: Option<String>,
    ) -> BoxFuture<'static, Result<MovedSession, HandOffError>> {
        let me = self.clone();
        let previd = previd.to_string();
        let account = account.clone();
        Box::pin(async move {
            let node = node
                .or_else(|| node_of(&previd).map(str::to_string))
                .filter(|n| *n != me.shared.node)
                .ok_or(HandOffError::NotFound)?;
            me.shared.arriving.start(&account);
            let started = std::time::Instant::now();
            let result = HandOff::ask(&me.shared, node, &previd, &account, handled).await;
            metrics::histogram!("heliograph_cluster_session_fetch_seconds")
                .record(started.elapsed().as_secs_f64());
            if result.is_err() {
                me.shared.arriving.end(&account, Vec::new());
            }
            result
        })
    }

    fn adopt(&self, entry: &Arc<SessionEntry>) -> Option<Arc<SessionEntry>> {
        metrics::counter!("heliograph_cluster_sessions_moved_total", "way" => "in").increment(1);
        self.shared.arriving.adopt(entry)
    }

    fn abandon(&self, account: &Account) {
        self.shared.arriving.end(account, Vec::new());
    }

    fn moved_receipts(&self, held: &HeldReceipts) -> Vec<Receipt> {
        let client = self.shared.client.clone();
        let to = subject(&held.node);
        let tell = move |notice: ReceiptNotice| {
            let (client, to) = (client.clone(), to.clone());
            let payload = serde_json::to_vec(&notice).unwrap_or_default();
            tokio::spawn(async move {
                if let Err(e) = client.publish(to, payload.into()).await {
                    tracing::warn!(error = %e, "cluster: receipt notice not sent");
                }
            });
        };
        moved_receipts::receipts_for(held, &self.shared.node, Arc::new(tell))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_names_its_node() {
        assert_eq!(node_of("n1~abc"), Some("n1"));
        assert_eq!(node_of("abc"), None);
        assert_eq!(node_of("~abc"), None);
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            Answer::Ended { handled: 3 },
            Answer::Moved { node: "n2".into() },
            Answer::Unknown,
            Answer::TooHigh { h: 9 },
            Answer::Busy,
        ] {
            let json = serde_json::to_vec(&a).unwrap();
            assert_eq!(serde_json::from_slice::<Answer>(&json).unwrap(), a);
        }
    }
}
