//! A tenant's message archive settings (`[tenants.NAME.archive]`, `"archive"` in the admin
//! API): the default archiving preference of its users, how long messages are kept, the
//! largest page a query returns, and what push notifications may reveal.

use serde::{Deserialize, Serialize};

/// The default archiving preference (XEP-0313 §6) of users who set none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DefaultArchiving {
    /// Every message.
    #[default]
    Always,
    /// Only messages with contacts in the user's roster.
    Roster,
    /// Nothing unless the user asks.
    Never,
}

/// Archive settings of one tenant; every field has a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// The preference of users who set none.
    pub default: DefaultArchiving,
    /// Days a message is kept (0: forever); older ones are purged in the background.
    pub retention_days: u32,
    /// The largest page a query returns; larger `max` values are capped to it.
    pub max_page: u32,
}

/// Default `max_page`.
pub const DEFAULT_MAX_PAGE: u32 = 250;

impl Default for ArchiveSettings {
    fn default() -> Self {
        ArchiveSettings {
            default: DefaultArchiving::Always,
            retention_days: 0,
            max_page: DEFAULT_MAX_PAGE,
        }
    }
}
