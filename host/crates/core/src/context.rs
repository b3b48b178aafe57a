//! [`Core`]: the state the core layer owns and every layer above reaches through an
//! `Arc<Core>`: the configuration in force, storage, the tenant registry, the routing
//! table and hosted domains, the hook registry, the plugin host, connection limits, the
//! drain flag and the verified-password cache. Features keep their own state in their
//! own modules; nothing here belongs to one feature.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::hooks::Hooks;
use crate::limits::Limits;
use crate::plugins::PluginHost;
use crate::router::{HostedDomain, HostedDomains, Router};
use crate::storage::{Account, Storage};
use crate::tenants::{Registry, Tenant};
use crate::xml::ParserLimits;

/// Shared state of the core (see the module docs).
pub struct Core {
    config: ArcSwap<Config>,
    pub storage: Storage,
    /// Bound sessions by account.
    pub router: Router,
    /// Tenants by domain and by name (lock-free reads).
    pub tenants: Arc<Registry>,
    /// Domains served inside the server by features (MUC, components).
    pub hosted: HostedDomains,
    /// What the features registered.
    pub hooks: Arc<Hooks>,
    /// Tenants' WebAssembly plugins; set once at startup (servers built for unit tests run
    /// without, and plugin tenants' logins then fail closed).
    pub plugins: OnceLock<PluginHost>,
    /// Connection limits shared by every listener.
    pub limits: Arc<Limits>,
    /// Set once a drain starts.
    pub drain: crate::drain::Drain,
    /// Sessions routing again what they did not deliver; the shutdown waits for them.
    pub rescues: crate::rescues::Rescues,
    /// Message copies queued for the archive and not yet written: messages wait while
    /// there are too many; the shutdown waits until they are written.
    pub backlog: crate::backlog::Backlog,
    /// Recently verified passwords, so PLAIN logins skip PBKDF2 (see `sasl::verified`).
    pub verified_passwords: crate::sasl::verified::VerifiedPasswords,
    /// Where PLAIN logins that need PBKDF2 run it, a bounded few at a time.
    pub derivations: crate::derivations::DerivationPool,
    /// Stream management sessions a client may resume, by resumption id.
    pub resumptions: crate::session::resumption::Resumptions,
    /// iq requests the server sent itself, waiting for their answers.
    pub requests: crate::pipeline::requests::PendingRequests,
    /// Uploaded files and the URL they are served at; set once at startup when an HTTP
    /// listener serves them (XEP-0363).
    pub uploads: OnceLock<Uploads>,
    /// In-band registrations per tenant and client address (XEP-0077).
    pub registrations: crate::registration::RegistrationRate,
    /// What carries stanzas to other servers; set once at startup when federation is on.
    pub federation: OnceLock<Arc<dyn crate::federation::Federation>>,
    /// Where keyed hosted entities (MUC rooms) live in a cluster; set once at startup by
    /// the cluster layer, absent on a server running alone.
    pub placement: OnceLock<Arc<dyn crate::router::Placement>>,
    /// Resumption of sessions other cluster nodes hold; set once at startup by the cluster
    /// layer, absent on a server running alone.
    pub remote_sessions: OnceLock<Arc<dyn crate::session::handoff::RemoteSessions>>,
    /// The HTTP listeners' BOSH sessions and, in a cluster, the relay to other nodes'.
    pub bosh_relays: crate::bosh_relay::BoshRelays,
    /// Tells the other cluster nodes that a message was stored offline; set once at
    /// startup by the cluster layer, absent on a server running alone.
    pub offline_announcer: OnceLock<Arc<dyn OfflineAnnouncer>>,
}

/// What the cluster layer provides so that a message stored offline on one node reaches
/// a session of its account that another node holds and this one does not know yet (the
/// other node runs its [`Hooks::offline_stored`] handlers when it hears of it).
///
/// [`Hooks::offline_stored`]: crate::hooks::Hooks::offline_stored
pub trait OfflineAnnouncer: Send + Sync {
    fn stored(&self, account: &Account);
}

/// Where HTTP file uploads are stored, and the public base URL of the HTTP listener
/// serving them (no trailing slash).
pub struct Uploads {
    pub files: Arc<dyn crate::storage::files::FileStore>,
    pub public_url: String,
    /// Space held by PUTs in progress (the store counts committed files only).
    pub reservations: Arc<crate::upload_reservations::UploadReservations>,
}

impl Core {
    /// The core for this config, storage, tenants and hooks. Hosted-domain resolvers the
    /// features registered are installed here.
    pub fn new(config: Config, storage: Storage, tenants: Registry, hooks: Arc<Hooks>) -> Core {
        let verified_passwords = crate::sasl::verified::VerifiedPasswords::default();
        verified_passwords.set_enabled(config.auth.password_cache);
        let hosted = HostedDomains::default();
        for r in hooks.hosted_resolvers() {
            hosted.add_resolver(r.clone());
        }
        Core {
            config: ArcSwap::from_pointee(config),
            storage,
            router: Router::default(),
            tenants: Arc::new(tenants),
            hosted,
            hooks,
            plugins: OnceLock::new(),
            limits: Arc::default(),
            drain: Default::default(),
            rescues: Default::default(),
            backlog: Default::default(),
            verified_passwords,
            derivations: Default::default(),
            resumptions: Default::default(),
            requests: Default::default(),
            uploads: OnceLock::new(),
            registrations: Default::default(),
            federation: OnceLock::new(),
            placement: OnceLock::new(),
            remote_sessions: OnceLock::new(),
            bosh_relays: Default::default(),
            offline_announcer: OnceLock::new(),
        }
    }

    /// The configuration in force (replaced by reload).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Replaces the configuration (reload).
    pub fn set_config(&self, config: Config) {
        self.verified_passwords
            .set_enabled(config.auth.password_cache);
        self.config.store(Arc::new(config));
    }

    /// The enabled tenant serving `domain`.
    pub fn tenant_of(&self, domain: &str) -> Option<Arc<Tenant>> {
        self.tenants.by_domain(domain).filter(|t| t.enabled())
    }

    /// True if `domain` belongs to an enabled tenant.
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.tenants
            .with_domain(domain, |t| t.enabled())
            .unwrap_or(false)
    }

    /// The enabled tenant a tenant domain or a hosted domain belongs to.
    pub fn tenant_of_any(&self, domain: &str) -> Option<Arc<Tenant>> {
        if let Some(t) = self.tenant_of(domain) {
            return Some(t);
        }
        let hosted = self.hosted.get(self, domain)?;
        self.tenants
            .by_name(hosted.tenant())
            .filter(|t| t.enabled())
    }

    /// True if users of `from_domain` may exchange stanzas with `to_domain` (same tenant,
    /// or tenants federated with each other). Either domain may be a hosted domain (MUC
    /// service, component), which counts as its tenant's.
    pub fn can_reach(&self, from_domain: &str, to_domain: &str) -> bool {
        if from_domain == to_domain {
            return true;
        }
        match (
            self.tenant_of_any(from_domain),
            self.tenant_of_any(to_domain),
        ) {
            (Some(a), Some(b)) => a.can_reach(&b),
            _ => false,
        }
    }

    /// [`Core::can_reach`] for a sender whose tenant is known by name (a hosted entity
    /// knows its own): a MUC room's fan-out asks this for every occupant, and finding
    /// the service's tenant through its domain took several map lookups each time.
    pub fn tenant_can_reach(&self, from_tenant: &str, to_domain: &str) -> bool {
        let direct = self.tenants.with_snapshot(|s| {
            let from = s.by_name(from_tenant).filter(|t| t.enabled())?;
            let to = s.by_domain(to_domain).filter(|t| t.enabled())?;
            Some(from.can_reach(to))
        });
        if let Some(reach) = direct {
            return reach;
        }
        // A hosted `to_domain`, or a tenant that is gone or disabled.
        match (
            self.tenants.by_name(from_tenant).filter(|t| t.enabled()),
            self.tenant_of_any(to_domain),
        ) {
            (Some(a), Some(b)) => a.can_reach(&b),
            _ => false,
        }
    }

    /// The hosted entity serving `domain`, if any.
    pub fn hosted(&self, domain: &str) -> Option<Arc<dyn HostedDomain>> {
        self.hosted.get(self, domain)
    }

    /// Parser limits for a stream of `domain` (the tenant's own stanza size limit if it
    /// sets one), or the server's when the domain is not known yet.
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

    /// The server's parser limits.
    pub fn parser_limits(&self) -> ParserLimits {
        self.parser_limits_for(None)
    }

    /// The plugin host, if this server runs one.
    pub fn plugin_host(&self) -> Option<&PluginHost> {
        self.plugins.get()
    }

    /// True if the account exists in storage; false as well when storage cannot be read
    /// (logged). Callers that must tell the two apart use [`Core::account_known`].
    pub async fn account_exists(&self, account: &crate::storage::Account) -> bool {
        match self.account_known(account).await {
            Ok(known) => known,
            Err(e) => {
                tracing::error!(jid = %account, error = %e, "reading the account failed");
                false
            }
        }
    }

    /// Whether the account exists in storage, or why storage could not say.
    pub async fn account_known(
        &self,
        account: &crate::storage::Account,
    ) -> crate::storage::StorageResult<bool> {
        let users = self.storage.users.clone();
        let account = account.clone();
        crate::storage::blocking(move || users.credentials(&account).map(|c| c.is_some())).await
    }
}
