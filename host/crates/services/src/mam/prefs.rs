//! XEP-0313 §6 archiving preferences: a default (always, never, roster) and JIDs always
//! or never archived, stored per account; a user who set none gets the tenant's default.

use std::sync::Arc;

use dashmap::DashMap;
use heliograph_core::Core;
use heliograph_tenants::archive_settings::DefaultArchiving;

use crate::stanza::{self, Condition};
use crate::storage::{self, Account, ArchiveDefault, ArchivePrefs};
use crate::xml::{Element, ns};

/// Whether a message with `with` is archived under `p`; `None` when that depends on the
/// roster and `in_roster` is not given.
pub fn decide(p: &ArchivePrefs, with: &str, in_roster: Option<&dyn Fn() -> bool>) -> Option<bool> {
    if p.never.iter().any(|j| j == with) {
        return Some(false);
    }
    if p.always.iter().any(|j| j == with) {
        return Some(true);
    }
    match p.default {
        ArchiveDefault::Always => Some(true),
        ArchiveDefault::Never => Some(false),
        ArchiveDefault::Roster => in_roster.map(|f| f()),
    }
}

/// The preferences of a tenant's users who set none.
pub fn tenant_default(d: DefaultArchiving) -> ArchivePrefs {
    ArchivePrefs {
        default: match d {
            DefaultArchiving::Always => ArchiveDefault::Always,
            DefaultArchiving::Roster => ArchiveDefault::Roster,
            DefaultArchiving::Never => ArchiveDefault::Never,
        },
        ..Default::default()
    }
}

/// The owner's preferences from the cache, else storage, else the tenant default
/// (blocking: the writer's thread calls it).
pub fn cached(
    core: &Core,
    cache: &DashMap<Account, Arc<ArchivePrefs>>,
    owner: &Account,
) -> Arc<ArchivePrefs> {
    if let Some(p) = cache.get(owner) {
        return p.clone();
    }
    let stored = core.storage.archive.prefs(owner).unwrap_or_else(|e| {
        tracing::error!(jid = %owner, error = %e, "reading archive preferences failed");
        None
    });
    let p = Arc::new(stored.unwrap_or_else(|| {
        let d = core
            .tenant_of(&owner.domain)
            .map(|t| t.spec.archive.default)
            .unwrap_or_default();
        tenant_default(d)
    }));
    cache.insert(owner.clone(), p.clone());
    p
}

/// Answers a `<prefs/>` get or set.
pub async fn handle(
    core: &Arc<Core>,
    cache: &Arc<DashMap<Account, Arc<ArchivePrefs>>>,
    owner: &Account,
    iq: &Element,
) -> Option<Element> {
    let set = stanza::stanza_type(iq) == "set";
    let current = {
        let (core2, cache2, owner2) = (core.clone(), cache.clone(), owner.clone());
        storage::blocking(move || cached(&core2, &cache2, &owner2)).await
    };
    if !set {
        return Some(stanza::iq_result_with(iq, to_element(&current)));
    }
    let Some(new) = iq.first_child().and_then(parse) else {
        return stanza::error_reply(iq, Condition::BadRequest, Some("malformed preferences"));
    };
    let store = core.storage.archive.clone();
    let (owner2, new2) = (owner.clone(), new.clone());
    match storage::blocking(move || store.set_prefs(&owner2, &new2)).await {
        Ok(()) => {
            let el = to_element(&new);
            cache.insert(owner.clone(), Arc::new(new));
            Some(stanza::iq_result_with(iq, el))
        }
        Err(e) => {
            tracing::error!(jid = %owner, error = %e, "storing archive preferences failed");
            stanza::error_reply(iq, Condition::InternalServerError, None)
        }
    }
}

/// Reads `<prefs default='...'><always><jid/>...</always><never>...</never></prefs>`.
fn parse(el: &Element) -> Option<ArchivePrefs> {
    let default = ArchiveDefault::parse(el.attr("default")?)?;
    let jids = |name: &str| -> Option<Vec<String>> {
        let Some(list) = el.child(name, ns::MAM) else {
            return Some(Vec::new());
        };
        list.children()
            .filter(|j| j.is("jid", ns::MAM))
            .map(|j| {
                jid::BareJid::new(j.text().trim())
                    .ok()
                    .map(|b| b.to_string())
            })
            .collect()
    };
    Some(ArchivePrefs {
        default,
        always: jids("always")?,
        never: jids("never")?,
    })
}

fn to_element(p: &ArchivePrefs) -> Element {
    let list = |name: &str, jids: &[String]| {
        jids.iter().fold(Element::new(name, ns::MAM), |l, j| {
            l.with_child(Element::new("jid", ns::MAM).with_text(j.clone()))
        })
    };
    Element::new("prefs", ns::MAM)
        .with_attr("default", p.default.as_str())
        .with_child(list("always", &p.always))
        .with_child(list("never", &p.never))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_win_over_the_default_and_roster_needs_the_roster() {
        let p = ArchivePrefs {
            default: ArchiveDefault::Roster,
            always: vec!["a@x".into()],
            never: vec!["n@x".into()],
        };
        assert_eq!(decide(&p, "a@x", None), Some(true));
        assert_eq!(decide(&p, "n@x", None), Some(false));
        assert_eq!(decide(&p, "c@x", None), None);
        assert_eq!(decide(&p, "c@x", Some(&|| true)), Some(true));
        assert_eq!(decide(&p, "c@x", Some(&|| false)), Some(false));
    }

    #[test]
    fn prefs_read_back_and_bad_ones_are_refused() {
        let p = ArchivePrefs {
            default: ArchiveDefault::Never,
            always: vec!["a@x".into()],
            never: vec![],
        };
        assert_eq!(parse(&to_element(&p)), Some(p));
        let bad = Element::new("prefs", ns::MAM).with_attr("default", "sometimes");
        assert_eq!(parse(&bad), None);
        let bad_jid = Element::new("prefs", ns::MAM)
            .with_attr("default", "always")
            .with_child(
                Element::new("never", ns::MAM)
                    .with_child(Element::new("jid", ns::MAM).with_text("not a jid@")),
            );
        assert_eq!(parse(&bad_jid), None);
    }
}
