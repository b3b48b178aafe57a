//! Sessions: one task per stream, whatever carries it.
//!
//! - [`driver`]: the task itself (mailbox, timers, shaping, limits, rescue, drain,
//!   shutdown, detach/attach), the same for every transport;
//! - [`link`]: what a transport provides (framing only);
//! - [`protocol`]: what a kind of stream decides (the driver's other half);
//! - [`StreamCore`] ([`stream`]): the client stream — header checks, feature
//!   advertisement, STARTTLS, SASL ([`auth`]), SASL2 with Bind 2 and FAST ([`sasl2`]),
//!   token logins ([`token_login`]), resource binding ([`bind`]) — which, once bound,
//!   stamps each stanza's `from` (a client can never spoof another address) and hands it
//!   to the routing pipeline;
//! - [`sm`] and [`resumption`]: XEP-0198 stream management — acks, the unacknowledged
//!   queue, and resumable sessions waiting for a new link; [`handoff`]: such a session
//!   moving to the cluster node its client resumed on.
//! - [`settle`]: in a cluster, when a client's message is safe enough to acknowledge.

pub mod auth;
mod bind;
pub mod csi;
pub mod driver;
pub mod handoff;
pub mod link;
pub mod protocol;
pub mod resumption;
pub mod sasl2;
pub mod settle;
pub mod sm;
pub mod stream;
pub mod token_login;

pub use driver::{Driver, Timing};
pub use heliograph_xmpp::StreamErrorCondition;
pub use link::{Attach, Inbound, Keepalive, Link, LinkError, NoLink, Written};
pub use protocol::{HandOver, Identity, Protocol, Work};
pub use stream::{Action, ConnFacts, ListenerPolicy, StreamCore};
