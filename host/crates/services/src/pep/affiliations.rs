//! Affiliations of PEP nodes (XEP-0060 §8.9 for the owner, §5.6/§5.7 for anyone): the
//! owner lists and changes who is `publisher`, `member` or `outcast` of a node (`none`
//! removes an entry; the owner's own `owner` cannot change), which is how a `whitelist`
//! node gets readers; any entity asks for its own affiliations and its own (implied,
//! XEP-0163 §4) subscriptions on an account's service.

use std::sync::Arc;

use heliograph_core::Core;

use super::handlers::{Refusal, load, refuse};
use super::{PUBSUB_OWNER, access};
use crate::stanza::Condition;
use crate::storage::{Account, PepAffiliation, PepNode, Roster};
use crate::xml::{Element, ns};

/// `<affiliations node='…'>` in `pubsub#owner`: every affiliation of the node, the
/// owner's first.
pub fn owner_list(owner: &Account, node: &PepNode) -> Element {
    let mut list = Element::new("affiliations", PUBSUB_OWNER).with_attr("node", node.name.clone());
    list.push_child(affiliation_element(PUBSUB_OWNER, None, owner, "owner"));
    for (jid, a) in &node.affiliations {
        list.push_child(
            Element::new("affiliation", PUBSUB_OWNER)
                .with_attr("jid", jid.clone())
                .with_attr("affiliation", a.as_str()),
        );
    }
    list
}

fn affiliation_element(
    namespace: &str,
    node: Option<&str>,
    jid: &Account,
    affiliation: &str,
) -> Element {
    Element::new("affiliation", namespace)
        .with_opt_attr("node", node)
        .with_attr("jid", jid.to_string())
        .with_attr("affiliation", affiliation)
}

/// Applies an owner's `<affiliations>` set to the node: all entries are checked before
/// any is applied, so a bad entry changes nothing.
pub fn apply(owner: &Account, node: &mut PepNode, request: &Element) -> Result<(), Refusal> {
    let mut changes = Vec::new();
    for entry in request
        .children()
        .filter(|c| c.is("affiliation", PUBSUB_OWNER))
    {
        let jid = entry
            .attr("jid")
            .and_then(|j| jid::Jid::new(j).ok())
            .map(|j| j.to_bare().to_string())
            .ok_or(refuse(
                Condition::BadRequest,
                None,
                "each affiliation needs a valid jid",
            ))?;
        let value = entry.attr("affiliation").unwrap_or_default();
        if jid == owner.to_string() {
            if value == "owner" {
                continue;
            }
            return Err(refuse(
                Condition::NotAcceptable,
                None,
                "the owner of a PEP node stays its owner",
            ));
        }
        let affiliation = match value {
            "none" => None,
            other => Some(PepAffiliation::parse(other).ok_or(refuse(
                Condition::BadRequest,
                None,
                "affiliation must be publisher, member, outcast or none",
            ))?),
        };
        changes.push((jid, affiliation));
    }
    for (jid, affiliation) in changes {
        match affiliation {
            Some(a) => node.affiliations.insert(jid, a),
            None => node.affiliations.remove(&jid),
        };
    }
    Ok(())
}

/// Every node of `owner`, read whole.
async fn nodes_of(core: &Arc<Core>, owner: &Account) -> Result<Vec<PepNode>, Refusal> {
    let o = owner.clone();
    load(core, move |s| {
        s.node_names(&o)?
            .iter()
            .filter_map(|n| s.node(&o, n).transpose())
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(super::handlers::internal)
}

/// Which nodes a `<affiliations/>` or `<subscriptions/>` entity request covers: the one
/// it names, or all.
fn covers(request: &Element, node: &PepNode) -> bool {
    request.attr("node").is_none_or(|n| n == node.name)
}

/// XEP-0060 §5.7: the requester's affiliations with the owner's nodes (`owner` on all of
/// them for the owner).
pub async fn own_affiliations(
    core: &Arc<Core>,
    owner: &Account,
    requester: &Account,
    request: &Element,
) -> Result<Element, Refusal> {
    let mut out =
        Element::new("affiliations", ns::PUBSUB).with_opt_attr("node", request.attr("node"));
    for node in nodes_of(core, owner).await? {
        if !covers(request, &node) {
            continue;
        }
        let affiliation = if requester == owner {
            Some("owner")
        } else {
            access::affiliation(&node, requester).map(PepAffiliation::as_str)
        };
        if let Some(a) = affiliation {
            out.push_child(affiliation_element(
                ns::PUBSUB,
                Some(&node.name),
                requester,
                a,
            ));
        }
    }
    Ok(Element::new("pubsub", ns::PUBSUB).with_child(out))
}

/// XEP-0060 §5.6 for PEP: the requester's subscriptions are implied (XEP-0163 §4), so it
/// is `subscribed` to each node it may read when it is the owner or has a presence
/// subscription to the owner.
pub async fn own_subscriptions(
    core: &Arc<Core>,
    owner: &Account,
    requester: &Account,
    request: &Element,
) -> Result<Element, Refusal> {
    let roster = if requester == owner {
        Roster::default()
    } else {
        crate::roster::load_roster(core, owner).await
    };
    let implied = requester == owner
        || roster
            .items
            .iter()
            .any(|i| i.jid == requester.to_string() && i.subscription.has_from());
    let mut out =
        Element::new("subscriptions", ns::PUBSUB).with_opt_attr("node", request.attr("node"));
    if implied {
        for node in nodes_of(core, owner).await? {
            if covers(request, &node) && access::may_read(owner, &roster, &node, requester) {
                out.push_child(
                    Element::new("subscription", ns::PUBSUB)
                        .with_attr("node", node.name.clone())
                        .with_attr("jid", requester.to_string())
                        .with_attr("subscription", "subscribed"),
                );
            }
        }
    }
    Ok(Element::new("pubsub", ns::PUBSUB).with_child(out))
}
