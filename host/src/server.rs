//! The running server: shared state reached by every task through `Arc<Server>`, and
//! [`serve`], which loads the config, opens storage, binds the listeners, writes the
//! ready file and runs until SIGTERM/SIGINT, then shuts down cleanly.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use anyhow::Context as _;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::config::{Config, TlsMode};
use crate::plugins::PluginHost;
use crate::router::Router;
use crate::services::blocking::BlockCache;
use crate::session::StreamErrorCondition;
use crate::storage::Storage;
use crate::tenants::manage::{self, TenantError};
use crate::tenants::{Registry, Tenant};
use crate::transport::c2s;
use crate::transport::listener::{ConnectionTracker, Shutdown};
use crate::transport::tls::TlsStore;
use crate::xml::ParserLimits;

/// Shared state of a running server.
pub struct Server {
    config: ArcSwap<Config>,
    /// The config file, if the server was started with one (reload re-reads it).
    pub config_path: Option<PathBuf>,
    pub storage: Storage,
    pub router: Router,
    /// Tenants by domain and by name (lock-free reads).
    pub tenants: Arc<Registry>,
    /// Certificates; set once the listeners are set up.
    pub tls: OnceLock<Arc<TlsStore>>,
    /// The operator bearer token for the admin API.
    pub admin_token: String,
    /// Cached block lists (XEP-0191).
    pub blocklists: BlockCache,
    /// Recently verified passwords, so PLAIN logins skip PBKDF2 (see `sasl::verified`).
    pub verified_passwords: crate::sasl::verified::VerifiedPasswords,
    /// Connection limits and drain state (see `edge`).
    pub edge: crate::edge::Edge,
    /// Tenants' WebAssembly plugins; set by [`serve`] (servers built for unit tests run
    /// without, and plugin tenants' logins then fail closed).
    pub plugins: OnceLock<PluginHost>,
    /// Domains served inside the server by MUC, components and the like.
    pub hosted: crate::services::hosted::HostedDomains,
    /// Every tenant's multi-user chat services (resolved through `hosted`).
    pub muc: Arc<crate::muc::MucServices>,
    /// Live XEP-0114 component connections.
    pub components: crate::component::Connections,
}

impl Server {
    /// State for a server with this config and storage: the tenants of the config file
    /// plus those stored through the admin API.
    pub fn build(
        config: Config,
        storage: Storage,
        admin_token: String,
    ) -> Result<Server, TenantError> {
        let records = manage::stored_records(&storage)?;
        let tenants = Registry::with_tenants(manage::all_tenants(&config, records)?)?;
        let verified_passwords = crate::sasl::verified::VerifiedPasswords::default();
        verified_passwords.set_enabled(config.auth.password_cache);
        let muc = Arc::new(crate::muc::MucServices::default());
        let hosted = crate::services::hosted::HostedDomains::default();
        // A component a tenant configured explicitly wins over its MUC service's domain.
        hosted.add_resolver(Arc::new(crate::component::ComponentResolver));
        hosted.add_resolver(Arc::new(crate::muc::service::MucResolver(muc.clone())));
        Ok(Server {
            config: ArcSwap::from_pointee(config),
            config_path: None,
            storage,
            router: Router::default(),
            tenants: Arc::new(tenants),
            tls: OnceLock::new(),
            admin_token,
            blocklists: BlockCache::default(),
            verified_passwords,
            edge: crate::edge::Edge::default(),
            plugins: OnceLock::new(),
            hosted,
            muc,
            components: Default::default(),
        })
    }

    /// Like [`Server::build`], for tests: panics on an invalid setup.
    pub fn new(config: Arc<Config>, storage: Storage, admin_token: String) -> Server {
        Server::build((*config).clone(), storage, admin_token).expect("valid server setup")
    }

    /// The configuration in force (replaced by reload).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Replaces the configuration (reload).
    pub fn set_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// The enabled tenant serving `domain`.
    pub fn tenant_of(&self, domain: &str) -> Option<Arc<Tenant>> {
        self.tenants.by_domain(domain).filter(|t| t.enabled())
    }

    /// True if `domain` belongs to an enabled tenant.
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.tenant_of(domain).is_some()
    }

    /// True if users of `from_domain` may exchange stanzas with `to_domain` (same tenant,
    /// or tenants federated with each other).
    /// Either domain may be a hosted domain (MUC service, component), which counts as
    /// its tenant's.
    pub fn can_reach(&self, from_domain: &str, to_domain: &str) -> bool {
        if from_domain == to_domain {
            return true;
        }
        let snap = self.tenants.snapshot();
        let tenant = |domain: &str| match snap.by_domain(domain) {
            Some(t) => Some(t.clone()),
            None => self
                .hosted
                .get(self, domain)
                .and_then(|h| snap.by_name(h.tenant()).cloned()),
        };
        match (tenant(from_domain), tenant(to_domain)) {
            (Some(a), Some(b)) => a.enabled() && b.enabled() && a.can_reach(&b),
            _ => false,
        }
    }

    /// Parser limits from the config, with the tenant's own stanza size limit if set.
    pub fn parser_limits_for(&self, domain: Option<&str>) -> ParserLimits {
        let config = self.config();
        let tenant_max = domain
            .and_then(|d| self.tenant_of(d))
            .map(|t| t.spec.limits.max_stanza_size)
            .unwrap_or(0);
        ParserLimits {
            max_stanza_bytes: if tenant_max > 0 {
                tenant_max
            } else {
                config.general.max_stanza_size
            },
            max_depth: config.general.max_stanza_depth,
        }
    }

    /// The plugin host, if this server runs one.
    pub fn plugin_host(&self) -> Option<&PluginHost> {
        self.plugins.get()
    }

    /// Parser limits from the config.
    pub fn parser_limits(&self) -> ParserLimits {
        self.parser_limits_for(None)
    }
}

/// Options of `heliograph serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Config file; `None` uses `config/heliograph.toml` if present, else the built-in default.
    pub config: Option<PathBuf>,
    /// When set, a JSON file written once every listener is bound:
    /// `{"listeners":[{"kind":"c2s","tls":"starttls","address":"127.0.0.1:40001"},
    /// {"kind":"c2s","tls":"direct",...},{"kind":"http","tls":false,...},
    /// {"kind":"component","tls":false,...},{"kind":"admin","address":...}],
    /// "admin_token_file":"...","pid":123}`. Tests use it with port 0 listeners.
    pub ready_file: Option<PathBuf>,
}

#[derive(Serialize)]
struct ReadyListener {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<ReadyTls>,
    address: String,
}

/// `"tls"` of a ready-file listener: the c2s mode, or whether an HTTP listener has TLS.
#[derive(Serialize)]
#[serde(untagged)]
enum ReadyTls {
    Mode(&'static str),
    Flag(bool),
}

#[derive(Serialize)]
struct Ready {
    listeners: Vec<ReadyListener>,
    admin_token_file: PathBuf,
    pid: u32,
}

/// How long shutdown waits for connections to close after `system-shutdown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the server until SIGTERM/SIGINT.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let (config, config_path) = Config::load_or_default(opts.config.as_deref())?;
    init_logging(&config.general.log_level, config.general.log_format);
    if config.metrics.enabled {
        crate::metrics::install(config.metrics.per_tenant_labels);
    }
    match &config_path {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!(
            "no config file, using the built-in default (domain localhost, data in ./data)"
        ),
    }
    std::fs::create_dir_all(&config.general.data_dir)
        .with_context(|| format!("creating data dir {}", config.general.data_dir.display()))?;
    let storage = Storage::open_sled(&config.general.data_dir.join("db"))
        .with_context(|| format!("opening database in {}", config.general.data_dir.display()))?;
    let token_path = config.admin_token_path();
    let admin_token = load_or_create_token(&token_path)?;
    eprintln!("heliograph: admin API token in {}", token_path.display());
    let mut server =
        Server::build(config.clone(), storage, admin_token).context("loading tenants")?;
    server.config_path = config_path.clone();
    let tls_ctx =
        Arc::new(TlsStore::load(&config, server.tenants.clone()).context("setting up TLS")?);
    let _ = server.tls.set(tls_ctx.clone());
    let _ = server
        .plugins
        .set(start_plugin_host(&config, &server.storage).await?);
    let server = Arc::new(server);
    crate::tenants::plugin_files::install_all(&server, "startup").await;
    let config = server.config();
    tracing::info!(tenants = server.tenants.snapshot().len(), "tenants loaded");
    let (shutdown_tx, shutdown) = Shutdown::new();
    let tracker = Arc::new(ConnectionTracker::default());
    let mut ready = Vec::new();

    for l in &config.listen.c2s {
        let listener = TcpListener::bind(l.address)
            .await
            .with_context(|| format!("binding c2s listener {}", l.address))?;
        let addr = listener.local_addr()?;
        let tls_name = match l.tls {
            TlsMode::Starttls => "starttls",
            TlsMode::Direct => "direct",
        };
        tracing::info!(address = %addr, tls = tls_name, "c2s listener ready");
        ready.push(ReadyListener {
            kind: "c2s",
            tls: Some(ReadyTls::Mode(tls_name)),
            address: addr.to_string(),
        });
        tokio::spawn(c2s::serve(
            listener,
            Arc::new(l.clone()),
            server.clone(),
            tls_ctx.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }

    for l in &config.listen.http {
        let listener = TcpListener::bind(l.address)
            .await
            .with_context(|| format!("binding HTTP listener {}", l.address))?;
        let addr = listener.local_addr()?;
        tracing::info!(address = %addr, tls = l.tls, bosh = %l.bosh_path, websocket = %l.websocket_path, "HTTP listener ready");
        ready.push(ReadyListener {
            kind: "http",
            tls: Some(ReadyTls::Flag(l.tls)),
            address: addr.to_string(),
        });
        tokio::spawn(crate::transport::http::serve(
            listener,
            Arc::new(l.clone()),
            server.clone(),
            l.tls.then(|| tls_ctx.clone()),
            tracker.clone(),
            shutdown.clone(),
        ));
    }

    for l in &config.listen.component {
        let listener = TcpListener::bind(l.address)
            .await
            .with_context(|| format!("binding component listener {}", l.address))?;
        let addr = listener.local_addr()?;
        tracing::info!(address = %addr, tls = l.tls, "component listener ready");
        ready.push(ReadyListener {
            kind: "component",
            tls: Some(ReadyTls::Flag(l.tls)),
            address: addr.to_string(),
        });
        tokio::spawn(crate::component::listener::serve(
            listener,
            Arc::new(l.clone()),
            server.clone(),
            l.tls.then(|| tls_ctx.clone()),
            tracker.clone(),
            shutdown.clone(),
        ));
    }

    let admin_listener = TcpListener::bind(config.listen.admin.address)
        .await
        .with_context(|| format!("binding admin listener {}", config.listen.admin.address))?;
    let admin_addr = admin_listener.local_addr()?;
    tracing::info!(address = %admin_addr, "admin API ready");
    ready.push(ReadyListener {
        kind: "admin",
        tls: None,
        address: admin_addr.to_string(),
    });
    let mut admin_shutdown = shutdown.clone();
    let admin_task = tokio::spawn(crate::admin::serve(
        admin_listener,
        server.clone(),
        async move {
            admin_shutdown.requested().await;
        },
    ));

    if let Some(path) = &opts.ready_file {
        let doc = Ready {
            listeners: ready,
            admin_token_file: token_path.clone(),
            pid: std::process::id(),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&doc)?)?;
        std::fs::rename(&tmp, path)?;
    }

    tokio::spawn(reload_on_sighup(server.clone()));
    // A drain ends in the same shutdown as a signal; a signal during a drain cuts it short.
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = async {
            server.edge.drain.started().await;
            crate::edge::drain::run(&server).await
        } => {}
    }
    tracing::info!("shutting down");
    // Room occupants learn why they leave (332) before their sessions close.
    let _ = tokio::time::timeout(Duration::from_secs(2), server.muc.shut_down_all(&server)).await;
    for entry in server.router.all_entries() {
        entry.close(StreamErrorCondition::SystemShutdown, None);
    }
    let _ = shutdown_tx.send(true);
    let left = tracker.wait_idle(SHUTDOWN_GRACE).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "connections still open after the grace period"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    let flush = server.storage.flush.clone();
    crate::storage::blocking(move || flush())
        .await
        .context("flushing storage")?;
    tracing::info!("stopped");
    Ok(())
}

/// Creates the plugin host (compiled cache in `<data_dir>/plugin-cache`) and loads every
/// installed plugin from storage; compiled code comes from the cache, so a restart does not
/// recompile.
async fn start_plugin_host(config: &Config, storage: &Storage) -> anyhow::Result<PluginHost> {
    let cache_dir = config.general.data_dir.join("plugin-cache");
    let host = PluginHost::new(config.plugins.clone(), storage.plugins.clone(), &cache_dir)
        .context("starting the plugin host")?;
    let report = host
        .restore_from_storage()
        .await
        .context("restoring installed plugins")?;
    let cache = host.cache_stats();
    tracing::info!(
        slots = report.slots,
        versions = report.versions,
        failed = report.failed.len(),
        compiled = cache.compiled,
        cache_hits = cache.hits,
        pooling = host.uses_pooling_allocator(),
        "plugins restored"
    );
    for f in &report.failed {
        tracing::error!(failure = %f, "plugin version could not be restored");
    }
    Ok(host)
}

/// SIGHUP re-reads the config file (like `heliograph reload`).
async fn reload_on_sighup(server: Arc<Server>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match manage::reload(&server).await {
            Ok(report) => tracing::info!(?report, "SIGHUP: configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload refused, the running configuration stays")
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn load_or_create_token(path: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let t = existing.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::transport::tls::write_private(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

fn init_logging(default_filter: &str, format: crate::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        crate::config::LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
