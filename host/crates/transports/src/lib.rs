//! Transports: how bytes reach a session. Framing only — every session runs on the
//! core's session driver, which owns timers, shaping, limits and rescue; a transport
//! provides a [`heliograph_core::session::Link`] and the accept loop in front of it.
//!
//! - [`tcp`]: XMPP client streams (STARTTLS, direct TLS) and XEP-0114 component streams;
//! - [`http`]: the public HTTP listener: BOSH and XMPP over WebSocket;
//! - [`tls`]: certificate choice by SNI and channel bindings; [`io`]: a plain-or-TLS
//!   socket; [`proxy_protocol`]: PROXY v1/v2 headers from trusted load balancers;
//!   [`listener`]: live connection counts for shutdown.
//! - [`s2s`]: federation with other servers (incoming and outgoing s2s streams).
//!
//! No feature imports a transport: the binary wires listeners to the core (and to the
//! component stream of the services layer) at startup.

pub mod http;
pub mod io;
pub mod listener;
pub mod proxy_protocol;
pub mod s2s;
pub mod tcp;
pub mod tls;
