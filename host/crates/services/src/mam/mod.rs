//! XEP-0313 Message Archive Management (`urn:xmpp:mam:2` with the `#extended` features)
//! for users' 1:1 messages, with XEP-0359 stanza ids and XEP-0424 retraction. Rooms'
//! archives are the MUC module's (it uses [`query`] the same way).
//!
//! - The message hooks stamp a `<stanza-id/>` on every archivable message reaching a
//!   user (removing any that claims to be from the user's archive) and queue it for the
//!   archive, as the sender's copy in the sender's archive; the [`writer`] writes in
//!   batches off the routing path and applies the preferences. A message stored offline
//!   carries the same stanza-id as its archived copy, since the hook runs first.
//! - Queries ([`query`]) wait for what was queued before them, then page the archive.
//! - Preferences ([`prefs`]): always / never / roster, with per-JID lists; a tenant sets
//!   the default (`[tenants.NAME.archive] default`).
//! - A retraction by the sender replaces the retracted message in both archives with a
//!   tombstone; nobody can retract a message they did not send.
//! - [`retention`] purges messages older than the tenant's `retention_days`.

pub mod prefs;
pub mod query;
pub mod retention;
pub mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use dashmap::DashMap;

use crate::hooks::{Address, Feature, IqType, MessageContext, MessageStage, Registrar};
use crate::stanza::{self, Condition};
use crate::storage::{Account, ArchiveId, ArchivePrefs, ArchivedMessage};
use crate::xml::{Element, ns};

/// The feature name tenants switch archiving by.
pub const FEATURE: &str = "mam";

/// The `mam` feature: the archive writer and the preferences cache.
pub struct Mam {
    writer: writer::Writer,
    /// Preferences of accounts seen recently (absent: not loaded yet).
    prefs: Arc<DashMap<Account, Arc<ArchivePrefs>>>,
}

impl Default for Mam {
    fn default() -> Self {
        let prefs: Arc<DashMap<Account, Arc<ArchivePrefs>>> = Arc::default();
        Mam {
            writer: writer::Writer::new(prefs.clone()),
            prefs,
        }
    }
}

impl Feature for Mam {
    fn name(&self) -> &'static str {
        FEATURE
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            let me = self.clone();
            r.iq(ty, ns::MAM, &[Address::Own], move |req| {
                let me = me.clone();
                crate::boxed(async move { me.on_iq(req).await })
            });
        }
        // Its copies queue in the core's backlog (see `writer`).
        r.writes_behind();
        let me = self.clone();
        r.message(MessageStage::Sent, move |ctx, msg| me.on_sent(ctx, msg));
        let me = self.clone();
        r.message(MessageStage::Received, move |ctx, msg| {
            me.on_received(ctx, msg)
        });
        for address in [Address::Account, Address::Host] {
            r.disco_feature(address, ns::MAM);
            r.disco_feature(address, ns::MAM_EXTENDED);
            r.disco_feature(address, ns::SID);
        }
    }
}

impl Mam {
    async fn on_iq(&self, req: crate::hooks::IqRequest) -> Option<Element> {
        let session = req.origin.session()?.clone();
        let payload = req.payload()?;
        let set = stanza::stanza_type(&req.iq) == "set";
        match (payload.name(), set) {
            ("query", true) => {
                // Everything this session's account sent or got before the query is in it.
                self.writer.barrier(&req.core).await;
                let owner = session.account.clone();
                let max_page = req.tenant.spec.archive.max_page as usize;
                let to = session.full_jid.clone();
                let result =
                    query::run(&req.core, &owner, &owner.to_string(), &req.iq, max_page).await;
                match result {
                    Ok(answer) => {
                        for m in answer.messages {
                            session.send(m.with_attr("to", to.clone()));
                        }
                        Some(answer.fin)
                    }
                    Err(cond) => stanza::error_reply(&req.iq, cond, None),
                }
            }
            ("query", false) => Some(stanza::iq_result_with(&req.iq, query::form())),
            ("prefs", _) => prefs::handle(&req.core, &self.prefs, &session.account, &req.iq).await,
            _ => stanza::error_reply(&req.iq, Condition::BadRequest, None),
        }
    }

    /// A client sent a message: the sender's copy, or a retraction of its own message.
    fn on_sent(&self, ctx: &MessageContext<'_>, msg: &mut Element) {
        // `to` was normalized when the client's stanza was read.
        let Some((with, resource)) = msg.attr("to").map(split_jid) else {
            return;
        };
        // Notes to self are archived once, as received.
        if !archivable(msg) || is_own(ctx.account, &with) {
            return;
        }
        strip_stanza_ids(msg, &ctx.account.to_string());
        if let Some(id) = retracted_id(msg) {
            self.writer
                .retract(ctx.core, ctx.account.clone(), with.clone(), id, true, msg);
        }
        if self.surely_not(ctx.account, &with) {
            return;
        }
        let entry = archived(ArchiveId::next(), with, resource, true, msg);
        self.writer.append(ctx.core, ctx.account.clone(), entry);
    }

    /// A message reaches a user: stamp its stanza-id and archive it.
    fn on_received(&self, ctx: &MessageContext<'_>, msg: &mut Element) {
        let own = ctx.account.to_string();
        // Whatever the sender claims about this archive is not to be believed.
        strip_stanza_ids(msg, &own);
        if !archivable(msg) {
            return;
        }
        // `from` was stamped by the server (a session's full JID, a hosted entity's JID).
        let Some((with, resource)) = msg.attr("from").map(split_jid) else {
            return;
        };
        if let Some(id) = retracted_id(msg) {
            self.writer
                .retract(ctx.core, ctx.account.clone(), with.clone(), id, false, msg);
        }
        if self.surely_not(ctx.account, &with) {
            return;
        }
        let id = ArchiveId::next();
        msg.push_child(
            Element::new("stanza-id", ns::SID)
                .with_attr("id", id.to_string())
                .with_attr("by", own),
        );
        let entry = archived(id, with, resource, false, msg);
        self.writer.append(ctx.core, ctx.account.clone(), entry);
    }

    /// Whether the owner's cached preferences already say "not archived" (without the
    /// roster: the writer decides the rest).
    fn surely_not(&self, owner: &Account, with: &str) -> bool {
        self.prefs
            .get(owner)
            .is_some_and(|p| prefs::decide(&p, with, None) == Some(false))
    }

    /// An account was deleted: what the writer still held for it is written and then
    /// removed with the rest (storage deleted the archive with the account, but a batch
    /// in flight could bring a message back), and its cached preferences go.
    pub async fn forget_account(&self, core: &Arc<heliograph_core::Core>, account: &Account) {
        self.writer.barrier(core).await;
        self.prefs.remove(account);
        let store = core.storage.archive.clone();
        let a = account.clone();
        if let Err(e) = crate::storage::blocking(move || store.delete_owner(&a)).await {
            tracing::error!(jid = %account, error = %e, "deleting the archive failed");
        }
    }

    /// The writer, for the retention task and tests.
    pub fn writer(&self) -> &writer::Writer {
        &self.writer
    }

    /// The preferences cache the writer consults.
    pub fn prefs_cache(&self) -> &Arc<DashMap<Account, Arc<ArchivePrefs>>> {
        &self.prefs
    }
}

/// Messages a user archive keeps (XEP-0313 §5.1.1 and XEP-0334): chat and normal
/// messages with a body, call messages (XEP-0353: missed calls show in the history),
/// encrypted ones, retractions and whatever carries a `<store/>` hint; never those with a
/// `<no-store/>` or `<no-permanent-store/>` hint, nor groupchat, headline or error ones.
pub fn archivable(msg: &Element) -> bool {
    if !matches!(stanza::stanza_type(msg), "chat" | "normal") {
        return false;
    }
    if msg.has_child("no-store", ns::HINTS) || msg.has_child("no-permanent-store", ns::HINTS) {
        return false;
    }
    // Carbons and archive results are copies of messages archived already.
    if msg.has_child("sent", ns::CARBONS)
        || msg.has_child("received", ns::CARBONS)
        || msg.has_child("result", ns::MAM)
    {
        return false;
    }
    msg.has_child("body", ns::CLIENT)
        || msg.has_child("store", ns::HINTS)
        || msg.has_child("retract", ns::RETRACT)
        || msg.has_child("encrypted", "eu.siacs.conversations.axolotl")
        || msg.children().any(|c| c.ns() == ns::JINGLE_MESSAGE)
}

/// A normalized JID's bare part and resource.
fn split_jid(jid: &str) -> (String, Option<String>) {
    match jid.split_once('/') {
        Some((bare, res)) => (bare.to_string(), Some(res.to_string())),
        None => (jid.to_string(), None),
    }
}

/// Whether `bare` is the account itself.
fn is_own(account: &Account, bare: &str) -> bool {
    bare.split_once('@')
        .is_some_and(|(l, d)| l == account.local && d == account.domain)
}

/// Removes `<stanza-id/>` elements claiming to be from `by`'s archive.
pub fn strip_stanza_ids(msg: &mut Element, by: &str) {
    if msg
        .children()
        .any(|c| c.is("stanza-id", ns::SID) && c.attr("by") == Some(by))
    {
        msg.nodes_mut().retain(|n| match n {
            crate::xml::Node::Element(c) => {
                !(c.is("stanza-id", ns::SID) && c.attr("by") == Some(by))
            }
            _ => true,
        });
    }
}

/// The id a XEP-0424 retraction names.
fn retracted_id(msg: &Element) -> Option<String> {
    msg.child("retract", ns::RETRACT)?
        .attr("id")
        .map(str::to_string)
}

/// The archive entry of a message.
fn archived(
    id: ArchiveId,
    with: String,
    with_resource: Option<String>,
    outgoing: bool,
    msg: &Element,
) -> ArchivedMessage {
    ArchivedMessage {
        id,
        with,
        with_resource,
        outgoing,
        origin_id: msg
            .child("origin-id", ns::SID)
            .and_then(|o| o.attr("id"))
            .map(str::to_string),
        stanza: msg.to_string_in(ns::CLIENT),
    }
}

/// What replaces a retracted message in the archive (XEP-0424 §6 tombstone).
pub fn tombstone(retraction: &Element) -> Element {
    let mut t = Element::new("message", ns::CLIENT);
    for a in ["from", "to", "type"] {
        if let Some(v) = retraction.attr(a) {
            t.set_attr(a, v);
        }
    }
    t.with_child(
        Element::new("retracted", ns::RETRACT)
            .with_attr("stamp", crate::time::xep82(std::time::SystemTime::now())),
    )
}
