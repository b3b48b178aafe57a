//! `heliograph serve`: loads the config, opens storage (sled or PostgreSQL), builds the server (core,
//! features, tenants, plugins), binds the listeners of the config — a table of
//! listener kinds, each wired to its transport — writes the ready file and runs until
//! SIGTERM/SIGINT (or a drain ends), then shuts down cleanly.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use heliograph_control::{Server, tenant_ops};
use heliograph_core::hooks::Feature;
use heliograph_core::shutdown::Shutdown;
use heliograph_services::components::ComponentStream;
use heliograph_storage_postgres::PgSettings;
use heliograph_transports::listener::ConnectionTracker;
use heliograph_transports::tcp::{ComponentStart, serve_c2s, serve_components};
use heliograph_transports::tls::TlsStore;
use serde::Serialize;
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::{Config, StorageBackend, TlsMode};
use crate::plugins::PluginHost;
use crate::session::StreamErrorCondition;
use crate::storage::Storage;

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
/// The longest the shutdown waits for ended sessions to route again what they held, and
/// then for the archive's queued writes (a safety net: a rescue is bounded by the
/// session's queue and the storage's speed, the archive's queue by `core::backlog`).
const RESCUE_LIMIT: Duration = Duration::from_secs(120);

/// Runs the server until SIGTERM/SIGINT.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    serve_with(opts, Vec::new(), std::future::pending()).await
}

/// Runs the server with `extra` features registered after the built-in ones, until
/// SIGTERM/SIGINT, the end of a drain, or `stop`.
pub async fn serve_with(
    opts: ServeOptions,
    extra: Vec<Arc<dyn Feature>>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (config, config_path) = Config::load_or_default(opts.config.as_deref())?;
    init_logging(&config.general.log_level, config.general.log_format);
    let signals = Signals::install();
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
    let storage = open_storage(&config, config.storage.migrate)?;
    tracing::info!(backend = storage.backend.name(), "storage opened");
    let token_path = config.admin_token_path();
    let admin_token = load_or_create_token(&token_path)?;
    eprintln!("heliograph: admin API token in {}", token_path.display());
    let mut server =
        Server::build(config.clone(), storage, admin_token, extra).context("loading tenants")?;
    server.config_path = config_path.clone();
    let tls =
        Arc::new(TlsStore::load(&config, server.core.tenants.clone()).context("setting up TLS")?);
    let _ = server.tls.set(tls.clone());
    if config.s2s.enabled {
        let s2s = start_s2s(&config, tls.clone())?;
        let _ = server.core.federation.set(s2s.clone());
        let _ = server.s2s.set(s2s);
    }
    let _ = server
        .core
        .plugins
        .set(start_plugin_host(&config, &server.core.storage).await?);
    let server = Arc::new(server);
    if let Some(settings) = &config.cluster {
        let cluster = heliograph_cluster::Cluster::start(server.core.clone(), settings)
            .await
            .context("joining the cluster")?;
        tokio::spawn(heliograph_control::cluster::follow(
            server.clone(),
            cluster.clone(),
        ));
        let _ = server.cluster.set(cluster);
    }
    heliograph_control::plugin_files::install_all(&server, "startup").await;
    tracing::info!(
        tenants = server.core.tenants.snapshot().len(),
        features = ?server.core.hooks.feature_names(),
        "tenants loaded"
    );
    let (shutdown_tx, shutdown) = Shutdown::new();
    let tracker = Arc::new(ConnectionTracker::default());
    let mut ready = Vec::new();
    let backlog = listen_backlog(&server.config());
    for l in listeners(&server.config()) {
        let socket = bind(l.address, backlog)
            .with_context(|| format!("binding {} listener {}", l.kind, l.address))?;
        let address = socket.local_addr()?;
        tracing::info!(kind = l.kind, address = %address, "listener ready");
        ready.push(ReadyListener {
            kind: l.kind,
            tls: l.tls,
            address: address.to_string(),
        });
        let (server, tls, tracker, shutdown) = (
            server.clone(),
            tls.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        let core = server.core.clone();
        match l.serve {
            Serve::C2s(c) => {
                // Another node's drain sends clients to the first client listener.
                if let Some(cluster) = server.cluster.get() {
                    cluster.default_public_address(&address.to_string());
                }
                tokio::spawn(serve_c2s(socket, Arc::new(c), core, tls, tracker, shutdown));
            }
            Serve::S2s(l) => {
                let Some(s2s) = server.s2s.get().cloned() else {
                    continue;
                };
                tokio::spawn(heliograph_transports::s2s::serve_s2s(
                    socket,
                    Arc::new(l),
                    s2s,
                    core,
                    tracker,
                    shutdown,
                ));
            }
            Serve::Http(h) => {
                // The first HTTP listener serves uploads (XEP-0363), at the configured
                // public URL or at the address it is bound to.
                if core.uploads.get().is_none() {
                    let config = server.config();
                    let public_url = match config.upload.public_url.trim_end_matches('/') {
                        "" if h.tls => format!("https://{address}"),
                        "" => format!("http://{address}"),
                        url => url.to_string(),
                    };
                    let files = heliograph_storage::files::DiskFiles::new(config.upload_dir());
                    let _ = core.uploads.set(heliograph_core::Uploads {
                        files: Arc::new(files),
                        public_url,
                        reservations: Arc::default(),
                    });
                    tokio::spawn(heliograph_services::upload::expiry_loop(core.clone()));
                }
                let tls = h.tls.then_some(tls);
                tokio::spawn(heliograph_transports::http::serve(
                    socket,
                    Arc::new(*h),
                    core,
                    tls,
                    tracker,
                    shutdown,
                ));
            }
            Serve::Component(c) => {
                let tls = c.tls.then_some(tls);
                let connections = server.services.components.clone();
                let make = {
                    let core = core.clone();
                    move |start: ComponentStart| {
                        ComponentStream::new(
                            core.clone(),
                            connections.clone(),
                            start.id,
                            start.mailbox,
                        )
                    }
                };
                tokio::spawn(serve_components(
                    socket,
                    Arc::new(c),
                    core,
                    tls,
                    tracker,
                    shutdown,
                    make,
                ));
            }
        }
    }
    let admin_listener =
        bind(server.config().listen.admin.address, backlog).with_context(|| {
            format!(
                "binding admin listener {}",
                server.config().listen.admin.address
            )
        })?;
    let admin_addr = admin_listener.local_addr()?;
    tracing::info!(address = %admin_addr, "admin API ready");
    ready.push(ReadyListener {
        kind: "admin",
        tls: None,
        address: admin_addr.to_string(),
    });
    let mut admin_shutdown = shutdown.clone();
    let admin_task = tokio::spawn(heliograph_control::admin::serve(
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

    let Signals { term, int, hup } = signals;
    tokio::spawn(reload_on_sighup(server.clone(), hup));
    // A drain ends in the same shutdown as a signal; a signal during a drain cuts it short.
    let drain_deadline = tokio::select! {
        _ = stop_requested(term, int) => None,
        _ = stop => None,
        deadline = async {
            server.core.drain.started().await;
            heliograph_control::drain::run(&server).await
        } => Some(deadline),
    };
    tracing::info!("shutting down");
    // Room occupants learn why they leave (332) before their sessions close.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        server.services.muc.shut_down_all(&server.core),
    )
    .await;
    for entry in server.core.router.all_entries() {
        entry.close(StreamErrorCondition::SystemShutdown, None);
    }
    if let Some(cluster) = server.cluster.get() {
        // The other nodes drop this node's sessions now rather than after dead_after_ms.
        cluster.leave().await;
    }
    let _ = shutdown_tx.send(true);
    // Outgoing s2s streams close with their closing tag (incoming ones got
    // `system-shutdown` from the signal above).
    if let Some(s2s) = server.s2s.get() {
        s2s.close_streams(None);
    }
    // After a drain, connections still closing get until the drain's deadline.
    let grace = drain_deadline
        .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
        .unwrap_or_default()
        .max(SHUTDOWN_GRACE);
    let left = tracker.wait_idle(grace).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "connections still open after the grace period"
        );
    }
    // Sessions routing again what they accepted and did not deliver finish, however long
    // the grace for slow clients was: cut short, the rest of their queue would be lost.
    let rescuing = server.core.rescues.active();
    if rescuing > 0 {
        tracing::info!(
            sessions = rescuing,
            "waiting for ended sessions to store what they held"
        );
        let left = server.core.rescues.wait_idle(RESCUE_LIMIT).await;
        if left > 0 {
            tracing::error!(
                sessions = left,
                "sessions still storing what they held after {} s: their messages may be lost",
                RESCUE_LIMIT.as_secs()
            );
        }
    }
    // Copies of delivered messages still queued for the archive are written before the
    // storage's last flush.
    let queued = server.core.backlog.pending();
    if queued > 0 {
        tracing::info!(queued, "waiting for the archive to write what is queued");
        let left = server.core.backlog.wait_empty(RESCUE_LIMIT).await;
        if left > 0 {
            tracing::error!(
                queued = left,
                "archive writes still queued after {} s: they are lost",
                RESCUE_LIMIT.as_secs()
            );
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    let flush = server.core.storage.flush.clone();
    crate::storage::blocking(move || flush())
        .await
        .context("flushing storage")?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the configured storage: sled in `<data_dir>/db`, or PostgreSQL, whose schema is
/// migrated to this build's when `migrate` (else it must already be; a newer schema is
/// always refused).
pub fn open_storage(config: &Config, migrate: bool) -> anyhow::Result<Storage> {
    match config.storage.backend {
        StorageBackend::Sled => {
            let dir = config.general.data_dir.join("db");
            Storage::open_sled_with_cache(&dir, config.storage.sled_cache_mib << 20)
                .with_context(|| format!("opening the sled database in {}", dir.display()))
        }
        StorageBackend::Postgres => {
            let schema = if migrate {
                heliograph_storage_postgres::Schema::Migrate
            } else {
                heliograph_storage_postgres::Schema::Require
            };
            heliograph_storage_postgres::open(&postgres_settings(config)?, schema)
                .context("opening the PostgreSQL storage")
        }
    }
}

/// The `[storage]` settings for PostgreSQL (the URL read from `url_file` if given).
pub fn postgres_settings(config: &Config) -> anyhow::Result<PgSettings> {
    let st = &config.storage;
    let mut settings = PgSettings::new(st.postgres_url()?);
    settings.pool_size = st.pool_size;
    settings.connect_timeout = Duration::from_secs(st.connect_timeout_secs);
    settings.query_timeout = Duration::from_secs(st.query_timeout_secs);
    settings.ca_file = st.ca_file.clone();
    Ok(settings)
}

/// What a configured listener runs.
enum Serve {
    C2s(crate::config::C2sListener),
    // Boxed: an HTTP listener's settings are several times the size of the others'.
    Http(Box<crate::config::HttpListener>),
    Component(crate::config::ComponentListener),
    S2s(crate::config::S2sListener),
}

/// One row of the listener table.
struct ListenerRow {
    kind: &'static str,
    address: std::net::SocketAddr,
    tls: Option<ReadyTls>,
    serve: Serve,
}

/// The listeners of the config, in the order they are bound and reported.
fn listeners(config: &Config) -> Vec<ListenerRow> {
    let c2s = config.listen.c2s.iter().map(|l| ListenerRow {
        kind: "c2s",
        address: l.address,
        tls: Some(ReadyTls::Mode(match l.tls {
            TlsMode::Starttls => "starttls",
            TlsMode::Direct => "direct",
        })),
        serve: Serve::C2s(l.clone()),
    });
    let http = config.listen.http.iter().map(|l| ListenerRow {
        kind: "http",
        address: l.address,
        tls: Some(ReadyTls::Flag(l.tls)),
        serve: Serve::Http(Box::new(l.clone())),
    });
    let component = config.listen.component.iter().map(|l| ListenerRow {
        kind: "component",
        address: l.address,
        tls: Some(ReadyTls::Flag(l.tls)),
        serve: Serve::Component(l.clone()),
    });
    // s2s listeners are bound only when federation is on.
    let s2s = config
        .listen
        .s2s
        .iter()
        .filter(|_| config.s2s.enabled)
        .map(|l| ListenerRow {
            kind: "s2s",
            address: l.address,
            tls: Some(ReadyTls::Mode(match l.tls {
                TlsMode::Starttls => "starttls",
                TlsMode::Direct => "direct",
            })),
            serve: Serve::S2s(l.clone()),
        });
    c2s.chain(http).chain(component).chain(s2s).collect()
}

/// The federation service: the dialback secret (configured, or generated once into the
/// data dir) and the authorities peers' certificates are checked against.
fn start_s2s(
    config: &Config,
    tls: Arc<TlsStore>,
) -> anyhow::Result<Arc<heliograph_transports::s2s::S2s>> {
    let secret = match &config.s2s.dialback_secret {
        Some(s) => s.clone(),
        None => {
            let path = config.general.data_dir.join("s2s-dialback.secret");
            match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
                _ => {
                    use rand::Rng;
                    let mut rng = rand::rng();
                    let s: String = (0..64)
                        .map(|_| format!("{:x}", rng.random::<u8>() & 0xf))
                        .collect();
                    heliograph_transports::tls::write_private(&path, s.as_bytes())
                        .context("writing the dialback secret")?;
                    s
                }
            }
        }
    };
    let certs = heliograph_transports::s2s::certs::PeerCerts::load(config.s2s.ca_file.as_deref())
        .context("loading the s2s certificate authorities")?;
    heliograph_transports::s2s::S2s::new(tls, secret, certs).context("s2s TLS setup")
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

/// The signals the server acts on, installed as it starts, before it says it is ready
/// (the ready file, the listeners): a signal that came before its handler would end the
/// process with the default action, with no clean shutdown. A test that stopped a server
/// right after it was ready, on a busy machine, saw exactly that.
struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
    hup: Option<Signal>,
}

impl Signals {
    fn install() -> Signals {
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }
}

/// SIGHUP re-reads the config file (like `heliograph reload`).
async fn reload_on_sighup(server: Arc<Server>, hup: Option<Signal>) {
    let Some(mut hup) = hup else {
        return;
    };
    while hup.recv().await.is_some() {
        match tenant_ops::reload(&server).await {
            Ok(report) => tracing::info!(?report, "SIGHUP: configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload refused, the running configuration stays")
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT.
async fn stop_requested(term: Option<Signal>, int: Option<Signal>) {
    async fn next(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        _ = next(term) => {}
        _ = next(int) => {}
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
    heliograph_transports::tls::write_private(path, format!("{token}\n").as_bytes())?;
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

/// Binds a listening socket with `backlog` (the runtime's own bind uses 128, too short
/// for a burst of logins: the kernel drops the SYNs beyond it).
fn bind(address: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As the runtime's own bind does: a restarted server gets its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// The configured listen backlog; says so when the kernel caps it lower.
fn listen_backlog(config: &Config) -> u32 {
    let wanted = config.general.listen_backlog.max(1);
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if let Some(max) = somaxconn
        && max < wanted
    {
        tracing::warn!(
            listen_backlog = wanted,
            somaxconn = max,
            "the kernel caps the listen backlog (raise net.core.somaxconn)"
        );
    }
    wanted
}
