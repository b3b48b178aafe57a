//! XEP-0030 Service Discovery for the server and for accounts. What the server and an
//! account say about themselves is what the features registered for the tenant
//! (identities, features, items): a feature a tenant turns off disappears from its disco
//! as well.

use std::sync::Arc;

use crate::hooks::{Address, DiscoIdentity, DiscoQuery, Feature, IqRequest, IqType, Registrar};
use crate::stanza;
use crate::xml::{Element, ns};

/// The `disco` feature.
pub struct Disco;

impl Feature for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            r.iq(ty, ns::DISCO_INFO, &[Address::Host], |req| {
                crate::boxed(async move { info(&req, Address::Host) })
            });
            r.iq(ty, ns::DISCO_INFO, &[Address::Account], |req| {
                crate::boxed(async move { info(&req, Address::Account) })
            });
            r.iq(ty, ns::DISCO_ITEMS, &[Address::Host], |req| {
                crate::boxed(async move { items(&req, Address::Host) })
            });
            r.iq(
                ty,
                ns::DISCO_ITEMS,
                &[Address::Own, Address::Account],
                |req| {
                    crate::boxed(async move {
                        let nodes = crate::pep::disco_nodes(&req).await;
                        items(&req, Address::Account).map(|mut reply| {
                            if let Some(q) = reply.child_mut("query", ns::DISCO_ITEMS) {
                                nodes.into_iter().for_each(|n| q.push_child(n));
                            }
                            reply
                        })
                    })
                },
            );
        }
        r.disco_identity(
            Address::Host,
            DiscoIdentity {
                category: "server",
                kind: "im",
                name: Some("Heliograph"),
            },
        );
        r.disco_identity(
            Address::Account,
            DiscoIdentity {
                category: "account",
                kind: "registered",
                name: None,
            },
        );
        for address in [Address::Host, Address::Account] {
            r.disco_feature(address, ns::DISCO_INFO);
            r.disco_feature(address, ns::DISCO_ITEMS);
        }
        // RFC 3921 session establishment, answered by the session core for old clients.
        r.disco_feature(Address::Host, ns::SESSION);
    }
}

/// Only `get` is answered; a query for a node goes to the feature that registered the
/// node (item-not-found when none did).
fn check_get(req: &IqRequest, address: Address, query: DiscoQuery) -> Result<(), Option<Element>> {
    let iq = &req.iq;
    if stanza::stanza_type(iq) != "get" {
        return Err(stanza::error_reply(iq, stanza::Condition::BadRequest, None));
    }
    if let Some(node) = iq.first_child().and_then(|q| q.attr("node")) {
        let answer = req
            .core
            .hooks
            .disco_node(&req.tenant, address, node)
            .and_then(|h| h(req, query));
        return Err(match answer {
            Some(mut q) => {
                q.set_attr("node", node);
                Some(stanza::iq_result_with(iq, q))
            }
            None => stanza::error_reply(iq, stanza::Condition::ItemNotFound, None),
        });
    }
    Ok(())
}

/// disco#info of the server or an account: the identities and features registered for
/// the tenant.
fn info(req: &IqRequest, address: Address) -> Option<Element> {
    if let Err(e) = check_get(req, address, DiscoQuery::Info) {
        return e;
    }
    let hooks = &req.core.hooks;
    let mut q = Element::new("query", ns::DISCO_INFO);
    for id in hooks.disco_identities(&req.tenant, address) {
        q.push_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", id.category)
                .with_attr("type", id.kind)
                .with_opt_attr("name", id.name),
        );
    }
    for f in hooks.disco_features(&req.tenant, address) {
        q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
    }
    Some(stanza::iq_result_with(&req.iq, q))
}

/// disco#items of a tenant domain (the services the tenant runs on its subdomains) or an
/// account, sorted by JID.
fn items(req: &IqRequest, address: Address) -> Option<Element> {
    if let Err(e) = check_get(req, address, DiscoQuery::Items) {
        return e;
    }
    let mut items = req
        .core
        .hooks
        .disco_items(&req.core, &req.tenant, address, &req.domain);
    items.sort_by(|a, b| a.attr("jid").cmp(&b.attr("jid")));
    let mut q = Element::new("query", ns::DISCO_ITEMS);
    for item in items {
        q.push_child(item);
    }
    Some(stanza::iq_result_with(&req.iq, q))
}
