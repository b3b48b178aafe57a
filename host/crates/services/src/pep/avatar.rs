//! XEP-0398: the owner's XEP-0084 avatar as a XEP-0153 hash in presence. The hash is
//! the id of the last item of `urn:xmpp:avatar:metadata` (the SHA-1 of the image, by
//! XEP-0084); every available presence the owner sends gets
//! `<x xmlns='vcard-temp:x:update'><photo>HASH</photo></x>` in place of what the client
//! put there, and an empty `<photo/>` once the avatar is removed.

use std::sync::Arc;

use heliograph_core::Core;

use super::handlers;
use crate::storage::Account;
use crate::xml::Element;

pub const METADATA: &str = "urn:xmpp:avatar:metadata";
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";
pub const PEP_VCARD_CONVERSION: &str = "urn:xmpp:pep-vcard-conversion:0";

/// The current avatar hash of the account: `Some("")` when it has a metadata node
/// without an avatar, `None` when it never published one.
pub async fn hash_of(core: &Arc<Core>, account: &Account) -> Option<String> {
    let a = account.clone();
    let node = handlers::load(core, move |s| s.node(&a, METADATA))
        .await
        .ok()
        .flatten()?;
    let Some(last) = node.items.last() else {
        return Some(String::new());
    };
    let metadata = handlers::parse_payload(core, &last.payload)?;
    let has_info = metadata.children().any(|c| c.name() == "info");
    Some(if has_info {
        last.id.clone()
    } else {
        String::new()
    })
}

/// Puts the account's avatar hash into an available presence it sends (when the tenant
/// runs PEP and the account has avatar metadata).
pub async fn stamp_presence(core: &Arc<Core>, account: &Account, presence: &mut Element) {
    let enabled = core
        .tenant_of(&account.domain)
        .is_some_and(|t| t.spec.feature_enabled("pep"));
    if !enabled {
        return;
    }
    let Some(hash) = hash_of(core, account).await else {
        return;
    };
    presence.remove_children("x", VCARD_UPDATE);
    let mut photo = Element::new("photo", VCARD_UPDATE);
    if !hash.is_empty() {
        photo.push_text(hash);
    }
    presence.push_child(Element::new("x", VCARD_UPDATE).with_child(photo));
}
