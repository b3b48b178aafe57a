//! [`Server`]: the running server as the control layer sees it — the core, the features
//! with the state operators reach (rooms, component connections), the certificates, the
//! operator token and the config file. Features never see this; they get the core.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use heliograph_core::Core;
use heliograph_core::hooks::{Feature, HooksBuilder};
use heliograph_services::Services;
use heliograph_transports::tls::TlsStore;

use crate::config::Config;
use crate::storage::Storage;
use crate::tenant_ops::{self, TenantError};
use crate::tenants::Registry;

/// The running server (see the module docs).
pub struct Server {
    pub core: Arc<Core>,
    pub services: Arc<Services>,
    /// Certificates; set once the listeners are set up.
    pub tls: OnceLock<Arc<TlsStore>>,
    /// Federation, when `[s2s] enabled` (set at startup).
    pub s2s: OnceLock<Arc<heliograph_transports::s2s::S2s>>,
    /// The operator bearer token for the admin API.
    pub admin_token: String,
    /// The config file, if the server was started with one (reload re-reads it).
    pub config_path: Option<PathBuf>,
    /// This node in its cluster; set at startup when `[cluster]` is configured.
    pub cluster: OnceLock<Arc<heliograph_cluster::Cluster>>,
}

impl Server {
    /// State for a server with this config and storage: the tenants of the config file
    /// plus those stored through the admin API, the built-in features and `extra` ones
    /// (registered after them).
    pub fn build(
        config: Config,
        storage: Storage,
        admin_token: String,
        extra: Vec<Arc<dyn Feature>>,
    ) -> Result<Server, TenantError> {
        let records = tenant_ops::stored_records(&storage)?;
        let tenants = Registry::with_tenants(tenant_ops::all_tenants(&config, records)?)?;
        let services = Arc::new(Services::default());
        let hooks = services
            .features()
            .into_iter()
            .chain(extra)
            .fold(HooksBuilder::new(), |b, f| b.feature(f))
            .build();
        let core = Arc::new(Core::new(config, storage, tenants, hooks));
        Ok(Server {
            core,
            services,
            tls: OnceLock::new(),
            s2s: OnceLock::new(),
            admin_token,
            config_path: None,
            cluster: OnceLock::new(),
        })
    }

    /// Like [`Server::build`] with the built-in features, for tests: panics on an invalid
    /// setup.
    pub fn new(config: Arc<Config>, storage: Storage, admin_token: String) -> Server {
        Server::build((*config).clone(), storage, admin_token, Vec::new())
            .expect("valid server setup")
    }

    /// The configuration in force (replaced by reload).
    pub fn config(&self) -> Arc<Config> {
        self.core.config()
    }
}
