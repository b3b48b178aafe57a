//! Presence (RFC 6121 §3-4): subscriptions, probes, broadcasts, directed presence.
//! STUB: being written.

use std::sync::Arc;

use crate::router::SessionEntry;
use crate::server::Server;
use crate::storage::Account;
use crate::xml::Element;

/// A presence stanza from a bound client.
pub async fn from_client(server: &Arc<Server>, entry: &Arc<SessionEntry>, presence: Element) {
    let _ = (server, entry, presence);
}

/// The session went away: unavailable presence to everyone who saw it available.
pub async fn session_ended(server: &Arc<Server>, entry: &Arc<SessionEntry>) {
    let _ = (server, entry);
}

/// After an unblock: the user's current presence goes to the unblocked contacts that are
/// subscribed to it.
pub async fn resend_presence_to(server: &Arc<Server>, account: &Account, jids: &[String]) {
    let _ = (server, account, jids);
}
