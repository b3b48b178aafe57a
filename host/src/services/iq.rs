//! Routing of iq stanzas sent by clients (RFC 6120 §8.2.3, §10): to the server's handlers,
//! to handlers acting for an account, or to another session's full JID.

use std::sync::Arc;

use super::addressing::{Target, classify};
use super::{blocking, disco, ping, reply, roster, time, version};
use crate::router::SessionEntry;
use crate::server::Server;
use crate::stanza::{self, Condition};
use crate::storage::Account;
use crate::xml::{Element, ns};

/// An iq from a bound client.
pub async fn from_client(server: &Arc<Server>, entry: &Arc<SessionEntry>, iq: Element) {
    let kind = stanza::stanza_type(&iq);
    let is_request = matches!(kind, "get" | "set");
    if !matches!(kind, "get" | "set" | "result" | "error") {
        return reply(
            entry,
            stanza::error_reply(&iq, Condition::BadRequest, Some("invalid iq type")),
        );
    }
    if is_request && iq.children().count() != 1 {
        return reply(
            entry,
            stanza::error_reply(
                &iq,
                Condition::BadRequest,
                Some("an iq request has exactly one payload"),
            ),
        );
    }
    match classify(server, &entry.account, iq.attr("to")) {
        Target::OwnAccount => {
            if is_request {
                let answer = own_account(server, entry, &iq).await;
                reply(entry, answer);
            }
        }
        Target::Bare(account) if account == entry.account => {
            if is_request {
                let answer = own_account(server, entry, &iq).await;
                reply(entry, answer);
            }
        }
        Target::Server(domain) => {
            if is_request {
                let answer = if payload_ns(&iq) == ns::DISCO_ITEMS {
                    disco::domain_items(server, &domain, &iq)
                } else {
                    server_handlers(&iq)
                };
                reply(entry, answer);
            }
        }
        Target::Bare(account) => {
            if is_request {
                let answer = other_account(server, entry, &account, &iq).await;
                reply(entry, answer);
            }
        }
        Target::Full(account, resource) => {
            to_full_jid(server, entry, &account, &resource, iq).await
        }
        Target::Hosted(h) => h.deliver(server.clone(), iq).await,
        Target::Remote(domain) => {
            if is_request || kind == "result" {
                let text = format!("{domain} is not served here");
                reply(
                    entry,
                    stanza::error_reply(&iq, Condition::RemoteServerNotFound, Some(&text)),
                );
            }
        }
    }
}

fn payload_ns(iq: &Element) -> &str {
    iq.first_child().map(Element::ns).unwrap_or("")
}

/// Requests the server answers itself.
pub(crate) fn server_handlers(iq: &Element) -> Option<Element> {
    match payload_ns(iq) {
        ns::DISCO_INFO => disco::server_info(iq),
        ns::DISCO_ITEMS => disco::server_items(iq, &[]),
        ns::PING => ping::handle(iq),
        ns::VERSION => version::handle(iq),
        ns::TIME => time::handle(iq),
        _ => stanza::error_reply(iq, Condition::ServiceUnavailable, None),
    }
}

/// Requests to the sender's own account (no `to`, or its own bare JID).
async fn own_account(
    server: &Arc<Server>,
    entry: &Arc<SessionEntry>,
    iq: &Element,
) -> Option<Element> {
    match payload_ns(iq) {
        ns::ROSTER => roster::handle_iq(server, entry, iq).await,
        ns::BLOCKING => blocking::handle_iq(server, entry, iq).await,
        ns::TOKEN_AUTH => super::token_auth::handle_iq(server, entry, iq).await,
        // With no `to`, server features are answered by the server (clients ping this way).
        ns::PING | ns::VERSION | ns::TIME if iq.attr("to").is_none() => server_handlers(iq),
        ns::DISCO_INFO if iq.attr("to").is_none() => server_handlers(iq),
        ns::DISCO_INFO => disco::account_info(iq),
        ns::DISCO_ITEMS => disco::account_items(iq),
        _ => stanza::error_reply(iq, Condition::ServiceUnavailable, None),
    }
}

/// Requests to another local account's bare JID, answered by the server on its behalf.
async fn other_account(
    server: &Arc<Server>,
    entry: &Arc<SessionEntry>,
    account: &Account,
    iq: &Element,
) -> Option<Element> {
    if blocking::is_blocked(server, account, &entry.full_jid).await {
        return stanza::error_reply(iq, Condition::ServiceUnavailable, None);
    }
    let exists = super::message::account_exists(server, account).await;
    if !exists {
        return stanza::error_reply(iq, Condition::ServiceUnavailable, None);
    }
    match payload_ns(iq) {
        ns::DISCO_INFO => disco::account_info(iq),
        ns::DISCO_ITEMS => disco::account_items(iq),
        _ => stanza::error_reply(iq, Condition::ServiceUnavailable, None),
    }
}

/// iq to a full JID: forwarded if that resource is online, else `service-unavailable`.
async fn to_full_jid(
    server: &Arc<Server>,
    entry: &Arc<SessionEntry>,
    account: &Account,
    resource: &str,
    iq: Element,
) {
    let is_request = matches!(stanza::stanza_type(&iq), "get" | "set");
    if blocking::blocks_outbound(server, entry, account).await {
        if is_request {
            reply(entry, blocking::blocked_error(&iq));
        }
        return;
    }
    if blocking::is_blocked(server, account, &entry.full_jid).await {
        if is_request {
            reply(
                entry,
                stanza::error_reply(&iq, Condition::ServiceUnavailable, None),
            );
        }
        return;
    }
    let delivered = match server.router.resource(account, resource) {
        Some(target) => target.send(iq.clone()),
        None => false,
    };
    if !delivered && is_request {
        reply(
            entry,
            stanza::error_reply(&iq, Condition::ServiceUnavailable, None),
        );
    }
}
