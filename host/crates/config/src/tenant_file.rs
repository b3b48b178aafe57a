//! `[tenants.NAME]` as the config file writes it: the tenant's settings plus the plugin
//! files it installs (`[tenants.NAME.plugins.SLOT]`). Installing them is the control
//! layer's job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use heliograph_tenants::TenantSpec;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

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
        // `[tenants.default]` may leave its domains to `general.hosts`; any other tenant
        // without domains is refused when its settings are checked.
        table
            .entry("domains")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
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
