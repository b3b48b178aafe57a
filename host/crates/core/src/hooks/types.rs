//! The types handlers see: requests, addresses, events, filter verdicts.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::context::Core;
use crate::pipeline::Origin;
use crate::router::SessionEntry;
use crate::storage::Account;
use crate::tenants::Tenant;
use crate::xml::Element;

/// `get` or `set`: the iq types that are requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqType {
    Get,
    Set,
}

impl IqType {
    /// The request type of a `type` attribute value.
    pub fn parse(ty: &str) -> Option<IqType> {
        match ty {
            "get" => Some(IqType::Get),
            "set" => Some(IqType::Set),
            _ => None,
        }
    }
}

/// Whom a request is addressed to, as a handler serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// The server: a tenant domain, or no `to` when no `Own` handler takes the request.
    Host,
    /// The sender's own account: no `to`, or its own bare JID.
    Own,
    /// A local account's bare JID, answered by the server on the account's behalf
    /// (the sender's own bare JID too when no `Own` handler takes it).
    Account,
}

/// One iq request for a handler.
pub struct IqRequest {
    pub core: Arc<Core>,
    /// Who sent it (replies go back there).
    pub origin: Origin,
    /// The tenant serving the addressed domain or account.
    pub tenant: Arc<Tenant>,
    /// The addressed domain (for `Host`) or the account's domain.
    pub domain: String,
    /// The addressed account (for `Own` and `Account`).
    pub account: Option<Account>,
    /// The request, `from` stamped and `to` normalized.
    pub iq: Element,
}

impl IqRequest {
    /// The payload (the one child of the request).
    pub fn payload(&self) -> Option<&Element> {
        self.iq.first_child()
    }
}

/// What an undeliverable-message handler did with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Kept for later delivery.
    Yes,
    /// Refused (the account's offline storage is full): the sender gets
    /// `service-unavailable`.
    Refused,
    /// Storage failed (a database outage): the sender gets `internal-server-error`, so
    /// nothing accepted is lost silently.
    Failed,
    /// Not this handler's business: the next one is asked.
    Pass,
}

/// Session events features can hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// A resource was bound (the session is in the routing table).
    Bound,
    /// The session sent its initial available presence.
    InitialPresence,
    /// The session is ending (still in the routing table while the handlers run).
    Closed,
    /// The session moved to another cluster node (its client resumed there): what a
    /// feature keeps for it on this node goes, without the end-of-session steps (no
    /// unavailable presence). It is no longer in this node's routing table.
    Moved,
}

/// One delivery a filter decides on.
#[derive(Debug)]
pub struct FilterCheck<'a> {
    /// The sender's address as the stanza carries it (full or bare JID, or a hosted JID).
    pub from: &'a str,
    /// The sender's local account, when a local session sent it.
    pub sender: Option<&'a Account>,
    /// The local account the stanza is for.
    pub to: &'a Account,
    /// `message`, `presence` or `iq`.
    pub kind: &'a str,
    /// The stanza itself, when the caller has it (filters that look at the payload, like
    /// the call policy, pass what they cannot see).
    pub stanza: Option<&'a Element>,
}

/// A filter's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// The sender refuses contact with the recipient (the sender blocked them): requests
    /// get an error saying so (XEP-0191 §3.5).
    RefusedBySender,
    /// The recipient refuses the sender (blocked): the stanza is not delivered, as if
    /// the recipient were not there (XEP-0191 §3.4).
    RefusedByRecipient,
    /// The recipient's tenant does not allow this stanza between these two users (the
    /// call policy): the sender gets `forbidden`.
    Forbidden,
}

/// A check run before delivery to a local account (blocking, privacy).
pub trait Filter: Send + Sync + 'static {
    /// The verdict from what the filter has in memory, if it can tell without waiting
    /// (the common case on the hot path: no allocation, no await).
    fn check_now(&self, _core: &Core, _check: &FilterCheck<'_>) -> Option<Verdict> {
        None
    }

    /// The verdict, loading what it needs (storage) first.
    fn check<'a>(
        &'a self,
        core: &'a Arc<Core>,
        check: &'a FilterCheck<'a>,
    ) -> BoxFuture<'a, Verdict>;
}

/// A disco identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoIdentity {
    pub category: &'static str,
    pub kind: &'static str,
    pub name: Option<&'static str>,
}

/// Stages of a client stream at which features are advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStage {
    /// After authentication, before binding (bind, roster versioning, ...).
    Authenticated,
}

/// What a stream feature provider sees.
pub struct FeatureContext<'a> {
    pub tenant: &'a Tenant,
    pub stage: StreamStage,
    /// The connection is encrypted.
    pub tls: bool,
}

/// Where a message is when a message hook sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStage {
    /// A bound client sent it (`from` stamped), before it is routed. The context's
    /// account is the sender's.
    Sent,
    /// It is about to reach a local account: the context's account is the recipient,
    /// `targets` the sessions it goes to (none: it goes to offline storage; a message for
    /// an account that does not exist bounces without any hook seeing it).
    /// Runs once per message and account, including for groupchat and error messages
    /// (hooks pick what concerns them), never for messages routed again after a session
    /// ended.
    Received,
}

/// What a message hook is told besides the message.
pub struct MessageContext<'a> {
    pub core: &'a Arc<Core>,
    pub stage: MessageStage,
    /// The sender's account (`Sent`) or the recipient's (`Received`).
    pub account: &'a Account,
    /// The sending session (`Sent`).
    pub session: Option<&'a Arc<SessionEntry>>,
    /// The sessions the message goes to (`Received`).
    pub targets: &'a [Arc<SessionEntry>],
}
