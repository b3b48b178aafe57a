//! The routing pipeline: every stanza, whoever sends it (a client session, a MUC
//! service, a component, a Wasm component; later s2s and cluster peers), passes the same
//! steps:
//!
//! 1. **`from` check**: a session's stanzas carry its full JID (the session core stamps
//!    it); a hosted entity may only send from its own domain.
//! 2. **Route lookup** ([`crate::router::classify`]): the server, the sender's own
//!    account, a local account (bare or full JID), a hosted domain, another node, another
//!    server.
//! 3. **Filters** ([`crate::hooks::Filter`], blocking) before anything reaches a local
//!    account.
//! 4. **Delivery**: iq requests to the server or an account go to the registered
//!    handlers ([`iq`]); messages follow RFC 6121 §8.5 ([`message`]), with the
//!    undeliverable hook (offline storage) when no session can take them; presence from a
//!    client goes to the presence feature, other presence is delivered ([`presence`]);
//!    anything for a hosted domain goes to it.
//!
//! Errors go back to the sender ([`Origin::send`]) when RFC 6120 asks for one.

pub mod iq;
pub mod message;
pub mod presence;
pub mod requests;

use std::sync::Arc;

use crate::context::Core;
use crate::hooks::{FilterCheck, Verdict};
use crate::router::{HostedDomain, HostedTarget, Route, SessionEntry};
use crate::stanza::{self, Condition, Kind};
use crate::storage::Account;
use crate::xml::{Element, ns};

/// Who sent a stanza.
#[derive(Clone)]
pub enum Origin {
    /// A bound client session.
    Session(Arc<SessionEntry>),
    /// A hosted domain (MUC service, component).
    Hosted(HostedTarget),
    /// Another server, authenticated for this domain (s2s).
    Remote(String),
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Session(e) => write!(f, "Session({})", e.full_jid),
            Origin::Hosted(h) => write!(f, "{h:?}"),
            Origin::Remote(d) => write!(f, "Remote({d})"),
        }
    }
}

impl Origin {
    /// The sender's domain (a tenant domain or a hosted domain).
    pub fn domain(&self) -> &str {
        match self {
            Origin::Session(e) => &e.account.domain,
            Origin::Hosted(h) => &h.domain,
            Origin::Remote(d) => d,
        }
    }

    /// The sender's local account, for a session.
    pub fn account(&self) -> Option<&Account> {
        match self {
            Origin::Session(e) => Some(&e.account),
            Origin::Hosted(_) | Origin::Remote(_) => None,
        }
    }

    /// The session, when a client sent the stanza.
    pub fn session(&self) -> Option<&Arc<SessionEntry>> {
        match self {
            Origin::Session(e) => Some(e),
            Origin::Hosted(_) | Origin::Remote(_) => None,
        }
    }

    /// Sends a stanza (a reply, an error) back to the sender.
    pub async fn send(&self, core: &Arc<Core>, stanza: Element) {
        match self {
            Origin::Session(e) => {
                e.send(stanza);
            }
            Origin::Hosted(h) => h.deliver(core.clone(), stanza).await,
            Origin::Remote(remote) => {
                // An error or answer for the other server, from the local address it
                // was sent to.
                if let Some(federation) = core.federation.get() {
                    let local = jid_domain(stanza.attr("from")).unwrap_or_default();
                    federation.send(core, &local, remote, stanza);
                }
            }
        }
    }

    /// Sends `reply` back if there is one.
    pub async fn reply(&self, core: &Arc<Core>, reply: Option<Element>) {
        if let Some(r) = reply {
            self.send(core, r).await;
        }
    }
}

/// Routes one stanza (see the module docs). `from` is set; `to` is normalized.
pub async fn route(core: &Arc<Core>, origin: &Origin, stanza: Element) {
    if let Origin::Hosted(h) = origin
        && !from_is_on(&stanza, &h.domain)
    {
        tracing::warn!(domain = %h.domain, from = stanza.attr("from").unwrap_or(""), "hosted entity sent from a foreign address; dropped");
        return;
    }
    if let Origin::Remote(domain) = origin
        && !from_is_on(&stanza, domain)
    {
        tracing::warn!(%domain, from = stanza.attr("from").unwrap_or(""), "remote server sent from a foreign address; dropped");
        return;
    }
    // Messages are the hot path and their future is kept small; iq and presence routing
    // (storage, handlers, broadcasts) are boxed so they do not make every stanza's
    // future as large as theirs.
    match Kind::of(&stanza) {
        Some(Kind::Message) => message::route(core, origin, stanza).await,
        Some(Kind::Presence) => Box::pin(presence::route(core, origin, stanza)).await,
        Some(Kind::Iq) => Box::pin(iq::route(core, origin, stanza)).await,
        None => tracing::debug!(name = stanza.name(), "not a stanza; dropped"),
    }
}

/// Routes a stanza a hosted entity sends from one of its domains: the domain of the
/// stanza's `from`, which the entity checked is its own (a component's stream refuses
/// other addresses; Wasm components' output is checked the same way).
pub async fn route_from_hosted(core: &Arc<Core>, hosted: Arc<dyn HostedDomain>, stanza: Element) {
    let domain = stanza
        .attr("from")
        .and_then(|f| jid::Jid::new(f).ok())
        .map(|j| j.domain().to_string())
        .unwrap_or_default();
    let origin = Origin::Hosted(HostedTarget { domain, hosted });
    route(core, &origin, stanza).await;
}

/// True if the stanza's `from` is `domain` or a JID on it.
fn from_is_on(stanza: &Element, domain: &str) -> bool {
    stanza
        .attr("from")
        .and_then(|f| jid::Jid::new(f).ok())
        .is_some_and(|j| j.domain().as_str() == domain)
}

/// The route of a stanza's `to` for this sender.
pub fn lookup(core: &Core, origin: &Origin, stanza: &Element) -> Route {
    match origin {
        Origin::Remote(_) => crate::router::classify_from_remote(core, stanza.attr("to")),
        Origin::Hosted(h) => {
            let sender = crate::router::Sender::Hosted {
                domain: &h.domain,
                tenant: h.tenant(),
            };
            crate::router::classify_as(core, sender, stanza.attr("to"))
        }
        Origin::Session(_) => crate::router::classify(core, origin.domain(), stanza.attr("to")),
    }
}

/// The domain of a JID string.
fn jid_domain(jid: Option<&str>) -> Option<String> {
    jid.and_then(|j| jid::Jid::new(j).ok())
        .map(|j| j.domain().to_string())
}

/// Sends a stanza for the remote domain `domain` to the other server, if the sender's
/// tenant federates with it; bounces it with `remote-server-not-found` otherwise (and
/// always for stanzas from another server: nothing is relayed between two of them).
pub async fn to_remote(core: &Arc<Core>, origin: &Origin, domain: &str, stanza: Element) {
    let sent = match origin {
        Origin::Remote(_) => Err(stanza),
        // A client waits for room when the stream is backed up, as for a slow local
        // recipient.
        Origin::Session(_) => {
            crate::federation::forward_paced(core, origin.domain(), domain, stanza)
                .await
                .map_err(|(_, s)| s)
        }
        Origin::Hosted(_) => {
            crate::federation::forward(core, origin.domain(), domain, stanza).map_err(|(_, s)| s)
        }
    };
    let Err(stanza) = sent else {
        return;
    };
    let text = not_served(domain);
    bounce(
        core,
        origin,
        &stanza,
        Condition::RemoteServerNotFound,
        Some(&text),
    )
    .await;
}

/// Runs the filters for a delivery from the stanza's sender to a local account.
pub async fn filter(core: &Arc<Core>, origin: &Origin, stanza: &Element, to: &Account) -> Verdict {
    if origin.account() == Some(to) {
        return Verdict::Pass;
    }
    let check = FilterCheck {
        from: stanza.attr("from").unwrap_or(""),
        sender: origin.account(),
        to,
        kind: stanza.name(),
        stanza: Some(stanza),
    };
    core.hooks.filter(core, &check).await
}

/// The text of the error a stanza refused by the recipient's tenant policy gets.
pub const FORBIDDEN_TEXT: &str = "the recipient's service allows this only between contacts";

/// True if the stanza expects an error when it cannot be delivered: iq requests, and
/// every message or presence that is not itself an error.
pub fn expects_error(stanza: &Element) -> bool {
    let ty = stanza::stanza_type(stanza);
    match stanza.name() {
        "iq" => matches!(ty, "get" | "set"),
        _ => ty != "error",
    }
}

/// Sends the sender an error for `stanza` if it expects one.
pub async fn bounce(
    core: &Arc<Core>,
    origin: &Origin,
    stanza: &Element,
    condition: Condition,
    text: Option<&str>,
) {
    if expects_error(stanza) {
        origin
            .reply(core, stanza::error_reply(stanza, condition, text))
            .await;
    }
}

/// The error for a stanza to someone the sender blocked (XEP-0191 §3.5).
pub fn blocked_error(original: &Element) -> Option<Element> {
    let mut reply = stanza::error_reply(original, Condition::NotAcceptable, None)?;
    if let Some(err) = reply.child_mut("error", ns::CLIENT) {
        err.push_child(Element::new("blocked", ns::BLOCKING_ERRORS));
    }
    Some(reply)
}

/// Text for `remote-server-not-found`.
fn not_served(domain: &str) -> String {
    format!("{domain} is not served here")
}
