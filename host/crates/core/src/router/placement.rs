//! Placement of hosted entities in a cluster: which node handles the stanzas for a key
//! (a MUC room's bare JID) and how a stanza gets there. A server running alone has no
//! placement (everything is handled here); the cluster layer installs one at startup.

use crate::xml::Element;

/// Decides where keyed hosted entities live and forwards stanzas to them.
pub trait Placement: Send + Sync + 'static {
    /// The node that handles `key` now, or `None` when it is this node.
    fn owner(&self, key: &str) -> Option<String>;
    /// Hands `stanza` (addressed to a hosted domain, `from` already stamped) to `node`,
    /// which handles it as if it had been routed there ([`super::HostedDomain::deliver_here`]).
    fn forward(&self, node: &str, stanza: Element);
    /// The names of the live nodes, this one included, sorted.
    fn live_nodes(&self) -> Vec<String>;
    /// This node's name.
    fn this_node(&self) -> &str;
}
