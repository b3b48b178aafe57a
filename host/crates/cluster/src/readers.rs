//! What each other node reads beyond the oldest wire format, as its last heartbeat said:
//! a node sends a newer kind of frame only to nodes that read it, so two adjacent
//! versions work together during a rolling upgrade. Kept here: whether a node reads
//! stanzas in the compact form ([`crate::wire::StanzaForm`]) and whether it takes over a
//! moving session's receipts (`moved_receipts`); whether it reads numbered message
//! frames is kept with the messages themselves (`inflight`).

use std::collections::HashSet;
use std::sync::RwLock;

use crate::wire::StanzaForm;

/// The nodes that read compact stanza frames, and those that take over receipts.
#[derive(Debug, Default)]
pub struct Readers {
    compact: RwLock<HashSet<String>>,
    receipts: RwLock<HashSet<String>>,
}

/// Puts `node` in `set` or takes it out; reads first, since it seldom changes.
fn record(set: &RwLock<HashSet<String>>, node: &str, member: bool) {
    if set.read().unwrap_or_else(|e| e.into_inner()).contains(node) == member {
        return;
    }
    let mut set = set.write().unwrap_or_else(|e| e.into_inner());
    if member {
        set.insert(node.to_string());
    } else {
        set.remove(node);
    }
}

impl Readers {
    /// Records what `node`'s heartbeat said.
    pub fn heard(&self, node: &str, compact: bool, moved_receipts: bool) {
        record(&self.compact, node, compact);
        record(&self.receipts, node, moved_receipts);
    }

    /// Whether `node` takes over the receipts of a session moving to it.
    pub fn carries_receipts(&self, node: &str) -> bool {
        self.receipts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(node)
    }

    /// The form to send `node` stanzas in.
    pub fn form(&self, node: &str) -> StanzaForm {
        let set = self.compact.read().unwrap_or_else(|e| e.into_inner());
        if set.contains(node) {
            StanzaForm::Compact
        } else {
            StanzaForm::Xml
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_gets_compact_stanzas_only_while_its_heartbeat_says_it_reads_them() {
        let r = Readers::default();
        assert_eq!(r.form("n2"), StanzaForm::Xml);
        r.heard("n2", true, true);
        r.heard("n2", true, true);
        assert_eq!(r.form("n2"), StanzaForm::Compact);
        assert!(r.carries_receipts("n2"));
        assert_eq!(r.form("n3"), StanzaForm::Xml);
        assert!(!r.carries_receipts("n3"));
        // Rolled back to the previous version.
        r.heard("n2", false, false);
        assert_eq!(r.form("n2"), StanzaForm::Xml);
        assert!(!r.carries_receipts("n2"));
    }
}
