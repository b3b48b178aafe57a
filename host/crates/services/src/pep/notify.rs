//! Event notifications (XEP-0163 §4.3): who gets them and sending them. A node's
//! notifications go to every available resource of the owner and of each contact with a
//! presence subscription to the owner (the implied subscription) that may read the node
//! and whose caps carry `NODE+notify`; blocked contacts get nothing. Contacts on other
//! servers get them the same way, at the resources their server said are online
//! ([`super::remote`]), over s2s. A local resource that becomes available gets the last
//! item of every node it is interested in, and so do the available resources of a local
//! contact whose presence subscription just became active.

use std::collections::HashSet;
use std::sync::Arc;

use heliograph_core::Core;

use super::{PUBSUB_EVENT, Pep, access, handlers};
use crate::hooks::{FilterCheck, Verdict};
use crate::router::{SessionEntry, local_account};
use crate::storage::{Account, PepItem, PepNode, Roster};
use crate::xml::{Element, ns};

/// The feature a resource's caps carry to want a node's events.
pub fn notify_feature(node: &str) -> String {
    format!("{node}+notify")
}

/// Whether a session wants the node's events; a session whose caps are unknown is asked
/// in the background and gets none this time.
fn wants(pep: &Arc<Pep>, core: &Arc<Core>, s: &Arc<SessionEntry>, feature: &str) -> bool {
    match pep.caps.known(s) {
        Some(features) => features.contains(feature),
        None if !super::caps::advertises_caps(s) => false,
        None => {
            let (pep, core, s) = (pep.clone(), core.clone(), s.clone());
            tokio::spawn(async move {
                pep.caps.resolve(&core, &s).await;
            });
            false
        }
    }
}

/// Whether either the owner or the contact blocked the other.
async fn blocked(core: &Arc<Core>, owner: &Account, contact: &Account) -> bool {
    let from = owner.to_string();
    let check = FilterCheck {
        from: &from,
        sender: Some(owner),
        to: contact,
        kind: "message",
        stanza: None,
    };
    core.hooks.filter(core, &check).await != Verdict::Pass
}

/// The sessions that get the node's events.
pub async fn recipients(
    pep: &Arc<Pep>,
    core: &Arc<Core>,
    owner: &Account,
    roster: &Roster,
    node: &PepNode,
) -> Vec<Arc<SessionEntry>> {
    let feature = notify_feature(&node.name);
    let mut out: Vec<Arc<SessionEntry>> = core
        .router
        .resources(owner)
        .into_iter()
        .filter(|s| s.is_available() && wants(pep, core, s, &feature))
        .collect();
    for item in roster.items.iter().filter(|i| i.subscription.has_from()) {
        let Some(contact) = local_account(core, owner, &item.jid) else {
            continue;
        };
        if contact == *owner || !access::may_read(owner, roster, node, &contact) {
            continue;
        }
        let sessions: Vec<Arc<SessionEntry>> = core
            .router
            .resources(&contact)
            .into_iter()
            .filter(|s| s.is_available() && wants(pep, core, s, &feature))
            .collect();
        if sessions.is_empty() || blocked(core, owner, &contact).await {
            continue;
        }
        out.extend(sessions);
    }
    out
}

/// The resources of contacts on other servers that get the node's events (full JIDs).
pub async fn remote_recipients(
    pep: &Arc<Pep>,
    core: &Arc<Core>,
    owner: &Account,
    roster: &Roster,
    node: &PepNode,
) -> Vec<String> {
    let feature = notify_feature(&node.name);
    let mut out = Vec::new();
    for item in roster.items.iter().filter(|i| i.subscription.has_from()) {
        let Some(contact) = crate::presence::remote::remote_account(core, &owner.domain, &item.jid)
        else {
            continue;
        };
        let resources = pep.remote.of(&item.jid);
        if resources.is_empty()
            || !access::may_read(owner, roster, node, &contact)
            || blocked(core, owner, &contact).await
        {
            continue;
        }
        for (full, caps) in resources {
            // Caps were asked for when the presence came; unknown ones get nothing.
            if pep
                .caps
                .known_for(&full, &caps)
                .is_some_and(|f| f.contains(&feature))
            {
                out.push(full);
            }
        }
    }
    out
}

fn event_message(owner: &Account, to: &str, content: Element) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("from", owner.to_string())
        .with_attr("to", to)
        .with_attr("type", "headline")
        .with_attr("id", format!("pep-{:016x}", rand::random::<u64>()))
        .with_child(Element::new("event", PUBSUB_EVENT).with_child(content))
}

async fn send_to_all(
    pep: &Arc<Pep>,
    core: &Arc<Core>,
    owner: &Account,
    node: &PepNode,
    content: Element,
) -> usize {
    let roster = crate::roster::load_roster(core, owner).await;
    let targets = recipients(pep, core, owner, &roster, node).await;
    let mut sent = 0;
    for s in &targets {
        if s.send(event_message(owner, &s.full_jid, content.clone())) {
            sent += 1;
        }
    }
    for full in remote_recipients(pep, core, owner, &roster, node).await {
        let Some(contact) = crate::presence::remote::remote_account(core, &owner.domain, &full)
        else {
            continue;
        };
        let msg = event_message(owner, &full, content.clone());
        crate::presence::remote::send(core, &owner.domain, &contact, msg);
        sent += 1;
    }
    sent
}

/// A new or replaced item.
pub async fn published(
    pep: &Arc<Pep>,
    core: &Arc<Core>,
    owner: &Account,
    node: &PepNode,
    item: &PepItem,
) {
    let items = Element::new("items", PUBSUB_EVENT)
        .with_attr("node", node.name.clone())
        .with_child(handlers::item_element(core, item, PUBSUB_EVENT));
    send_to_all(pep, core, owner, node, items).await;
}

/// Retracted items (when the publisher asked to notify).
pub async fn retracted(
    pep: &Arc<Pep>,
    core: &Arc<Core>,
    owner: &Account,
    node: &PepNode,
    ids: &[String],
) {
    let mut items = Element::new("items", PUBSUB_EVENT).with_attr("node", node.name.clone());
    for id in ids {
        items.push_child(Element::new("retract", PUBSUB_EVENT).with_attr("id", id.clone()));
    }
    send_to_all(pep, core, owner, node, items).await;
}

pub async fn purged(pep: &Arc<Pep>, core: &Arc<Core>, owner: &Account, node: &PepNode) {
    let purge = Element::new("purge", PUBSUB_EVENT).with_attr("node", node.name.clone());
    send_to_all(pep, core, owner, node, purge).await;
}

pub async fn deleted(pep: &Arc<Pep>, core: &Arc<Core>, owner: &Account, node: &PepNode) {
    let delete = Element::new("delete", PUBSUB_EVENT).with_attr("node", node.name.clone());
    send_to_all(pep, core, owner, node, delete).await;
}

/// A resource sent its initial presence: once its caps are known, it gets the last item
/// of each node it wants, of its own account and of every contact it is subscribed to.
pub async fn last_items_for(pep: &Arc<Pep>, core: &Arc<Core>, entry: &Arc<SessionEntry>) {
    let Some(features) = pep.caps.resolve(core, entry).await else {
        return;
    };
    if !features.iter().any(|f| f.ends_with("+notify")) {
        return;
    }
    let roster = crate::roster::load_roster(core, &entry.account).await;
    let mut publishers = vec![entry.account.clone()];
    for item in roster.items.iter().filter(|i| i.subscription.has_to()) {
        if let Some(contact) = local_account(core, &entry.account, &item.jid)
            && contact != entry.account
        {
            publishers.push(contact);
        }
    }
    for publisher in publishers {
        let publisher_roster = if publisher == entry.account {
            roster.clone()
        } else {
            crate::roster::load_roster(core, &publisher).await
        };
        send_last_items(core, &publisher, &publisher_roster, entry, &features).await;
    }
}

/// `subscriber` may newly see `publisher`'s presence (the implied PEP subscription of
/// XEP-0163 §4.3): each available resource of the subscriber gets the last item of every
/// node of the publisher its caps want and it may read.
pub async fn last_items_on_grant(
    pep: &Arc<Pep>,
    core: &Arc<Core>,
    publisher: &Account,
    subscriber: &Account,
) {
    let sessions: Vec<Arc<SessionEntry>> = core
        .router
        .resources(subscriber)
        .into_iter()
        .filter(|s| s.is_available())
        .collect();
    if sessions.is_empty() {
        return;
    }
    let roster = crate::roster::load_roster(core, publisher).await;
    for entry in sessions {
        let Some(features) = pep.caps.resolve(core, &entry).await else {
            continue;
        };
        send_last_items(core, publisher, &roster, &entry, &features).await;
    }
}

/// Sends `entry` the last item of each node of `publisher` (whose roster is
/// `publisher_roster`) that the session's caps `features` want and it may read.
async fn send_last_items(
    core: &Arc<Core>,
    publisher: &Account,
    publisher_roster: &Roster,
    entry: &Arc<SessionEntry>,
    features: &HashSet<String>,
) {
    if !features.iter().any(|f| f.ends_with("+notify")) {
        return;
    }
    let p = publisher.clone();
    let names = handlers::load(core, move |s| s.node_names(&p))
        .await
        .unwrap_or_default();
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| features.contains(&notify_feature(n)))
        .collect();
    if names.is_empty()
        || (*publisher != entry.account && blocked(core, publisher, &entry.account).await)
    {
        return;
    }
    for name in names {
        let p = publisher.clone();
        let Ok(Some(node)) = handlers::load(core, move |s| s.node(&p, &name)).await else {
            continue;
        };
        if !access::may_read(publisher, publisher_roster, &node, &entry.account) {
            continue;
        }
        if let Some(last) = node.items.last() {
            let items = Element::new("items", PUBSUB_EVENT)
                .with_attr("node", node.name.clone())
                .with_child(handlers::item_element(core, last, PUBSUB_EVENT));
            entry.send(event_message(publisher, &entry.full_jid, items));
        }
    }
}

/// A remote contact's resource `full` came online wanting `features`: it gets the last
/// item of each of `publisher`'s nodes it wants and may read, over s2s.
pub async fn last_items_to_remote(
    core: &Arc<Core>,
    publisher: &Account,
    full: &str,
    features: &super::caps::Features,
) {
    let Some(contact) = crate::presence::remote::remote_account(core, &publisher.domain, full)
    else {
        return;
    };
    let roster = crate::roster::load_roster(core, publisher).await;
    let bare = contact.to_string();
    let subscribed = roster
        .items
        .iter()
        .any(|i| i.jid == bare && i.subscription.has_from());
    if !subscribed || blocked(core, publisher, &contact).await {
        return;
    }
    let p = publisher.clone();
    let names = handlers::load(core, move |s| s.node_names(&p))
        .await
        .unwrap_or_default();
    for name in names
        .into_iter()
        .filter(|n| features.contains(&notify_feature(n)))
    {
        let p = publisher.clone();
        let Ok(Some(node)) = handlers::load(core, move |s| s.node(&p, &name)).await else {
            continue;
        };
        if !access::may_read(publisher, &roster, &node, &contact) {
            continue;
        }
        if let Some(last) = node.items.last() {
            let items = Element::new("items", PUBSUB_EVENT)
                .with_attr("node", node.name.clone())
                .with_child(handlers::item_element(core, last, PUBSUB_EVENT));
            let msg = event_message(publisher, full, items);
            crate::presence::remote::send(core, &publisher.domain, &contact, msg);
        }
    }
}
