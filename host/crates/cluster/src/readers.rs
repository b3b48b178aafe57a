//! What each other node reads beyond the oldest wire format, as its last heartbeat said:
//! a node sends a newer kind of frame only to nodes that read it, so two adjacent
//! versions work together during a rolling upgrade. Kept here: whether a node reads
//! stanzas in the compact form ([`crate::wire::StanzaForm`]); whether it reads numbered
//! message frames is kept with the messages themselves (`inflight`).

use std::collections::HashSet;
use std::sync::RwLock;

use crate::wire::StanzaForm;

/// The nodes that read compact stanza frames.
#[derive(Debug, Default)]
pub struct Readers {
    compact: RwLock<HashSet<String>>,
}

impl Readers {
    /// Records what `node`'s heartbeat said.
    pub fn heard(&self, node: &str, compact: bool) {
        if self.form(node) == StanzaForm::Compact && compact {
            return;
        }
        let mut set = self.compact.write().unwrap_or_else(|e| e.into_inner());
        if compact {
            set.insert(node.to_string());
        } else {
            set.remove(node);
        }
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
        r.heard("n2", true);
        r.heard("n2", true);
        assert_eq!(r.form("n2"), StanzaForm::Compact);
        assert_eq!(r.form("n3"), StanzaForm::Xml);
        // Rolled back to the previous version.
        r.heard("n2", false);
        assert_eq!(r.form("n2"), StanzaForm::Xml);
    }
}
