//! Presence: what a client session sends goes to the presence feature (broadcasts,
//! subscriptions, probes, directed presence: RFC 6121 §3-4), and so does what another
//! server sends to a local address (its users' subscriptions, probes and broadcasts);
//! presence from anyone else
//! (a MUC room, a component) is delivered: to a bare JID, every available session of
//! the account; to a full JID, that session if it is there.

use std::sync::Arc;

use super::{Origin, bounce, filter, lookup};
use crate::context::Core;
use crate::hooks::Verdict;
use crate::router::Route;
use crate::stanza::Condition;
use crate::xml::Element;

/// Routes a presence stanza from `origin`.
pub async fn route(core: &Arc<Core>, origin: &Origin, presence: Element) {
    if let Origin::Session(entry) = origin
        && let Some(tenant) = core.tenant_of(&entry.account.domain)
        && let Some(handler) = core.hooks.client_presence(&tenant).cloned()
    {
        return handler(core.clone(), entry.clone(), presence).await;
    }
    if let Origin::Remote(_) = origin
        && let Some(domain) = super::jid_domain(presence.attr("to"))
        && let Some(tenant) = core.tenant_of(&domain)
    {
        core.hooks.remote_presence_seen(&tenant, core, &presence);
        if let Some(handler) = core.hooks.remote_presence(&tenant).cloned() {
            return handler(core.clone(), presence).await;
        }
    }
    deliver(core, origin, presence).await;
}

/// Delivers presence as addressed (no roster logic).
pub async fn deliver(core: &Arc<Core>, origin: &Origin, presence: Element) {
    match lookup(core, origin, &presence) {
        Route::Hosted(h) => h.deliver(core.clone(), presence).await,
        Route::Bare(account) => {
            if filter(core, origin, &presence, &account).await != Verdict::Pass {
                return;
            }
            for s in core.router.resources(&account) {
                if s.is_available() {
                    s.send(presence.clone());
                }
            }
        }
        Route::Full(account, resource) => {
            if filter(core, origin, &presence, &account).await != Verdict::Pass {
                return;
            }
            if let Some(s) = core.router.resource(&account, &resource) {
                s.send(presence);
            }
        }
        Route::Server(_) | Route::RemoteNode { .. } => {}
        // A client's broadcast when no presence feature serves its tenant: nobody to tell.
        Route::OwnAccount if origin.session().is_some() => {}
        Route::OwnAccount => {
            bounce(
                core,
                origin,
                &presence,
                Condition::BadRequest,
                Some("no 'to' address"),
            )
            .await
        }
        Route::RemoteServer(domain) => super::to_remote(core, origin, &domain, presence).await,
    }
}
