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
//!   to the routing pipeline.

pub mod auth;
mod bind;
pub mod driver;
pub mod link;
pub mod protocol;
pub mod sasl2;
pub mod stream;
pub mod token_login;

pub use driver::{Driver, Timing};
pub use heliograph_xmpp::StreamErrorCondition;
pub use link::{Inbound, Keepalive, Link, LinkError, Written};
pub use protocol::{Identity, Protocol, Work};
pub use stream::{Action, ConnFacts, ListenerPolicy, StreamCore};
