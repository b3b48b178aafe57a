//! XEP-0402 bookmarks with the XEP-0048 compatibility node (`urn:xmpp:bookmarks:1#compat-pep`):
//! whenever `urn:xmpp:bookmarks:1` changes, the legacy `storage:bookmarks` node is
//! rewritten from it (one item `current` holding `<storage xmlns='storage:bookmarks'/>`
//! with a `<conference/>` per bookmark, owner-only access), so old clients reading
//! XEP-0048 bookmarks over PEP see what new clients wrote.

use std::sync::Arc;

use heliograph_core::Core;

use super::{config, handlers};
use crate::storage::{Account, PepItem, PepNode};
use crate::xml::Element;

pub const NODE: &str = "urn:xmpp:bookmarks:1";
pub const LEGACY_NODE: &str = "storage:bookmarks";

/// The legacy `<storage/>` element for the XEP-0402 node's items.
pub fn legacy_storage(core: &Core, node: &PepNode) -> Element {
    let mut storage = Element::new("storage", LEGACY_NODE);
    for item in &node.items {
        let Some(conf) = handlers::parse_payload(core, &item.payload) else {
            continue;
        };
        if !conf.is("conference", NODE) {
            continue;
        }
        let mut legacy = Element::new("conference", LEGACY_NODE)
            .with_attr("jid", item.id.clone())
            .with_attr(
                "autojoin",
                if matches!(conf.attr("autojoin"), Some("true" | "1")) {
                    "true"
                } else {
                    "false"
                },
            )
            .with_opt_attr("name", conf.attr("name"));
        for child in ["nick", "password"] {
            if let Some(text) = conf.child_text(child, NODE) {
                legacy.push_child(Element::new(child, LEGACY_NODE).with_text(text));
            }
        }
        storage.push_child(legacy);
    }
    storage
}

/// Rewrites the owner's `storage:bookmarks` node from the XEP-0402 node (the caller holds
/// the owner's write lock).
pub async fn sync_legacy(core: &Arc<Core>, owner: &Account, node: &PepNode) {
    let storage = legacy_storage(core, node);
    let last = node.items.last();
    let mut legacy = PepNode {
        name: LEGACY_NODE.to_string(),
        ..Default::default()
    };
    legacy
        .config
        .insert(config::ACCESS_MODEL.into(), vec!["whitelist".into()]);
    legacy.items.push(PepItem {
        id: "current".into(),
        payload: handlers::serialize_payload(&storage),
        publisher: last.map_or_else(|| owner.to_string(), |i| i.publisher.clone()),
        stamp_ms: last.map_or(0, |i| i.stamp_ms),
    });
    let o = owner.clone();
    if let Err(e) = handlers::save(core, move |s| s.put_node(&o, &legacy)).await {
        tracing::error!(jid = %owner, error = %e, "writing the legacy bookmarks node failed");
    }
}
