//! XEP-0199 XMPP Ping: answers pings addressed to the server. Server-to-client keepalive
//! pings are sent by the transport through [`crate::session::StreamCore::keepalive_ping`].

use crate::stanza;
use crate::xml::Element;

/// Answers a ping get with an empty result.
pub fn handle(iq: &Element) -> Option<Element> {
    match stanza::stanza_type(iq) {
        "get" => Some(stanza::iq_result(iq)),
        _ => stanza::error_reply(iq, stanza::Condition::BadRequest, None),
    }
}
