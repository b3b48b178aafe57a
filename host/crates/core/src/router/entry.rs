//! One bound session as the rest of the server sees it: its address, presence state and
//! the queue into its task — or, for a session another cluster node holds, the way to
//! that node ([`RemoteSink`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::SessionInfo;
use crate::session::StreamErrorCondition;
use crate::storage::Account;
use crate::xml::Element;

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh process-unique session id.
pub fn next_session_id() -> u64 {
    NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed)
}

/// How a session is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    /// BOSH (XEP-0124/0206) over the HTTP listener.
    Bosh,
    /// XMPP over WebSocket (RFC 7395).
    WebSocket,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Bosh => "bosh",
            Transport::WebSocket => "websocket",
        }
    }
}

/// Messages into a session's task. They travel boxed, as [`Mail`].
pub enum SessionMsg {
    /// Deliver this stanza to the client (addresses already final).
    Stanza(Element),
    /// Deliver a stanza that is still held elsewhere: in durable storage (an offline
    /// message) or by the cluster node that routed it here. The receipt is confirmed once
    /// the client has it, and a stanza that never got there is not routed again here
    /// (its holder still has it; a returning receipt tells the holder).
    Stored(Box<(Element, Receipt)>),
    /// Close the stream with this error.
    Close(StreamErrorCondition, Option<String>),
    /// A new link takes over the session (stream management resumption).
    Attach(Box<crate::session::Attach>),
    /// The client resumed the session on another cluster node: the session moves there.
    Export(Box<crate::session::handoff::ExportRequest>),
    /// The client's stanza with this number is safe now (see `session::settle`).
    Settled(u32),
}

/// One message in a session's queue, behind one pointer: tokio allocates every queue's
/// first block of 32 slots up front, which is 288 bytes with 8-byte slots. A stanza
/// costs one allocation either way (the box holds it in line).
pub type Mail = Box<SessionMsg>;

/// The sending side of a session's queue (its mailbox).
pub type Mailbox = mpsc::Sender<Mail>;

/// The session task's side of its queue.
pub type MailboxRx = mpsc::Receiver<Mail>;

// Every session's queue allocates its first block of slots up front.
const _: () = assert!(std::mem::size_of::<Mail>() == 8);
// What a stanza costs in the queue beyond the stanza itself: the tag.
const _: () = assert!(std::mem::size_of::<SessionMsg>() <= std::mem::size_of::<Element>() + 8);

impl std::fmt::Debug for SessionMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionMsg::Stanza(el) => f.debug_tuple("Stanza").field(el).finish(),
            SessionMsg::Stored(s) => f.debug_tuple("Stored").field(&s.0).finish(),
            SessionMsg::Close(c, t) => f.debug_tuple("Close").field(c).field(t).finish(),
            SessionMsg::Attach(a) => write!(f, "Attach({})", a.link.transport().as_str()),
            SessionMsg::Export(e) => write!(f, "Export(to {})", e.forward.node()),
            SessionMsg::Settled(n) => f.debug_tuple("Settled").field(n).finish(),
        }
    }
}

fn unwrap_stanza(msg: SessionMsg) -> Element {
    match msg {
        SessionMsg::Stanza(el) => el,
        SessionMsg::Stored(s) => s.0,
        // Only stanzas are sent through `try_deliver`.
        SessionMsg::Close(..)
        | SessionMsg::Attach(_)
        | SessionMsg::Export(_)
        | SessionMsg::Settled(_) => Element::new("message", crate::xml::ns::CLIENT),
    }
}

/// The proof of delivery of a stanza handed to a session while someone else still holds
/// it (durable storage, or the cluster node that routed it). The session confirms it
/// once the client has the stanza: stream management acknowledged it, or — without
/// stream management — the client answered a ping sent after it, or it was written and
/// the session ended cleanly. Dropped unconfirmed (the link died, the server stopped),
/// it says the client may not have it: a stored stanza stays stored for next time, and
/// a returning receipt ([`Receipt::returning`]) tells its holder to route it again.
#[derive(Debug)]
pub struct Receipt {
    id: u64,
    confirmed: mpsc::UnboundedSender<u64>,
    /// Told `id` if the receipt is dropped unconfirmed.
    returned: Option<mpsc::UnboundedSender<u64>>,
}

impl Receipt {
    /// A receipt that sends `id` on `confirmed` when the client has the stanza.
    pub fn new(id: u64, confirmed: mpsc::UnboundedSender<u64>) -> Receipt {
        Receipt {
            id,
            confirmed,
            returned: None,
        }
    }

    /// Like [`Receipt::new`], and sends `id` on `returned` if dropped unconfirmed: for a
    /// stanza whose holder must route it again when the client may not have it.
    pub fn returning(
        id: u64,
        confirmed: mpsc::UnboundedSender<u64>,
        returned: mpsc::UnboundedSender<u64>,
    ) -> Receipt {
        Receipt {
            id,
            confirmed,
            returned: Some(returned),
        }
    }

    /// The client has the stanza.
    pub fn confirm(mut self) {
        self.returned = None;
        let _ = self.confirmed.send(self.id);
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some(returned) = self.returned.take() {
            let _ = returned.send(self.id);
        }
    }
}

/// Presence-related state the server keeps per session (RFC 6121 §4).
#[derive(Debug, Clone, Default)]
pub struct PresenceState {
    /// The last available presence broadcast by the session (with `from` stamped), `None`
    /// before initial presence or after unavailable.
    pub last: Option<Element>,
    /// Priority from the last presence (0 by default).
    pub priority: i8,
    /// The session requested the roster (it is "interested" and gets roster pushes).
    pub roster_requested: bool,
    /// Full or bare JIDs the session sent directed presence to while available
    /// (they get unavailable presence when it goes offline).
    pub directed: Vec<String>,
}

/// What the tenant's authenticator plugin said about the user at login (roles and
/// attributes), kept with the session for other plugins (room policies). Empty for
/// built-in authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFacts {
    pub roles: Vec<String>,
    pub attributes: Vec<(String, String)>,
}

/// The way to a session another node of the cluster holds (the cluster layer implements
/// it): what is queued for such an entry crosses to that node instead of into a local
/// task, so every delivery path (bare-JID choice, presence broadcasts, carbons, roster
/// pushes, kicks) reaches remote sessions without knowing about them.
pub trait RemoteSink: Send + Sync + std::fmt::Debug {
    /// The node holding the session.
    fn node(&self) -> &str;
    /// Hands a stanza or a close request for `entry` to its node, in order per entry;
    /// hands it back if the node is gone.
    fn forward(&self, entry: &SessionEntry, msg: Mail) -> Result<(), Mail>;
    /// True while the node is alive.
    fn is_alive(&self) -> bool;
}

/// Told when a local session binds, changes its presence state or ends (the cluster
/// layer announces it to the other nodes).
pub trait SessionWatcher: Send + Sync + std::fmt::Debug {
    fn bound(&self, entry: &Arc<SessionEntry>);
    fn changed(&self, entry: &SessionEntry);
    fn unbound(&self, entry: &SessionEntry);
}

/// Where what is queued for a session goes.
#[derive(Debug)]
enum Sink {
    /// The session's own task on this node.
    Local(Mailbox),
    /// Another node; `remote_id` is the session's id there.
    Remote {
        sink: Arc<dyn RemoteSink>,
        remote_id: u64,
    },
}

/// A bound session.
#[derive(Debug)]
pub struct SessionEntry {
    pub id: u64,
    pub account: Account,
    pub resource: String,
    /// `local@domain/resource`
    pub full_jid: String,
    pub transport: Transport,
    pub address: String,
    pub since: SystemTime,
    /// The authenticator's facts about the user; `None` when there are none (built-in
    /// authentication), which keeps the entry of most sessions 40 bytes smaller.
    user_facts: Option<Box<UserFacts>>,
    tx: Sink,
    presence: Mutex<PresenceState>,
    /// Told about presence changes of a local session (set when it is registered in a
    /// router that has a watcher).
    watcher: OnceLock<Arc<dyn SessionWatcher>>,
    /// The connection is gone and the session waits for a resumption (XEP-0198).
    detached: AtomicBool,
    /// The session was slowed down for sending faster than a recipient reads (logged
    /// once per session).
    slowed: AtomicBool,
}

/// Why a stanza was not queued for a session; the stanza comes back.
#[derive(Debug)]
pub enum NotQueued {
    /// The session's queue is full (its client does not keep up).
    Full(Element),
    /// The session is gone.
    Closed(Element),
}

impl SessionEntry {
    pub fn new(
        id: u64,
        account: Account,
        resource: String,
        transport: Transport,
        address: String,
        tx: Mailbox,
    ) -> Self {
        let full_jid = format!("{}@{}/{}", account.local, account.domain, resource);
        SessionEntry {
            id,
            account,
            resource,
            full_jid,
            transport,
            address,
            since: SystemTime::now(),
            user_facts: None,
            tx: Sink::Local(tx),
            presence: Mutex::new(PresenceState::default()),
            watcher: OnceLock::new(),
            detached: AtomicBool::new(false),
            slowed: AtomicBool::new(false),
        }
    }

    /// The entry of a session node `sink.node()` holds (its id there is `remote_id`),
    /// bound at `since`.
    pub fn remote(
        account: Account,
        resource: String,
        since: SystemTime,
        sink: Arc<dyn RemoteSink>,
        remote_id: u64,
    ) -> Self {
        let full_jid = format!("{}@{}/{}", account.local, account.domain, resource);
        SessionEntry {
            id: next_session_id(),
            account,
            resource,
            full_jid,
            transport: Transport::Tcp,
            address: String::new(),
            since,
            user_facts: None,
            tx: Sink::Remote { sink, remote_id },
            presence: Mutex::new(PresenceState::default()),
            watcher: OnceLock::new(),
            detached: AtomicBool::new(false),
            slowed: AtomicBool::new(false),
        }
    }

    /// The node holding the session, for a session of another node.
    pub fn node(&self) -> Option<&str> {
        match &self.tx {
            Sink::Local(_) => None,
            Sink::Remote { sink, .. } => Some(sink.node()),
        }
    }

    /// True for a session another node holds.
    pub fn is_remote(&self) -> bool {
        matches!(self.tx, Sink::Remote { .. })
    }

    /// The session's id on the node holding it (its own id for a local session).
    pub fn origin_id(&self) -> u64 {
        match &self.tx {
            Sink::Local(_) => self.id,
            Sink::Remote { remote_id, .. } => *remote_id,
        }
    }

    /// Sets who is told about this local session's presence changes (once).
    pub fn set_watcher(&self, watcher: Arc<dyn SessionWatcher>) {
        let _ = self.watcher.set(watcher);
    }

    /// Queues `msg` without waiting: into the local task, or across to the remote node.
    fn try_send(&self, msg: Mail) -> Result<(), mpsc::error::TrySendError<Mail>> {
        match &self.tx {
            Sink::Local(tx) => tx.try_send(msg),
            Sink::Remote { sink, .. } => sink
                .forward(self, msg)
                .map_err(mpsc::error::TrySendError::Closed),
        }
    }

    /// The session with what the authenticator plugin said about the user.
    pub fn with_user_facts(mut self, facts: UserFacts) -> Self {
        self.user_facts = (facts != UserFacts::default()).then(|| Box::new(facts));
        self
    }

    /// The authenticator's facts about the user (empty for built-in authentication).
    pub fn user_facts(&self) -> &UserFacts {
        static NONE: UserFacts = UserFacts {
            roles: Vec::new(),
            attributes: Vec::new(),
        };
        self.user_facts.as_deref().unwrap_or(&NONE)
    }

    /// Queues a stanza for the client. Returns false if the session is gone or its queue
    /// is full; a full queue means the client cannot keep up, so the session is closed with
    /// `policy-violation` rather than buffering without bound.
    pub fn send(&self, stanza: Element) -> bool {
        self.try_deliver(stanza).is_ok()
    }

    /// Like [`SessionEntry::send`], but hands the stanza back when it could not be queued,
    /// so the caller can store or bounce it without having cloned it up front.
    pub fn try_deliver(&self, stanza: Element) -> Result<(), Element> {
        match self.try_queue(stanza) {
            Ok(()) => Ok(()),
            Err(NotQueued::Full(stanza)) => {
                tracing::warn!(jid = %self.full_jid, "session queue full, closing slow client");
                self.close(
                    StreamErrorCondition::PolicyViolation,
                    Some("too many queued stanzas"),
                );
                Err(stanza)
            }
            Err(NotQueued::Closed(stanza)) => Err(stanza),
        }
    }

    /// Queues a stanza if there is room, closing nothing: a full queue is the caller's
    /// to handle (a sender may wait for room, see [`SessionEntry::send_waiting`]).
    pub fn try_queue(&self, stanza: Element) -> Result<(), NotQueued> {
        match self.try_send(Box::new(SessionMsg::Stanza(stanza))) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(msg)) => Err(NotQueued::Full(unwrap_stanza(*msg))),
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                Err(NotQueued::Closed(unwrap_stanza(*msg)))
            }
        }
    }

    /// True while the session's queue has no room.
    pub fn is_full(&self) -> bool {
        match &self.tx {
            Sink::Local(tx) => tx.capacity() == 0,
            Sink::Remote { .. } => false,
        }
    }

    /// Records that this session is being slowed down for sending faster than `recipient`
    /// reads; logs it the first time only.
    pub fn slowed_for(&self, recipient: &str) {
        if !self.slowed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                jid = %self.full_jid,
                recipient,
                "sending faster than a recipient reads: this session is slowed down"
            );
        }
    }

    /// Queues a stanza, waiting up to `limit` for room in the queue instead of treating a
    /// full queue as a slow client. Only for tasks other than the session's own (which
    /// empties the queue): bulk deliveries such as offline messages. Hands the stanza back
    /// if the session is gone or no room came in time.
    pub async fn send_waiting(&self, stanza: Element, limit: Duration) -> Result<(), Element> {
        let tx = match &self.tx {
            Sink::Local(tx) => tx,
            Sink::Remote { .. } => return self.try_deliver(stanza),
        };
        match tokio::time::timeout(limit, tx.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(Box::new(SessionMsg::Stanza(stanza)));
                Ok(())
            }
            _ => Err(stanza),
        }
    }

    /// Like [`SessionEntry::send_waiting`] for a stanza still held in storage: `receipt`
    /// is confirmed once the client has it (see [`Receipt`]).
    pub async fn send_stored(
        &self,
        stanza: Element,
        receipt: Receipt,
        limit: Duration,
    ) -> Result<(), Element> {
        let tx = match &self.tx {
            Sink::Local(tx) => tx,
            // The other node has the stanza once it is handed over: the stored copy goes.
            Sink::Remote { .. } => {
                self.try_deliver(stanza)?;
                receipt.confirm();
                return Ok(());
            }
        };
        // Room in the queue (the usual case) needs no timer.
        let permit = match tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(stanza),
            Err(mpsc::error::TrySendError::Full(())) => {
                match tokio::time::timeout(limit, tx.reserve()).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(stanza),
                }
            }
        };
        permit.send(Box::new(SessionMsg::Stored(Box::new((stanza, receipt)))));
        Ok(())
    }

    /// Asks the session to close its stream with an error. Uses a spawned send when the
    /// queue is full so the request is never lost.
    pub fn close(&self, cond: StreamErrorCondition, text: Option<&str>) {
        let msg = Box::new(SessionMsg::Close(cond, text.map(str::to_owned)));
        if let (Err(mpsc::error::TrySendError::Full(msg)), Sink::Local(tx)) =
            (self.try_send(msg), &self.tx)
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
    }

    /// Stanzas (and close requests) waiting in the session's outgoing queue.
    pub fn queued(&self) -> usize {
        match &self.tx {
            Sink::Local(tx) => tx.max_capacity() - tx.capacity(),
            Sink::Remote { .. } => 0,
        }
    }

    /// The session lost its connection and waits for a resumption (or came back).
    pub fn set_detached(&self, detached: bool) {
        self.detached.store(detached, Ordering::Relaxed);
    }

    /// True while the session waits for a resumption: stanzas queue up for it, but no
    /// client reads them now (push notifications go out for such sessions).
    pub fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Relaxed)
    }

    /// The session's mailbox (a resumption hands its new link over through it); `None`
    /// for a session of another node.
    pub fn mailbox(&self) -> Option<Mailbox> {
        match &self.tx {
            Sink::Local(tx) => Some(tx.clone()),
            Sink::Remote { .. } => None,
        }
    }

    /// True while the session task (or the node holding it) is alive.
    pub fn is_alive(&self) -> bool {
        match &self.tx {
            Sink::Local(tx) => !tx.is_closed(),
            Sink::Remote { sink, .. } => sink.is_alive(),
        }
    }

    /// Reads the presence state.
    pub fn presence(&self) -> PresenceState {
        self.lock_presence().clone()
    }

    /// Updates the presence state.
    pub fn update_presence<R>(&self, f: impl FnOnce(&mut PresenceState) -> R) -> R {
        let r = f(&mut self.lock_presence());
        if let Some(w) = self.watcher.get() {
            w.changed(self);
        }
        r
    }

    /// A feature changed a per-session setting the cluster carries (see
    /// [`crate::hooks::Registrar::carry_session_flag`]): the watcher announces the
    /// session again.
    pub fn settings_changed(&self) {
        if let Some(w) = self.watcher.get() {
            w.changed(self);
        }
    }

    /// Available (has sent available presence and not unavailable since).
    pub fn is_available(&self) -> bool {
        self.lock_presence().last.is_some()
    }

    /// Available with a non-negative priority: eligible for messages to the bare JID.
    pub fn accepts_bare_messages(&self) -> bool {
        let p = self.lock_presence();
        p.last.is_some() && p.priority >= 0
    }

    pub fn priority(&self) -> i8 {
        self.lock_presence().priority
    }

    fn lock_presence(&self) -> std::sync::MutexGuard<'_, PresenceState> {
        // A poisoned lock only means another thread panicked mid-update of plain data;
        // the state is still usable.
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Snapshot for the admin API.
    pub fn info(&self) -> SessionInfo {
        let p = self.lock_presence();
        SessionInfo {
            jid: self.full_jid.clone(),
            transport: self.transport.as_str().to_string(),
            address: self.address.clone(),
            priority: p.priority,
            available: p.last.is_some(),
            detached: self.is_detached(),
            node: self.node().map(str::to_string),
            since: self
                .since
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            flags: Vec::new(),
        }
    }
}
