//! XEP-0012 Last Activity, answered by the server: asked at a tenant domain, the
//! server's uptime; asked at a user's bare JID, the seconds since that user's last
//! session ended (0 while one is available), but only to someone the user's presence is
//! shared with (a `from`/`both` subscription, or the user itself): anyone else gets
//! `forbidden`. A query to a full JID is the client's to answer and is routed to it.
//!
//! The time of the last logout is recorded when an account's last session ends.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use heliograph_core::Core;

use crate::hooks::{Address, Feature, IqRequest, IqType, Registrar, SessionEvent};
use crate::router::SessionEntry;
use crate::stanza::{self, Condition};
use crate::storage::profiles;
use crate::storage::{self, Account};
use crate::xml::Element;

/// The last activity namespace.
pub const LAST: &str = "jabber:iq:last";

/// The `last` feature; it knows when the server started.
pub struct LastActivity {
    started: Instant,
}

impl Default for LastActivity {
    fn default() -> Self {
        LastActivity {
            started: Instant::now(),
        }
    }
}

impl Feature for LastActivity {
    fn name(&self) -> &'static str {
        "last"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        let me = self.clone();
        r.iq(IqType::Get, LAST, &[Address::Host], move |req| {
            let uptime = me.started.elapsed().as_secs();
            crate::boxed(async move { Some(answer(&req.iq, uptime, None)) })
        });
        r.iq(
            IqType::Get,
            LAST,
            &[Address::Own, Address::Account],
            |req| crate::boxed(async move { of_account(req).await }),
        );
        r.on_session(SessionEvent::Closed, |core, entry| {
            crate::boxed(async move { record_logout(&core, &entry).await })
        });
        r.disco_feature(Address::Host, LAST);
    }
}

fn answer(iq: &Element, seconds: u64, status: Option<&str>) -> Element {
    let mut q = Element::new("query", LAST).with_attr("seconds", seconds.to_string());
    if let Some(s) = status.filter(|s| !s.is_empty()) {
        q.push_text(s);
    }
    stanza::iq_result_with(iq, q)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn of_account(req: IqRequest) -> Option<Element> {
    let target = req.account.clone()?;
    let requester = req.origin.session().map(|s| s.account.clone());
    if requester.as_ref() != Some(&target) && !shares_presence(&req.core, &target, requester).await
    {
        return stanza::error_reply(
            &req.iq,
            Condition::Forbidden,
            Some("not subscribed to this user's presence"),
        );
    }
    if req
        .core
        .router
        .resources(&target)
        .iter()
        .any(|s| s.is_available())
    {
        return Some(answer(&req.iq, 0, None));
    }
    let store = req.core.storage.account_data.clone();
    let t = target.clone();
    match storage::blocking(move || profiles::last_logout(store.as_ref(), &t)).await {
        Ok(Some(last)) => Some(answer(
            &req.iq,
            now_secs().saturating_sub(last.at_secs),
            Some(&last.status),
        )),
        // Never logged out since the server kept track: nothing to tell.
        Ok(None) => stanza::error_reply(&req.iq, Condition::ItemNotFound, None),
        Err(e) => {
            tracing::warn!(account = %target, error = %e, "reading the last logout");
            stanza::error_reply(&req.iq, Condition::InternalServerError, None)
        }
    }
}

/// True when `target` shares its presence with `requester` (its roster item for the
/// requester has `from` or `both`).
async fn shares_presence(core: &Arc<Core>, target: &Account, requester: Option<Account>) -> bool {
    let Some(requester) = requester else {
        return false;
    };
    let store = core.storage.rosters.clone();
    let (t, jid) = (target.clone(), requester.to_string());
    match storage::blocking(move || store.item(&t, &jid)).await {
        Ok(item) => item.is_some_and(|i| i.subscription.has_from()),
        Err(e) => {
            tracing::warn!(account = %target, error = %e, "reading a roster item");
            false
        }
    }
}

/// The account's last session is ending: remember when.
async fn record_logout(core: &Arc<Core>, entry: &Arc<SessionEntry>) {
    let others = core
        .router
        .resources(&entry.account)
        .iter()
        .any(|s| s.id != entry.id);
    if others {
        return;
    }
    let status = entry
        .presence()
        .last
        .and_then(|p| p.child_text("status", crate::xml::ns::CLIENT))
        .unwrap_or_default();
    let store = core.storage.account_data.clone();
    let account = entry.account.clone();
    let at = now_secs();
    // Written in the background: the session stays in the routing table while the
    // close handlers run, so a slow disk must not hold it there (what is sent to it
    // meanwhile would miss offline storage's and push's hooks).
    tokio::spawn(async move {
        let a = account.clone();
        let result =
            storage::blocking(move || profiles::put_last_logout(store.as_ref(), &a, at, &status))
                .await;
        if let Err(e) = result {
            tracing::warn!(%account, error = %e, "recording the last logout");
        }
    });
}
