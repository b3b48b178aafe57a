//! A tenant's personal eventing limits (`[tenants.NAME.pep]`, `"pep"` in the admin API):
//! how many PEP nodes a user may have, how many items a node keeps, how large an item
//! may be.

use serde::{Deserialize, Serialize};

/// PEP limits of one tenant; every field has a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PepSettings {
    /// Nodes per user; creating one more is refused (`not-allowed`).
    pub max_nodes: u32,
    /// Items a node keeps at most: `pubsub#max_items` (and `max`) is capped to it.
    pub max_items: u32,
    /// Largest item payload in bytes (serialized); a larger one is refused with
    /// `not-acceptable` and `payload-too-big`.
    pub max_item_bytes: u32,
}

impl Default for PepSettings {
    fn default() -> Self {
        PepSettings {
            max_nodes: 256,
            max_items: 256,
            max_item_bytes: 128 * 1024,
        }
    }
}
