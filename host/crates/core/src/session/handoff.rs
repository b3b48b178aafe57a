//! Stream management resumption on another cluster node (XEP-0198 across nodes): what a
//! session hands to the node its client resumed on ([`MovedSession`]: address, counters,
//! unacknowledged stanzas in order, presence state), the request that makes a session
//! leave its node ([`ExportRequest`], sent through its mailbox), and the hook the cluster
//! layer installs in [`crate::Core::remote_sessions`] so that a `<resume/>` naming a
//! session of another node fetches it ([`RemoteSessions`]).
//!
//! The protocol between the nodes is the cluster layer's (docs/CLUSTER.md); this module
//! only says what the session gives and takes.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::router::{Receipt, RemoteSink, SessionEntry};
use crate::storage::Account;

/// Everything a resumed session needs from the node it left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovedSession {
    /// `local@domain/resource`: the session keeps its address.
    pub full_jid: String,
    pub resource: String,
    /// The resumption id the client knows (it keeps it for the next resumption).
    pub resume_id: String,
    /// How long the session may wait for its client, in seconds.
    pub resume_timeout_secs: u64,
    /// Stanzas handled from the client (the server's `h`).
    pub handled: u32,
    /// Stanzas sent to the client so far (the unacknowledged ones are the last of them).
    pub sent: u32,
    /// The stanzas the client has not acknowledged, oldest first, as written to it: sent
    /// again on the new node, once, in order, keeping their numbers.
    pub unacked: Vec<String>,
    /// Stanzas for the client it was never sent (held by client state indication, or
    /// still in the session's mailbox): sent after the unacknowledged ones, as new.
    pub pending: Vec<String>,
    /// The last available presence (with `from` stamped), `None` while unavailable.
    pub presence: Option<String>,
    pub priority: i8,
    /// The client asked for its roster (it gets roster pushes).
    pub roster_requested: bool,
    /// Whom it sent directed presence to while available.
    pub directed: Vec<String>,
    /// The client said it was inactive (XEP-0352).
    pub csi_inactive: bool,
    /// Features' per-session settings it takes along (`carbons`; see
    /// [`crate::hooks::Registrar::carry_session_flag`]).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Some of these stanzas are still held by someone (offline storage, or the node that
    /// routed them) and the node the session left keeps their receipts until told the
    /// client has them ([`RemoteSessions::moved_receipts`]). A node of the previous version
    /// neither sends nor reads this: the receipts were confirmed when the session left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldReceipts>,
}

/// Receipts a node keeps for stanzas of a session that left it (see
/// [`MovedSession::held`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldReceipts {
    /// The node keeping them.
    pub node: String,
    /// The move's number there.
    pub id: u64,
    /// The stanzas they are for, by place: `unacked` first (0, 1, ...), then `pending`
    /// continuing the count.
    pub places: Vec<u32>,
}

/// A session's state as it leaves this node (see [`ExportRequest`]), with the receipts of
/// the stanzas someone still holds, by place (as in [`HeldReceipts::places`]). The cluster
/// layer keeps the receipts until the new node says the client has those stanzas, or
/// confirms them at once for a node that cannot say so.
#[derive(Debug)]
pub struct Exported {
    pub session: MovedSession,
    pub receipts: Vec<(u32, Receipt)>,
}

/// Why a session could not be taken over from another node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandOffError {
    /// No such resumable session (never existed, expired, or another user's).
    #[error("no such resumable session")]
    NotFound,
    /// The session ended having handled this many of its client's stanzas.
    #[error("the session ended (h = {handled})")]
    Ended { handled: u32 },
    /// The client acknowledged more stanzas than it was sent.
    #[error("the client acknowledged {h} stanzas, fewer were sent")]
    HandledTooHigh { h: u32 },
    /// The node named by the resumption id did not answer (dead, or NATS is down).
    #[error("node {node} did not answer: {why}")]
    Unreachable { node: String, why: String },
    /// The session was busy and did not let go in time.
    #[error("the session did not let go in time")]
    Busy,
    /// The session cannot move (not resumable, not bound, closing).
    #[error("the session cannot be moved")]
    NotMovable,
}

/// Asks a session (through its mailbox) to leave this node for the node behind `forward`:
/// it drops the client's acknowledged stanzas (`handled`), puts an entry that forwards to
/// that node in its place in the routing table, and answers with its state. It ends
/// without presence broadcast and without sending anything to offline storage: the
/// other node carries on.
pub struct ExportRequest {
    /// The client's `h` from its `<resume/>`.
    pub handled: u32,
    /// The way to the node the client resumed on.
    pub forward: Arc<dyn RemoteSink>,
    pub reply: oneshot::Sender<Result<Exported, HandOffError>>,
}

/// What the cluster layer provides for resumption across nodes (see the module docs).
pub trait RemoteSessions: Send + Sync {
    /// A new resumption id that names this node.
    fn new_resume_id(&self) -> String;

    /// Takes over the session `previd` of `account` from the node holding it (`node`, or
    /// the one the id names), the client having received `handled` stanzas. Until
    /// [`RemoteSessions::adopt`] or [`RemoteSessions::abandon`], stanzas that reach this
    /// node for the account's missing sessions are held.
    fn fetch(
        &self,
        previd: &str,
        account: &Account,
        handled: u32,
        node: Option<String>,
    ) -> BoxFuture<'static, Result<MovedSession, HandOffError>>;

    /// Registers the resumed session in the routing table and queues for it what arrived
    /// meanwhile; returns the entry it replaced, if any.
    fn adopt(&self, entry: &Arc<SessionEntry>) -> Option<Arc<SessionEntry>>;

    /// The fetched session could not be bound here: what was held for the account is
    /// routed again.
    fn abandon(&self, account: &Account);

    /// One receipt per place of `held` (in the same order), standing for the receipts the
    /// node the session left keeps: confirming one tells that node the client has the
    /// stanza, dropping one unconfirmed tells it the client may not have it.
    fn moved_receipts(&self, held: &HeldReceipts) -> Vec<Receipt>;
}
