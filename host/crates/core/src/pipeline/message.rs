//! Messages (RFC 6121 §8.5): to a bare JID, the available resources with the highest
//! non-negative priority (every available non-negative one for XEP-0353 call messages,
//! so that each device rings), else the undeliverable hook (offline storage); to a full JID,
//! that session, else as if sent to the bare JID (chat, normal, headline) or an error
//! (groupchat); errors back to the sender for everything undeliverable.

use std::sync::Arc;

use super::{FORBIDDEN_TEXT, Origin, blocked_error, bounce, filter, lookup};
use crate::context::Core;
use crate::hooks::{FilterCheck, MessageContext, MessageStage, Stored, Verdict};
use crate::router::{NotQueued, Route, SessionEntry};
use crate::stanza::{self, Condition};
use crate::storage::Account;
use crate::xml::Element;

/// Routes a client's message at once when that needs no waiting — the recipient is a
/// local account with a session that takes it, and the filters decide from memory — and
/// hands it back otherwise (for [`route`], which does the same and everything else),
/// always before any message hook ran. No future: this is the hot path of chat.
pub fn route_now(core: &Arc<Core>, entry: &Arc<SessionEntry>, msg: Element) -> Result<(), Element> {
    let (account, resource) =
        match crate::router::classify(core, &entry.account.domain, msg.attr("to")) {
            Route::Bare(account) => (account, None),
            Route::Full(account, resource) => (account, Some(resource)),
            _ => return Err(msg),
        };
    if must_wait(core, Some(&entry.account.domain), Some(&account.domain)) {
        // The archive does not keep up: the async path waits for it.
        return Err(msg);
    }
    if account != entry.account {
        let check = FilterCheck {
            from: &entry.full_jid,
            sender: Some(&entry.account),
            to: &account,
            kind: "message",
            stanza: Some(&msg),
        };
        if core.hooks.filter_now(core, &check) != Some(Verdict::Pass) {
            return Err(msg);
        }
    }
    let mut msg = msg;
    let targets = match targets(core, &account, resource.as_deref(), &msg) {
        Targets::Sessions(list) => list,
        Targets::Drop => return Ok(()),
        // Storage or an error: the async path.
        Targets::Nobody | Targets::Bounce => return Err(msg),
    };
    if targets.iter().any(|t| t.is_full()) {
        // A recipient does not keep up: the async path slows this sender down.
        return Err(msg);
    }
    received(core, &account, &targets, &mut msg);
    if let Err(back) = send_to(&targets, msg) {
        // The hooks ran; none of the sessions took it after all (closing, or too slow):
        // the rest of the way, without them again.
        let (core, origin) = (core.clone(), Origin::Session(entry.clone()));
        tokio::spawn(async move {
            deliver_with(&core, &account, None, back, Some(&origin), false).await;
        });
    }
    Ok(())
}

/// Whether a message from an account of `from` to one of `to` waits for the backlog
/// (`crate::backlog`): it is over its bound, and the tenant of either end has a feature
/// on that queues writes there (the archive's copies). Other tenants' messages go on.
fn must_wait(core: &Core, from: Option<&str>, to: Option<&str>) -> bool {
    if !core.backlog.is_over() {
        return false;
    }
    let writes_behind = |domain: &str| {
        core.tenants
            .with_domain(domain, |t| core.hooks.writes_behind(t))
            .unwrap_or(false)
    };
    from.is_some_and(writes_behind) || to.is_some_and(writes_behind)
}

/// Routes a message from `origin`.
pub async fn route(core: &Arc<Core>, origin: &Origin, mut msg: Element) {
    let route = match lookup(core, origin, &msg) {
        Route::OwnAccount => match origin.account() {
            // No 'to': addressed to the sender's own bare JID (RFC 6121 §8.5.1).
            Some(own) => {
                msg.set_attr("to", own.to_string());
                Route::Bare(own.clone())
            }
            None => {
                return bounce(
                    core,
                    origin,
                    &msg,
                    Condition::BadRequest,
                    Some("no 'to' address"),
                )
                .await;
            }
        },
        r => r,
    };
    let to = match &route {
        Route::Bare(account) | Route::Full(account, _) => Some(account.domain.as_str()),
        _ => None,
    };
    if must_wait(core, origin.account().map(|a| a.domain.as_str()), to) {
        // Past the backlog's bound, senders wait for the archive's writer.
        core.backlog.room().await;
    }
    match route {
        Route::Bare(account) => to_account(core, origin, &account, None, msg).await,
        Route::Full(account, resource) => {
            to_account(core, origin, &account, Some(&resource), msg).await
        }
        Route::Hosted(h) => h.deliver(core.clone(), msg).await,
        Route::Server(_) => {
            if !matches!(
                stanza::stanza_type(&msg),
                "error" | "headline" | "groupchat"
            ) {
                bounce(core, origin, &msg, Condition::ServiceUnavailable, None).await;
            }
        }
        Route::RemoteServer(domain) => super::to_remote(core, origin, &domain, msg).await,
        Route::RemoteNode { .. } => {
            bounce(core, origin, &msg, Condition::ServiceUnavailable, None).await;
        }
        Route::OwnAccount => unreachable!("rewritten above"),
    }
}

async fn to_account(
    core: &Arc<Core>,
    origin: &Origin,
    account: &Account,
    resource: Option<&str>,
    msg: Element,
) {
    match filter(core, origin, &msg, account).await {
        Verdict::Pass => deliver(core, account, resource, msg, Some(origin)).await,
        Verdict::RefusedBySender => origin.reply(core, blocked_error(&msg)).await,
        Verdict::Forbidden => {
            bounce(
                core,
                origin,
                &msg,
                Condition::Forbidden,
                Some(FORBIDDEN_TEXT),
            )
            .await
        }
        // XEP-0191 §3.4: the user is told nothing; a client sender hears the recipient is
        // unavailable. A relay (a MUC room's private message, a component) hears nothing:
        // rooms take an error from a user's address to mean that user has left, which
        // would remove the user who blocked from the room.
        Verdict::RefusedByRecipient => {
            if origin.session().is_some() {
                bounce(core, origin, &msg, Condition::ServiceUnavailable, None).await
            }
        }
    }
}

/// Delivers a message (with final addresses, filters passed) to a local account,
/// following RFC 6121 §8.5.2/§8.5.3, after the [`MessageStage::Received`] hooks. Errors
/// go back to `origin` when given.
pub async fn deliver(
    core: &Arc<Core>,
    account: &Account,
    resource: Option<&str>,
    msg: Element,
    origin: Option<&Origin>,
) {
    deliver_with(core, account, resource, msg, origin, true).await
}

/// Routes again a message that already went through the hooks once (what a session
/// that ended never delivered): to the account's other sessions or offline storage,
/// with no hook running twice and nothing bounced.
pub async fn redeliver(core: &Arc<Core>, account: &Account, msg: Element) {
    deliver_with(core, account, None, msg, None, false).await
}

async fn deliver_with(
    core: &Arc<Core>,
    account: &Account,
    mut resource: Option<&str>,
    mut msg: Element,
    origin: Option<&Origin>,
    mut hooks: bool,
) {
    loop {
        match targets(core, account, resource, &msg) {
            Targets::Sessions(list) => {
                if std::mem::take(&mut hooks) {
                    received(core, account, &list, &mut msg);
                }
                let sent = match origin {
                    // A client sending faster than a recipient reads waits for room, and
                    // so does another server's stream (it stops reading its socket).
                    Some(Origin::Session(sender)) => {
                        Box::pin(send_paced(core, &list, msg, Sender::Session(sender))).await
                    }
                    Some(Origin::Remote(domain)) => {
                        Box::pin(send_paced(core, &list, msg, Sender::Remote(domain))).await
                    }
                    _ => send_to(&list, msg),
                };
                match sent {
                    Ok(()) => return,
                    Err(back) => msg = back,
                }
                // The resource could not take it: as if sent to the bare JID.
                if resource.take().is_some() {
                    continue;
                }
            }
            // The hooks run once the account is known to exist (in `undeliverable`):
            // nothing is archived or pushed for an account that is gone.
            Targets::Nobody => {}
            Targets::Drop => return,
            Targets::Bounce => {
                if let Some(o) = origin {
                    Box::pin(bounce(core, o, &msg, Condition::ServiceUnavailable, None)).await;
                }
                return;
            }
        }
        break;
    }
    if matches!(stanza::stanza_type(&msg), "error" | "headline") {
        return;
    }
    // Boxed: the common case above stays small (it runs for every message).
    Box::pin(undeliverable(core, account, msg, origin, hooks)).await
}

/// Where a message for an account goes.
enum Targets {
    /// To these sessions: the one of a full JID, or the available ones with the highest
    /// non-negative priority for a bare JID.
    Sessions(Vec<Arc<SessionEntry>>),
    /// No session takes it: offline storage, or an error.
    Nobody,
    /// Dropped: an error for a resource that is gone, or an error or headline with
    /// nobody online (RFC 6121 §8.5.3.2, §8.5.2.2).
    Drop,
    /// A groupchat message for a resource that is gone: an error.
    Bounce,
}

fn targets(core: &Core, account: &Account, resource: Option<&str>, msg: &Element) -> Targets {
    let ty = stanza::stanza_type(msg);
    if let Some(res) = resource {
        if let Some(target) = core.router.resource(account, res).filter(|t| t.is_alive()) {
            return Targets::Sessions(vec![target]);
        }
        // Resource not online: normal/chat/headline are treated as sent to the bare JID,
        // groupchat gets an error, errors are dropped (RFC 6121 §8.5.3.2).
        if ty == "error" {
            return Targets::Drop;
        }
    }
    if ty == "groupchat" {
        return Targets::Bounce;
    }
    let best = if rings_every_device(msg) {
        available_resources(core, account)
    } else {
        best_resources(core, account)
    };
    match (best.is_empty(), ty) {
        (false, _) => Targets::Sessions(best),
        (true, "error" | "headline") => Targets::Drop,
        (true, _) => Targets::Nobody,
    }
}

/// The [`MessageStage::Received`] hooks, told where the message goes.
fn received(core: &Arc<Core>, account: &Account, targets: &[Arc<SessionEntry>], msg: &mut Element) {
    let ctx = MessageContext {
        core,
        stage: MessageStage::Received,
        account,
        session: None,
        targets,
    };
    core.hooks.message(&ctx, msg);
}

/// No session took the message: offline storage (the undeliverable hook) if the account
/// exists, else an error.
async fn undeliverable(
    core: &Arc<Core>,
    account: &Account,
    mut msg: Element,
    origin: Option<&Origin>,
    hooks: bool,
) {
    let (condition, text) = match core.account_known(account).await {
        Ok(true) => {
            if hooks {
                received(core, account, &[], &mut msg);
            }
            match store_undeliverable(core, account, &msg).await {
                Stored::Yes => {
                    stored_offline(core, account);
                    return;
                }
                Stored::Refused => (
                    Condition::ServiceUnavailable,
                    Some("offline storage is full"),
                ),
                Stored::Failed => (
                    Condition::InternalServerError,
                    Some("message storage is unavailable"),
                ),
                Stored::Pass => (Condition::ServiceUnavailable, None),
            }
        }
        Ok(false) => (Condition::ServiceUnavailable, None),
        Err(e) => {
            tracing::error!(jid = %account, error = %e, "reading the account failed");
            (
                Condition::InternalServerError,
                Some("account storage is unavailable"),
            )
        }
    };
    if let Some(o) = origin {
        bounce(core, o, &msg, condition, text).await;
    }
}

/// A message is stored for `account`: the sessions of it that became available while it
/// was being stored read their stored messages again, here and (announced) on every
/// other cluster node.
fn stored_offline(core: &Arc<Core>, account: &Account) {
    core.hooks.offline_stored(core, account);
    if let Some(announcer) = core.offline_announcer.get() {
        announcer.stored(account);
    }
}

/// Asks the undeliverable-message handlers of the account's tenant, in order.
async fn store_undeliverable(core: &Arc<Core>, account: &Account, msg: &Element) -> Stored {
    let Some(tenant) = core.tenants.by_domain(&account.domain) else {
        return Stored::Pass;
    };
    let handlers = core.hooks.undeliverable(&tenant);
    for h in handlers {
        match h(core.clone(), account.clone(), msg.clone()).await {
            Stored::Pass => {}
            decided => return decided,
        }
    }
    Stored::Pass
}

/// A XEP-0353 call message (propose, ringing, proceed, reject, retract, finish): every
/// device of the callee rings and stops ringing, whatever its priority among them (RFC
/// 6121 §8.5.2.1.1 allows delivery to all non-negative resources).
fn rings_every_device(msg: &Element) -> bool {
    msg.children()
        .any(|c| c.ns() == crate::xml::ns::JINGLE_MESSAGE)
}

/// The available sessions of the account with a non-negative priority.
fn available_resources(core: &Core, account: &Account) -> Vec<Arc<SessionEntry>> {
    // A session that is ending (its queue closed) takes nothing more.
    let mut sessions = core.router.resources(account);
    sessions.retain(|s| s.is_alive() && s.accepts_bare_messages());
    sessions
}

/// The available sessions of the account with the highest non-negative priority.
fn best_resources(core: &Core, account: &Account) -> Vec<Arc<SessionEntry>> {
    let mut sessions = available_resources(core, account);
    let Some(best) = sessions.iter().map(|s| s.priority()).max() else {
        return sessions;
    };
    sessions.retain(|s| s.priority() == best);
    sessions
}

/// Who waits when a recipient reads slowly: a client session, or another server's
/// stream (routing its stanzas in order, it reads no more until there is room).
#[derive(Clone, Copy)]
enum Sender<'a> {
    Session(&'a SessionEntry),
    Remote(&'a str),
}

impl Sender<'_> {
    fn slowed_for(self, recipient: &str) {
        match self {
            Sender::Session(s) => s.slowed_for(recipient),
            Sender::Remote(domain) => {
                // Once a minute at most: a peer may keep a slow reader busy for long.
                static LAST_LOGGED: std::sync::atomic::AtomicU64 =
                    std::sync::atomic::AtomicU64::new(0);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let last = LAST_LOGGED.load(std::sync::atomic::Ordering::Relaxed);
                if now >= last + 60
                    && LAST_LOGGED
                        .compare_exchange(
                            last,
                            now,
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    tracing::warn!(
                        %domain,
                        recipient,
                        "another server sends faster than a recipient reads: its stream is slowed down"
                    );
                }
            }
        }
    }
}

/// Like [`send_to`] for a message a client or another server sent: a target whose queue
/// is full makes the sender wait for room (its later stanzas wait too, as its routing
/// work runs in order) instead of costing the target its session. A target that still
/// has no room after the write timeout does not read at all, and is closed as a slow
/// client.
async fn send_paced(
    core: &Core,
    targets: &[Arc<SessionEntry>],
    msg: Element,
    sender: Sender<'_>,
) -> Result<(), Element> {
    let Some((last, others)) = targets.split_last() else {
        return Err(msg);
    };
    let mut delivered = false;
    for s in others {
        delivered |= queue_paced(core, s, msg.clone(), sender).await.is_ok();
    }
    match queue_paced(core, last, msg, sender).await {
        Ok(()) => Ok(()),
        Err(back) if !delivered => Err(back),
        Err(_) => Ok(()),
    }
}

async fn queue_paced(
    core: &Core,
    target: &SessionEntry,
    msg: Element,
    sender: Sender<'_>,
) -> Result<(), Element> {
    match target.try_queue(msg) {
        Ok(()) => Ok(()),
        Err(NotQueued::Closed(msg)) => Err(msg),
        Err(NotQueued::Full(msg)) => {
            sender.slowed_for(&target.full_jid);
            let limit = std::time::Duration::from_secs(core.config().c2s.write_timeout.max(1));
            match target.send_waiting(msg, limit).await {
                Ok(()) => Ok(()),
                Err(msg) => target.try_deliver(msg),
            }
        }
    }
}

/// Queues the message for each target; hands it back if none could take it.
fn send_to(targets: &[Arc<SessionEntry>], msg: Element) -> Result<(), Element> {
    let Some((last, others)) = targets.split_last() else {
        return Err(msg);
    };
    let mut delivered = false;
    for s in others {
        delivered |= s.send(msg.clone());
    }
    // The last (usually the only) target gets the original, without a clone.
    match last.try_deliver(msg) {
        Ok(()) => Ok(()),
        Err(back) if !delivered => Err(back),
        Err(_) => Ok(()),
    }
}
