//! Transports: how bytes reach the session core. [`c2s`] serves XMPP client connections
//! over TCP (STARTTLS and direct TLS), [`tls`] holds the certificate handling, [`io`] the
//! plain-or-TLS socket, [`listener`] the accept loops with connection tracking, and
//! [`http`] the public HTTP listener for BOSH and WebSocket.

pub mod c2s;
pub mod http;
pub mod io;
pub mod listener;
pub mod tls;
