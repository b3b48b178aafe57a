//! A tenant's HTTP file upload service (`[tenants.NAME.upload]`, `"upload"` in the admin
//! API): XEP-0363 at `<subdomain>.<each domain>`, its limits and how long files stay.

use serde::{Deserialize, Serialize};

/// Upload settings of one tenant; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    /// Serve the upload service (it also needs a public HTTP URL, `[upload] public_url`
    /// or an HTTP listener).
    pub enabled: bool,
    /// `upload` serves `upload.<domain>`.
    pub subdomain: String,
    /// Largest file, in bytes (advertised as `max-file-size`).
    pub max_file_size: u64,
    /// Bytes one user may have stored at once (0: no limit but the tenant's).
    pub user_quota: u64,
    /// Bytes the whole tenant may have stored at once (0: no limit).
    pub tenant_quota: u64,
    /// Files are deleted this many days after upload (0: kept until their owner's
    /// account or the tenant goes). Download URLs stop working then too.
    pub retention_days: u32,
    /// Seconds an upload slot's PUT URL stays valid.
    pub slot_ttl: u64,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            enabled: true,
            subdomain: "upload".into(),
            max_file_size: 100 * 1024 * 1024,
            user_quota: 1024 * 1024 * 1024,
            tenant_quota: 0,
            retention_days: 30,
            slot_ttl: 300,
        }
    }
}

impl UploadSettings {
    /// Seconds a download URL stays valid: the retention, or ten years without one.
    pub fn download_ttl(&self) -> u64 {
        match self.retention_days {
            0 => 10 * 365 * 86_400,
            d => u64::from(d) * 86_400,
        }
    }
}
