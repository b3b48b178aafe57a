//! PEP with contacts on other servers: which of their resources are online and what
//! they advertise (XEP-0115 caps in the presence their server sends here), so that a
//! local owner's notifications reach those that want them (`NODE+notify`), over s2s.
//! A resource's caps are asked for (disco#info across the federation) as soon as its
//! presence arrives, so they are known by the time the owner publishes; a resource that
//! comes online then gets the last item of each node it wants of the local user it sent
//! its presence to (XEP-0163 §4.3.4).

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use heliograph_core::Core;

use super::Pep;
use super::caps::{Caps, caps_of};
use crate::stanza;
use crate::storage::Account;
use crate::xml::Element;

/// Online resources of remote contacts that advertise caps, by bare JID.
#[derive(Default)]
pub struct RemoteResources {
    by_bare: DashMap<String, HashMap<String, Caps>>,
}

impl RemoteResources {
    /// The resources of `bare` known to be online, with their caps.
    pub fn of(&self, bare: &str) -> Vec<(String, Caps)> {
        self.by_bare
            .get(bare)
            .map(|r| r.iter().map(|(j, c)| (j.clone(), c.clone())).collect())
            .unwrap_or_default()
    }

    /// Records what a presence from another server says; returns the resource, its caps
    /// and whether it just came online, when it is online with caps.
    fn record(&self, presence: &Element) -> Option<(String, Caps, bool)> {
        let from = jid::Jid::new(presence.attr("from")?).ok()?;
        from.resource()?;
        let full = from.to_string();
        let bare = from.to_bare().to_string();
        let online = match stanza::stanza_type(presence) {
            "" => caps_of(presence),
            "unavailable" => None,
            _ => return None,
        };
        match online {
            Some(caps) => {
                let before = self
                    .by_bare
                    .entry(bare)
                    .or_default()
                    .insert(full.clone(), caps.clone());
                Some((full, caps, before.is_none()))
            }
            None => {
                self.by_bare.remove_if_mut(&bare, |_, r| {
                    r.remove(&full);
                    r.is_empty()
                });
                None
            }
        }
    }
}

/// A presence from another server to a local address: kept, and the caps of a resource
/// that came online are asked for in the background if unknown.
pub fn seen(pep: &Arc<Pep>, core: &Arc<Core>, presence: &Element) {
    let Some((full, caps, came_online)) = pep.remote.record(presence) else {
        if stanza::stanza_type(presence) == "unavailable"
            && let Some(from) = presence.attr("from")
        {
            pep.caps.forget_jid(from);
        }
        return;
    };
    let known = pep.caps.known_for(&full, &caps).is_some();
    if known && !came_online {
        return;
    }
    let Some(publisher) = presence
        .attr("to")
        .and_then(|t| jid::Jid::new(t).ok())
        .and_then(|j| Some(Account::new(j.node()?.to_string(), j.domain().to_string())))
    else {
        return;
    };
    let (pep, core) = (pep.clone(), core.clone());
    tokio::spawn(async move {
        let features = pep
            .caps
            .resolve_for(&core, &publisher.domain, &full, &caps)
            .await;
        if came_online && let Some(features) = features {
            super::notify::last_items_to_remote(&core, &publisher, &full, &features).await;
        }
    });
}
