//! Presence (RFC 6121 §3-4): subscriptions, probes, broadcasts, directed presence.
//!
//! Every account is local (no federation yet), so the "contact's server" of the RFC is
//! this server too: a subscription stanza is processed for the sender (outbound, RFC 6121
//! Appendix A.x.1) and then for the recipient (inbound, A.x.2) in one step, under the
//! roster locks of both accounts. The transitions themselves are in [`super::subscription`].
//!
//! Presence flows from a *publisher* to a *subscriber* when the subscriber's item for the
//! publisher has `to`/`both` (and the publisher's has `from`/`both`). Whenever a
//! subscriber's `to` appears, the publisher's available resources send it their presence
//! (the probe answer of RFC 6121 §3.1.6); whenever it disappears, they send unavailable.
//!
//! Presence is only delivered to available resources (those that sent initial presence),
//! except directed presence to a full JID.

use std::collections::HashSet;
use std::sync::Arc;

use super::addressing::{Target, classify, local_account};
use super::subscription::{self, Kind as SubKind, State};
use super::{blocking, offline, reply, roster};
use crate::router::SessionEntry;
use crate::server::Server;
use crate::stanza::{self, Condition};
use crate::storage::{Account, Roster, RosterItem, StorageResult};
use crate::xml::{Element, ns, parser};

/// A presence stanza from a bound client.
pub async fn from_client(server: &Arc<Server>, entry: &Arc<SessionEntry>, presence: Element) {
    let ty = stanza::stanza_type(&presence).to_string();
    match ty.as_str() {
        "" if presence.attr("to").is_none() => available(server, entry, presence).await,
        "unavailable" if presence.attr("to").is_none() => {
            unavailable(server, entry, presence).await
        }
        "" | "unavailable" => directed(server, entry, presence).await,
        "probe" => probe(server, entry, &presence).await,
        "error" => {}
        other => match SubKind::parse(other) {
            Some(kind) => subscription_from_client(server, entry, kind, presence).await,
            None => reply(
                entry,
                stanza::error_reply(
                    &presence,
                    Condition::BadRequest,
                    Some("unknown presence type"),
                ),
            ),
        },
    }
}

/// The session went away: unavailable presence to everyone who saw it available.
pub async fn session_ended(server: &Arc<Server>, entry: &Arc<SessionEntry>) {
    let (was_available, directed) = entry.update_presence(|p| {
        p.priority = 0;
        (p.last.take().is_some(), std::mem::take(&mut p.directed))
    });
    if !was_available {
        return;
    }
    let presence = Element::new("presence", ns::CLIENT)
        .with_attr("type", "unavailable")
        .with_attr("from", entry.full_jid.clone());
    let roster = roster::load_roster(server, &entry.account).await;
    let sent = broadcast(server, entry, &roster, &presence, false).await;
    to_directed(server, entry, &directed, &presence, &sent).await;
}

/// After an unblock: the user's current presence goes to the unblocked contacts that are
/// subscribed to it.
pub async fn resend_presence_to(server: &Arc<Server>, account: &Account, jids: &[String]) {
    let mut done = HashSet::new();
    for j in jids {
        let Some(contact) = local_account(server, account, j) else {
            continue;
        };
        if contact == *account || !done.insert(contact.clone()) {
            continue;
        }
        send_presence(server, account, &contact).await;
    }
}

// ---------------------------------------------------------------------------------------
// Broadcasts (RFC 6121 §4.2, §4.5)

fn priority_of(presence: &Element) -> i8 {
    presence
        .child_text("priority", ns::CLIENT)
        .and_then(|t| t.trim().parse::<i64>().ok())
        .map(|p| p.clamp(i8::MIN as i64, i8::MAX as i64) as i8)
        .unwrap_or(0)
}

fn available_sessions(server: &Server, account: &Account) -> Vec<Arc<SessionEntry>> {
    server
        .router
        .resources(account)
        .into_iter()
        .filter(|s| s.is_available())
        .collect()
}

/// True if either side blocked the other (XEP-0191): no presence flows between them.
async fn blocked_either(server: &Arc<Server>, entry: &SessionEntry, other: &Account) -> bool {
    if *other == entry.account {
        return false;
    }
    blocking::blocks_outbound(server, entry, other).await
        || blocking::is_blocked(server, other, &entry.full_jid).await
}

fn addressed(presence: &Element, to: &str) -> Element {
    let mut p = presence.clone();
    p.set_attr("to", to);
    p
}

/// Sends a session's broadcast presence to the available sessions of its subscribers and
/// to the user's other available resources (and to itself when `include_self`). Returns
/// the full JIDs it reached.
async fn broadcast(
    server: &Arc<Server>,
    entry: &Arc<SessionEntry>,
    roster: &Roster,
    presence: &Element,
    include_self: bool,
) -> HashSet<String> {
    let mut sent = HashSet::new();
    for item in roster.items.iter().filter(|i| i.subscription.has_from()) {
        let Some(contact) = local_account(server, &entry.account, &item.jid) else {
            continue;
        };
        if contact == entry.account || blocked_either(server, entry, &contact).await {
            continue;
        }
        for s in available_sessions(server, &contact) {
            if s.send(addressed(presence, &s.full_jid)) {
                sent.insert(s.full_jid.clone());
            }
        }
    }
    for s in server.router.resources(&entry.account) {
        let target = if s.id == entry.id {
            include_self
        } else {
            s.is_available()
        };
        if target && s.send(addressed(presence, &s.full_jid)) {
            sent.insert(s.full_jid.clone());
        }
    }
    sent
}

/// Initial or updated available presence (RFC 6121 §4.2, §4.4).
async fn available(server: &Arc<Server>, entry: &Arc<SessionEntry>, presence: Element) {
    let priority = priority_of(&presence);
    let initial = entry.update_presence(|p| {
        let initial = p.last.is_none();
        p.last = Some(presence.clone());
        p.priority = priority;
        initial
    });
    let roster = roster::load_roster(server, &entry.account).await;
    if initial {
        // Probes, answered locally: the presence of every available resource of the
        // contacts the user is subscribed to, and of the user's own other resources.
        for item in roster.items.iter().filter(|i| i.subscription.has_to()) {
            let Some(contact) = local_account(server, &entry.account, &item.jid) else {
                continue;
            };
            if contact == entry.account || blocked_either(server, entry, &contact).await {
                continue;
            }
            for s in available_sessions(server, &contact) {
                if let Some(last) = s.presence().last {
                    entry.send(addressed(&last, &entry.full_jid));
                }
            }
        }
        for s in available_sessions(server, &entry.account) {
            if s.id != entry.id
                && let Some(last) = s.presence().last
            {
                entry.send(addressed(&last, &entry.full_jid));
            }
        }
    }
    broadcast(server, entry, &roster, &presence, true).await;
    if initial {
        // Subscription requests received while the user was offline (RFC 6121 §3.1.3).
        for item in roster.items.iter().filter(|i| i.pending_in) {
            entry.send(pending_request(server, item, &entry.account));
        }
        offline::deliver(server, entry);
    }
}

/// The stored subscription request of a pending-in item (or a plain one if it cannot be
/// read back).
fn pending_request(server: &Server, item: &RosterItem, account: &Account) -> Element {
    item.pending_in_stanza
        .as_deref()
        .and_then(|s| parser::parse_element(s.as_bytes(), ns::CLIENT, server.parser_limits()).ok())
        .unwrap_or_else(|| {
            Element::new("presence", ns::CLIENT)
                .with_attr("type", "subscribe")
                .with_attr("from", item.jid.clone())
                .with_attr("to", account.to_string())
        })
}

/// Broadcast unavailable presence from the client (RFC 6121 §4.5).
async fn unavailable(server: &Arc<Server>, entry: &Arc<SessionEntry>, presence: Element) {
    let (was_available, directed) = entry.update_presence(|p| {
        p.priority = 0;
        (p.last.take().is_some(), std::mem::take(&mut p.directed))
    });
    if !was_available {
        return;
    }
    let roster = roster::load_roster(server, &entry.account).await;
    let sent = broadcast(server, entry, &roster, &presence, true).await;
    to_directed(server, entry, &directed, &presence, &sent).await;
}

/// Sends `presence` to the targets of earlier directed presence not reached already.
async fn to_directed(
    server: &Arc<Server>,
    entry: &Arc<SessionEntry>,
    directed: &[String],
    presence: &Element,
    sent: &HashSet<String>,
) {
    for to in directed {
        let sessions = match classify(server, &entry.account, Some(to)) {
            Target::Full(acc, res) => server.router.resource(&acc, &res).into_iter().collect(),
            Target::Bare(acc) => available_sessions(server, &acc),
            Target::Hosted(h) => {
                h.deliver(server.clone(), addressed(presence, to)).await;
                continue;
            }
            _ => continue,
        };
        if let Some(first) = sessions.first()
            && blocked_either(server, entry, &first.account).await
        {
            continue;
        }
        for s in sessions {
            if !sent.contains(&s.full_jid) {
                s.send(addressed(presence, to));
            }
        }
    }
}

/// Directed presence (RFC 6121 §4.6): to a full JID's session, or to every available
/// resource of a bare JID. Targets that are not subscribers are remembered so they get
/// unavailable presence when the session goes offline.
async fn directed(server: &Arc<Server>, entry: &Arc<SessionEntry>, presence: Element) {
    let Some(to) = presence.attr("to").map(str::to_string) else {
        return;
    };
    let (account, sessions) = match classify(server, &entry.account, Some(&to)) {
        Target::Full(acc, res) => {
            let s: Vec<_> = server.router.resource(&acc, &res).into_iter().collect();
            (acc, s)
        }
        Target::Bare(acc) => {
            let s = available_sessions(server, &acc);
            (acc, s)
        }
        Target::Hosted(h) => {
            // A hosted entity (a MUC room, a component) sees directed presence, and gets
            // unavailable presence when the session ends (RFC 6121 §4.6.3).
            let unavailable = stanza::stanza_type(&presence) == "unavailable";
            h.deliver(server.clone(), presence).await;
            if unavailable {
                entry.update_presence(|p| p.directed.retain(|j| *j != to));
            } else {
                entry.update_presence(|p| {
                    if !p.directed.contains(&to) {
                        p.directed.push(to);
                    }
                });
            }
            return;
        }
        // Presence to the server itself or to domains not served here is dropped.
        _ => return,
    };
    if blocked_either(server, entry, &account).await {
        return;
    }
    for s in sessions {
        s.send(presence.clone());
    }
    if account == entry.account {
        return;
    }
    if stanza::stanza_type(&presence) == "unavailable" {
        entry.update_presence(|p| p.directed.retain(|j| *j != to));
    } else if entry.is_available() {
        let subscriber = roster::load_item(server, &entry.account, &account.to_string())
            .await
            .ok()
            .flatten()
            .is_some_and(|i| i.subscription.has_from());
        if !subscriber {
            entry.update_presence(|p| {
                if !p.directed.contains(&to) {
                    p.directed.push(to);
                }
            });
        }
    }
}

/// A probe sent by a client: answered with the target's current presence if the user is
/// subscribed to it (or it is the user's own account), else ignored.
async fn probe(server: &Arc<Server>, entry: &Arc<SessionEntry>, presence: &Element) {
    let (account, resource) = match classify(server, &entry.account, presence.attr("to")) {
        Target::Full(acc, res) => (acc, Some(res)),
        Target::Bare(acc) => (acc, None),
        _ => return,
    };
    if account != entry.account {
        let subscribed = roster::load_item(server, &entry.account, &account.to_string())
            .await
            .ok()
            .flatten()
            .is_some_and(|i| i.subscription.has_to());
        if !subscribed || blocked_either(server, entry, &account).await {
            return;
        }
    }
    for s in available_sessions(server, &account) {
        if resource.as_ref().is_some_and(|r| *r != s.resource) {
            continue;
        }
        if let Some(last) = s.presence().last {
            entry.send(addressed(&last, &entry.full_jid));
        }
    }
}

/// The publisher's available resources send their current presence to the subscriber's
/// available sessions, if the publisher's roster says the subscriber may see it.
async fn send_presence(server: &Arc<Server>, publisher: &Account, subscriber: &Account) {
    let allowed = roster::load_item(server, publisher, &subscriber.to_string())
        .await
        .ok()
        .flatten()
        .is_some_and(|i| i.subscription.has_from());
    if !allowed {
        return;
    }
    let targets = available_sessions(server, subscriber);
    if targets.is_empty() {
        return;
    }
    for p in available_sessions(server, publisher) {
        let Some(last) = p.presence().last else {
            continue;
        };
        if blocked_either(server, &p, subscriber).await {
            continue;
        }
        for s in &targets {
            s.send(addressed(&last, &s.full_jid));
        }
    }
}

/// The publisher's available resources send unavailable presence to the subscriber's
/// available sessions (the subscription was cancelled).
pub(crate) async fn send_unavailable(
    server: &Arc<Server>,
    publisher: &Account,
    subscriber: &Account,
) {
    let targets = available_sessions(server, subscriber);
    for p in available_sessions(server, publisher) {
        for s in &targets {
            let u = Element::new("presence", ns::CLIENT)
                .with_attr("type", "unavailable")
                .with_attr("from", p.full_jid.clone())
                .with_attr("to", s.full_jid.clone());
            s.send(u);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Subscriptions (RFC 6121 §3)

async fn subscription_from_client(
    server: &Arc<Server>,
    entry: &Arc<SessionEntry>,
    kind: SubKind,
    mut presence: Element,
) {
    let contact = match classify(server, &entry.account, presence.attr("to")) {
        Target::Bare(acc) | Target::Full(acc, _) => acc,
        Target::Remote(domain) => {
            if kind == SubKind::Subscribe {
                let text = format!("{domain} is not served here");
                reply(
                    entry,
                    stanza::error_reply(&presence, Condition::RemoteServerNotFound, Some(&text)),
                );
            }
            return;
        }
        Target::OwnAccount => {
            return reply(
                entry,
                stanza::error_reply(&presence, Condition::BadRequest, Some("no 'to' address")),
            );
        }
        Target::Server(_) => return,
        Target::Hosted(h) => {
            // RFC 6121 §3.1.2: subscription stanzas go from the bare JID.
            presence.set_attr("from", entry.account.to_string());
            return h.deliver(server.clone(), presence).await;
        }
    };
    if contact == entry.account {
        // Users are implicitly subscribed to themselves.
        return;
    }
    if matches!(kind, SubKind::Subscribe | SubKind::Subscribed)
        && blocking::blocks_outbound(server, entry, &contact).await
    {
        return reply(entry, blocking::blocked_error(&presence));
    }
    // RFC 6121 §3.1.2: subscription stanzas go from bare JID to bare JID.
    presence.set_attr("from", entry.account.to_string());
    presence.set_attr("to", contact.to_string());
    let _guards = roster::lock_accounts(&[&entry.account, &contact]).await;
    if let Err(e) = outbound(server, &entry.account, &contact, kind, presence).await {
        tracing::error!(jid = %entry.account, contact = %contact, error = %e, "subscription processing failed");
    }
}

/// The user's side (Appendix A.x.1), then the contact's. Roster locks of both are held.
async fn outbound(
    server: &Arc<Server>,
    user: &Account,
    contact: &Account,
    kind: SubKind,
    stanza: Element,
) -> StorageResult<()> {
    let contact_jid = contact.to_string();
    let before = roster::load_item(server, user, &contact_jid).await?;
    let mut item = before.clone().unwrap_or_else(|| RosterItem {
        jid: contact_jid,
        ..Default::default()
    });
    let r = subscription::outbound(State::of(&item), kind);
    r.state.apply_to(&mut item);
    if !item.pending_in {
        item.pending_in_stanza = None;
    }
    if matches!(kind, SubKind::Subscribe | SubKind::Subscribed) && before.as_ref() != Some(&item) {
        // The user asked for or granted a subscription: the contact is now in the roster.
        roster::mark_in_roster(&mut item);
    }
    let had_to = before.as_ref().is_some_and(|i| i.subscription.has_to());
    roster::save(server, user, before.as_ref(), item.clone()).await?;
    if r.route {
        route_inbound(server, user, contact, kind, stanza).await;
    }
    if had_to && !item.subscription.has_to() {
        send_unavailable(server, contact, user).await;
    }
    Ok(())
}

/// Processes a subscription stanza from `from` for the local account `to` (Appendix
/// A.x.2), including the automatic `subscribed` answer. Roster locks of both are held.
pub(crate) async fn route_inbound(
    server: &Arc<Server>,
    from: &Account,
    to: &Account,
    kind: SubKind,
    stanza: Element,
) {
    let blocked = blocking::is_blocked(server, to, &from.to_string()).await;
    if blocked && matches!(kind, SubKind::Subscribe | SubKind::Subscribed) {
        return;
    }
    if kind == SubKind::Subscribe && !super::message::account_exists(server, to).await {
        // No such user: the request is dropped (the sender's request stays pending).
        return;
    }
    match apply_inbound(server, from, to, kind, &stanza, !blocked).await {
        Ok(true) => {
            let answer = Element::new("presence", ns::CLIENT)
                .with_attr("type", "subscribed")
                .with_attr("from", to.to_string())
                .with_attr("to", from.to_string());
            if let Err(e) =
                apply_inbound(server, to, from, SubKind::Subscribed, &answer, true).await
            {
                tracing::error!(jid = %from, contact = %to, error = %e, "subscription processing failed");
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(jid = %to, contact = %from, error = %e, "subscription processing failed")
        }
    }
}

/// Applies an inbound subscription stanza to `to`'s item for `from`; returns true if the
/// server must answer `subscribed` on `to`'s behalf.
async fn apply_inbound(
    server: &Arc<Server>,
    from: &Account,
    to: &Account,
    kind: SubKind,
    stanza: &Element,
    deliver: bool,
) -> StorageResult<bool> {
    let from_jid = from.to_string();
    let before = roster::load_item(server, to, &from_jid).await?;
    let mut item = before.clone().unwrap_or_else(|| RosterItem {
        jid: from_jid,
        ..Default::default()
    });
    let r = subscription::inbound(State::of(&item), kind);
    r.state.apply_to(&mut item);
    if kind == SubKind::Subscribe && r.deliver {
        item.pending_in_stanza = Some(stanza.to_string_in(ns::CLIENT));
    }
    if !item.pending_in {
        item.pending_in_stanza = None;
    }
    let had_to = before.as_ref().is_some_and(|i| i.subscription.has_to());
    roster::save(server, to, before.as_ref(), item.clone()).await?;
    if r.deliver && deliver {
        for s in available_sessions(server, to) {
            s.send(stanza.clone());
        }
    }
    match (had_to, item.subscription.has_to()) {
        (false, true) => send_presence(server, from, to).await,
        (true, false) => send_unavailable(server, from, to).await,
        _ => {}
    }
    Ok(r.auto_subscribed)
}

#[cfg(test)]
mod tests;
