//! A tenant's push notification settings (`[tenants.NAME.push]`, `"push"` in the admin
//! API): what a XEP-0357 notification may tell the app server.

use serde::{Deserialize, Serialize};

/// Push settings of one tenant; every field has a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSettings {
    /// Include the message body in notifications (off: only counts, sender and whether it
    /// is a call reach the app server).
    pub include_body: bool,
    /// Publish errors in a row after which a registration is disabled.
    pub max_errors: u32,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            include_body: false,
            max_errors: 3,
        }
    }
}
