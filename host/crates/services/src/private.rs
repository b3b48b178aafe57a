//! XEP-0049 Private XML Storage: a user keeps XML under namespaces of its own choosing,
//! readable and writable only by the user's own sessions, within the tenant's limits
//! (`profiles.max_private_bytes`, `profiles.max_private_namespaces`; over them:
//! `not-acceptable` and nothing changes). Reserved namespaces (`jabber:*`,
//! `http://jabber.org/*`, `vcard-temp`) are refused with `not-acceptable`, as XEP-0049
//! §2.2 allows. A set may carry several elements of one namespace: they are kept
//! together and returned together. Where the tenant runs PEP, `storage:bookmarks` is
//! the XEP-0402 node seen through private storage (`#compat`:
//! [`crate::pep::private_bookmarks`]).

use std::sync::Arc;

use crate::hooks::{Address, Feature, IqRequest, IqType, Registrar};
use crate::pep::private_bookmarks::{self, CompatError};
use crate::stanza::{self, Condition};
use crate::storage::profiles::{self, PrivateLimits, ProfileError};
use crate::storage::{self, Account};
use crate::xml::{Element, parser};

/// The legacy bookmarks namespace (XEP-0048), bridged to XEP-0402 when PEP runs.
const BOOKMARKS: &str = crate::pep::bookmarks::LEGACY_NODE;

/// The private storage namespace.
pub const PRIVATE: &str = "jabber:iq:private";

/// The `private` feature; it shares PEP's state for the bookmarks `#compat` bridge.
pub struct PrivateStorage {
    pub pep: Arc<crate::pep::Pep>,
}

impl Feature for PrivateStorage {
    fn name(&self) -> &'static str {
        "private"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            let pep = self.pep.clone();
            r.iq(ty, PRIVATE, &[Address::Own], move |req| {
                let pep = pep.clone();
                crate::boxed(async move { handle(&pep, req).await })
            });
            // Another user's storage: XEP-0049 prefers `forbidden`.
            r.iq(ty, PRIVATE, &[Address::Account], |req| {
                crate::boxed(async move {
                    stanza::error_reply(
                        &req.iq,
                        Condition::Forbidden,
                        Some("private storage belongs to its user alone"),
                    )
                })
            });
        }
    }
}

/// True for the namespaces XEP-0049 calls reserved.
pub fn is_reserved(namespace: &str) -> bool {
    namespace.is_empty()
        || namespace.starts_with("jabber:")
        || namespace.starts_with("http://jabber.org/")
        || namespace == "vcard-temp"
}

async fn handle(pep: &Arc<crate::pep::Pep>, req: IqRequest) -> Option<Element> {
    let account = req.account.clone()?;
    let Some(query) = req.payload().filter(|p| p.is("query", PRIVATE)) else {
        return stanza::error_reply(&req.iq, Condition::BadRequest, Some("no query"));
    };
    let children: Vec<&Element> = query.children().collect();
    let Some(first) = children.first() else {
        return stanza::error_reply(
            &req.iq,
            Condition::NotAcceptable,
            Some("private storage needs a child element in a namespace of its own"),
        );
    };
    if let Some(reserved) = children.iter().find(|c| is_reserved(c.ns())) {
        let text = format!("the namespace {:?} is reserved", reserved.ns());
        return stanza::error_reply(&req.iq, Condition::NotAcceptable, Some(&text));
    }
    if stanza::stanza_type(&req.iq) == "get" {
        if children.len() > 1 {
            return stanza::error_reply(
                &req.iq,
                Condition::BadRequest,
                Some("one namespace per get"),
            );
        }
        if first.is("storage", BOOKMARKS) && req.tenant.spec.feature_enabled("pep") {
            match private_bookmarks::legacy_view(&req.core, &account).await {
                Ok(Some(storage)) => {
                    let answer = Element::new("query", PRIVATE).with_child(storage);
                    return Some(stanza::iq_result_with(&req.iq, answer));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%account, error = %e, "reading the bookmarks node");
                    return stanza::error_reply(&req.iq, Condition::InternalServerError, None);
                }
            }
        }
        return get(&req, &account, first).await;
    }
    let (bookmarks, rest): (Vec<&Element>, Vec<&Element>) = children
        .iter()
        .copied()
        .partition(|c| c.is("storage", BOOKMARKS) && req.tenant.spec.feature_enabled("pep"));
    if let Some(storage) = bookmarks.last() {
        let publisher = req
            .origin
            .session()
            .map_or_else(|| account.to_string(), |s| s.full_jid.clone());
        let limits = req.tenant.spec.pep;
        match private_bookmarks::store_from_private(
            pep, &req.core, &account, &publisher, limits, storage,
        )
        .await
        {
            Ok(()) => {}
            Err(e @ (CompatError::TooMany { .. } | CompatError::TooLarge { .. })) => {
                return stanza::error_reply(
                    &req.iq,
                    Condition::NotAcceptable,
                    Some(&e.to_string()),
                );
            }
            Err(e) => {
                tracing::warn!(%account, error = %e, "storing private bookmarks");
                return stanza::error_reply(&req.iq, Condition::InternalServerError, None);
            }
        }
        if rest.is_empty() {
            return Some(stanza::iq_result(&req.iq));
        }
    }
    set(&req, &account, &rest).await
}

async fn get(req: &IqRequest, account: &Account, asked: &Element) -> Option<Element> {
    let store = req.core.storage.account_data.clone();
    let (a, ns) = (account.clone(), asked.ns().to_string());
    let stored = storage::blocking(move || profiles::private(store.as_ref(), &a, &ns)).await;
    let answer = match stored {
        Ok(None) => Element::new("query", PRIVATE).with_child(asked.clone()),
        Ok(Some(xml)) => {
            let limits = req.core.parser_limits_for(Some(&account.domain));
            match parser::parse_element(xml.as_bytes(), PRIVATE, limits) {
                Ok(q) => q,
                Err(e) => {
                    tracing::warn!(%account, error = %e, "stored private XML does not parse");
                    return stanza::error_reply(&req.iq, Condition::InternalServerError, None);
                }
            }
        }
        Err(e) => {
            tracing::warn!(%account, error = %e, "reading private XML");
            return stanza::error_reply(&req.iq, Condition::InternalServerError, None);
        }
    };
    Some(stanza::iq_result_with(&req.iq, answer))
}

async fn set(req: &IqRequest, account: &Account, children: &[&Element]) -> Option<Element> {
    // One `<query/>` per namespace, holding that namespace's elements in order.
    let mut by_ns: Vec<(String, Element)> = Vec::new();
    for c in children {
        match by_ns.iter_mut().find(|(ns, _)| ns == c.ns()) {
            Some((_, q)) => q.push_child((*c).clone()),
            None => by_ns.push((
                c.ns().to_string(),
                Element::new("query", PRIVATE).with_child((*c).clone()),
            )),
        }
    }
    let entries: Vec<(String, String)> = by_ns
        .into_iter()
        .map(|(ns, q)| (ns, q.to_string()))
        .collect();
    let settings = req.tenant.spec.profiles;
    let limits = PrivateLimits {
        max_bytes: settings.max_private_bytes,
        max_namespaces: settings.max_private_namespaces,
    };
    let store = req.core.storage.account_data.clone();
    let a = account.clone();
    let result =
        storage::blocking(move || profiles::put_private(store.as_ref(), &a, &entries, limits))
            .await;
    match result {
        Ok(()) => Some(stanza::iq_result(&req.iq)),
        Err(e @ (ProfileError::TooLarge { .. } | ProfileError::TooManyNamespaces { .. })) => {
            stanza::error_reply(&req.iq, Condition::NotAcceptable, Some(&e.to_string()))
        }
        Err(e) => {
            tracing::warn!(%account, error = %e, "storing private XML");
            stanza::error_reply(&req.iq, Condition::InternalServerError, None)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_namespaces() {
        for ns in [
            "jabber:iq:roster",
            "jabber:client",
            "http://jabber.org/protocol/muc",
            "vcard-temp",
            "",
        ] {
            assert!(super::is_reserved(ns), "{ns}");
        }
        for ns in ["storage:bookmarks", "exodus:prefs", "urn:example:x"] {
            assert!(!super::is_reserved(ns), "{ns}");
        }
    }
}
