//! XEP-0199 XMPP Ping: answers pings addressed to the server. Server-to-client keepalive
//! pings are the session driver's.

use std::sync::Arc;

use crate::hooks::{Address, Feature, IqType, Registrar};
use crate::stanza;
use crate::xml::{Element, ns};

/// The `ping` feature.
pub struct Ping;

impl Feature for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            r.iq(ty, ns::PING, &[Address::Host], |req| {
                crate::boxed(async move { handle(&req.iq) })
            });
        }
        r.disco_feature(Address::Host, ns::PING);
    }
}

/// Answers a ping get with an empty result.
pub fn handle(iq: &Element) -> Option<Element> {
    match stanza::stanza_type(iq) {
        "get" => Some(stanza::iq_result(iq)),
        _ => stanza::error_reply(iq, stanza::Condition::BadRequest, None),
    }
}
