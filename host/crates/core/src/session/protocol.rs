//! [`Protocol`]: the state machine of one kind of stream, driven by the session driver.
//! Client streams ([`super::StreamCore`]: features, STARTTLS, SASL, bind, then stanzas
//! into the routing pipeline) and XEP-0114 component streams (handshake, then stanzas)
//! implement it; the driver gives both the same mailbox, timers, limits, shaping, rescue,
//! drain and shutdown.

use std::future::Future;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::Action;
use super::handoff::{Exported, HandOffError};
use crate::router::{Mailbox, SessionMsg};
use crate::sasl::ChannelBindings;
use crate::tenants::rate::TokenBucket;
use crate::xml::{Element, ParserLimits, StreamEvent};
use crate::xmpp::StreamErrorCondition;

/// Routing work a stream handed off: runs after the stanza that caused it, in order,
/// while the session keeps delivering to its peer.
pub type Work = BoxFuture<'static, ()>;

/// A resumption: this stream's link goes to the session behind `mailbox` (see
/// [`Protocol::take_handover`]).
pub struct HandOver {
    pub mailbox: Mailbox,
    /// The client's `h`.
    pub handled: u32,
    /// SASL2 inline resumption: `<success/>` and the stream features, for the session to
    /// send first (see [`super::Attach`]).
    pub sasl2: Option<(Element, Element)>,
}

/// Who the established stream is, for the connection's log span.
pub struct Identity {
    pub jid: String,
    pub tenant: String,
}

/// One kind of stream (see the module docs).
pub trait Protocol: Send + 'static {
    /// Handles one event from the peer.
    fn on_event(&mut self, ev: StreamEvent) -> impl Future<Output = Vec<Action>> + Send;

    /// Handles an event at once when that needs no waiting (the common case for an
    /// established stream); `Err` hands the event back for [`Protocol::on_event`].
    fn on_event_now(&mut self, ev: StreamEvent) -> Result<Vec<Action>, StreamEvent> {
        Err(ev)
    }

    /// An event that needs no routing and may be handled while the stream's routing work
    /// is backed up or the shaper holds its stanzas back: flow control, such as stream
    /// management's `<a/>` and `<r/>`. Without this a client slowed down for sending
    /// faster than its recipient reads could not acknowledge what it receives meanwhile.
    /// Other events are held back, in order, until their turn.
    fn is_flow_control(&self, _ev: &StreamEvent) -> bool {
        false
    }

    /// The peer must acknowledge what it was sent before it is sent more (stream
    /// management's bound on unacknowledged stanzas): the driver leaves the mailbox alone
    /// meanwhile, so senders wait as for a slow reader, and closes the stream with
    /// `policy-violation` if no acknowledgement makes room within the write timeout.
    fn mail_held(&self) -> bool {
        false
    }

    /// When the protocol has something to do of its own once the stream is established
    /// (the driver wakes it then: [`Protocol::on_deadline`]).
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// [`Protocol::deadline`] has come (or passed: `now`).
    fn on_deadline(&mut self, _now: tokio::time::Instant) -> Vec<Action> {
        Vec::new()
    }

    /// Handles a message from the rest of the server.
    fn on_mailbox(&mut self, msg: SessionMsg) -> Vec<Action>;

    /// The driver is about to wait for more work: counts kept per session go to the
    /// shared counters now.
    fn flush_counters(&mut self) {}

    /// Routing work queued by the last [`Protocol::on_event`], in order. With `idle` (no
    /// earlier work is still running) the protocol may do work on the spot when it needs
    /// no waiting, and return the next item instead.
    fn take_work(&mut self, idle: bool) -> Option<Work>;

    /// A fatal condition found outside the protocol (timeouts, parser refusals, shutdown):
    /// the actions that close the stream with it.
    fn fail(&mut self, cond: StreamErrorCondition, text: Option<String>) -> Vec<Action>;

    /// Negotiation is over (client bound, component authenticated): idle and keepalive
    /// timers apply instead of the negotiation deadline.
    fn is_established(&self) -> bool;

    /// The stream is closed: nothing more is read or written.
    fn is_closed(&self) -> bool;

    /// The domain the peer addressed, once known (the TLS certificate for STARTTLS
    /// without SNI).
    fn domain(&self) -> Option<&str>;

    /// Parser limits for the stream as it stands (the tenant's once the domain is known).
    fn parser_limits(&self) -> ParserLimits;

    /// The tenant's stanza shaper, once established (`None`: unlimited).
    fn shaper(&self) -> Option<TokenBucket>;

    /// Who the established stream is, for logs.
    fn identity(&self) -> Option<Identity>;

    /// An XMPP ping (XEP-0199) to send when the link has no keepalive of its own.
    fn keepalive_ping(&mut self) -> Option<Element>;

    /// The TLS handshake after STARTTLS finished.
    fn tls_established(&mut self, _bindings: ChannelBindings) {}

    /// The session outlives its link (a resumable stream management session): when the
    /// link goes or stops answering, the driver waits for a new one instead of closing.
    /// Such a protocol keeps every stanza it produced until the peer acknowledged it, so
    /// the driver drops what an old link did not write.
    fn resumable(&self) -> bool {
        false
    }

    /// The link went away without a close. `Some(limit)` keeps the session for up to
    /// `limit` waiting for a new link (resumption); `None` ends it.
    fn link_lost(&mut self) -> Option<Duration> {
        None
    }

    /// A new link took over the session: what to send on it first, given the peer's
    /// count of what it received (and the SASL2 elements the new stream prepared).
    fn attached(&mut self, _handled: u32, _sasl2: Option<(Element, Element)>) -> Vec<Action> {
        vec![Action::Close(None)]
    }

    /// What to send on a link that came to take over after the session ended.
    fn attach_refused(&mut self) -> Vec<Action> {
        vec![Action::Close(None)]
    }

    /// The peer asked to resume another session: the driver hands this stream's link to
    /// it (and this stream ends quietly), or calls [`Protocol::handover_failed`].
    fn take_handover(&mut self) -> Option<HandOver> {
        None
    }

    /// The session to resume was gone by the time the link got there (the SASL2
    /// elements of the [`HandOver`] come back).
    fn handover_failed(&mut self, _sasl2: Option<(Element, Element)>) -> Vec<Action> {
        Vec::new()
    }

    /// The peer resumed the session on another cluster node: the session gives up its
    /// place in the routing table to an entry forwarding to `forward` and returns its
    /// state (see [`crate::session::handoff`]); it then ends without a word to anyone.
    fn export(
        &mut self,
        _handled: u32,
        _forward: std::sync::Arc<dyn crate::router::RemoteSink>,
    ) -> Result<Exported, HandOffError> {
        Err(HandOffError::NotMovable)
    }

    /// The session moved to another node (after [`Protocol::export`]): what features
    /// keep for it here goes.
    fn moved(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The stream ended with the closing handshake (the peer closed, our close was
    /// written after everything else): called before [`Protocol::rescue`].
    fn ended_cleanly(&mut self) {}

    /// The session is over: leave the routing table, tell whom it concerns.
    fn finish(&mut self) -> impl Future<Output = ()> + Send;

    /// The session is over and these stanzas did not reach the peer: `unsent` were
    /// produced by the protocol and not written by the link, `unread` were still in the
    /// mailbox. Route them again (another resource, offline storage) or bounce them.
    fn rescue(
        &mut self,
        unsent: Vec<Element>,
        unread: Vec<Element>,
    ) -> impl Future<Output = ()> + Send;
}
