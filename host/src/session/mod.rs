//! The session core: one state machine for every transport.
//!
//! A transport turns bytes into [`crate::xml::StreamEvent`]s and feeds them to a
//! [`StreamCore`]; the core answers with [`Action`]s (send this header or element, upgrade
//! to TLS, restart the stream, close) that the transport frames for its wire format. The
//! core does stream-header checks, feature advertisement, STARTTLS, SASL ([`auth`]),
//! SASL2 with Bind 2 and FAST ([`sasl2`]), token logins ([`token_login`]), resource
//! binding ([`bind`]) and, once bound, hands stanzas to the services after stamping their
//! `from` so that a client can never spoof another address.

pub mod auth;
mod bind;
mod core;
pub mod sasl2;
pub mod token_login;

pub use self::core::{Action, ConnFacts, ListenerPolicy, StreamCore};
pub use heliograph_xmpp::StreamErrorCondition;
