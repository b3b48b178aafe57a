//! XEP-0280 Message Carbons: a user's other devices get a copy of what one device sends
//! (`<sent/>`) and of what reaches the account but not them (`<received/>`), for the
//! sessions that enabled it. Which messages are copied follows XEP-0280 §6: chat
//! messages, normal ones with a body or IM payloads (receipts, markers, chat states),
//! XEP-0353 call messages so every device rings and stops ringing, MUC private messages
//! only when marked as such; never groupchat, headline or error messages, nor anything
//! carrying `<private/>` or the XEP-0334 `<no-copy/>` hint.

use std::sync::Arc;

use dashmap::DashMap;

use crate::hooks::{
    Address, Feature, IqType, MessageContext, MessageStage, Registrar, SessionEvent,
};
use crate::router::{Route, SessionEntry};
use crate::stanza::{self, Condition};
use crate::storage::Account;
use crate::xml::{Element, ns};
use heliograph_xmpp::AccountHasher;

/// The `carbons` feature: which sessions of which account enabled carbons.
#[derive(Default)]
pub struct Carbons {
    /// Session ids with carbons enabled, by account (absent: none enabled, the common
    /// case the message hooks check first).
    enabled: DashMap<Account, Vec<u64>, AccountHasher>,
}

impl Feature for Carbons {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        let me = self.clone();
        r.iq(IqType::Set, ns::CARBONS, &[Address::Own], move |req| {
            let me = me.clone();
            crate::boxed(async move {
                let Some(session) = req.origin.session() else {
                    return stanza::error_reply(&req.iq, Condition::NotAllowed, None);
                };
                match req.payload().map(|p| p.name()) {
                    Some("enable") => me.set(session, true),
                    Some("disable") => me.set(session, false),
                    _ => return stanza::error_reply(&req.iq, Condition::BadRequest, None),
                }
                // The other cluster nodes copy to this session too.
                session.settings_changed();
                Some(stanza::iq_result(&req.iq))
            })
        });
        r.iq(IqType::Get, ns::CARBONS, &[Address::Own], |req| {
            crate::boxed(async move { stanza::error_reply(&req.iq, Condition::BadRequest, None) })
        });
        for event in [SessionEvent::Closed, SessionEvent::Moved] {
            let me = self.clone();
            r.on_session(event, move |_, session| {
                me.set(&session, false);
                crate::boxed(async {})
            });
        }
        // A session resumed on another cluster node keeps carbons on, and every node
        // knows which of the account's sessions on other nodes enabled carbons (the
        // registry carries the flag), so copies reach them from wherever the message is
        // handled.
        let (get, set) = (self.clone(), self.clone());
        r.carry_session_flag(
            "carbons",
            move |session| get.is_enabled(session),
            move |session, on| set.set(session, on),
        );
        let me = self.clone();
        r.message(MessageStage::Sent, move |ctx, msg| me.on_sent(ctx, msg));
        let me = self.clone();
        r.message(MessageStage::Received, move |ctx, msg| {
            me.on_received(ctx, msg)
        });
        r.disco_feature(Address::Host, ns::CARBONS);
    }
}

impl Carbons {
    /// Switches carbons for one session.
    pub fn set(&self, session: &SessionEntry, on: bool) {
        if on {
            let mut ids = self.enabled.entry(session.account.clone()).or_default();
            if !ids.contains(&session.id) {
                ids.push(session.id);
            }
            return;
        }
        self.enabled.remove_if_mut(&session.account, |_, ids| {
            ids.retain(|id| *id != session.id);
            ids.is_empty()
        });
    }

    /// Whether a session enabled carbons.
    pub fn is_enabled(&self, session: &SessionEntry) -> bool {
        self.enabled
            .get(&session.account)
            .is_some_and(|ids| ids.contains(&session.id))
    }

    /// The enabled sessions of an account that `keep` accepts.
    fn sessions(
        &self,
        ctx: &MessageContext<'_>,
        keep: impl Fn(&SessionEntry) -> bool,
    ) -> Vec<Arc<SessionEntry>> {
        let Some(ids) = self.enabled.get(ctx.account).map(|ids| ids.clone()) else {
            return Vec::new();
        };
        let mut sessions = ctx.core.router.resources(ctx.account);
        sessions.retain(|s| ids.contains(&s.id) && s.is_alive() && keep(s));
        sessions
    }

    /// A client sent a message: `<sent/>` copies to the sender's other enabled sessions.
    fn on_sent(&self, ctx: &MessageContext<'_>, msg: &Element) {
        if !self.enabled.contains_key(ctx.account) || !eligible(ctx, msg) {
            return;
        }
        let Some(sender) = ctx.session else { return };
        // A message to one's own full JID reaches that session anyway.
        let to = msg.attr("to").unwrap_or_default();
        let copies = self.sessions(ctx, |s| s.id != sender.id && s.full_jid != to);
        send_copies(ctx, "sent", msg, &copies);
    }

    /// A message reaches the account: `<received/>` copies to the enabled sessions it
    /// does not go to anyway.
    fn on_received(&self, ctx: &MessageContext<'_>, msg: &Element) {
        if ctx.targets.is_empty() || !self.enabled.contains_key(ctx.account) || !eligible(ctx, msg)
        {
            return;
        }
        let copies = self.sessions(ctx, |s| !ctx.targets.iter().any(|t| t.id == s.id));
        send_copies(ctx, "received", msg, &copies);
    }
}

/// XEP-0280 §6 eligibility.
fn eligible(ctx: &MessageContext<'_>, msg: &Element) -> bool {
    if msg.has_child("private", ns::CARBONS)
        || msg.has_child("no-copy", ns::HINTS)
        // A carbon (or a forged one) is never copied again.
        || msg.has_child("sent", ns::CARBONS)
        || msg.has_child("received", ns::CARBONS)
    {
        return false;
    }
    let calls = msg.children().any(|c| c.ns() == ns::JINGLE_MESSAGE);
    let pm_marked = msg.has_child("x", ns::MUC_USER);
    match stanza::stanza_type(msg) {
        "chat" => pm_marked || calls || !from_hosted(ctx, msg),
        "normal" => {
            calls
                || msg.has_child("body", ns::CLIENT)
                || msg
                    .children()
                    .any(|c| matches!(c.ns(), ns::RECEIPTS | ns::CHAT_MARKERS | ns::CHAT_STATES))
        }
        _ => false,
    }
}

/// A chat message from a hosted service (a MUC room occupant) that does not say it is a
/// private message: only the joined device can make sense of it (XEP-0280 §6).
fn from_hosted(ctx: &MessageContext<'_>, msg: &Element) -> bool {
    ctx.stage == MessageStage::Received
        && matches!(
            crate::router::classify(ctx.core, &ctx.account.domain, msg.attr("from")),
            Route::Hosted(_)
        )
}

/// Wraps `msg` in `<sent/>` or `<received/>` for each session.
fn send_copies(ctx: &MessageContext<'_>, kind: &str, msg: &Element, to: &[Arc<SessionEntry>]) {
    if to.is_empty() {
        return;
    }
    let bare = ctx.account.to_string();
    let forwarded = Element::new("forwarded", ns::FORWARD).with_child(msg.clone());
    let wrapper = Element::new(kind, ns::CARBONS).with_child(forwarded);
    for s in to {
        let copy = Element::new("message", ns::CLIENT)
            .with_attr("from", bare.clone())
            .with_attr("to", s.full_jid.clone())
            .with_attr("type", stanza::stanza_type(msg))
            .with_child(wrapper.clone());
        s.send(copy);
    }
}
