//! XEP-0402 `urn:xmpp:bookmarks:1#compat`: bookmarks a client keeps in XEP-0049 private
//! XML storage (`<storage xmlns='storage:bookmarks'/>` in `jabber:iq:private`) and the
//! XEP-0402 PEP node are one list. A private `set` of `storage:bookmarks` rewrites the
//! `urn:xmpp:bookmarks:1` node (an item per conference, id = room JID; contacts of the
//! owner's resources get the publish and retract notifications) and the XEP-0048 PEP
//! node; a private `get` is answered from the XEP-0402 node. An account with no XEP-0402
//! node yet keeps reading what private storage holds.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use heliograph_core::Core;

use super::bookmarks::{self, LEGACY_NODE, NODE};
use super::{Pep, config, handlers, notify};
use crate::storage::{Account, PepItem, PepNode, StorageError};
use crate::xml::Element;

/// Why a private bookmarks set was refused.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error("more bookmarks than a node may hold ({max})")]
    TooMany { max: u32 },
    #[error("a bookmark is larger than this server accepts ({max} bytes)")]
    TooLarge { max: u32 },
    #[error("storing the bookmarks failed: {0}")]
    Storage(#[from] StorageError),
}

/// The XEP-0402 `<conference/>` payloads for a legacy `<storage/>`, by room JID, in
/// document order (a room listed twice keeps its last entry).
pub fn conferences_from_legacy(storage: &Element) -> Vec<(String, Element)> {
    let mut out: Vec<(String, Element)> = Vec::new();
    for legacy in storage
        .children()
        .filter(|c| c.is("conference", LEGACY_NODE))
    {
        let Some(room) = legacy.attr("jid").filter(|j| !j.is_empty()) else {
            continue;
        };
        let autojoin = matches!(legacy.attr("autojoin"), Some("true" | "1"));
        let mut conference = Element::new("conference", NODE)
            .with_attr("autojoin", if autojoin { "true" } else { "false" })
            .with_opt_attr("name", legacy.attr("name"));
        for child in ["nick", "password"] {
            if let Some(text) = legacy.child_text(child, LEGACY_NODE) {
                conference.push_child(Element::new(child, NODE).with_text(text));
            }
        }
        out.retain(|(r, _)| r != room);
        out.push((room.to_string(), conference));
    }
    out
}

/// The legacy `<storage/>` built from the owner's XEP-0402 node; `None` when the owner
/// has no such node (private storage answers then).
pub async fn legacy_view(
    core: &Arc<Core>,
    owner: &Account,
) -> Result<Option<Element>, StorageError> {
    let o = owner.clone();
    let node = handlers::load(core, move |s| s.node(&o, NODE)).await?;
    Ok(node.map(|n| bookmarks::legacy_storage(core, &n)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A private `set` of `<storage xmlns='storage:bookmarks'/>`: the XEP-0402 node becomes
/// exactly those bookmarks (unchanged ones keep their item), then notifications go out
/// for what was published and retracted.
pub async fn store_from_private(
    pep: &Arc<Pep>,
    core: &Arc<Core>,
    owner: &Account,
    publisher: &str,
    limits: crate::tenants::pep_settings::PepSettings,
    storage: &Element,
) -> Result<(), CompatError> {
    let wanted = conferences_from_legacy(storage);
    let max_items = limits.max_items;
    if wanted.len() > max_items as usize {
        return Err(CompatError::TooMany { max: max_items });
    }
    let mut new_items = Vec::with_capacity(wanted.len());
    for (room, conference) in &wanted {
        let payload = handlers::serialize_payload(conference);
        if payload.len() > limits.max_item_bytes as usize {
            return Err(CompatError::TooLarge {
                max: limits.max_item_bytes,
            });
        }
        new_items.push((room.clone(), payload));
    }

    let lock = pep.lock_of(owner);
    let guard = lock.lock().await;
    let o = owner.clone();
    let existing = handlers::load(core, move |s| s.node(&o, NODE)).await?;
    let mut node = existing.clone().unwrap_or_else(|| {
        let mut node = PepNode {
            name: NODE.to_string(),
            ..Default::default()
        };
        for (var, value) in [
            (config::ACCESS_MODEL, "whitelist"),
            (config::PERSIST_ITEMS, "true"),
            (config::MAX_ITEMS, "max"),
        ] {
            node.config.insert(var.into(), vec![value.into()]);
        }
        node
    });
    let old_items = std::mem::take(&mut node.items);
    let mut published = Vec::new();
    for (room, payload) in new_items {
        match old_items
            .iter()
            .find(|i| i.id == room && i.payload == payload)
        {
            Some(same) => node.items.push(same.clone()),
            None => {
                let item = PepItem {
                    id: room,
                    payload,
                    publisher: publisher.to_string(),
                    stamp_ms: now_ms(),
                };
                published.push(item.clone());
                node.items.push(item);
            }
        }
    }
    let retracted: Vec<String> = old_items
        .iter()
        .filter(|old| !node.items.iter().any(|i| i.id == old.id))
        .map(|old| old.id.clone())
        .collect();
    let stored = node.clone();
    let o = owner.clone();
    handlers::save(core, move |s| s.put_node(&o, &stored)).await?;
    bookmarks::sync_legacy(core, owner, &node).await;
    drop(guard);

    for item in &published {
        notify::published(pep, core, owner, &node, item).await;
    }
    if !retracted.is_empty() {
        notify::retracted(pep, core, owner, &node, &retracted).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_conferences_become_xep_0402_payloads() {
        let storage = Element::new("storage", LEGACY_NODE)
            .with_child(
                Element::new("conference", LEGACY_NODE)
                    .with_attr("jid", "room@muc.a.test")
                    .with_attr("autojoin", "1")
                    .with_attr("name", "Room")
                    .with_child(Element::new("nick", LEGACY_NODE).with_text("al")),
            )
            .with_child(Element::new("conference", LEGACY_NODE).with_attr("name", "no jid"))
            .with_child(Element::new("url", LEGACY_NODE).with_attr("url", "https://x"))
            .with_child(Element::new("conference", LEGACY_NODE).with_attr("jid", "b@muc.a.test"));
        let got = conferences_from_legacy(&storage);
        assert_eq!(
            got.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
            ["room@muc.a.test", "b@muc.a.test"]
        );
        let (_, first) = &got[0];
        assert!(first.is("conference", NODE));
        assert_eq!(first.attr("autojoin"), Some("true"));
        assert_eq!(first.attr("name"), Some("Room"));
        assert_eq!(first.child_text("nick", NODE).as_deref(), Some("al"));
        assert_eq!(got[1].1.attr("autojoin"), Some("false"));
    }
}
