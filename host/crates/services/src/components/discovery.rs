//! Service discovery of a tenant's components: the items a tenant domain lists in
//! `disco#items` (XEP-0030 §4), those marked `hidden` left out. disco#info on a
//! component's own domain is the component's to answer.

use crate::xml::{Element, ns};
use heliograph_core::Core;

/// `<item jid=... name=.../>` for every non-hidden component domain of the tenant owning
/// `domain`, sorted by JID.
pub fn items(core: &Core, domain: &str) -> Vec<Element> {
    let Some(tenant) = core.tenant_of(domain) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Option<String>)> = tenant
        .spec
        .components
        .iter()
        .filter(|c| !c.hidden)
        .flat_map(|c| c.domains.iter().map(|d| (d.clone(), c.name.clone())))
        .collect();
    out.sort();
    out.into_iter()
        .map(|(jid, name)| {
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", jid)
                .with_opt_attr("name", name.as_deref())
        })
        .collect()
}
