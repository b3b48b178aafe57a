//! XEP-0191 Blocking Command: the block list iq protocol, pushes to the user's sessions,
//! and the checks routing uses. Block lists are cached in memory (loaded on first use,
//! replaced on change) so the per-stanza check does not touch storage.

use std::sync::Arc;

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use heliograph_core::Core;

use crate::hooks::{Address, Feature, Filter, FilterCheck, IqType, Registrar, Verdict};
use crate::router::SessionEntry;
use crate::stanza::{self, Condition};
use crate::storage::{self, Account};
use crate::xml::{Element, ns};
use heliograph_xmpp::AccountHasher;

/// The `blocking` feature, with its in-memory copy of block lists keyed by account.
#[derive(Default)]
pub struct Blocking {
    lists: DashMap<Account, Arc<Vec<String>>, AccountHasher>,
}

impl Feature for Blocking {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            let me = self.clone();
            r.iq(ty, ns::BLOCKING, &[Address::Own], move |req| {
                let me = me.clone();
                crate::boxed(async move {
                    let entry = req.origin.session()?.clone();
                    me.handle_iq(&req.core, &entry, &req.iq).await
                })
            });
        }
        r.filter(self.clone());
        r.disco_feature(Address::Host, ns::BLOCKING);
    }
}

/// Blocking in both directions: the recipient's list against the sender's address, and
/// the sending user's own list against the recipient.
impl Filter for Blocking {
    fn check_now(&self, _core: &Core, c: &FilterCheck<'_>) -> Option<Verdict> {
        let recipient = self.lists.get(c.to)?.clone();
        if let Some(sender) = c.sender {
            let list = self.lists.get(sender)?.clone();
            if !list.is_empty() {
                let to = c.to.to_string();
                if list.iter().any(|item| item_matches(item, &to)) {
                    return Some(Verdict::RefusedBySender);
                }
            }
        }
        if recipient.iter().any(|item| item_matches(item, c.from)) {
            return Some(Verdict::RefusedByRecipient);
        }
        Some(Verdict::Pass)
    }

    fn check<'a>(&'a self, core: &'a Arc<Core>, c: &'a FilterCheck<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            if let Some(sender) = c.sender
                && !self.list(core, sender).await.is_empty()
                && self.blocks(core, sender, &c.to.to_string()).await
            {
                return Verdict::RefusedBySender;
            }
            if self.blocks(core, c.to, c.from).await {
                return Verdict::RefusedByRecipient;
            }
            Verdict::Pass
        })
    }
}

impl Blocking {
    /// Forgets an account's list (it is reloaded on next use).
    pub fn invalidate(&self, account: &Account) {
        self.lists.remove(account);
    }

    async fn list(&self, core: &Arc<Core>, account: &Account) -> Arc<Vec<String>> {
        if let Some(l) = self.lists.get(account) {
            return l.clone();
        }
        let store = core.storage.blocks.clone();
        let acc = account.clone();
        let loaded = storage::blocking(move || store.blocked(&acc))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(jid = %account, error = %e, "reading block list failed");
                Vec::new()
            });
        let loaded = Arc::new(loaded);
        self.lists.insert(account.clone(), loaded.clone());
        loaded
    }

    /// True if `account` has blocked `jid` (a full or bare JID, or a domain).
    pub async fn blocks(&self, core: &Arc<Core>, account: &Account, jid: &str) -> bool {
        let l = self.list(core, account).await;
        l.iter().any(|item| item_matches(item, jid))
    }
}

/// XEP-0191 §3.3 matching (as for privacy lists): an item blocks a JID if it equals the
/// JID's full form, bare form, domain or domain/resource.
pub fn item_matches(item: &str, jid: &str) -> bool {
    let Ok(j) = jid::Jid::new(jid) else {
        return item == jid;
    };
    let domain = j.domain().as_str();
    if item == j.as_str() || item == domain {
        return true;
    }
    if j.node().is_some() && item == j.to_bare().as_str() {
        return true;
    }
    match j.resource() {
        Some(res) => item == format!("{domain}/{}", res.as_str()),
        None => false,
    }
}

/// The error for a stanza to someone the sender blocked (XEP-0191 §3.5).
pub use crate::pipeline::blocked_error;

fn item_jids(payload: &Element) -> Result<Vec<String>, Condition> {
    let mut out = Vec::new();
    for item in payload.children().filter(|c| c.is("item", ns::BLOCKING)) {
        let raw = item.attr("jid").ok_or(Condition::BadRequest)?;
        let j = jid::Jid::new(raw).map_err(|_| Condition::JidMalformed)?;
        out.push(j.to_string());
    }
    Ok(out)
}

fn items(name: &str, jids: &[String]) -> Element {
    let mut el = Element::new(name, ns::BLOCKING);
    for j in jids {
        el.push_child(Element::new("item", ns::BLOCKING).with_attr("jid", j.clone()));
    }
    el
}

impl Blocking {
    /// Handles blocklist get, block and unblock.
    async fn handle_iq(
        &self,
        core: &Arc<Core>,
        entry: &Arc<SessionEntry>,
        iq: &Element,
    ) -> Option<Element> {
        let payload = iq.first_child()?;
        let account = entry.account.clone();
        match (stanza::stanza_type(iq), payload.name()) {
            ("get", "blocklist") => {
                let l = self.list(core, &account).await;
                Some(stanza::iq_result_with(iq, items("blocklist", &l)))
            }
            ("set", "block") => {
                let jids = match item_jids(payload) {
                    Ok(j) if !j.is_empty() => j,
                    Ok(_) => {
                        return stanza::error_reply(
                            iq,
                            Condition::BadRequest,
                            Some("block needs at least one item"),
                        );
                    }
                    Err(c) => return stanza::error_reply(iq, c, None),
                };
                let store = core.storage.blocks.clone();
                let acc = account.clone();
                let to_store = jids.clone();
                if let Err(e) = storage::blocking(move || store.block(&acc, &to_store)).await {
                    tracing::error!(jid = %account, error = %e, "storing block list failed");
                    return stanza::error_reply(iq, Condition::InternalServerError, None);
                }
                self.invalidate(&account);
                send_unavailable_to_blocked(core, entry, &jids);
                push_to_sessions(core, &account, items("block", &jids));
                Some(stanza::iq_result(iq))
            }
            ("set", "unblock") => {
                let jids = match item_jids(payload) {
                    Ok(j) => j,
                    Err(c) => return stanza::error_reply(iq, c, None),
                };
                let store = core.storage.blocks.clone();
                let acc = account.clone();
                let to_remove = jids.clone();
                let removed = storage::blocking(move || {
                    if to_remove.is_empty() {
                        store.unblock_all(&acc)
                    } else {
                        store.unblock(&acc, &to_remove)
                    }
                })
                .await;
                let removed = match removed {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(jid = %account, error = %e, "storing block list failed");
                        return stanza::error_reply(iq, Condition::InternalServerError, None);
                    }
                };
                self.invalidate(&account);
                crate::presence::resend_presence_to(core, &account, &removed).await;
                push_to_sessions(core, &account, items("unblock", &jids));
                Some(stanza::iq_result(iq))
            }
            _ => stanza::error_reply(iq, Condition::BadRequest, None),
        }
    }
}

/// Block pushes go to every session of the account (XEP-0191 §3.3).
fn push_to_sessions(core: &Core, account: &Account, payload: Element) {
    for s in core.router.resources(account) {
        let push = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push-{}", rand::random::<u32>()))
            .with_attr("to", s.full_jid.clone())
            .with_child(payload.clone());
        s.send(push);
    }
}

/// Blocked contacts stop seeing the user online: each available resource sends them
/// unavailable presence.
fn send_unavailable_to_blocked(core: &Core, entry: &SessionEntry, jids: &[String]) {
    let mine: Vec<_> = core
        .router
        .resources(&entry.account)
        .into_iter()
        .filter(|s| s.is_available())
        .collect();
    for j in jids {
        let Some(contact) = crate::router::local_account(core, &entry.account, j) else {
            continue;
        };
        for target in core.router.resources(&contact) {
            if !item_matches(j, &target.full_jid) {
                continue;
            }
            for me in &mine {
                let p = Element::new("presence", ns::CLIENT)
                    .with_attr("type", "unavailable")
                    .with_attr("from", me.full_jid.clone())
                    .with_attr("to", target.full_jid.clone());
                target.send(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::item_matches;

    #[test]
    fn matching_rules() {
        assert!(item_matches("a@x", "a@x/r"));
        assert!(item_matches("a@x/r", "a@x/r"));
        assert!(!item_matches("a@x/r", "a@x/other"));
        assert!(item_matches("x", "a@x/r"));
        assert!(item_matches("x/r", "x/r"));
        assert!(!item_matches("b@x", "a@x/r"));
        assert!(!item_matches("a@y", "a@x"));
    }
}
