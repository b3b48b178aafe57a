//! [`Link`]: what a transport gives a session. A link turns the wire into
//! [`StreamEvent`]s and [`Action`]s back into the wire format (a TCP stream, WebSocket
//! frames, BOSH bodies); everything else — timers, mailbox, shaping, limits, rescue,
//! drain and shutdown — is the session driver's ([`super::driver`]). A link may go away
//! while its session lives on (stream management resumption attaches a new one).

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

use super::Action;
use crate::router::Transport;
use crate::sasl::ChannelBindings;
use crate::xml::{Element, ParserLimits, StreamEvent};
use crate::xmpp::StreamErrorCondition;

/// What a link received.
#[derive(Debug)]
pub enum Inbound {
    /// The next stream event.
    Event(StreamEvent),
    /// The framer or parser refused the input: the session closes with this stream error.
    Refused(StreamErrorCondition, String),
    /// The peer showed it is alive without sending an event (a WebSocket pong).
    Heartbeat,
    /// The peer is gone (end of stream, reset, BOSH inactivity).
    Gone,
}

/// What writing the actions asks of the driver next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Carry on.
    Done,
    /// A `<proceed/>` went out: run the TLS handshake now.
    StartTls,
    /// The stream was closed (the close is written; nothing more may be).
    Closed,
}

/// A link-level keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// The link has no ping of its own: send an XMPP ping (XEP-0199).
    Stanza,
    /// The link sent its own (a WebSocket ping); any input counts as the answer.
    Sent,
    /// The link keeps itself alive (BOSH requests): no ping.
    None,
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("write timed out")]
    Timeout,
}

/// A transport's side of a session (see the module docs). Futures returned by `recv`
/// must be cancel-safe: the driver polls them in a `select!`.
pub trait Link: Send + 'static {
    /// The transport, for the sessions API and metrics.
    fn transport(&self) -> Transport;

    /// The next event already received, without waiting.
    fn try_recv(&mut self) -> Option<Inbound>;

    /// Waits for the next event.
    fn recv(&mut self) -> BoxFuture<'_, Inbound>;

    /// Writes what the session produced, in order. Every stanza accepted here must stay
    /// reachable through [`Link::take_unsent`] until it is written — also when the
    /// returned future is dropped half-way (the driver's write timeout does that) —
    /// except those of [`Action::SendKept`], which stream management keeps itself.
    fn send(&mut self, actions: Vec<Action>) -> BoxFuture<'_, Result<Written, LinkError>>;

    /// Upgrades to TLS after `<proceed/>` (STARTTLS), choosing the certificate by SNI or
    /// `domain`. `None` if the handshake failed or the link cannot.
    fn start_tls<'a>(
        &'a mut self,
        domain: Option<&'a str>,
    ) -> BoxFuture<'a, Option<ChannelBindings>>;

    /// Applies new parser limits (the tenant's, once the stream's domain is known).
    fn set_limits(&mut self, limits: ParserLimits);

    /// A keepalive, when the session has been quiet.
    fn keepalive(&mut self) -> BoxFuture<'_, Keepalive>;

    /// Completes the closing handshake after the close was written: waits (bounded) for
    /// the peer's own close unless `peer_closed`, reading and discarding, then shuts the
    /// connection down. Nothing is written.
    fn close(&mut self, peer_closed: bool) -> BoxFuture<'_, ()>;

    /// Stanzas accepted by `send` that never reached the peer (a failed write, a BOSH
    /// response nobody fetched), to be routed again or bounced.
    fn take_unsent(&mut self) -> Vec<Element>;
}

/// A new link taking over a resumable session (XEP-0198 resumption), with what the
/// resuming client said.
pub struct Attach {
    pub link: Box<dyn Link>,
    /// The client's `h`: how many of the session's stanzas it received.
    pub handled: u32,
    /// SASL2 inline resumption: the `<success/>` (the session adds its `<resumed/>` to
    /// it) and the stream features that follow, written first.
    pub sasl2: Option<(Element, Element)>,
}

/// The link of a session whose connection is gone (waiting for a resumption, or handed
/// over): reads nothing, and keeps what it is given for [`Link::take_unsent`].
pub struct NoLink {
    transport: Transport,
    kept: Vec<Element>,
}

impl NoLink {
    pub fn new(transport: Transport) -> Self {
        NoLink {
            transport,
            kept: Vec::new(),
        }
    }
}

impl Link for NoLink {
    fn transport(&self) -> Transport {
        self.transport
    }

    fn try_recv(&mut self) -> Option<Inbound> {
        None
    }

    fn recv(&mut self) -> BoxFuture<'_, Inbound> {
        std::future::pending().boxed()
    }

    fn send(&mut self, actions: Vec<Action>) -> BoxFuture<'_, Result<Written, LinkError>> {
        for a in actions {
            if let Action::Send(el) = a
                && crate::session::sm::counts(&el)
            {
                self.kept.push(el);
            }
        }
        std::future::ready(Err(LinkError::Io(std::io::ErrorKind::NotConnected.into()))).boxed()
    }

    fn start_tls<'a>(
        &'a mut self,
        _domain: Option<&'a str>,
    ) -> BoxFuture<'a, Option<ChannelBindings>> {
        std::future::ready(None).boxed()
    }

    fn set_limits(&mut self, _limits: ParserLimits) {}

    fn keepalive(&mut self) -> BoxFuture<'_, Keepalive> {
        std::future::ready(Keepalive::None).boxed()
    }

    fn close(&mut self, _peer_closed: bool) -> BoxFuture<'_, ()> {
        std::future::ready(()).boxed()
    }

    fn take_unsent(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.kept)
    }
}
