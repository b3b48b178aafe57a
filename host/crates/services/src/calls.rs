//! Call signaling policy: with `[tenants.NAME.calls] require_relationship = true`, XEP-0353
//! call messages and XEP-0166 Jingle requests reach a user of the tenant only from
//! someone who shares a roster subscription with them (in either direction) or a room
//! of the tenant's MUC service; others get `forbidden`. Calls relayed by a room (MUC
//! private messages) and by components pass: a room relays only between its occupants.
//!
//! Delivery itself is the pipeline's: call messages to a bare JID ring every available
//! device, carbons copy them, the archive and offline storage keep them.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use heliograph_core::Core;

use crate::hooks::{Feature, Filter, FilterCheck, Registrar, Verdict};
use crate::muc::MucServices;
use crate::storage::{self, Account, Subscription};
use crate::xml::{Element, ns};

/// The `calls` feature: the call policy filter.
pub struct Calls {
    /// The tenant's rooms, to find a room both users are in.
    pub muc: Arc<MucServices>,
}

impl Feature for Calls {
    fn name(&self) -> &'static str {
        "calls"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        r.filter(self.clone());
    }
}

/// A call message (any XEP-0353 element) or a Jingle request.
pub fn is_call_signaling(stanza: &Element) -> bool {
    match stanza.name() {
        "message" => stanza.children().any(|c| c.ns() == ns::JINGLE_MESSAGE),
        "iq" => stanza.children().any(|c| c.is("jingle", ns::JINGLE)),
        _ => false,
    }
}

impl Filter for Calls {
    fn check_now(&self, core: &Core, c: &FilterCheck<'_>) -> Option<Verdict> {
        let Some(stanza) = c.stanza else {
            return Some(Verdict::Pass);
        };
        // Only users are held to the policy: rooms relay between occupants, components
        // are the tenant's own services.
        let Some(sender) = c.sender else {
            return Some(Verdict::Pass);
        };
        if sender == c.to || !is_call_signaling(stanza) {
            return Some(Verdict::Pass);
        }
        let Some(tenant) = core.tenants.by_domain(&c.to.domain) else {
            return Some(Verdict::Pass);
        };
        if !tenant.spec.calls.require_relationship {
            return Some(Verdict::Pass);
        }
        // Storage (rosters) and the rooms are needed.
        None
    }

    fn check<'a>(&'a self, core: &'a Arc<Core>, c: &'a FilterCheck<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            if let Some(v) = self.check_now(core, c) {
                return v;
            }
            let Some(sender) = c.sender else {
                return Verdict::Pass;
            };
            if self.related(core, sender, c.to).await {
                Verdict::Pass
            } else {
                Verdict::Forbidden
            }
        })
    }
}

impl Calls {
    /// Whether two users share a subscription (either direction, as either roster
    /// records it) or a room of the callee's tenant.
    async fn related(&self, core: &Arc<Core>, caller: &Account, callee: &Account) -> bool {
        if subscribed(core, callee, caller).await || subscribed(core, caller, callee).await {
            return true;
        }
        let Some(tenant) = core.tenants.by_domain(&callee.domain) else {
            return false;
        };
        self.muc
            .share_a_room(core, &tenant.name, &caller.to_string(), &callee.to_string())
            .await
    }
}

/// Whether `owner`'s roster has `contact` with a subscription in either direction.
async fn subscribed(core: &Arc<Core>, owner: &Account, contact: &Account) -> bool {
    let store = core.storage.rosters.clone();
    let (owner, contact) = (owner.clone(), contact.to_string());
    match storage::blocking(move || store.item(&owner, &contact)).await {
        Ok(Some(item)) => item.subscription != Subscription::None,
        Ok(None) => false,
        Err(e) => {
            // Fail closed: the policy is on, and nothing shows the two are related.
            tracing::error!(error = %e, "reading a roster for the call policy failed");
            false
        }
    }
}
