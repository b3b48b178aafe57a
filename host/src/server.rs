//! The running server: shared state reached by every task through `Arc<Server>`, and
//! [`serve`], which loads the config, opens storage, binds the listeners, writes the
//! ready file and runs until SIGTERM/SIGINT, then shuts down cleanly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::config::{Config, TlsMode};
use crate::router::Router;
use crate::services::blocking::BlockCache;
use crate::session::StreamErrorCondition;
use crate::storage::Storage;
use crate::transport::listener::{ConnectionTracker, Shutdown};
use crate::transport::{c2s, tls};
use crate::xml::ParserLimits;

/// Shared state of a running server.
pub struct Server {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub router: Router,
    /// The operator bearer token for the admin API.
    pub admin_token: String,
    /// Cached block lists (XEP-0191).
    pub blocklists: BlockCache,
}

impl Server {
    /// State for a server with this config and storage.
    pub fn new(config: Arc<Config>, storage: Storage, admin_token: String) -> Server {
        Server {
            config,
            storage,
            router: Router::default(),
            admin_token,
            blocklists: BlockCache::default(),
        }
    }

    /// True if `domain` is one of the hosts served here.
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.config.general.hosts.iter().any(|h| h == domain)
    }

    /// Parser limits from the config.
    pub fn parser_limits(&self) -> ParserLimits {
        ParserLimits {
            max_stanza_bytes: self.config.general.max_stanza_size,
            max_depth: self.config.general.max_stanza_depth,
        }
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
    /// {"kind":"admin","address":...}],
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
    init_logging(&config.general.log_level);
    match &config_path {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!(
            "no config file, using the built-in default (domain localhost, data in ./data)"
        ),
    }
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.general.data_dir)
        .with_context(|| format!("creating data dir {}", config.general.data_dir.display()))?;
    let storage = Storage::open_sled(&config.general.data_dir.join("db"))
        .with_context(|| format!("opening database in {}", config.general.data_dir.display()))?;
    let token_path = config.admin_token_path();
    let admin_token = load_or_create_token(&token_path)?;
    eprintln!("heliograph: admin API token in {}", token_path.display());
    let tls_ctx = tls::load(&config).context("setting up TLS")?;

    let server = Arc::new(Server::new(config.clone(), storage, admin_token));
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

    wait_for_signal().await;
    tracing::info!("shutting down");
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
    tls::write_private(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

fn init_logging(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
