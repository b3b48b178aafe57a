//! Tenant operations used by the admin API, the CLI (through it) and config reload:
//! create, change, enable/disable, remove (with or without purging data), issue tenant
//! admin tokens, and reload the config file. Each change is persisted before it is
//! applied, and sessions that lose their tenant end with `<host-gone/>`; sessions of other
//! tenants are never touched.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::Server;
use crate::config::{Config, ConfigError};
use crate::storage::{self, Storage, StorageError};
use crate::tenants::registry::{RegistryError, Tenant};
use crate::tenants::spec::{self, TenantRecord, TenantSpec};
use crate::tokens::jwt::{JwtConfigError, JwtVerifier};
use heliograph_transports::tls::{TlsError, load_cert};
use heliograph_xmpp::StreamErrorCondition;

/// Why a tenant operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("no tenant named {0:?}")]
    NotFound(String),
    #[error("tenant {0:?} already exists")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("tenant {0:?} is defined in the config file: change it there and reload")]
    ConfigManaged(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("certificate of tenant {name:?}: {source}")]
    Tls { name: String, source: TlsError },
    #[error("JWT keys of tenant {name:?}: {source}")]
    Jwt {
        name: String,
        source: JwtConfigError,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the server was started without a config file, so there is nothing to reload")]
    NoConfigFile,
}

/// Builds the runtime tenant, loading its certificate if it has one.
pub fn build_tenant(
    name: &str,
    spec: TenantSpec,
    from_config: bool,
    token_sha256: Option<String>,
) -> Result<Tenant, TenantError> {
    let cert = match &spec.tls {
        Some(tls) => Some(Arc::new(load_cert(&tls.cert, &tls.key).map_err(
            |source| TenantError::Tls {
                name: name.to_string(),
                source,
            },
        )?)),
        None => None,
    };
    let jwt = match &spec.jwt {
        Some(settings) => Some(Arc::new(JwtVerifier::load(settings).map_err(|source| {
            TenantError::Jwt {
                name: name.to_string(),
                source,
            }
        })?)),
        None => None,
    };
    Ok(Tenant::new(name.to_string(), spec, from_config, token_sha256, cert).with_jwt(jwt))
}

/// Every tenant: those of the config file (with their stored runtime overrides and
/// tokens) and those created through the admin API.
pub fn all_tenants(
    config: &Config,
    records: Vec<TenantRecord>,
) -> Result<Vec<Tenant>, TenantError> {
    let mut records: BTreeMap<String, TenantRecord> =
        records.into_iter().map(|r| (r.name.clone(), r)).collect();
    let mut out = Vec::new();
    for (name, mut spec) in config.tenant_specs()? {
        let record = records.remove(&name);
        if let Some(enabled) = record.as_ref().and_then(|r| r.enabled_override) {
            spec.enabled = enabled;
        }
        let token = record.and_then(|r| r.token_sha256);
        out.push(build_tenant(&name, spec, true, token)?);
    }
    for (name, record) in records {
        if let Some(spec) = spec::stored_spec(&record)
            .map_err(|e| TenantError::Storage(StorageError::Corrupt(e.to_string())))?
        {
            out.push(build_tenant(&name, spec, false, record.token_sha256)?);
        }
    }
    Ok(out)
}

/// Loads the stored tenant records.
pub fn stored_records(storage: &Storage) -> Result<Vec<TenantRecord>, TenantError> {
    Ok(storage.tenants.tenant_records()?)
}

async fn load_record(server: &Server, name: &str) -> Result<TenantRecord, TenantError> {
    let store = server.core.storage.tenants.clone();
    let records = storage::blocking(move || store.tenant_records()).await?;
    Ok(records
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| TenantRecord::new(name)))
}

async fn save_record(server: &Server, record: TenantRecord) -> Result<(), TenantError> {
    let store = server.core.storage.tenants.clone();
    storage::blocking(move || {
        if record.is_empty() {
            store.delete_tenant_record(&record.name)
        } else {
            store.put_tenant_record(&record)
        }
    })
    .await?;
    Ok(())
}

fn get(server: &Server, name: &str) -> Result<Arc<Tenant>, TenantError> {
    server
        .core
        .tenants
        .by_name(name)
        .ok_or_else(|| TenantError::NotFound(name.to_string()))
}

/// Ends the sessions of these domains with `<host-gone/>`.
fn end_sessions(server: &Server, domains: &[String], why: &str) -> usize {
    let n = server
        .core
        .router
        .close_domains(domains, StreamErrorCondition::HostGone, Some(why));
    if n > 0 {
        tracing::info!(sessions = n, domains = ?domains, reason = why, "ended sessions");
    }
    end_federation(server);
    n
}

/// Ends the s2s streams of local domains that no longer federate with their peer
/// (tenant disabled or removed, federation turned off, peer now denied).
fn end_federation(server: &Server) {
    if let Some(s2s) = server.s2s.get() {
        let n = s2s.close_unfederated(&server.core);
        if n > 0 {
            tracing::info!(streams = n, "ended s2s streams no longer allowed");
        }
    }
}

/// Creates a tenant through the admin API. Users of it can log in as soon as this returns.
pub async fn create(
    server: &Arc<Server>,
    name: &str,
    spec: TenantSpec,
) -> Result<Arc<Tenant>, TenantError> {
    let spec = spec.normalized(name).map_err(TenantError::Invalid)?;
    if server.core.tenants.by_name(name).is_some() {
        return Err(TenantError::Exists(name.to_string()));
    }
    let tenant = build_tenant(name, spec.clone(), false, None)?;
    server.core.tenants.snapshot().check_claims(&tenant)?;
    let mut record = TenantRecord::new(name);
    spec::store_spec(&mut record, &spec);
    // Created only if no node stored it first: of two nodes creating one tenant at once,
    // one gets `Exists` (409). A record without a spec is what a config tenant that has
    // left the file kept (its enabled flag): no tenant, so it is replaced.
    let store = server.core.storage.tenants.clone();
    storage::blocking(move || match store.create_tenant_record(&record) {
        Err(StorageError::AlreadyExists)
            if store
                .tenant_record(&record.name)?
                .is_some_and(|r| r.spec.is_none()) =>
        {
            store.put_tenant_record(&record)
        }
        other => other,
    })
    .await
    .map_err(|e| match e {
        StorageError::AlreadyExists => TenantError::Exists(name.to_string()),
        e => TenantError::Storage(e),
    })?;
    server.core.tenants.upsert(tenant)?;
    tracing::info!(tenant = name, "tenant created");
    crate::cluster::tenants_changed(server);
    get(server, name)
}

/// Changes an API-managed tenant's settings. Sessions of domains it no longer owns end.
pub async fn update(
    server: &Arc<Server>,
    name: &str,
    spec: TenantSpec,
) -> Result<Arc<Tenant>, TenantError> {
    let current = get(server, name)?;
    if current.from_config {
        return Err(TenantError::ConfigManaged(name.to_string()));
    }
    let spec = spec.normalized(name).map_err(TenantError::Invalid)?;
    let tenant = build_tenant(name, spec.clone(), false, current.token_sha256.clone())?;
    let mut record = load_record(server, name).await?;
    spec::store_spec(&mut record, &spec);
    // Check the domains before persisting: the registry refuses a taken domain.
    server.core.tenants.snapshot().check_claims(&tenant)?;
    save_record(server, record).await?;
    let disabling = !spec.enabled && current.enabled();
    // Occupants of MUC services going away (tenant disabled, MUC off, subdomain moved,
    // domain dropped) leave with 332 while the service can still reach them.
    server
        .services
        .muc
        .retire(&server.core, name, &spec.muc_domains())
        .await;
    server.core.tenants.upsert(tenant)?;
    let dropped: Vec<String> = current
        .spec
        .domains
        .iter()
        .filter(|d| !spec.domains.contains(d))
        .cloned()
        .collect();
    end_sessions(server, &dropped, "domain removed from its tenant");
    if disabling {
        end_sessions(server, &spec.domains, "tenant disabled");
        // Persistent rooms are loaded again from storage when the tenant comes back.
        server.services.muc.forget_tenant(name);
    }
    heliograph_services::components::reconcile(&server.core, &server.services.components);
    server.services.external_services.reconcile(&server.core);
    end_federation(server);
    tracing::info!(tenant = name, "tenant changed");
    crate::cluster::tenants_changed(server);
    get(server, name)
}

/// Enables or disables a tenant (API or config). Disabling ends its sessions with
/// `<host-gone/>`; new logins get `host-unknown` until it is enabled again.
pub async fn set_enabled(
    server: &Arc<Server>,
    name: &str,
    enabled: bool,
) -> Result<Arc<Tenant>, TenantError> {
    let current = get(server, name)?;
    let mut record = load_record(server, name).await?;
    let mut spec = current.spec.clone();
    spec.enabled = enabled;
    if current.from_config {
        record.enabled_override = Some(enabled);
    } else {
        spec::store_spec(&mut record, &spec);
    }
    save_record(server, record).await?;
    if !enabled && current.enabled() {
        // Occupants leave with 332 while the service can still reach them.
        server
            .services
            .muc
            .shut_down_tenant(&server.core, name)
            .await;
    }
    let tenant = Tenant::new(
        name.to_string(),
        spec,
        current.from_config,
        current.token_sha256.clone(),
        current.cert.clone(),
    )
    .with_jwt(current.jwt.clone());
    server.core.tenants.upsert(tenant)?;
    if !enabled {
        end_sessions(server, &current.spec.domains, "tenant disabled");
        // Persistent rooms are loaded again from storage when the tenant comes back.
        server.services.muc.forget_tenant(name);
    }
    heliograph_services::components::reconcile(&server.core, &server.services.components);
    server.services.external_services.reconcile(&server.core);
    tracing::info!(tenant = name, enabled, "tenant state changed");
    crate::cluster::tenants_changed(server);
    get(server, name)
}

/// Removes an API-managed tenant. With `purge`, every account and all data of its
/// domains are deleted; otherwise the data stays and returns if the domains come back.
pub async fn remove(server: &Arc<Server>, name: &str, purge: bool) -> Result<(), TenantError> {
    let current = get(server, name)?;
    if current.from_config {
        return Err(TenantError::ConfigManaged(name.to_string()));
    }
    let store = server.core.storage.tenants.clone();
    let n = name.to_string();
    storage::blocking(move || store.delete_tenant_record(&n)).await?;
    // Occupants leave with 332 while the service can still reach them.
    server
        .services
        .muc
        .shut_down_tenant(&server.core, name)
        .await;
    server.core.tenants.remove(name);
    server.services.muc.forget_tenant(name);
    end_sessions(server, &current.spec.domains, "tenant removed");
    heliograph_services::components::reconcile(&server.core, &server.services.components);
    server.services.external_services.reconcile(&server.core);
    if purge {
        for d in current.spec.domains.clone() {
            let users = server.core.storage.users.clone();
            let tokens = server.core.storage.tokens.clone();
            storage::blocking(move || {
                users.purge_domain(&d)?;
                tokens.purge_tokens(&d)
            })
            .await?;
        }
        if let Some(uploads) = server.core.uploads.get()
            && let Err(e) = uploads.files.delete_tenant(name).await
        {
            tracing::warn!(tenant = name, error = %e, "deleting the tenant's uploads");
        }
    }
    tracing::info!(tenant = name, purge, "tenant removed");
    crate::cluster::tenants_changed(server);
    Ok(())
}

/// Hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Issues a new admin token for a tenant (replacing any previous one) and returns it. The
/// token is `NAME.SECRET`; only its hash is stored.
pub async fn issue_token(server: &Arc<Server>, name: &str) -> Result<String, TenantError> {
    let current = get(server, name)?;
    let secret: [u8; 24] = rand::random();
    let token = format!(
        "{name}.{}",
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let hash = token_hash(&token);
    let mut record = load_record(server, name).await?;
    record.token_sha256 = Some(hash.clone());
    save_record(server, record).await?;
    let tenant = Tenant::new(
        name.to_string(),
        current.spec.clone(),
        current.from_config,
        Some(hash),
        current.cert.clone(),
    )
    .with_jwt(current.jwt.clone());
    server.core.tenants.upsert(tenant)?;
    tracing::info!(tenant = name, "tenant admin token issued");
    Ok(token)
}

/// The tenant a tenant token belongs to, if it is valid (constant-time comparison).
pub fn tenant_of_token(server: &Server, token: &str) -> Option<Arc<Tenant>> {
    use subtle::ConstantTimeEq;
    let (name, _) = token.split_once('.')?;
    let tenant = server.core.tenants.by_name(name)?;
    let expected = tenant.token_sha256.as_deref()?;
    let given = token_hash(token);
    bool::from(given.as_bytes().ct_eq(expected.as_bytes())).then_some(tenant)
}

/// What a reload changed.
#[derive(Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub sessions_ended: usize,
    /// Settings that need a restart to take effect (listeners, data dir, `[plugins]`).
    pub needs_restart: Vec<String>,
    /// Plugin files of the config (`[tenants.NAME.plugins.SLOT]`) installed or refused.
    pub plugins: super::plugin_files::PluginFilesReport,
}

/// Re-reads the config file and applies the differences. An invalid file changes nothing.
pub async fn reload(server: &Arc<Server>) -> Result<ReloadReport, TenantError> {
    let path = server
        .config_path
        .clone()
        .ok_or(TenantError::NoConfigFile)?;
    let new_config = Config::load(&path)?;
    let records = {
        let store = server.core.storage.tenants.clone();
        storage::blocking(move || store.tenant_records()).await?
    };
    let tenants = all_tenants(&new_config, records)?;
    check_overlaps(&tenants)?;
    if let Some(tls) = server.tls.get() {
        tls.reload(&new_config).map_err(|source| TenantError::Tls {
            name: "(fallback)".into(),
            source,
        })?;
    }
    let old_config = server.config();
    let mut report = ReloadReport::default();
    if old_config.listen != new_config.listen {
        report.needs_restart.push("listen".into());
    }
    if old_config.general.data_dir != new_config.general.data_dir {
        report.needs_restart.push("general.data_dir".into());
    }
    if old_config.plugins != new_config.plugins {
        report.needs_restart.push("plugins".into());
    }
    let before = server.core.tenants.snapshot();
    let served_before: HashSet<String> = before
        .list()
        .iter()
        .filter(|t| t.enabled())
        .flat_map(|t| t.spec.domains.clone())
        .collect();
    for t in &tenants {
        match before.by_name(&t.name) {
            None => report.added.push(t.name.clone()),
            Some(old) if old.spec != t.spec => report.changed.push(t.name.clone()),
            Some(old) if old.cert.as_ref().map(|c| &c.leaf) != t.cert.as_ref().map(|c| &c.leaf) => {
                report.changed.push(t.name.clone())
            }
            _ => {}
        }
    }
    let names: HashSet<&str> = tenants.iter().map(|t| t.name.as_str()).collect();
    report.removed = before
        .list()
        .iter()
        .filter(|t| !names.contains(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect();
    let served_after: HashSet<String> = tenants
        .iter()
        .filter(|t| t.enabled())
        .flat_map(|t| t.spec.domains.clone())
        .collect();
    server
        .core
        .verified_passwords
        .set_enabled(new_config.auth.password_cache);
    // Occupants of MUC services going away leave with 332 while they can be reached.
    for old in before.list() {
        let keep = tenants
            .iter()
            .find(|t| t.name == old.name)
            .map(|t| t.spec.muc_domains())
            .unwrap_or_default();
        server
            .services
            .muc
            .retire(&server.core, &old.name, &keep)
            .await;
    }
    server.core.set_config(new_config);
    server.core.tenants.replace_all(tenants)?;
    let gone: Vec<String> = served_before.difference(&served_after).cloned().collect();
    report.sessions_ended = end_sessions(server, &gone, "domain no longer served after reload");
    heliograph_services::components::reconcile(&server.core, &server.services.components);
    server.services.external_services.reconcile(&server.core);
    report.plugins = super::plugin_files::install_all(server, "reload").await;
    tracing::info!(added = ?report.added, removed = ?report.removed, changed = ?report.changed, "configuration reloaded");
    for key in &report.needs_restart {
        tracing::warn!(key = %key, "changed in the config file; takes effect after a restart");
    }
    Ok(report)
}

fn check_overlaps(tenants: &[Tenant]) -> Result<(), TenantError> {
    let mut claims = crate::tenants::claims::DomainClaims::default();
    for t in tenants {
        claims.check(&t.name, &t.spec)?;
        claims.insert(&t.name, &t.spec);
    }
    Ok(())
}
