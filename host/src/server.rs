//! The running server's shared state, reached by every task through `Arc<Server>`.
//!
//! STUB for parallel work: the fields used by the admin API are fixed.

use std::sync::Arc;

use crate::config::Config;
use crate::router::Router;
use crate::storage::Storage;

/// Shared state of a running server.
pub struct Server {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub router: Router,
    /// The operator bearer token for the admin API.
    pub admin_token: String,
}

/// Options of `heliograph serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Config file; `None` uses `config/heliograph.toml` if present, else the built-in default.
    pub config: Option<std::path::PathBuf>,
    /// When set, a JSON file written once every listener is bound:
    /// `{"listeners":[{"kind":"c2s","tls":"starttls","address":"127.0.0.1:40001"},
    /// {"kind":"c2s","tls":"direct",...},{"kind":"admin","address":...}],
    /// "admin_token_file":"...","pid":123}`. Tests use it with port 0 listeners.
    pub ready_file: Option<std::path::PathBuf>,
}

/// Runs the server until SIGTERM/SIGINT. STUB: being written.
pub async fn serve(_opts: ServeOptions) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
