//! Service discovery of a tenant's services: the items a tenant domain lists in
//! `disco#items` (XEP-0030 §4): its components (those marked `hidden` are left out) and
//! its multi-user chat service when enabled. disco#info on a component's own domain is
//! the component's to answer (the MUC service answers its own).

use crate::server::Server;
use crate::xml::{Element, ns};

/// `<item jid=... name=.../>` for every non-hidden component domain of the tenant owning
/// `domain`, sorted by JID.
pub fn items(server: &Server, domain: &str) -> Vec<Element> {
    let Some(tenant) = server.tenant_of(domain) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Option<String>)> = tenant
        .spec
        .components
        .iter()
        .filter(|c| !c.hidden)
        .flat_map(|c| c.domains.iter().map(|d| (d.clone(), c.name.clone())))
        .collect();
    // The tenant's MUC service, unless a component configured on the same domain takes
    // it (see `ComponentResolver`).
    if let Some((service, name)) = server.muc.service_of_domain(server, domain)
        && tenant.component(&service).is_none()
    {
        out.push((service, Some(name)));
    }
    out.sort();
    out.into_iter()
        .map(|(jid, name)| {
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", jid)
                .with_opt_attr("name", name.as_deref())
        })
        .collect()
}
