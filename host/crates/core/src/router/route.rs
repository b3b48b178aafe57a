//! Route lookup: where a stanza's `to` leads, as seen by a sender of a given domain: the
//! sender's own account, a served domain (the server itself), a local account (bare or
//! full JID), a hosted domain (MUC service, component), a session on another cluster
//! node, or another server. Tenants are isolated: a domain of a tenant the sender's
//! tenant does not federate with looks like a remote domain.
//!
//! Lookups read the tenant registry and the hosted-domain table only: no global lock, no
//! storage, no network.

use std::sync::Arc;

use crate::context::Core;
use crate::router::HostedDomain;
use crate::storage::Account;
use heliograph_xmpp::jid::ParsedJid;

/// A hosted domain a stanza is addressed to (see [`super::hosted`]).
#[derive(Clone)]
pub struct HostedTarget {
    /// The domain part of the address.
    pub domain: String,
    /// What serves it.
    pub hosted: Arc<dyn HostedDomain>,
}

impl std::ops::Deref for HostedTarget {
    type Target = Arc<dyn HostedDomain>;
    fn deref(&self) -> &Self::Target {
        &self.hosted
    }
}

impl std::fmt::Debug for HostedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hosted({}, {})", self.domain, self.hosted.kind())
    }
}

impl PartialEq for HostedTarget {
    fn eq(&self, other: &Self) -> bool {
        self.domain == other.domain && Arc::ptr_eq(&self.hosted, &other.hosted)
    }
}

impl Eq for HostedTarget {}

/// Where a stanza is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// No `to`: the sender's own account (RFC 6120 §10.3).
    OwnAccount,
    /// A domain served here (the server itself).
    Server(String),
    /// A local account's bare JID.
    Bare(Account),
    /// A local account's full JID.
    Full(Account, String),
    /// A JID on a hosted domain (MUC service, component) reachable from the sender.
    Hosted(HostedTarget),
    /// A session held by another node of the cluster. Nothing produces this route until
    /// clustering lands; the pipeline already knows where it would go.
    RemoteNode {
        node: String,
        account: Account,
        resource: Option<String>,
    },
    /// A JID on a domain not served here (another server), or of a tenant the sender
    /// cannot reach.
    RemoteServer(String),
}

/// The route of an already-normalized `to` value for a sender of `from_domain` (a tenant
/// domain or a hosted domain).
pub fn classify(core: &Core, from_domain: &str, to: Option<&str>) -> Route {
    classify_as(core, Sender::Domain(from_domain), to)
}

/// Who is sending, for [`classify_as`].
#[derive(Debug, Clone, Copy)]
pub enum Sender<'a> {
    /// A tenant domain or a hosted domain: its tenant is looked up.
    Domain(&'a str),
    /// A hosted entity, which knows its domain and its tenant.
    Hosted { domain: &'a str, tenant: &'a str },
}

impl Sender<'_> {
    fn can_reach(&self, core: &Core, to_domain: &str) -> bool {
        match *self {
            Sender::Domain(from) => core.can_reach(from, to_domain),
            Sender::Hosted { domain, .. } if domain == to_domain => true,
            Sender::Hosted { tenant, .. } => core.tenant_can_reach(tenant, to_domain),
        }
    }
}

/// [`classify`] for a sender given as [`Sender`].
pub fn classify_as(core: &Core, sender: Sender<'_>, to: Option<&str>) -> Route {
    let Some(to) = to else {
        return Route::OwnAccount;
    };
    let Ok(jid) = ParsedJid::parse(to) else {
        return Route::RemoteServer(to.to_string());
    };
    let domain = jid.domain();
    if !core.serves_domain(domain) {
        return match core.hosted(domain) {
            Some(hosted) if sender.can_reach(core, domain) => Route::Hosted(HostedTarget {
                domain: domain.to_string(),
                hosted,
            }),
            _ => Route::RemoteServer(domain.to_string()),
        };
    }
    if !sender.can_reach(core, domain) {
        return Route::RemoteServer(domain.to_string());
    }
    match (jid.node(), jid.resource()) {
        (None, _) => Route::Server(domain.to_string()),
        (Some(node), None) => Route::Bare(Account::new(node, domain)),
        (Some(node), Some(res)) => Route::Full(Account::new(node, domain), res.to_string()),
    }
}

/// The route of a `to` for a stanza another server sent (s2s): a domain served here or
/// hosted here, whichever tenant it belongs to (the s2s stream checked that the
/// recipient's tenant federates with the sender's domain), and nothing else.
pub fn classify_from_remote(core: &Core, to: Option<&str>) -> Route {
    let Some(to) = to else {
        return Route::RemoteServer(String::new());
    };
    let Ok(jid) = ParsedJid::parse(to) else {
        return Route::RemoteServer(to.to_string());
    };
    let domain = jid.domain();
    if !core.serves_domain(domain) {
        return match core.hosted(domain) {
            Some(hosted) => Route::Hosted(HostedTarget {
                domain: domain.to_string(),
                hosted,
            }),
            None => Route::RemoteServer(domain.to_string()),
        };
    }
    match (jid.node(), jid.resource()) {
        (None, _) => Route::Server(domain.to_string()),
        (Some(node), None) => Route::Bare(Account::new(node, domain)),
        (Some(node), Some(res)) => Route::Full(Account::new(node, domain), res.to_string()),
    }
}

/// The account of a bare or full JID string, if it is local and reachable from
/// `from`'s tenant.
pub fn local_account(core: &Core, from: &Account, jid: &str) -> Option<Account> {
    match classify(core, &from.domain, Some(jid)) {
        Route::Bare(a) | Route::Full(a, _) => Some(a),
        _ => None,
    }
}

pub use crate::xmpp::jid::bare;
