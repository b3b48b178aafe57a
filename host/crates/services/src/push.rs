//! XEP-0357 Push Notifications: a client registers an app server (its JID, a node and a
//! publish-options form, usually the device token); when a message with a body, an
//! encrypted message or a call proposal arrives while none of the account's sessions is
//! connected (all gone, or resumable but detached), the server publishes a summary to
//! each registered app server: the number of messages since the user was last online, the
//! last sender, whether it is a call, and the body only if the tenant allows
//! (`[tenants.NAME.push] include_body`). An app server that answers with errors (or not
//! at all) `max_errors` times in a row is disabled for that registration (XEP-0357 §8).
//!
//! App servers are reached without federation: a component or service of a tenant the
//! user's tenant may reach, or a session's full JID.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use heliograph_core::Core;
use heliograph_core::pipeline::requests;
use serde::{Deserialize, Serialize};

use crate::hooks::{
    Address, Feature, IqType, MessageContext, MessageStage, Registrar, SessionEvent,
};
use crate::stanza::{self, Condition};
use crate::storage::{self, Account};
use crate::xml::{Element, ns};

/// The feature name.
pub const FEATURE: &str = "push";
/// Where registrations are kept ([`crate::storage::AccountDataStore`] kind).
const KIND: &str = "push";
/// How long an app server has to answer a publish.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Registrations an account may have.
const MAX_REGISTRATIONS: usize = 20;
/// The summary form's type.
const SUMMARY: &str = "urn:xmpp:push:summary";
const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// One app server registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub jid: String,
    pub node: String,
    /// The publish-options form fields (var, value), sent back with every publish.
    pub options: Vec<(String, String)>,
    /// Publishes that failed in a row.
    #[serde(default)]
    pub errors: u32,
}

/// The `push` feature.
#[derive(Default)]
pub struct Push {
    /// Messages notified since each account was last online.
    pending: DashMap<Account, u32>,
    /// Serializes changes to one account's registrations.
    locks: DashMap<Account, Arc<tokio::sync::Mutex<()>>>,
}

impl Feature for Push {
    fn name(&self) -> &'static str {
        FEATURE
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        let me = self.clone();
        r.iq(IqType::Set, ns::PUSH, &[Address::Own], move |req| {
            let me = me.clone();
            crate::boxed(async move {
                let account = req.account.clone()?;
                let reply = match req.payload().map(|p| (p.name(), parse(p))) {
                    Some(("enable", Some(reg))) => me.enable(&req.core, &account, reg).await,
                    Some(("disable", _)) => {
                        let p = req.payload()?;
                        let jid = p.attr("jid").unwrap_or_default().to_string();
                        let node = p.attr("node").map(str::to_string);
                        me.disable(&req.core, &account, &jid, node.as_deref()).await
                    }
                    _ => Err(Condition::BadRequest),
                };
                match reply {
                    Ok(()) => Some(stanza::iq_result(&req.iq)),
                    Err(c) => stanza::error_reply(&req.iq, c, None),
                }
            })
        });
        let me = self.clone();
        r.on_session(SessionEvent::Bound, move |_, session| {
            me.pending.remove(&session.account);
            crate::boxed(async {})
        });
        let me = self.clone();
        r.message(MessageStage::Received, move |ctx, msg| {
            me.on_received(ctx, msg)
        });
        r.disco_feature(Address::Account, ns::PUSH);
    }
}

impl Push {
    fn lock(&self, account: &Account) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.entry(account.clone()).or_default().clone()
    }

    async fn enable(
        &self,
        core: &Arc<Core>,
        account: &Account,
        reg: Registration,
    ) -> Result<(), Condition> {
        let lock = self.lock(account);
        let _held = lock.lock().await;
        let mut regs = load(core, account)
            .await
            .map_err(|_| Condition::InternalServerError)?;
        regs.retain(|r| !(r.jid == reg.jid && r.node == reg.node));
        if regs.len() >= MAX_REGISTRATIONS {
            return Err(Condition::ResourceConstraint);
        }
        regs.push(reg);
        save(core, account, &regs)
            .await
            .map_err(|_| Condition::InternalServerError)
    }

    async fn disable(
        &self,
        core: &Arc<Core>,
        account: &Account,
        jid: &str,
        node: Option<&str>,
    ) -> Result<(), Condition> {
        if jid::Jid::new(jid).is_err() {
            return Err(Condition::BadRequest);
        }
        let lock = self.lock(account);
        let _held = lock.lock().await;
        let mut regs = load(core, account)
            .await
            .map_err(|_| Condition::InternalServerError)?;
        regs.retain(|r| !(r.jid == jid && node.is_none_or(|n| n == r.node)));
        save(core, account, &regs)
            .await
            .map_err(|_| Condition::InternalServerError)
    }

    /// A message reached the account: notify when nobody is connected to read it.
    fn on_received(self: &Arc<Self>, ctx: &MessageContext<'_>, msg: &Element) {
        if ctx.targets.iter().any(|s| !s.is_detached()) || !worth_a_push(msg) {
            return;
        }
        if ctx
            .core
            .router
            .resources(ctx.account)
            .iter()
            .any(|s| !s.is_detached())
        {
            return;
        }
        let count = {
            let mut n = self.pending.entry(ctx.account.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let summary = Summary {
            count,
            sender: msg.attr("from").unwrap_or_default().to_string(),
            call: msg.has_child("propose", ns::JINGLE_MESSAGE),
            body: msg.child_text("body", ns::CLIENT),
        };
        let (me, core, account) = (self.clone(), ctx.core.clone(), ctx.account.clone());
        tokio::spawn(async move { me.notify(&core, &account, summary).await });
    }

    /// Publishes to every registration; counts failures, disables after too many.
    async fn notify(&self, core: &Arc<Core>, account: &Account, summary: Summary) {
        let Ok(regs) = load(core, account).await else {
            return;
        };
        if regs.is_empty() {
            return;
        }
        let settings = core
            .tenant_of(&account.domain)
            .map(|t| t.spec.push)
            .unwrap_or_default();
        let mut outcomes = Vec::new();
        for reg in &regs {
            let iq = publish(account, reg, &summary, settings.include_body);
            let outcome = requests::send(core, iq, ANSWER_TIMEOUT).await;
            match &outcome {
                Ok(_) => heliograph_metrics::push("published"),
                Err(e) => {
                    heliograph_metrics::push("failed");
                    tracing::info!(jid = %account, app_server = %reg.jid, error = %e, "push failed");
                }
            }
            outcomes.push((reg.jid.clone(), reg.node.clone(), outcome.is_ok()));
        }
        // Record the outcomes on the registrations as they are now.
        let lock = self.lock(account);
        let _held = lock.lock().await;
        let Ok(mut regs) = load(core, account).await else {
            return;
        };
        let before = regs.clone();
        for (jid, node, ok) in outcomes {
            if let Some(r) = regs.iter_mut().find(|r| r.jid == jid && r.node == node) {
                r.errors = if ok { 0 } else { r.errors + 1 };
            }
        }
        regs.retain(|r| {
            let keep = r.errors < settings.max_errors.max(1);
            if !keep {
                heliograph_metrics::push("disabled");
                tracing::warn!(jid = %account, app_server = %r.jid, errors = r.errors, "push registration disabled after repeated errors");
            }
            keep
        });
        if regs != before {
            let _ = save(core, account, &regs).await;
        }
    }
}

/// What a notification tells.
struct Summary {
    count: u32,
    sender: String,
    call: bool,
    body: Option<String>,
}

/// Messages that deserve waking a phone: with a body, encrypted, or a call proposal.
fn worth_a_push(msg: &Element) -> bool {
    matches!(stanza::stanza_type(msg), "chat" | "normal")
        && (msg.has_child("body", ns::CLIENT)
            || msg.has_child("encrypted", "eu.siacs.conversations.axolotl")
            || msg.has_child("propose", ns::JINGLE_MESSAGE))
}

/// Reads `<enable jid='' node=''><x type='submit'>publish-options</x></enable>`.
fn parse(el: &Element) -> Option<Registration> {
    let jid = jid::Jid::new(el.attr("jid")?).ok()?.to_string();
    let node = el.attr("node").filter(|n| !n.is_empty())?.to_string();
    let mut options = Vec::new();
    if let Some(x) = el.child("x", ns::DATA_FORMS) {
        for f in x.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
            let var = f.attr("var")?.to_string();
            if var == "FORM_TYPE" {
                continue;
            }
            let value = f.child_text("value", ns::DATA_FORMS).unwrap_or_default();
            options.push((var, value));
        }
    }
    Some(Registration {
        jid,
        node,
        options,
        errors: 0,
    })
}

/// The pubsub publish of a summary (XEP-0357 §7).
fn publish(account: &Account, reg: &Registration, s: &Summary, include_body: bool) -> Element {
    let field = |var: &str, value: String| {
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
    };
    let mut form = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "submit")
        .with_child(field("FORM_TYPE", SUMMARY.into()))
        .with_child(field("message-count", s.count.to_string()))
        .with_child(field("last-message-sender", s.sender.clone()));
    if s.call {
        form.push_child(field("last-message-call", "true".into()));
    }
    if include_body && let Some(b) = &s.body {
        form.push_child(field("last-message-body", b.clone()));
    }
    let item = Element::new("item", ns::PUBSUB)
        .with_child(Element::new("notification", ns::PUSH).with_child(form));
    let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(
        Element::new("publish", ns::PUBSUB)
            .with_attr("node", reg.node.clone())
            .with_child(item),
    );
    if !reg.options.is_empty() {
        let mut x = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "submit")
            .with_child(field("FORM_TYPE", PUBLISH_OPTIONS.into()));
        for (var, value) in &reg.options {
            x.push_child(field(var, value.clone()));
        }
        pubsub.push_child(Element::new("publish-options", ns::PUBSUB).with_child(x));
    }
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("from", account.to_string())
        .with_attr("to", reg.jid.clone())
        .with_child(pubsub)
}

async fn load(core: &Arc<Core>, account: &Account) -> Result<Vec<Registration>, ()> {
    let store = core.storage.account_data.clone();
    let acc = account.clone();
    match storage::blocking(move || store.get(&acc, KIND)).await {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
            tracing::error!(jid = %account, error = %e, "unreadable push registrations");
        }),
        Err(e) => {
            tracing::error!(jid = %account, error = %e, "reading push registrations failed");
            Err(())
        }
    }
}

async fn save(core: &Arc<Core>, account: &Account, regs: &[Registration]) -> Result<(), ()> {
    let bytes = if regs.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(regs).map_err(drop)?
    };
    let store = core.storage.account_data.clone();
    let acc = account.clone();
    storage::blocking(move || store.put(&acc, KIND, &bytes))
        .await
        .map_err(
            |e| tracing::error!(jid = %account, error = %e, "storing push registrations failed"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_read_with_its_publish_options() {
        let el = Element::new("enable", ns::PUSH)
            .with_attr("jid", "push.example")
            .with_attr("node", "n1")
            .with_child(
                Element::new("x", ns::DATA_FORMS)
                    .with_child(
                        Element::new("field", ns::DATA_FORMS)
                            .with_attr("var", "FORM_TYPE")
                            .with_child(
                                Element::new("value", ns::DATA_FORMS).with_text(PUBLISH_OPTIONS),
                            ),
                    )
                    .with_child(
                        Element::new("field", ns::DATA_FORMS)
                            .with_attr("var", "secret")
                            .with_child(Element::new("value", ns::DATA_FORMS).with_text("tok")),
                    ),
            );
        let reg = parse(&el).unwrap();
        assert_eq!(reg.options, [("secret".to_string(), "tok".to_string())]);
        assert!(
            parse(&Element::new("enable", ns::PUSH).with_attr("jid", "push.example")).is_none()
        );
    }

    #[test]
    fn the_body_is_published_only_when_allowed() {
        let reg = Registration {
            jid: "push.example".into(),
            node: "n1".into(),
            options: vec![],
            errors: 0,
        };
        let s = Summary {
            count: 2,
            sender: "bob@x/r".into(),
            call: true,
            body: Some("secret text".into()),
        };
        let a = Account::new("alice", "x");
        assert!(
            !publish(&a, &reg, &s, false)
                .to_string_in(ns::CLIENT)
                .contains("secret text")
        );
        assert!(
            publish(&a, &reg, &s, true)
                .to_string_in(ns::CLIENT)
                .contains("secret text")
        );
        assert!(
            publish(&a, &reg, &s, false)
                .to_string_in(ns::CLIENT)
                .contains("last-message-call")
        );
    }
}
