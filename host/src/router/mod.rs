//! The routing table: which sessions are online for which account, and how to reach them.
//!
//! STUB for parallel work: the session directory interface used by the admin API is fixed
//! below; routing itself is being written.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::storage::Account;

/// What the admin API shows about one online session.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// Full JID of the session.
    pub jid: String,
    /// `tcp`, `tls` (direct TLS or after STARTTLS), later `bosh` and `websocket`.
    pub transport: String,
    /// Client address as seen by the server.
    pub address: String,
    /// Presence priority.
    pub priority: i8,
    /// Whether the session has sent available presence.
    pub available: bool,
    /// Seconds since the Unix epoch when the session was bound.
    pub since: u64,
}

/// The routing table.
#[derive(Default)]
pub struct Router {}

impl Router {
    /// All online sessions, optionally only those of one domain, sorted by JID.
    pub fn sessions(&self, _domain: Option<&str>) -> Vec<SessionInfo> {
        Vec::new()
    }

    /// Ends every session of an account (the account was deleted or its password changed
    /// by an administrator); returns how many were closed.
    pub fn kick_account(&self, _account: &Account) -> usize {
        0
    }
}

#[allow(dead_code)]
fn _unused(_: SocketAddr, _: SystemTime) {}
