//! Classifies a stanza's `to` address: the server itself, a local account (bare or full),
//! a hosted domain (MUC service, component), or a domain not served here.

use std::sync::Arc;

use super::hosted::HostedDomain;
use crate::server::Server;
use crate::storage::Account;

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
pub enum Target {
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
    /// A JID on a domain not served here, or of a tenant the sender cannot reach.
    Remote(String),
}

/// Classifies an already-normalized `to` value as seen by a user of `from` (an account
/// of the sender's tenant). Domains of other tenants are out of reach unless the two
/// tenants federate, so they look like remote domains: tenants are isolated by default.
pub fn classify(server: &Server, from: &Account, to: Option<&str>) -> Target {
    classify_from_domain(server, &from.domain, to)
}

/// [`classify`] for a sender identified by its domain only (a tenant domain or a hosted
/// domain).
pub fn classify_from_domain(server: &Server, from_domain: &str, to: Option<&str>) -> Target {
    let Some(to) = to else {
        return Target::OwnAccount;
    };
    let Ok(jid) = jid::Jid::new(to) else {
        return Target::Remote(to.to_string());
    };
    let domain = jid.domain().as_str();
    if !server.serves_domain(domain) {
        return match server.hosted.get(server, domain) {
            Some(hosted) if server.can_reach(from_domain, domain) => Target::Hosted(HostedTarget {
                domain: domain.to_string(),
                hosted,
            }),
            _ => Target::Remote(domain.to_string()),
        };
    }
    if !server.can_reach(from_domain, domain) {
        return Target::Remote(domain.to_string());
    }
    match (jid.node(), jid.resource()) {
        (None, _) => Target::Server(domain.to_string()),
        (Some(node), None) => Target::Bare(Account::new(node.as_str(), domain)),
        (Some(node), Some(res)) => Target::Full(
            Account::new(node.as_str(), domain),
            res.as_str().to_string(),
        ),
    }
}

/// Parses a bare or full JID string into its account part, if it is local and reachable
/// from `from`'s tenant.
pub fn local_account(server: &Server, from: &Account, jid: &str) -> Option<Account> {
    match classify(server, from, Some(jid)) {
        Target::Bare(a) | Target::Full(a, _) => Some(a),
        _ => None,
    }
}

pub use heliograph_xmpp::jid::bare;
