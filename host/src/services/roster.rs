//! Roster management (RFC 6121 §2) with versioning (XEP-0237). STUB: being written.

use std::sync::Arc;

use crate::router::SessionEntry;
use crate::server::Server;
use crate::stanza;
use crate::xml::Element;

/// Roster get and set.
pub async fn handle_iq(
    server: &Arc<Server>,
    entry: &Arc<SessionEntry>,
    iq: &Element,
) -> Option<Element> {
    let _ = (server, entry);
    stanza::error_reply(iq, stanza::Condition::FeatureNotImplemented, None)
}
