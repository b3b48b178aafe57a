//! A tenant's call settings (`[tenants.NAME.calls]`, `"calls"` in the admin API): who
//! may ring whom with XEP-0353 call messages and Jingle (XEP-0166) requests.

use serde::{Deserialize, Serialize};

/// Call settings of one tenant; every field has a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CallsSettings {
    /// Refuse call messages and Jingle requests (with `forbidden`) between users who
    /// share neither a roster subscription (in either direction) nor a MUC room.
    pub require_relationship: bool,
}
