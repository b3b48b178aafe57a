//! A tenant's settings for what its users store about themselves and how they manage
//! their accounts (`[tenants.NAME.profiles]`, `"profiles"` in the admin API): vCard and
//! private XML size limits (XEP-0054, XEP-0049), in-band registration (XEP-0077).

use serde::{Deserialize, Serialize};

/// Profile and account-management settings of one tenant; every field has a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileSettings {
    /// Largest vCard (serialized XML, bytes) a user may store; a larger one is refused
    /// with `not-acceptable`.
    pub max_vcard_bytes: usize,
    /// Largest total of a user's private XML storage (bytes, all namespaces together).
    pub max_private_bytes: usize,
    /// Most namespaces one user may keep in private XML storage.
    pub max_private_namespaces: usize,
    /// In-band registration of new accounts (XEP-0077) before login. Off by default;
    /// only for tenants whose accounts the server keeps (`auth = internal`).
    pub registration: bool,
    /// Attempts to create an account one client address may make per hour when
    /// `registration` is on (a refused name counts too).
    pub registrations_per_hour: u32,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        ProfileSettings {
            max_vcard_bytes: 64 * 1024,
            max_private_bytes: 256 * 1024,
            max_private_namespaces: 64,
            registration: false,
            registrations_per_hour: 3,
        }
    }
}
