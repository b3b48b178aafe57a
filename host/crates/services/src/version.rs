//! XEP-0092 Software Version of the server.

use std::sync::Arc;

use crate::hooks::{Address, Feature, IqType, Registrar};
use crate::stanza;
use crate::xml::{Element, ns};

/// The `version` feature.
pub struct Version;

impl Feature for Version {
    fn name(&self) -> &'static str {
        "version"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            r.iq(ty, ns::VERSION, &[Address::Host], |req| {
                crate::boxed(async move { handle(&req.iq) })
            });
        }
        r.disco_feature(Address::Host, ns::VERSION);
    }
}

/// Answers `jabber:iq:version` gets with the server's name and version.
pub fn handle(iq: &Element) -> Option<Element> {
    if stanza::stanza_type(iq) != "get" {
        return stanza::error_reply(iq, stanza::Condition::BadRequest, None);
    }
    let query = Element::new("query", ns::VERSION)
        .with_child(Element::new("name", ns::VERSION).with_text("Heliograph"))
        .with_child(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")));
    Some(stanza::iq_result_with(iq, query))
}
