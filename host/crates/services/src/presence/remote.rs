//! Presence with contacts on other servers (RFC 6121 §3-4 across federation): the
//! "contact's server" of the RFC is then another server, so each side of a subscription
//! is processed where its account lives. A local user's subscription stanza for a remote
//! contact changes the user's roster and goes out over s2s; a remote user's stanza for a
//! local account arrives here ([`from_remote`]) and changes the local roster only.
//! Broadcasts reach remote subscribers by their bare JID (their server fans out), probes
//! go to remote contacts when a local user comes online and remote probes are answered
//! with the presence of the local user's available resources.

use std::sync::Arc;

use heliograph_core::Core;
use heliograph_core::federation;

use super::subscription::Kind as SubKind;
use super::{available_sessions, route_inbound};
use crate::roster;
use crate::router::Route;
use crate::stanza;
use crate::storage::Account;
use crate::xml::{Element, ns};

/// The account of a bare or full JID on a domain not served here, as seen by a user of
/// `user_domain`.
pub(crate) fn remote_account(core: &Core, user_domain: &str, jid: &str) -> Option<Account> {
    match crate::router::classify(core, user_domain, Some(jid)) {
        Route::RemoteServer(_) => account_of(jid),
        _ => None,
    }
}

/// True if `contact` lives on another server, as seen by the local `user`.
pub(crate) fn is_remote(core: &Core, user: &Account, contact: &Account) -> bool {
    let jid = contact.to_string();
    matches!(
        crate::router::classify(core, &user.domain, Some(&jid)),
        Route::RemoteServer(_)
    )
}

/// The bare account part of a JID string (`None` for a domain-only JID).
fn account_of(jid: &str) -> Option<Account> {
    let j = jid::Jid::new(jid).ok()?;
    let local = j.node()?.to_string();
    Some(Account::new(local, j.domain().to_string()))
}

/// Hands a stanza from the local domain `local` to the server of `remote` (the
/// federation bounces what it cannot deliver; a tenant that does not federate with it
/// drops it, with a log line).
pub(crate) fn send(core: &Arc<Core>, local: &str, remote: &Account, stanza: Element) {
    if let Err((refusal, _)) = federation::forward(core, local, &remote.domain, stanza) {
        tracing::debug!(%local, remote = %remote.domain, %refusal, "presence for another server not sent");
    }
}

/// A presence stanza of the given type from `from` to `to`.
fn presence(ty: Option<&str>, from: &str, to: &str) -> Element {
    let mut p = Element::new("presence", ns::CLIENT)
        .with_attr("from", from.to_string())
        .with_attr("to", to.to_string());
    if let Some(ty) = ty {
        p.set_attr("type", ty);
    }
    p
}

/// `publisher`'s available resources send their current presence to the remote
/// `subscriber` (who just got, or asked again for, a subscription to it).
pub(crate) fn send_presence(core: &Arc<Core>, publisher: &Account, subscriber: &Account) {
    let to = subscriber.to_string();
    for s in available_sessions(core, publisher) {
        if let Some(mut last) = s.presence().last {
            last.set_attr("to", to.clone());
            send(core, &publisher.domain, subscriber, last);
        }
    }
}

/// `publisher`'s available resources tell the remote `subscriber` they are unavailable
/// (its subscription was cancelled).
pub(crate) fn send_unavailable(core: &Arc<Core>, publisher: &Account, subscriber: &Account) {
    let to = subscriber.to_string();
    for s in available_sessions(core, publisher) {
        let u = presence(Some("unavailable"), &s.full_jid, &to);
        send(core, &publisher.domain, subscriber, u);
    }
}

/// Probes the remote contact for `user` (RFC 6121 §4.3.1: from the user's bare JID).
pub(crate) fn probe(core: &Arc<Core>, user: &Account, contact: &Account) {
    let p = presence(Some("probe"), &user.to_string(), &contact.to_string());
    send(core, &user.domain, contact, p);
}

/// RFC 6121 §2.5.2: removing a remote contact from the roster cancels the subscriptions
/// both ways (and pending requests) at the contact's server.
pub(crate) fn cancel_on_remove(
    core: &Arc<Core>,
    user: &Account,
    item: &crate::storage::RosterItem,
) {
    let Some(contact) = remote_account(core, &user.domain, &item.jid) else {
        return;
    };
    let (from, to) = (user.to_string(), contact.to_string());
    if item.subscription.has_to() || item.ask {
        send(
            core,
            &user.domain,
            &contact,
            presence(Some("unsubscribe"), &from, &to),
        );
    }
    if item.subscription.has_from() || item.pending_in {
        send_unavailable(core, user, &contact);
        send(
            core,
            &user.domain,
            &contact,
            presence(Some("unsubscribed"), &from, &to),
        );
    }
}

/// Presence another server sent to a local address.
pub async fn from_remote(core: &Arc<Core>, presence: Element) {
    let (Some(from), Some(to)) = (presence.attr("from"), presence.attr("to")) else {
        return;
    };
    let Some(sender) = account_of(from) else {
        // From a remote domain itself (a component, a room service): as addressed.
        return deliver(core, presence).await;
    };
    let to_account = match crate::router::classify_from_remote(core, Some(to)) {
        Route::Bare(a) | Route::Full(a, _) => a,
        _ => return deliver(core, presence).await,
    };
    let ty = stanza::stanza_type(&presence).to_string();
    match ty.as_str() {
        "probe" => answer_probe(core, &sender, from, &to_account).await,
        other => match SubKind::parse(other) {
            Some(kind) => {
                // RFC 6121 §3.1.2: subscription stanzas go from bare JID to bare JID.
                let mut p = presence;
                p.set_attr("from", sender.to_string());
                p.set_attr("to", to_account.to_string());
                let _guard = roster::lock_accounts(&[&to_account]).await;
                route_inbound(core, &sender, &to_account, kind, p).await;
            }
            None => deliver(core, presence).await,
        },
    }
}

/// Presence delivered as addressed (broadcasts, directed presence, errors).
async fn deliver(core: &Arc<Core>, presence: Element) {
    let origin = heliograph_core::pipeline::Origin::Remote(
        jid::Jid::new(presence.attr("from").unwrap_or_default())
            .map(|j| j.domain().to_string())
            .unwrap_or_default(),
    );
    heliograph_core::pipeline::presence::deliver(core, &origin, presence).await;
}

/// RFC 6121 §4.3.2: a remote contact probes a local user. If the user's roster lets the
/// contact see the user's presence, each available resource answers with its current
/// presence, or the bare JID answers unavailable when none is online; otherwise the
/// probe gets no answer (nothing is revealed).
async fn answer_probe(core: &Arc<Core>, sender: &Account, from: &str, user: &Account) {
    let allowed = roster::load_item(core, user, &sender.to_string())
        .await
        .ok()
        .flatten()
        .is_some_and(|i| i.subscription.has_from());
    if !allowed {
        return;
    }
    let mut answered = false;
    for s in available_sessions(core, user) {
        if let Some(mut last) = s.presence().last {
            last.set_attr("to", from);
            send(core, &user.domain, sender, last);
            answered = true;
        }
    }
    if !answered {
        let u = presence(Some("unavailable"), &user.to_string(), from);
        send(core, &user.domain, sender, u);
    }
}
