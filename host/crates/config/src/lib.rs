//! Server configuration: the TOML file (`config/heliograph.toml`) and the built-in
//! default used when no file exists. Sections follow MongooseIM's TOML in spirit:
//! `[general]`, `[storage]`, `[tls]`, `[[listen.c2s]]`, `[listen.admin]`, `[c2s]`, `[auth]`,
//! `[plugins]`.
//!
//! Unknown keys are refused, and errors name the key and line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use heliograph_tenants::TenantSpec;

pub mod cluster;
pub mod ip_range;
pub mod s2s;
pub mod tenant_file;

pub use cluster::ClusterSettings;
pub use ip_range::IpRange;
pub use s2s::{S2sConfig, S2sListener};
pub use tenant_file::ConfigTenant;

pub mod upload;

/// Where the server looks for its config when none is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/heliograph.toml";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub general: General,
    pub tls: TlsFiles,
    pub listen: Listen,
    pub c2s: C2sSettings,
    pub auth: AuthSettings,
    /// `[tenants.NAME]`: tenants defined in the file (more can be added through the API),
    /// with their plugin files (`[tenants.NAME.plugins.SLOT]`).
    pub tenants: BTreeMap<String, ConfigTenant>,
    pub plugins: heliograph_plugins::PluginSettings,
    pub limits: LimitSettings,
    pub drain: DrainSettings,
    pub metrics: MetricsSettings,
    pub storage: StorageSettings,
    /// `[upload]`: HTTP file upload storage and public URL.
    pub upload: upload::UploadConfig,
    /// `[s2s]`: federation with other servers.
    pub s2s: S2sConfig,
    /// `[cluster]`: NATS and this node's name; absent for a server running alone.
    pub cluster: Option<ClusterSettings>,
}

/// Name of the tenant formed by `general.hosts`.
pub const DEFAULT_TENANT: &str = "default";

/// `[general]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// XMPP domains of the tenant `default` (may be empty when every domain belongs to a
    /// `[tenants.NAME]` section or to a tenant added through the admin API).
    pub hosts: Vec<String>,
    /// Directory for the database, generated certificate and admin token.
    pub data_dir: PathBuf,
    /// Admin token file; default `<data_dir>/admin.token`.
    pub admin_token_file: Option<PathBuf>,
    /// Maximum size of one stanza in bytes.
    pub max_stanza_size: usize,
    /// Maximum element nesting depth inside a stanza.
    pub max_stanza_depth: usize,
    /// Log filter (tracing `EnvFilter` syntax), overridden by `RUST_LOG`.
    pub log_level: String,
    /// Log format: `human` or `json` (one JSON object per line).
    pub log_format: LogFormat,
    /// Listen backlog of every listener: connections the kernel queues before the server
    /// accepts them (capped by `net.core.somaxconn`, reported at start when lower). A
    /// short queue drops SYNs under a login burst and costs those clients a 1 s retry.
    pub listen_backlog: u32,
}

/// `general.log_format`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl Default for General {
    fn default() -> Self {
        General {
            hosts: vec!["localhost".into()],
            data_dir: PathBuf::from("./data"),
            admin_token_file: None,
            max_stanza_size: 256 * 1024,
            max_stanza_depth: 32,
            log_level: "info".into(),
            log_format: LogFormat::Human,
            listen_backlog: 4096,
        }
    }
}

/// `[tls]`: the server certificate. Without files, a self-signed certificate for the
/// hosts is generated on first start and kept in the data dir.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `[listen]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub c2s: Vec<C2sListener>,
    pub http: Vec<HttpListener>,
    /// XEP-0114 external component listeners.
    pub component: Vec<ComponentListener>,
    /// Server-to-server listeners, bound only when `[s2s] enabled`.
    pub s2s: Vec<S2sListener>,
    pub admin: AdminListener,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            c2s: vec![
                C2sListener {
                    address: "0.0.0.0:5222".parse().unwrap(),
                    ..C2sListener::default()
                },
                C2sListener {
                    address: "0.0.0.0:5223".parse().unwrap(),
                    tls: TlsMode::Direct,
                    ..C2sListener::default()
                },
            ],
            http: vec![HttpListener::default()],
            component: vec![ComponentListener::default()],
            s2s: s2s::default_listeners(),
            admin: AdminListener::default(),
        }
    }
}

/// How a c2s listener does TLS.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP, upgraded with STARTTLS.
    #[default]
    Starttls,
    /// TLS from the first byte (XEP-0368).
    Direct,
}

/// `[[listen.c2s]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct C2sListener {
    pub address: SocketAddr,
    pub tls: TlsMode,
    /// Refuse authentication before TLS (STARTTLS listeners).
    pub require_tls: bool,
    /// Offer PLAIN on unencrypted connections (only when `require_tls` is false).
    pub allow_plain_without_tls: bool,
    /// Seconds from connect to a bound session before the connection is closed.
    pub negotiation_timeout: u64,
    /// Seconds without any traffic before an authenticated session is closed.
    pub idle_timeout: u64,
    /// Failed SASL attempts allowed per connection.
    pub max_auth_attempts: u32,
    /// Expect a PROXY protocol (v1 or v2) header on every connection.
    pub proxy_protocol: bool,
    /// Addresses or CIDR ranges allowed to send the PROXY header; connections from
    /// elsewhere are refused when `proxy_protocol` is on.
    pub trusted_proxies: Vec<String>,
    /// Open connections on this listener (0 = no limit).
    pub max_connections: usize,
    /// Open connections per client address on this listener (0 = no limit).
    pub max_connections_per_address: usize,
}

impl Default for C2sListener {
    fn default() -> Self {
        C2sListener {
            address: "0.0.0.0:5222".parse().unwrap(),
            tls: TlsMode::Starttls,
            require_tls: true,
            allow_plain_without_tls: false,
            negotiation_timeout: 30,
            idle_timeout: 600,
            max_auth_attempts: 3,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            max_connections: 100_000,
            max_connections_per_address: 0,
        }
    }
}

/// `[[listen.component]]`: XEP-0114 external components (Jabber Component Protocol). See
/// `config/heliograph.toml` for what each key means.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentListener {
    pub address: SocketAddr,
    /// TLS from the first byte with the `[tls]` certificate (XEP-0114 has no STARTTLS).
    pub tls: bool,
    /// Seconds from connect to a completed handshake.
    pub negotiation_timeout: u64,
    /// Seconds without any traffic before a component connection is closed.
    pub idle_timeout: u64,
    /// Expect a PROXY protocol (v1 or v2) header on every connection.
    pub proxy_protocol: bool,
    /// Addresses or CIDR ranges allowed to send the PROXY header.
    pub trusted_proxies: Vec<String>,
    /// Open connections on this listener (0 = no limit).
    pub max_connections: usize,
    /// Open connections per client address on this listener (0 = no limit).
    pub max_connections_per_address: usize,
}

impl Default for ComponentListener {
    fn default() -> Self {
        ComponentListener {
            address: "127.0.0.1:5347".parse().unwrap(),
            tls: false,
            negotiation_timeout: 30,
            idle_timeout: 600,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            max_connections: 10_000,
            max_connections_per_address: 0,
        }
    }
}

/// `[limits]`: limits shared by every listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Connections (TCP streams, BOSH sessions, WebSockets) that have not authenticated
    /// yet, on all listeners (0 = no limit).
    pub max_unauthenticated: usize,
    /// Bytes of unfinished stanzas the server holds for all unauthenticated connections
    /// together (0 = no limit beyond `max_unauthenticated` times
    /// `[c2s] max_unauthenticated_stanza_size`); a connection whose stanza would pass it
    /// is closed with `resource-constraint`.
    pub max_unauthenticated_buffered: usize,
    /// Login attempts per second per client address (0 = no limit); faster attempts wait.
    pub login_rate_per_address: u32,
    /// Login attempts per client address allowed in a burst.
    pub login_burst_per_address: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_unauthenticated: 20_000,
            max_unauthenticated_buffered: 64 * 1024 * 1024,
            login_rate_per_address: 0,
            login_burst_per_address: 10,
        }
    }
}

/// `[drain]`: `heliograph drain`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DrainSettings {
    /// `host[:port]` sent to clients with `see-other-host` (empty: `system-shutdown` after
    /// the grace period).
    pub see_other_host: String,
    /// Seconds clients get to leave on their own before `system-shutdown`.
    pub grace_period: u64,
    /// Seconds after which the drain ends even with sessions left.
    pub deadline: u64,
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            see_other_host: String::new(),
            grace_period: 10,
            deadline: 60,
        }
    }
}

/// `[metrics]`: Prometheus metrics at `/metrics` on the admin listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Add a `tenant` label to session and login metrics (turn off with many tenants).
    pub per_tenant_labels: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            enabled: true,
            per_tenant_labels: true,
        }
    }
}

/// `[[listen.http]]`: the public HTTP listener serving BOSH (XEP-0124/0206) and XMPP over
/// WebSocket (RFC 7395). See `config/heliograph.toml` for what each key means.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpListener {
    pub address: SocketAddr,
    /// Serve HTTPS with the `[tls]` certificate.
    pub tls: bool,
    /// Path of the BOSH endpoint (empty: no BOSH).
    pub bosh_path: String,
    /// Path of the WebSocket endpoint (empty: no WebSocket).
    pub websocket_path: String,
    /// Origins allowed to use the endpoints from a browser (CORS and the WebSocket
    /// Origin check); `"*"` allows any. Requests without `Origin` are always allowed.
    pub allowed_origins: Vec<String>,
    /// Proxies (addresses or CIDR ranges) whose `Forwarded`/`X-Forwarded-For` and
    /// `X-Forwarded-Proto` headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Expect a PROXY protocol (v1 or v2) header on every connection, accepted only from
    /// `trusted_proxies`.
    pub proxy_protocol: bool,
    /// Refuse authentication unless the connection is secure: TLS on this listener, or a
    /// trusted proxy reporting `https`.
    pub require_tls: bool,
    /// Let clients on loopback addresses authenticate without TLS (local development).
    pub allow_insecure_loopback: bool,
    /// Largest BOSH request body and WebSocket message, in bytes.
    pub max_body_size: usize,
    /// Seconds a client may take to send a request's headers and body.
    pub request_timeout: u64,
    /// Seconds from the first request or WebSocket upgrade to a bound session.
    pub negotiation_timeout: u64,
    /// WebSocket: seconds without any frame before the connection is closed.
    pub idle_timeout: u64,
    /// WebSocket: seconds between pings sent by the server (0 = never).
    pub websocket_ping_interval: u64,
    /// WebSocket: when set, every client is sent elsewhere with `<close see-other-uri/>`.
    pub see_other_uri: String,
    /// BOSH: longest `wait` granted, in seconds.
    pub bosh_max_wait: u64,
    /// BOSH: most requests the server holds per session (`requests` = hold + 1).
    pub bosh_max_hold: u32,
    /// BOSH: seconds without a pending request before the session ends.
    pub bosh_inactivity: u64,
    /// BOSH: shortest allowed interval between empty requests, in seconds.
    pub bosh_polling: u64,
    /// BOSH: longest `pause`, in seconds.
    pub bosh_max_pause: u64,
    /// Concurrent BOSH and WebSocket sessions per client address (0 = no limit).
    pub max_sessions_per_address: usize,
    /// Open TCP connections on this listener (0 = no limit).
    pub max_connections: usize,
    /// Open TCP connections per connecting address (the PROXY protocol source when
    /// enabled, else the peer; 0 = no limit).
    pub max_connections_per_address: usize,
    /// Failed SASL attempts allowed per session.
    pub max_auth_attempts: u32,
    /// A folder whose files are served (GET and HEAD, no directory listing) under
    /// `static_prefix`, next to BOSH and WebSocket: a web app from the same origin.
    /// Relative paths are relative to the server's working directory.
    pub static_dir: Option<PathBuf>,
    /// URL path the `static_dir` files are served under (`/` by default).
    pub static_prefix: String,
}

impl Default for HttpListener {
    fn default() -> Self {
        HttpListener {
            address: "0.0.0.0:5280".parse().unwrap(),
            tls: false,
            bosh_path: "/http-bind".into(),
            websocket_path: "/xmpp-websocket".into(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            require_tls: true,
            allow_insecure_loopback: true,
            max_body_size: 320 * 1024,
            request_timeout: 30,
            negotiation_timeout: 60,
            idle_timeout: 600,
            websocket_ping_interval: 60,
            see_other_uri: String::new(),
            bosh_max_wait: 60,
            bosh_max_hold: 2,
            bosh_inactivity: 60,
            bosh_polling: 2,
            bosh_max_pause: 120,
            max_sessions_per_address: 100,
            max_connections: 100_000,
            max_connections_per_address: 0,
            max_auth_attempts: 3,
            static_dir: None,
            static_prefix: "/".into(),
        }
    }
}

/// `[listen.admin]`: the admin API, loopback only by default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminListener {
    pub address: SocketAddr,
}

impl Default for AdminListener {
    fn default() -> Self {
        AdminListener {
            address: "127.0.0.1:5281".parse().unwrap(),
        }
    }
}

/// `[c2s]`: session behaviour.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct C2sSettings {
    /// Seconds of client silence before the server sends a keepalive ping (0 = never).
    pub ping_interval: u64,
    /// Seconds to wait for the ping's answer before closing the session.
    pub ping_timeout: u64,
    /// Messages kept per account for offline delivery.
    pub max_offline_messages: usize,
    /// Capacity of a session's inbound queue (stanzas routed to it).
    pub session_queue: usize,
    /// Seconds a write to a client may take before the session is closed as not reading;
    /// the messages it had not received are routed again (another resource or offline).
    pub write_timeout: u64,
    /// Seconds a stream management session (XEP-0198) that lost its connection waits to
    /// be resumed; then its unacknowledged messages go to offline storage. 0: no
    /// resumption.
    pub resume_timeout: u64,
    /// The server asks for an acknowledgement (`<r/>`) after this many stanzas to a
    /// stream management client (0: only when the client's connection is quiet).
    pub ack_request_interval: u32,
    /// Unacknowledged stanzas a stream management session may hold; past it the stream
    /// closes with `policy-violation` (and they go to offline storage).
    pub max_unacked: usize,
    /// Largest stanza (bytes) a client may send before it is authenticated and bound, on
    /// every transport, like Prosody's `c2s_unauthed_stanza_size_limit`: negotiation
    /// needs little, and what a connection may hold in memory before it proves who it is
    /// stays small. With `[limits] max_unauthenticated` this bounds the bytes all
    /// unauthenticated connections buffer together. Larger stanzas end the stream with
    /// `policy-violation`.
    pub max_unauthenticated_stanza_size: usize,
}

impl Default for C2sSettings {
    fn default() -> Self {
        C2sSettings {
            ping_interval: 120,
            ping_timeout: 30,
            max_offline_messages: 1000,
            session_queue: 1024,
            write_timeout: 60,
            resume_timeout: 300,
            ack_request_interval: 5,
            max_unacked: 1000,
            max_unauthenticated_stanza_size: 10 * 1024,
        }
    }
}

/// `[storage]`: the backend and, for PostgreSQL, how to reach it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    /// PostgreSQL connection URL (or key-value string); `sslmode` asks for TLS.
    pub url: Option<String>,
    /// A file holding the URL (so the password stays out of the config).
    pub url_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
    pub connect_timeout_secs: u64,
    /// Time one storage call may take, waiting for a pooled connection included.
    pub query_timeout_secs: u64,
    /// PEM CA certificates for TLS to the database (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Apply missing schema migrations at start; `false` refuses to start instead.
    pub migrate: bool,
    /// sled: MiB of database pages kept in memory. The cache fills as the database grows
    /// (archive, offline messages, room logs) and stays in the server's RSS up to this.
    pub sled_cache_mib: u64,
}

/// `storage.backend`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Embedded, in `<data_dir>/db`.
    #[default]
    Sled,
    /// A PostgreSQL database, shared by a cluster's nodes.
    Postgres,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            backend: StorageBackend::Sled,
            url: None,
            url_file: None,
            pool_size: 16,
            connect_timeout_secs: 5,
            query_timeout_secs: 10,
            ca_file: None,
            migrate: true,
            sled_cache_mib: 1024,
        }
    }
}

impl StorageSettings {
    /// The PostgreSQL URL: `url`, or the trimmed contents of `url_file`.
    pub fn postgres_url(&self) -> Result<String, ConfigError> {
        match (&self.url, &self.url_file) {
            (Some(url), None) => Ok(url.clone()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                }),
            _ => Err(ConfigError::Invalid(
                "storage: backend \"postgres\" needs exactly one of url and url_file".into(),
            )),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// PBKDF2 iterations for newly stored SCRAM keys.
    pub scram_iterations: u32,
    /// Remember recently verified passwords (in memory, as keyed HMAC tags) so repeated
    /// PLAIN logins skip the PBKDF2 derivation.
    pub password_cache: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            scram_iterations: heliograph_auth::sasl::DEFAULT_ITERATIONS,
            password_cache: true,
        }
    }
}

impl Config {
    /// Parses TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_toml_error(text, &e),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Loads `path` if given, else the default path if it exists, else the built-in default.
    pub fn load_or_default(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        match path {
            Some(p) => Ok((Config::load(p)?, Some(p.to_path_buf()))),
            None => {
                let p = Path::new(DEFAULT_CONFIG_PATH);
                if p.exists() {
                    Ok((Config::load(p)?, Some(p.to_path_buf())))
                } else {
                    Ok((Config::default(), None))
                }
            }
        }
    }

    /// Checks cross-field rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.general.hosts.is_empty() {
            return Err(ConfigError::Invalid(
                "general.hosts must name at least one domain".into(),
            ));
        }
        for h in &self.general.hosts {
            if jid::BareJid::new(h)
                .map(|j| j.node().is_some())
                .unwrap_or(true)
            {
                return Err(ConfigError::Invalid(format!(
                    "general.hosts: {h:?} is not a valid domain"
                )));
            }
        }
        if self.general.max_stanza_size < 1024 {
            return Err(ConfigError::Invalid(
                "general.max_stanza_size must be at least 1024".into(),
            ));
        }
        if self.c2s.max_unauthenticated_stanza_size < 1024 {
            return Err(ConfigError::Invalid(
                "c2s.max_unauthenticated_stanza_size must be at least 1024".into(),
            ));
        }
        for l in &self.listen.c2s {
            for p in &l.trusted_proxies {
                if IpRange::parse(p).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "listen.c2s.trusted_proxies: {p:?} is not an address or CIDR range"
                    )));
                }
            }
        }
        for l in &self.listen.component {
            for p in &l.trusted_proxies {
                if IpRange::parse(p).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "listen.component.trusted_proxies: {p:?} is not an address or CIDR range"
                    )));
                }
            }
        }
        for l in &self.listen.http {
            for p in &l.trusted_proxies {
                if IpRange::parse(p).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "listen.http.trusted_proxies: {p:?} is not an address or CIDR range"
                    )));
                }
            }
            if l.bosh_max_hold == 0 || l.bosh_max_wait == 0 || l.bosh_inactivity == 0 {
                return Err(ConfigError::Invalid(
                    "listen.http: bosh_max_hold, bosh_max_wait and bosh_inactivity must be positive"
                        .into(),
                ));
            }
            if !l.static_prefix.starts_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "listen.http.static_prefix: {:?} must start with /",
                    l.static_prefix
                )));
            }
            if let Some(dir) = &l.static_dir
                && !dir.is_dir()
            {
                return Err(ConfigError::Invalid(format!(
                    "listen.http.static_dir: {} is not a folder",
                    dir.display()
                )));
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key must be given together".into(),
            ));
        }
        self.plugins.validate().map_err(ConfigError::Invalid)?;
        let st = &self.storage;
        if st.backend == StorageBackend::Postgres && st.url.is_some() == st.url_file.is_some() {
            return Err(ConfigError::Invalid(
                "storage: backend \"postgres\" needs exactly one of url and url_file".into(),
            ));
        }
        if st.pool_size == 0 || st.connect_timeout_secs == 0 || st.query_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "storage: pool_size and the timeouts must be positive".into(),
            ));
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate(st.backend)?;
        }
        if st.sled_cache_mib == 0 {
            return Err(ConfigError::Invalid(
                "storage: sled_cache_mib must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The tenants defined by this file, normalized: `default` from `general.hosts` (if
    /// any, with the settings of a `[tenants.default]` section: tokens, features,
    /// archive, ...) and every other `[tenants.NAME]`.
    pub fn tenant_specs(&self) -> Result<Vec<(String, TenantSpec)>, ConfigError> {
        let mut out = Vec::new();
        let default_section = self.tenants.get(DEFAULT_TENANT).map(|t| t.spec.clone());
        if !self.general.hosts.is_empty() {
            let spec = match default_section {
                Some(mut spec) => {
                    for host in self.general.hosts.iter().rev() {
                        if !spec.domains.contains(host) {
                            spec.domains.insert(0, host.clone());
                        }
                    }
                    spec
                }
                None => TenantSpec::with_domains(self.general.hosts.clone()),
            };
            out.push((
                DEFAULT_TENANT.to_string(),
                spec.normalized(DEFAULT_TENANT)
                    .map_err(ConfigError::Invalid)?,
            ));
        }
        for (name, tenant) in &self.tenants {
            if name == DEFAULT_TENANT && !self.general.hosts.is_empty() {
                continue;
            }
            let spec = tenant
                .spec
                .clone()
                .normalized(name)
                .map_err(|e| ConfigError::Invalid(format!("tenants.{name}: {e}")))?;
            out.push((name.clone(), spec));
        }
        Ok(out)
    }

    /// Path of the admin token file.
    pub fn admin_token_path(&self) -> PathBuf {
        self.general
            .admin_token_file
            .clone()
            .unwrap_or_else(|| self.general.data_dir.join("admin.token"))
    }

    /// Where uploaded files are stored.
    pub fn upload_dir(&self) -> PathBuf {
        self.upload
            .dir
            .clone()
            .unwrap_or_else(|| self.general.data_dir.join("uploads"))
    }
}

/// Renders a TOML error with its line number and key when available.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}: {msg} (at `{snippet}`)")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_names_line() {
        let err = Config::from_toml(
            "[general]\nhosts = [\"a.test\"]\nbogus = 1\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn storage_section() {
        let cfg = Config::from_toml(
            "[storage]\nbackend = \"postgres\"\nurl = \"host=/tmp dbname=x\"\npool_size = 4\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(cfg.storage.backend, StorageBackend::Postgres);
        assert_eq!(cfg.storage.postgres_url().unwrap(), "host=/tmp dbname=x");
        assert_eq!(cfg.storage.pool_size, 4);
        assert_eq!(cfg.storage.sled_cache_mib, 1024);
        let small = Config::from_toml("[storage]\nsled_cache_mib = 32\n", Path::new("x.toml"));
        assert_eq!(small.unwrap().storage.sled_cache_mib, 32);
        for bad in [
            "[storage]\nsled_cache_mib = 0\n",
            "[storage]\nbackend = \"postgres\"\n",
            "[storage]\nbackend = \"postgres\"\nurl = \"a\"\nurl_file = \"b\"\n",
            "[storage]\npool_size = 0\n",
            "[storage]\nbackend = \"mysql\"\n",
        ] {
            assert!(
                Config::from_toml(bad, Path::new("x.toml")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn plugin_log_rate_keys() {
        let cfg = Config::default();
        assert_eq!(
            (cfg.plugins.log_lines_per_second, cfg.plugins.log_burst),
            (100, 500)
        );
        let cfg = Config::from_toml(
            "[plugins]\nlog_lines_per_second = 20\nlog_burst = 40\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(
            cfg.plugins.log_limit().unwrap(),
            heliograph_plugins::LogLimit::new(20, 40).unwrap()
        );
        // 0 lines a second: plugin log output off (the burst does not matter then).
        let cfg = Config::from_toml(
            "[plugins]\nlog_lines_per_second = 0\nlog_burst = 0\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert!(cfg.plugins.log_limit().unwrap().is_off());
        let err = Config::from_toml("[plugins]\nlog_burst = 0\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("log_burst"), "{err}");
        assert!(
            Config::from_toml(
                "[plugins]\nlog_lines_per_second = -1\n",
                Path::new("x.toml")
            )
            .is_err()
        );
    }

    #[test]
    fn the_default_tenant_takes_its_settings_from_a_tenants_default_section() {
        let cfg = Config::from_toml(
            "[general]\nhosts = [\"a.test\"]\n\n[tenants.default]\n\
             [tenants.default.tokens]\naccess_ttl_secs = 60\n\
             [tenants.default.features]\nmam = false\n\n\
             [tenants.other]\ndomains = [\"b.test\"]\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let specs = cfg.tenant_specs().unwrap();
        let names: Vec<_> = specs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["default", "other"]);
        let default = &specs[0].1;
        assert_eq!(default.domains, ["a.test"]);
        assert_eq!(default.tokens.as_ref().map(|t| t.access_ttl_secs), Some(60));
        assert!(!default.feature_enabled("mam"));
        // Any other tenant still needs domains.
        let cfg = Config::from_toml("[tenants.nodomain]\n", Path::new("x.toml")).unwrap();
        assert!(cfg.tenant_specs().is_err());
    }

    #[test]
    fn parses_listeners() {
        let cfg = Config::from_toml(
            "[[listen.c2s]]\naddress = \"127.0.0.1:0\"\ntls = \"direct\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(cfg.listen.c2s.len(), 1);
        assert_eq!(cfg.listen.c2s[0].tls, TlsMode::Direct);
        assert!(cfg.listen.c2s[0].require_tls);
    }
}

#[cfg(test)]
mod shipped_config_tests {
    use super::*;

    /// The documented config in the repository must parse and equal the built-in default.
    #[test]
    fn shipped_config_matches_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../config/heliograph.toml");
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg, Config::default());
    }
}
