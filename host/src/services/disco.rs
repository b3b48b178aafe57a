//! XEP-0030 Service Discovery for the server and for accounts.

use crate::stanza;
use crate::xml::{Element, ns};

/// Features the server itself supports.
pub const SERVER_FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::VERSION,
    ns::TIME,
    ns::ROSTER,
    ns::ROSTER_VER,
    ns::OFFLINE,
    ns::BLOCKING,
    ns::SESSION,
];

/// Features announced for an account's bare JID.
pub const ACCOUNT_FEATURES: &[&str] = &[ns::DISCO_INFO, ns::DISCO_ITEMS];

fn info(
    identity_category: &str,
    identity_type: &str,
    name: Option<&str>,
    features: &[&str],
) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO);
    q.push_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", identity_category)
            .with_attr("type", identity_type)
            .with_opt_attr("name", name),
    );
    for f in features {
        q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", *f));
    }
    q
}

fn check_get(iq: &Element) -> Result<(), Option<Element>> {
    if stanza::stanza_type(iq) != "get" {
        return Err(stanza::error_reply(iq, stanza::Condition::BadRequest, None));
    }
    let node = iq.first_child().and_then(|q| q.attr("node"));
    if node.is_some() {
        return Err(stanza::error_reply(
            iq,
            stanza::Condition::ItemNotFound,
            None,
        ));
    }
    Ok(())
}

/// disco#info on the server.
pub fn server_info(iq: &Element) -> Option<Element> {
    if let Err(e) = check_get(iq) {
        return e;
    }
    Some(stanza::iq_result_with(
        iq,
        info("server", "im", Some("Heliograph"), SERVER_FEATURES),
    ))
}

/// disco#items on the server: `(JID, name)` of the services it hosts (MUC).
pub fn server_items(iq: &Element, items: &[(String, String)]) -> Option<Element> {
    if let Err(e) = check_get(iq) {
        return e;
    }
    let mut q = Element::new("query", ns::DISCO_ITEMS);
    for (jid, name) in items {
        q.push_child(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", jid.clone())
                .with_attr("name", name.clone()),
        );
    }
    Some(stanza::iq_result_with(iq, q))
}

/// disco#items on a tenant domain: the services the tenant runs on its subdomains, as
/// `crate::component::discovery::items` lists them (components and the MUC service).
pub fn domain_items(server: &crate::server::Server, domain: &str, iq: &Element) -> Option<Element> {
    if let Err(e) = check_get(iq) {
        return e;
    }
    let mut query = Element::new("query", ns::DISCO_ITEMS);
    for item in crate::component::discovery::items(server, domain) {
        query.push_child(item);
    }
    Some(stanza::iq_result_with(iq, query))
}

/// disco#info on an account's bare JID.
pub fn account_info(iq: &Element) -> Option<Element> {
    if let Err(e) = check_get(iq) {
        return e;
    }
    Some(stanza::iq_result_with(
        iq,
        info("account", "registered", None, ACCOUNT_FEATURES),
    ))
}

/// disco#items on an account's bare JID.
pub fn account_items(iq: &Element) -> Option<Element> {
    if let Err(e) = check_get(iq) {
        return e;
    }
    Some(stanza::iq_result_with(
        iq,
        Element::new("query", ns::DISCO_ITEMS),
    ))
}
