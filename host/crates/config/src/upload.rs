//! `[upload]`: where the HTTP file upload service (XEP-0363) keeps files and the URL
//! clients reach it at. Each tenant's own limits are in `[tenants.NAME.upload]`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[upload]`
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// The base URL of the public HTTP listener as clients reach it, without a trailing
    /// slash (`https://files.example.com`, behind a proxy). Empty: `http://` and the
    /// first `[[listen.http]]` address (with the port actually bound).
    pub public_url: String,
    /// Where files are stored; default `<data_dir>/uploads`.
    pub dir: Option<PathBuf>,
}
