//! Routing of message stanzas (RFC 6121 §8.5): to bare JIDs (highest-priority available
//! resources, else offline storage), to full JIDs, and errors for everything undeliverable.

use std::sync::Arc;

use super::addressing::{Target, classify};
use super::{blocking, offline, reply};
use crate::router::SessionEntry;
use crate::server::Server;
use crate::stanza::{self, Condition};
use crate::storage::{self, Account};
use crate::xml::Element;

/// A message from a bound client.
pub async fn from_client(server: &Arc<Server>, entry: &Arc<SessionEntry>, mut msg: Element) {
    let target = match classify(server, &entry.account, msg.attr("to")) {
        Target::OwnAccount => {
            // No 'to': addressed to the sender's own bare JID (RFC 6121 §8.5.1).
            msg.set_attr("to", entry.account.to_string());
            Target::Bare(entry.account.clone())
        }
        t => t,
    };
    match target {
        Target::Bare(account) => to_account(server, entry, &account, None, msg).await,
        Target::Full(account, resource) => {
            to_account(server, entry, &account, Some(&resource), msg).await
        }
        Target::Hosted(h) => h.deliver(server.clone(), msg).await,
        Target::Server(_) => {
            if !matches!(
                stanza::stanza_type(&msg),
                "error" | "headline" | "groupchat"
            ) {
                reply(
                    entry,
                    stanza::error_reply(&msg, Condition::ServiceUnavailable, None),
                );
            }
        }
        Target::Remote(domain) => {
            let text = format!("{domain} is not served here");
            reply(
                entry,
                stanza::error_reply(&msg, Condition::RemoteServerNotFound, Some(&text)),
            );
        }
        Target::OwnAccount => unreachable!("rewritten above"),
    }
}

/// True if the account exists in storage.
pub async fn account_exists(server: &Arc<Server>, account: &Account) -> bool {
    let users = server.storage.users.clone();
    let account = account.clone();
    storage::blocking(move || {
        users
            .credentials(&account)
            .map(|c| c.is_some())
            .unwrap_or(false)
    })
    .await
}

async fn to_account(
    server: &Arc<Server>,
    entry: &Arc<SessionEntry>,
    account: &Account,
    resource: Option<&str>,
    msg: Element,
) {
    if blocking::blocks_outbound(server, entry, account).await {
        return reply(entry, blocking::blocked_error(&msg));
    }
    if blocking::is_blocked(server, account, &entry.full_jid).await {
        return reply(
            entry,
            stanza::error_reply(&msg, Condition::ServiceUnavailable, None),
        );
    }
    deliver(server, account, resource, msg, Some(entry)).await;
}

/// Delivers a message (with final addresses) to a local account, following RFC 6121
/// §8.5.2/§8.5.3. Errors go back to `sender` when given.
pub async fn deliver(
    server: &Arc<Server>,
    account: &Account,
    resource: Option<&str>,
    mut msg: Element,
    sender: Option<&Arc<SessionEntry>>,
) {
    let kind = stanza::stanza_type(&msg).to_string();
    if let Some(res) = resource {
        if let Some(target) = server.router.resource(account, res) {
            match target.try_deliver(msg) {
                Ok(()) => return,
                Err(back) => msg = back,
            }
        }
        // Resource not online: normal/chat/headline are treated as sent to the bare JID,
        // groupchat gets an error, errors are dropped (RFC 6121 §8.5.3.2).
        match kind.as_str() {
            "groupchat" => {
                if let Some(s) = sender {
                    reply(
                        s,
                        stanza::error_reply(&msg, Condition::ServiceUnavailable, None),
                    );
                }
                return;
            }
            "error" => return,
            _ => {}
        }
    }
    if kind == "groupchat" {
        if let Some(s) = sender {
            reply(
                s,
                stanza::error_reply(&msg, Condition::ServiceUnavailable, None),
            );
        }
        return;
    }
    msg = match deliver_to_best_resources(server, account, msg) {
        Ok(()) => return,
        Err(back) => back,
    };
    match kind.as_str() {
        "error" | "headline" => {}
        _ => {
            if !account_exists(server, account).await {
                if let Some(s) = sender {
                    reply(
                        s,
                        stanza::error_reply(&msg, Condition::ServiceUnavailable, None),
                    );
                }
                return;
            }
            if !offline::store(server, account, &msg).await
                && let Some(s) = sender
            {
                reply(
                    s,
                    stanza::error_reply(
                        &msg,
                        Condition::ServiceUnavailable,
                        Some("offline storage is full"),
                    ),
                );
            }
        }
    }
}

/// Sends to every available resource with the highest non-negative priority. Returns
/// false if there is none (or none could take it).
fn deliver_to_best_resources(
    server: &Server,
    account: &Account,
    msg: Element,
) -> Result<(), Element> {
    let sessions = server.router.resources(account);
    let best = sessions
        .iter()
        .filter(|s| s.accepts_bare_messages())
        .map(|s| s.priority())
        .max();
    let Some(best) = best else { return Err(msg) };
    let targets: Vec<_> = sessions
        .iter()
        .filter(|s| s.accepts_bare_messages() && s.priority() == best)
        .collect();
    let mut delivered = false;
    let (last, others) = targets.split_last().ok_or_else(|| msg.clone())?;
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
