//! Plugins named in the config file: `[tenants.NAME.plugins.SLOT]` with the path of a
//! `.wasm` file and an optional `config` table. They are installed at startup and on
//! reload whenever the file's SHA-256 or the configuration differ from the active version
//! (so an unchanged file is never reinstalled, and a restart reuses the compiled cache).
//!
//! These settings live beside the tenant's `TenantSpec` rather than in it: the spec is
//! also what the admin API accepts and stores, and the API installs plugins by upload
//! (`PUT /api/v1/tenants/{tenant}/plugins/{slot}`), never from a server-side path.

use std::sync::Arc;

use serde::Serialize;

use crate::Server;
use crate::plugins::{InstallError, PluginConfig, sha256_hex};

pub use heliograph_config::tenant_file::{ConfigTenant, PluginFile};

/// What installing the config's plugin files did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PluginFilesReport {
    /// `tenant/slot vN` installed now.
    pub installed: Vec<String>,
    /// `tenant/slot: reason` that could not be installed (the previous version serves).
    pub failed: Vec<String>,
}

/// Installs every plugin file of the config whose content or configuration differs from
/// its slot's active version. Failures are logged and reported; they change nothing.
pub async fn install_all(server: &Arc<Server>, why: &str) -> PluginFilesReport {
    let mut report = PluginFilesReport::default();
    let Some(host) = server.core.plugin_host() else {
        return report;
    };
    let config = server.config();
    for (tenant, t) in &config.tenants {
        for (slot, file) in &t.plugins {
            match install_one(host, tenant, slot, file).await {
                Ok(Some(version)) => {
                    tracing::info!(tenant = %tenant, plugin = %slot, version, path = %file.path.display(),
                        "plugin installed from the config file ({why})");
                    report.installed.push(format!("{tenant}/{slot} v{version}"));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(tenant = %tenant, plugin = %slot, path = %file.path.display(),
                        "plugin from the config file refused ({why}); the previous version keeps serving: {e}");
                    report.failed.push(format!("{tenant}/{slot}: {e}"));
                }
            }
        }
    }
    report
}

/// Installs one file if needed; `Ok(None)` when the active version is the same.
async fn install_one(
    host: &crate::plugins::PluginHost,
    tenant: &str,
    slot: &str,
    file: &PluginFile,
) -> Result<Option<u32>, InstallError> {
    let wasm = std::fs::read(&file.path)
        .map_err(|e| InstallError::Internal(format!("cannot read {}: {e}", file.path.display())))?;
    let config = match &file.config {
        Some(v) => PluginConfig::from_value(v.clone())?,
        None => PluginConfig::default(),
    };
    if let Some((sha, json)) = host.active_source(tenant, slot)
        && sha == sha256_hex(&wasm)
        && json == config.json()
    {
        return Ok(None);
    }
    let info = host
        .install_detecting_world(tenant, slot, wasm, Some(config))
        .await?;
    Ok(Some(info.version))
}
