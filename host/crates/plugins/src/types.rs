//! The host-side types of the plugin API: worlds, plugin configuration, authentication
//! requests and outcomes, and what `list`/`install` report. They mirror the WIT types
//! (`wit/heliograph-plugin.wit`) without depending on the generated bindings.

use serde::Serialize;

use super::error::InstallError;

/// A kind of plugin: one WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `heliograph:plugin/authenticator`: verifies credentials.
    Authenticator,
    /// `heliograph:plugin/room-policy`: decides on MUC room creation, joins, messages,
    /// configuration and nickname changes.
    RoomPolicy,
    /// `heliograph:plugin/component`: serves a tenant's subdomain (Wasm-hosted component).
    Component,
}

impl World {
    pub const ALL: [World; 3] = [World::Authenticator, World::RoomPolicy, World::Component];

    pub fn name(self) -> &'static str {
        match self {
            World::Authenticator => "authenticator",
            World::RoomPolicy => "room-policy",
            World::Component => "component",
        }
    }

    /// Parses a world name as stored and as given in the admin API.
    pub fn from_name(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The interface a component of this world must export.
    pub(crate) fn export_interface(self) -> &'static str {
        match self {
            World::Authenticator => "authentication",
            World::RoomPolicy => "room-decisions",
            World::Component => "stanza-handler",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A plugin's configuration from the tenant's settings: a JSON object.
///
/// Plugins read it whole (`host-config.json`) or flattened (`host-config.get`/`entries`):
/// nested objects become dotted keys (`users.alice`), strings stay as they are, other
/// values become JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    json: String,
    entries: Vec<(String, String)>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            json: "{}".into(),
            entries: Vec::new(),
        }
    }
}

impl PluginConfig {
    /// From a JSON object.
    pub fn from_value(value: serde_json::Value) -> Result<PluginConfig, InstallError> {
        let serde_json::Value::Object(map) = &value else {
            return Err(InstallError::InvalidConfig(
                "the configuration must be a JSON object".into(),
            ));
        };
        let mut entries = Vec::new();
        flatten("", map, &mut entries);
        entries.sort();
        Ok(PluginConfig {
            json: value.to_string(),
            entries,
        })
    }

    /// From JSON text (an empty string is an empty configuration).
    pub fn from_json(text: &str) -> Result<PluginConfig, InstallError> {
        if text.trim().is_empty() {
            return Ok(PluginConfig::default());
        }
        let value = serde_json::from_str(text)
            .map_err(|e| InstallError::InvalidConfig(format!("not JSON: {e}")))?;
        PluginConfig::from_value(value)
    }

    /// The configuration as JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// One flattened entry.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.entries[i].1.as_str())
    }

    /// Every flattened entry, sorted by key.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

fn flatten(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, String)>,
) {
    for (key, value) in map {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            serde_json::Value::Object(inner) => flatten(&full, inner, out),
            serde_json::Value::String(s) => out.push((full, s.clone())),
            other => out.push((full, other.to_string())),
        }
    }
}

/// How the client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Password,
    Token,
}

/// The transport a client connected over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Bosh,
    Websocket,
}

/// One authentication attempt, as the auth path hands it to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub domain: String,
    pub mechanism: Mechanism,
    pub username: String,
    pub credential: String,
    pub client_address: Option<String>,
    pub transport: Transport,
    pub tls: bool,
}

/// The user a plugin authenticated, checked by the host (see [`AuthUser::check`] limits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthUser {
    /// The canonical username (localpart) to bind the session to.
    pub username: String,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    /// Seconds since the Unix epoch after which the authentication is no longer valid.
    pub expires_at: Option<u64>,
    pub attributes: Vec<(String, String)>,
}

/// A plugin's "no".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDenied {
    NotAuthorized,
    AccountDisabled,
    /// The plugin cannot decide now; the reason is for the log.
    TemporaryFailure(String),
}

/// One XEP-0077 registration attempt, as the stream hands it to the authenticator's
/// optional `registration.approve` (the host checked TLS, the name and the limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRequest {
    pub domain: String,
    /// The normalized username (localpart).
    pub username: String,
    pub password: String,
    pub client_address: Option<String>,
    pub tls: bool,
}

/// An authenticator's answer to a registration, and the version that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationOutcome {
    pub version: u32,
    /// `None`: the plugin does not export `registration` (built before 0.1.2 or without
    /// it); `Some(Err(reason))`: it vetoed the account.
    pub decision: Option<Result<(), String>>,
}

/// A plugin's answer and the version that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    pub version: u32,
    pub result: Result<AuthUser, AuthDenied>,
}

/// The three stanza kinds, as a component sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

/// One stanza for a Wasm component: addressing attributes and the XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentStanza {
    pub kind: StanzaKind,
    pub from: String,
    pub to: String,
    pub stanza_type: String,
    pub id: String,
    pub domain: String,
    pub xml: String,
}

/// A component's answer: the stanzas to send (XML text, not yet checked), or the
/// plugin's own refusal, and the version that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentOutcome {
    pub version: u32,
    pub result: Result<Vec<String>, String>,
}

/// One installed version, as `install`, `rollback` and `list` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub tenant: String,
    pub slot: String,
    pub world: World,
    pub version: u32,
    /// SHA-256 of the Wasm (hex).
    pub sha256: String,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub installed_at_ms: u64,
    /// Whether this version serves calls.
    pub active: bool,
    /// How it has served: `untried`, `good` (calls answered, none failed) or `failed`.
    pub health: crate::VersionHealth,
    /// For an install without a configuration: the version whose configuration it kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_from: Option<u32>,
}

/// A slot and its kept versions (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    pub tenant: String,
    pub slot: String,
    pub world: World,
    pub active: u32,
    pub versions: Vec<VersionInfo>,
}

/// What `restore_from_storage` loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Slots restored with their active version.
    pub slots: usize,
    /// Versions loaded (active and kept).
    pub versions: usize,
    /// Versions that could not be loaded, with the reason (they are skipped).
    pub failed: Vec<String>,
}
