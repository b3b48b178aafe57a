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
