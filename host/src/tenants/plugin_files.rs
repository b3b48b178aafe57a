//! Plugins named in the config file: `[tenants.NAME.plugins.SLOT]` with the path of a
//! `.wasm` file and an optional `config` table. They are installed at startup and on
//! reload whenever the file's SHA-256 or the configuration differ from the active version
//! (so an unchanged file is never reinstalled, and a restart reuses the compiled cache).
//!
//! These settings live beside the tenant's [`TenantSpec`] rather than in it: the spec is
//! also what the admin API accepts and stores, and the API installs plugins by upload
//! (`PUT /api/v1/tenants/{tenant}/plugins/{slot}`), never from a server-side path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::TenantSpec;
use crate::plugins::{InstallError, PluginConfig, sha256_hex};
use crate::server::Server;

/// `[tenants.NAME]` in the config file: the tenant's settings plus its plugin files.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigTenant {
    pub spec: TenantSpec,
    /// `[tenants.NAME.plugins.SLOT]`, by slot.
    pub plugins: BTreeMap<String, PluginFile>,
}

impl<'de> Deserialize<'de> for ConfigTenant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(d)?;
        let plugins = match table.remove("plugins") {
            Some(v) => v
                .try_into()
                .map_err(|e| D::Error::custom(format!("plugins: {e}")))?,
            None => BTreeMap::new(),
        };
        let spec = toml::Value::Table(table)
            .try_into()
            .map_err(D::Error::custom)?;
        Ok(ConfigTenant { spec, plugins })
    }
}

/// `[tenants.NAME.plugins.SLOT]`: a plugin component on disk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginFile {
    /// The `.wasm` component (relative paths are relative to the working directory).
    pub path: PathBuf,
    /// The plugin's configuration (a table; handed to the plugin as JSON).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

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
    let Some(host) = server.plugin_host() else {
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
        .install_detecting_world(tenant, slot, wasm, config)
        .await?;
    Ok(Some(info.version))
}
