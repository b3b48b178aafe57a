//! The plugin host: tenants' WebAssembly components behind the WIT worlds in `wit/`.
//!
//! [`PluginHost`] holds, per (tenant, slot), the active version of a plugin and a few
//! previous ones for rollback. The pipeline, one module per step:
//!
//! - [`loader`]: upload screening (size, header, no precompiled artifacts), compile via
//!   the [`cache`] (keyed by the Wasm's SHA-256 and the engine's compatibility hash, so a
//!   restart does not recompile), a precise check against the world, pre-instantiation.
//! - trial instantiation and the optional `lifecycle.init` with the plugin's
//!   configuration ([`call`]), then persistence ([`heliograph_storage::PluginStore`]) and an
//!   atomic switch (`ArcSwap`): calls in flight finish on the old version, calls that start
//!   after `install` returns use the new one.
//! - [`call`]: every call gets a store and instance ([`state`] holds its data and
//!   implements the host API), fresh or, for plugins whose policy allows it, an idle one
//!   of the same tenant, slot and version under the rules of [`reuse`]; with an epoch
//!   deadline ([`engine`] runs the ticker) and a memory cap ([`limits`]). Failures are
//!   typed ([`error`]) and counted ([`stats`]).
//!
//! [`sync`] follows changes another cluster node made in the shared store.
//!
//! Tenants are plain names here; binding a tenant's auth setting to a slot is the tenant
//! registry's job.

mod bindings;
mod cache;
mod call;
mod engine;
mod error;
mod fair;
mod health;
mod limits;
mod loader;
mod lograte;
mod reuse;
mod room;
mod settings;
mod state;
mod stats;
mod sync;
mod types;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use cache::{CacheStats, sha256_hex};
pub use error::{FailureCause, InstallError, PluginError};
pub use health::VersionHealth;
pub use lograte::{LogLimit, LogLimitError};
pub use reuse::{AUTO_REUSE_CALLS, AUTO_REUSE_MIN_BYTES, ReusePolicy};
pub use room::{PolicyOccupant, PolicyRoom, PolicyUser, RoomAnswer, RoomOutcome, RoomQuestion};
pub use settings::PluginSettings;
pub use stats::PluginStats;
pub use sync::SlotSync;
pub use types::{
    AuthDenied, AuthOutcome, AuthRequest, AuthUser, ComponentOutcome, ComponentStanza, Mechanism,
    PluginConfig, RegistrationOutcome, RegistrationRequest, RestoreReport, SlotInfo, StanzaKind,
    Transport, VersionInfo, World,
};

use bindings::authenticator::Authenticator;
use call::CallContext;
use heliograph_storage::{PluginStore, SlotRecord, VersionRecord};
use loader::Prepared;
use state::{CallScope, CallState};
use stats::{Outcome, SlotStats};

/// The version of the WIT package this host serves, read from `wit/heliograph-plugin.wit`
/// at build time (the one place it is written). Components built against an older
/// version of the same track ([`WIT_TRACK`]) load too: 0.1.x versions only add.
pub const WIT_VERSION: &str = env!("HELIOGRAPH_WIT_VERSION");

/// The semver-compatible track of [`WIT_VERSION`] (`0.minor` while the package is 0.x).
pub const WIT_TRACK: &str = env!("HELIOGRAPH_WIT_TRACK");

/// What [`PluginHost::probe_instance`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceProbe {
    /// Creating the instance (a store, the instance from the pre-instantiated component).
    pub instantiation: std::time::Duration,
    /// Its linear memory once instantiated, in bytes.
    pub memory_bytes: u64,
}

/// Runs many tenants' plugins. Cheap to clone (shared state).
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

struct Inner {
    settings: PluginSettings,
    engine: Engine,
    pooling: bool,
    linker: Linker<CallState>,
    cache: cache::CompiledCache,
    store: Arc<dyn PluginStore>,
    /// tenant -> slot -> plugin.
    slots: RwLock<HashMap<String, HashMap<String, Arc<Slot>>>>,
    /// Serializes install, rollback, remove and restore.
    admin: tokio::sync::Mutex<()>,
    /// Bounds instances alive at once: `max_concurrent_calls` (the pool's size), and no more
    /// than the CPUs available; shared fairly between tenants (see [`fair`]).
    permits: Arc<fair::FairPermits>,
    /// Instances waiting for another call of their (tenant, slot, version).
    idle: reuse::IdleInstances,
    /// Each tenant's rate of plugin log lines.
    log_rates: lograte::LogRates,
    _ticker: engine::EpochTicker,
}

/// One (tenant, slot): its active version, the versions kept, its figures.
struct Slot {
    tenant: Arc<str>,
    slot: Arc<str>,
    world: World,
    active: ArcSwap<Loaded>,
    /// Kept versions, oldest first (the active one among them).
    kept: Mutex<Vec<Arc<Loaded>>>,
    stats: SlotStats,
}

/// One loaded version.
struct Loaded {
    record: VersionRecord,
    config: Arc<PluginConfig>,
    prepared: Prepared,
    /// Calls one instance may serve (1: a fresh instance per call).
    reuse_calls: u32,
    /// Unique to this load (see `reuse::ReuseKey`).
    load_id: u64,
    /// How it has served (for rollback and eviction).
    health: health::Health,
}

impl PluginHost {
    /// Builds the engine (pooling allocator if possible), starts the epoch ticker and opens
    /// the compiled cache in `cache_dir`. Nothing is loaded: call
    /// [`restore_from_storage`](Self::restore_from_storage) at startup.
    pub fn new(
        settings: PluginSettings,
        store: Arc<dyn PluginStore>,
        cache_dir: impl Into<PathBuf>,
    ) -> anyhow::Result<PluginHost> {
        settings.validate().map_err(anyhow::Error::msg)?;
        let log_limit = settings.log_limit()?;
        if log_limit.is_off() {
            tracing::info!("plugin log output is off (plugins.log_lines_per_second = 0)");
        }
        let (engine, pooling) =
            engine::build(&settings).map_err(|e| anyhow::anyhow!("plugin engine: {e:#}"))?;
        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e:#}"))?;
        // The host interfaces every world imports are linked once (through the
        // authenticator's bindings, which the other worlds share); each world adds only its
        // own type interfaces.
        Authenticator::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("linking the host API: {e:#}"))?;
        bindings::room_policy::heliograph::plugin::room_types::add_to_linker::<
            CallState,
            HasSelf<CallState>,
        >(&mut linker, |s| s)
        .map_err(|e| anyhow::anyhow!("linking the room-policy types: {e:#}"))?;
        bindings::component::heliograph::plugin::component_types::add_to_linker::<
            CallState,
            HasSelf<CallState>,
        >(&mut linker, |s| s)
        .map_err(|e| anyhow::anyhow!("linking the component types: {e:#}"))?;
        let cache_dir = cache_dir.into();
        let cache = cache::CompiledCache::new(&cache_dir, &engine)
            .map_err(|e| anyhow::anyhow!("plugin cache directory {}: {e}", cache_dir.display()))?;
        let ticker = engine::EpochTicker::start(
            engine.clone(),
            std::time::Duration::from_millis(settings.epoch_tick_ms),
        )?;
        // Calls run at most one per CPU (and never more than the pool holds): more would
        // only time-slice, stretching every call's wall-clock deadline, so a burst of logins
        // on a small machine could time out innocent plugins. Waiting for a permit happens
        // before the deadline starts.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let running = (settings.max_concurrent_calls as usize).min(cpus);
        let permits = fair::FairPermits::new(running);
        // Idle instances hold pool slots: never so many that the calls that may run at
        // once (and an install's trial) could find the pool empty.
        let idle_capacity = (settings.max_idle_instances as usize)
            .min((settings.max_concurrent_calls as usize).saturating_sub(running));
        let idle = reuse::IdleInstances::new(
            idle_capacity,
            std::time::Duration::from_secs(settings.reuse_max_age_s),
        );
        Ok(PluginHost {
            inner: Arc::new(Inner {
                settings,
                engine,
                pooling,
                linker,
                cache,
                store,
                slots: RwLock::new(HashMap::new()),
                admin: tokio::sync::Mutex::new(()),
                permits,
                idle,
                log_rates: lograte::LogRates::new(log_limit),
                _ticker: ticker,
            }),
        })
    }

    /// Instances idle now, waiting for another call of their plugin version (instance
    /// reuse).
    pub fn idle_instances(&self) -> usize {
        self.inner.idle.len()
    }

    /// Whether instances come from the pooling allocator (false after a fallback).
    pub fn uses_pooling_allocator(&self) -> bool {
        self.inner.pooling
    }

    /// Compilations and compiled-cache hits since this host was created.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Installs `wasm` as the new active version of (tenant, slot): size check, hash,
    /// compile off the async runtime, check against `world`, trial instantiation and the
    /// optional `init` with `config`, persist, switch. On error nothing changed, and the
    /// refusal is logged with tenant, slot and reason.
    pub async fn install(
        &self,
        tenant: &str,
        slot: &str,
        world: World,
        wasm: Vec<u8>,
        config: PluginConfig,
    ) -> Result<VersionInfo, InstallError> {
        self.install_as(tenant, slot, Some(world), wasm, Some(config))
            .await
    }

    /// [`install`](Self::install) for uploads that do not say their world: a slot that
    /// holds a plugin keeps its world (a component of another world is refused); a new
    /// slot takes the world whose interface the component exports. With `config` `None`
    /// the new version gets the active version's configuration (an empty one in a new
    /// slot); [`VersionInfo::config_from`] says which.
    pub async fn install_detecting_world(
        &self,
        tenant: &str,
        slot: &str,
        wasm: Vec<u8>,
        config: Option<PluginConfig>,
    ) -> Result<VersionInfo, InstallError> {
        let world = self.slot(tenant, slot).map(|s| s.world);
        self.install_as(tenant, slot, world, wasm, config).await
    }

    async fn install_as(
        &self,
        tenant: &str,
        slot: &str,
        world: Option<World>,
        wasm: Vec<u8>,
        config: Option<PluginConfig>,
    ) -> Result<VersionInfo, InstallError> {
        let size = wasm.len();
        let result = self.try_install(tenant, slot, world, wasm, config).await;
        if let Err(e) = &result {
            tracing::warn!(tenant = %tenant, plugin = %slot, size, reason = %e,
                "plugin upload refused; the previous version keeps serving");
        }
        result
    }

    async fn try_install(
        &self,
        tenant: &str,
        slot: &str,
        world: Option<World>,
        wasm: Vec<u8>,
        config: Option<PluginConfig>,
    ) -> Result<VersionInfo, InstallError> {
        check_tenant(tenant)?;
        check_slot(slot)?;
        loader::screen(&wasm, self.inner.settings.max_upload_bytes())?;
        let sha256 = cache::sha256_hex(&wasm);
        let inner = self.inner.clone();
        let compile_start = Instant::now();
        let (prepared, wasm, sha256) = blocking(move || {
            let prepared = loader::prepare(
                &inner.engine,
                &inner.cache,
                &inner.linker,
                world,
                &sha256,
                &wasm,
            );
            (prepared, wasm, sha256)
        })
        .await?;
        let (world, prepared) = prepared?;
        let compile_ms = compile_start.elapsed().as_millis() as u64;

        let _admin = self.inner.admin.lock().await;
        let existing = self.slot(tenant, slot);
        if let Some(s) = &existing
            && s.world != world
        {
            return Err(InstallError::WorldMismatch {
                tenant: tenant.into(),
                slot: slot.into(),
                installed: s.world.name(),
                requested: world.name(),
            });
        }
        // No configuration given: the active version's (resolved under the admin lock, so
        // a concurrent install cannot slip between).
        let (config, config_from) = match config {
            Some(c) => (Arc::new(c), None),
            None => match &existing {
                Some(s) => {
                    let active = s.active.load();
                    (active.config.clone(), Some(active.record.version))
                }
                None => (Arc::new(PluginConfig::default()), None),
            },
        };
        let previous = self.stored_record(tenant, slot)?;
        let version = previous
            .as_ref()
            .and_then(|r| r.versions.iter().map(|v| v.version).max())
            .unwrap_or(0)
            + 1;
        let loaded = Arc::new(Loaded {
            record: VersionRecord {
                version,
                sha256: sha256.clone(),
                size: wasm.len() as u64,
                config: config.json().to_string(),
                installed_at_ms: now_ms(),
            },
            config,
            prepared,
            reuse_calls: self
                .inner
                .settings
                .reuse_calls(tenant, slot, wasm.len() as u64),
            load_id: reuse::next_load_id(),
            health: health::Health::new(VersionHealth::Untried),
        });

        // Trial instantiation and init, bounded by the init deadline. The trial instance
        // takes a permit like a call: the pool holds `max_concurrent_calls` instances, and
        // an install must not make a concurrent login fail for want of one.
        let permit = self.inner.permits.acquire(tenant).await;
        let inner = self.inner.clone();
        let trial = loaded.clone();
        let scope_tenant: Arc<str> = tenant.into();
        let scope = CallScope {
            log_rate: self.inner.log_rates.of(&scope_tenant),
            tenant: scope_tenant,
            slot: slot.into(),
            version,
        };
        blocking(move || {
            let _permit = permit;
            inner.trial(&trial, scope)
        })
        .await??;

        // Persist, then switch. Versions beyond `keep_versions` are dropped, oldest first,
        // but never the last good one (the one rollback goes to).
        self.inner.store.put_blob(&sha256, &wasm)?;
        let mut record = previous.unwrap_or_else(|| SlotRecord {
            tenant: tenant.into(),
            slot: slot.into(),
            world: world.name().into(),
            active: version,
            versions: Vec::new(),
        });
        record.versions.push(loaded.record.clone());
        record.active = version;
        let last_good = existing.as_ref().and_then(|s| s.last_good(None));
        let dropped = evict(
            &mut record.versions,
            self.inner.settings.keep_versions,
            last_good,
        );
        self.inner.store.put_slot(&record)?;

        match existing {
            Some(s) => {
                s.active.store(loaded.clone());
                // No instance of the version swapped out serves another call.
                self.inner.idle.purge(tenant, slot);
                let mut kept = s.kept.lock().unwrap();
                kept.push(loaded.clone());
                kept.retain(|l| {
                    record
                        .versions
                        .iter()
                        .any(|v| v.version == l.record.version)
                });
            }
            None => {
                let s = Arc::new(Slot {
                    tenant: tenant.into(),
                    slot: slot.into(),
                    world,
                    active: ArcSwap::new(loaded.clone()),
                    kept: Mutex::new(vec![loaded.clone()]),
                    stats: SlotStats::default(),
                });
                self.inner
                    .slots
                    .write()
                    .unwrap()
                    .entry(tenant.into())
                    .or_default()
                    .insert(slot.into(), s);
            }
        }
        for v in &dropped {
            health::forget(self.inner.store.as_ref(), tenant, slot, v.version);
        }
        self.delete_unreferenced_blobs(dropped.iter().map(|v| v.sha256.as_str()))?;
        tracing::info!(tenant, plugin = slot, version, sha256 = %sha256, world = %world,
            wit_track = loaded.prepared.track.name(), size = wasm.len(), compile_ms,
            config_from, "plugin installed");
        let mut info = version_info(
            tenant,
            slot,
            world,
            &loaded.record,
            version,
            VersionHealth::Untried,
        );
        info.config_from = config_from;
        Ok(info)
    }

    /// Authenticates through the authenticator in (tenant, slot). Waits for a free
    /// instance if `max_concurrent_calls` are running.
    pub async fn authenticate(
        &self,
        tenant: &str,
        slot: &str,
        request: AuthRequest,
    ) -> Result<AuthOutcome, PluginError> {
        self.call(tenant, slot, World::Authenticator, move |inner, plugin| {
            inner.authenticate(plugin, &request)
        })
        .await
    }

    /// Asks the authenticator in (tenant, slot) whether an in-band registration may
    /// create its account, through its optional `registration.approve` export (fresh
    /// instance, authentication deadline). A plugin without the export answers `None`.
    pub async fn approve_registration(
        &self,
        tenant: &str,
        slot: &str,
        request: RegistrationRequest,
    ) -> Result<RegistrationOutcome, PluginError> {
        self.call(tenant, slot, World::Authenticator, move |inner, plugin| {
            inner.approve_registration(plugin, &request)
        })
        .await
    }

    /// Hands one stanza to the component plugin in (tenant, slot) and returns what it
    /// wants sent. Waits for a free instance like [`authenticate`](Self::authenticate).
    /// Stanzas longer than `max_stanza_bytes` in the answer fail the call.
    pub async fn handle_stanza(
        &self,
        tenant: &str,
        slot: &str,
        stanza: ComponentStanza,
        max_stanza_bytes: usize,
    ) -> Result<ComponentOutcome, PluginError> {
        self.call(tenant, slot, World::Component, move |inner, plugin| {
            inner.handle_stanza(plugin, &stanza, max_stanza_bytes)
        })
        .await
    }

    /// Runs `work` with the `world` plugin in (tenant, slot) on a blocking thread once
    /// one of the `max_concurrent_calls` permits is free; a call whose task dies is a
    /// trap.
    async fn call<T: Send + 'static>(
        &self,
        tenant: &str,
        slot: &str,
        world: World,
        work: impl FnOnce(&Inner, &Slot) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, PluginError> {
        let plugin = self.lookup(tenant, slot, world)?;
        let permit = self.inner.permits.acquire(tenant).await;
        let inner = self.inner.clone();
        blocking(move || {
            let _permit = permit;
            work(&inner, &plugin)
        })
        .await
        .unwrap_or_else(|e| {
            Err(PluginError::Failed {
                tenant: tenant.into(),
                slot: slot.into(),
                version: 0,
                cause: FailureCause::Trap,
                detail: e.to_string(),
            })
        })
    }

    /// [`authenticate`](Self::authenticate) on the calling thread, for callers that are
    /// not async (benchmarks, tools). The caller bounds concurrency.
    pub fn authenticate_blocking(
        &self,
        tenant: &str,
        slot: &str,
        request: &AuthRequest,
    ) -> Result<AuthOutcome, PluginError> {
        let plugin = self.lookup(tenant, slot, World::Authenticator)?;
        self.inner.authenticate(&plugin, request)
    }

    /// Instantiates the active version of (tenant, slot) without calling it, on the
    /// calling thread: how long instantiation took and the instance's linear memory (for
    /// benchmarks and `heliograph plugin test`). The caller bounds concurrency.
    pub fn probe_instance(&self, tenant: &str, slot: &str) -> Result<InstanceProbe, PluginError> {
        let s = self
            .slot(tenant, slot)
            .ok_or_else(|| PluginError::NotInstalled {
                tenant: tenant.into(),
                slot: slot.into(),
                world: "any",
            })?;
        let loaded = s.active.load_full();
        let ctx = self.inner.context(&s, &loaded, None);
        let instantiation =
            ctx.instantiate_only(&loaded.prepared.pre)
                .map_err(|(cause, detail)| PluginError::Failed {
                    tenant: tenant.into(),
                    slot: slot.into(),
                    version: loaded.record.version,
                    cause,
                    detail,
                })?;
        Ok(InstanceProbe {
            instantiation,
            memory_bytes: ctx.memory_bytes.load(std::sync::atomic::Ordering::Relaxed) as u64,
        })
    }

    /// Asks the room policy in (tenant, slot) one question. Waits for a free instance if
    /// `max_concurrent_calls` are running. A failure is logged with tenant, plugin,
    /// version, decision point and cause; what it means (deny or allow) is the caller's
    /// choice.
    pub async fn decide_room(
        &self,
        tenant: &str,
        slot: &str,
        question: RoomQuestion,
    ) -> Result<RoomOutcome, PluginError> {
        self.call(tenant, slot, World::RoomPolicy, move |inner, plugin| {
            inner.decide_room(plugin, &question)
        })
        .await
    }

    /// Installed slots with their kept versions, for one tenant or all.
    pub fn list(&self, tenant: Option<&str>) -> Vec<SlotInfo> {
        let slots = self.inner.slots.read().unwrap();
        let mut out: Vec<SlotInfo> = slots
            .iter()
            .filter(|(t, _)| tenant.is_none_or(|want| want == t.as_str()))
            .flat_map(|(_, m)| m.values())
            .map(|s| s.info())
            .collect();
        out.sort_by(|a, b| (&a.tenant, &a.slot).cmp(&(&b.tenant, &b.slot)));
        out
    }

    /// Switches (tenant, slot) to `version`, or, when `None`, back to the last good one:
    /// the newest kept version other than the active one that has served calls without
    /// a failure ([`VersionHealth::Good`]). Untried and failed versions are only reached
    /// by number.
    pub async fn rollback(
        &self,
        tenant: &str,
        slot: &str,
        version: Option<u32>,
    ) -> Result<VersionInfo, InstallError> {
        let _admin = self.inner.admin.lock().await;
        let s = self
            .slot(tenant, slot)
            .ok_or_else(|| InstallError::NotInstalled {
                tenant: tenant.into(),
                slot: slot.into(),
            })?;
        let active = s.active.load().record.version;
        let target = {
            let kept = s.kept.lock().unwrap();
            let versions: Vec<u32> = kept.iter().map(|l| l.record.version).collect();
            let found = match version {
                Some(v) => kept.iter().find(|l| l.record.version == v).cloned(),
                None => None,
            };
            match (version, found) {
                (_, Some(l)) => l,
                (Some(v), None) => {
                    return Err(InstallError::UnknownVersion {
                        tenant: tenant.into(),
                        slot: slot.into(),
                        version: v,
                        kept: versions,
                    });
                }
                (None, None) => {
                    drop(kept);
                    match s.last_good(Some(active)) {
                        Some(l) => l,
                        None => {
                            let kept = s.kept.lock().unwrap();
                            return Err(InstallError::NoGoodVersion {
                                tenant: tenant.into(),
                                slot: slot.into(),
                                kept: kept
                                    .iter()
                                    .map(|l| {
                                        format!("v{} {}", l.record.version, l.health.get().as_str())
                                    })
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            });
                        }
                    }
                }
            }
        };
        if let Some(mut record) = self.stored_record(tenant, slot)? {
            record.active = target.record.version;
            self.inner.store.put_slot(&record)?;
        }
        s.active.store(target.clone());
        self.inner.idle.purge(tenant, slot);
        let health = target.health.get();
        tracing::info!(
            tenant,
            plugin = slot,
            from = active,
            to = target.record.version,
            health = health.as_str(),
            "plugin rolled back"
        );
        Ok(version_info(
            tenant,
            slot,
            s.world,
            &target.record,
            target.record.version,
            health,
        ))
    }

    /// Removes (tenant, slot): every kept version and the plugin's key-value data.
    pub async fn remove(&self, tenant: &str, slot: &str) -> Result<(), InstallError> {
        let _admin = self.inner.admin.lock().await;
        let record = self.stored_record(tenant, slot)?;
        let removed = {
            let mut slots = self.inner.slots.write().unwrap();
            let removed = slots.get_mut(tenant).and_then(|m| m.remove(slot));
            if slots.get(tenant).is_some_and(|m| m.is_empty()) {
                slots.remove(tenant);
            }
            removed
        };
        if removed.is_none() && record.is_none() {
            return Err(InstallError::NotInstalled {
                tenant: tenant.into(),
                slot: slot.into(),
            });
        }
        self.inner.idle.purge(tenant, slot);
        self.inner.store.delete_slot(tenant, slot)?;
        self.inner.store.kv_purge(tenant, slot)?;
        health::purge(self.inner.store.as_ref(), tenant, slot);
        if let Some(record) = record {
            self.delete_unreferenced_blobs(record.versions.iter().map(|v| v.sha256.as_str()))?;
        }
        tracing::info!(tenant, plugin = slot, "plugin removed");
        Ok(())
    }

    /// Installs the active component of (tenant, slot) again with `config`: a new version,
    /// through the same checks as [`install`](Self::install) (the plugin's `init` sees the
    /// new configuration).
    pub async fn reconfigure(
        &self,
        tenant: &str,
        slot: &str,
        config: PluginConfig,
    ) -> Result<VersionInfo, InstallError> {
        let s = self
            .slot(tenant, slot)
            .ok_or_else(|| InstallError::NotInstalled {
                tenant: tenant.into(),
                slot: slot.into(),
            })?;
        let sha256 = s.active.load().record.sha256.clone();
        let wasm = self
            .inner
            .store
            .blob(&sha256)?
            .ok_or_else(|| InstallError::Internal(format!("blob {sha256} is missing")))?;
        self.install(tenant, slot, s.world, wasm, config).await
    }

    /// SHA-256 and configuration (JSON) of the active version of (tenant, slot), to tell
    /// whether a plugin file from the config is already installed.
    pub fn active_source(&self, tenant: &str, slot: &str) -> Option<(String, String)> {
        let s = self.slot(tenant, slot)?;
        let active = s.active.load();
        Some((active.record.sha256.clone(), active.record.config.clone()))
    }

    /// The largest upload accepted, in bytes.
    pub fn max_upload_bytes(&self) -> usize {
        self.inner.settings.max_upload_bytes()
    }

    /// Figures of one slot.
    pub fn stats(&self, tenant: &str, slot: &str) -> Option<PluginStats> {
        self.slot(tenant, slot).map(|s| s.snapshot())
    }

    /// Figures of every slot (of one tenant, or all), sorted.
    pub fn all_stats(&self, tenant: Option<&str>) -> Vec<PluginStats> {
        let slots = self.inner.slots.read().unwrap();
        let mut out: Vec<PluginStats> = slots
            .iter()
            .filter(|(t, _)| tenant.is_none_or(|want| want == t.as_str()))
            .flat_map(|(_, m)| m.values())
            .map(|s| s.snapshot())
            .collect();
        out.sort_by(|a, b| (&a.tenant, &a.slot).cmp(&(&b.tenant, &b.slot)));
        out
    }

    /// Loads every installed slot from storage (at startup): compiled code comes from the
    /// cache when present. A version that fails to load is reported and skipped; a slot
    /// whose active version fails is not served.
    pub async fn restore_from_storage(&self) -> Result<RestoreReport, InstallError> {
        let _admin = self.inner.admin.lock().await;
        let mut report = RestoreReport::default();
        for record in self.inner.store.slots()? {
            let Some(world) = World::from_name(&record.world) else {
                report.failed.push(format!(
                    "{}/{}: unknown world {:?}",
                    record.tenant, record.slot, record.world
                ));
                continue;
            };
            let mut kept = Vec::new();
            for v in &record.versions {
                match self.load_stored(&record, world, v).await {
                    Ok(l) => kept.push(Arc::new(l)),
                    Err(e) => report.failed.push(format!(
                        "{}/{} v{}: {e}",
                        record.tenant, record.slot, v.version
                    )),
                }
            }
            report.versions += kept.len();
            let Some(active) = kept
                .iter()
                .find(|l| l.record.version == record.active)
                .cloned()
            else {
                tracing::error!(tenant = %record.tenant, plugin = %record.slot,
                    version = record.active, "plugin: active version could not be restored");
                continue;
            };
            let s = Arc::new(Slot {
                tenant: record.tenant.as_str().into(),
                slot: record.slot.as_str().into(),
                world,
                active: ArcSwap::new(active),
                kept: Mutex::new(kept),
                stats: SlotStats::default(),
            });
            self.inner
                .slots
                .write()
                .unwrap()
                .entry(record.tenant.clone())
                .or_default()
                .insert(record.slot.clone(), s);
            report.slots += 1;
        }
        Ok(report)
    }

    async fn load_stored(
        &self,
        record: &SlotRecord,
        world: World,
        v: &VersionRecord,
    ) -> Result<Loaded, InstallError> {
        let wasm = self
            .inner
            .store
            .blob(&v.sha256)?
            .ok_or_else(|| InstallError::Internal(format!("blob {} is missing", v.sha256)))?;
        if cache::sha256_hex(&wasm) != v.sha256 {
            return Err(InstallError::Internal(format!(
                "blob {} does not match its hash",
                v.sha256
            )));
        }
        let config = PluginConfig::from_json(&v.config)?;
        let inner = self.inner.clone();
        let sha256 = v.sha256.clone();
        let (_, prepared) = blocking(move || {
            loader::prepare(
                &inner.engine,
                &inner.cache,
                &inner.linker,
                Some(world),
                &sha256,
                &wasm,
            )
        })
        .await??;
        Ok(Loaded {
            record: v.clone(),
            config: Arc::new(config),
            prepared,
            reuse_calls: self
                .inner
                .settings
                .reuse_calls(&record.tenant, &record.slot, v.size),
            load_id: reuse::next_load_id(),
            health: health::load(
                self.inner.store.as_ref(),
                &record.tenant,
                &record.slot,
                v.version,
            ),
        })
    }

    fn slot(&self, tenant: &str, slot: &str) -> Option<Arc<Slot>> {
        self.inner
            .slots
            .read()
            .unwrap()
            .get(tenant)
            .and_then(|m| m.get(slot))
            .cloned()
    }

    fn lookup(&self, tenant: &str, slot: &str, world: World) -> Result<Arc<Slot>, PluginError> {
        match self.slot(tenant, slot) {
            Some(s) if s.world == world => Ok(s),
            _ => Err(PluginError::NotInstalled {
                tenant: tenant.into(),
                slot: slot.into(),
                world: world.name(),
            }),
        }
    }

    fn stored_record(&self, tenant: &str, slot: &str) -> Result<Option<SlotRecord>, InstallError> {
        Ok(self
            .inner
            .store
            .slots()?
            .into_iter()
            .find(|r| r.tenant == tenant && r.slot == slot))
    }

    /// Deletes those of `candidates` that no stored slot still uses.
    fn delete_unreferenced_blobs<'a>(
        &self,
        candidates: impl Iterator<Item = &'a str>,
    ) -> Result<(), InstallError> {
        let candidates: BTreeSet<&str> = candidates.collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let used: BTreeSet<String> = self
            .inner
            .store
            .slots()?
            .into_iter()
            .flat_map(|r| r.versions.into_iter().map(|v| v.sha256))
            .collect();
        for sha in candidates {
            if !used.contains(sha) {
                self.inner.store.delete_blob(sha)?;
            }
        }
        Ok(())
    }
}

impl Inner {
    /// A call's context; with `still_active` (whether `loaded` is still the slot's
    /// active version) when its instances may be reused.
    fn context<'a>(
        &'a self,
        slot: &Slot,
        loaded: &Loaded,
        still_active: Option<&'a (dyn Fn() -> bool + Sync)>,
    ) -> CallContext<'a> {
        let reuse = still_active
            .filter(|_| loaded.reuse_calls > 1)
            .map(|still_active| call::Reuse {
                idle: &self.idle,
                key: reuse::ReuseKey {
                    tenant: slot.tenant.clone(),
                    slot: slot.slot.clone(),
                    version: loaded.record.version,
                    load: loaded.load_id,
                },
                max_calls: loaded.reuse_calls,
                still_active,
            });
        CallContext {
            engine: &self.engine,
            settings: &self.settings,
            store: self.store.clone(),
            scope: CallScope {
                log_rate: self.log_rates.of(&slot.tenant),
                tenant: slot.tenant.clone(),
                slot: slot.slot.clone(),
                version: loaded.record.version,
            },
            config: loaded.config.clone(),
            memory_bytes: Arc::default(),
            reuse,
            reused: Default::default(),
        }
    }

    /// Trial instantiation, and `init` if exported.
    fn trial(&self, loaded: &Loaded, scope: CallScope) -> Result<(), InstallError> {
        let ctx = CallContext {
            engine: &self.engine,
            settings: &self.settings,
            store: self.store.clone(),
            scope,
            config: loaded.config.clone(),
            memory_bytes: Arc::default(),
            reuse: None,
            reused: Default::default(),
        };
        match ctx.init(&loaded.prepared.pre, loaded.prepared.init.as_ref()) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(InstallError::InitRefused(message)),
            Err((FailureCause::Instantiation, detail)) => Err(InstallError::Instantiation(detail)),
            Err((cause, detail)) => Err(InstallError::InitFailed { cause, detail }),
        }
    }

    fn authenticate(&self, slot: &Slot, request: &AuthRequest) -> Result<AuthOutcome, PluginError> {
        let loaded = slot.active.load_full();
        let start = Instant::now();
        let still_active = || Arc::ptr_eq(&slot.active.load(), &loaded);
        let ctx = self.context(slot, &loaded, Some(&still_active));
        let result = ctx.authenticate(&loaded.prepared.pre, request);
        let result = self.finish(
            slot,
            &loaded,
            (start, &ctx),
            result,
            Result::is_ok,
            ("authenticate", "authentication fails closed"),
        )?;
        Ok(AuthOutcome {
            version: loaded.record.version,
            result,
        })
    }

    fn approve_registration(
        &self,
        slot: &Slot,
        request: &RegistrationRequest,
    ) -> Result<RegistrationOutcome, PluginError> {
        let loaded = slot.active.load_full();
        let version = loaded.record.version;
        let Some(approve) = loaded.prepared.registration.as_ref() else {
            return Ok(RegistrationOutcome {
                version,
                decision: None,
            });
        };
        let start = Instant::now();
        let ctx = self.context(slot, &loaded, None);
        let result = ctx.approve_registration(&loaded.prepared.pre, approve, request);
        let decision = self.finish(
            slot,
            &loaded,
            (start, &ctx),
            result,
            Result::is_ok,
            ("approve registration", "the registration is refused"),
        )?;
        Ok(RegistrationOutcome {
            version,
            decision: Some(decision),
        })
    }

    fn decide_room(
        &self,
        slot: &Slot,
        question: &RoomQuestion,
    ) -> Result<RoomOutcome, PluginError> {
        let loaded = slot.active.load_full();
        let start = Instant::now();
        let still_active = || Arc::ptr_eq(&slot.active.load(), &loaded);
        let ctx = self.context(slot, &loaded, Some(&still_active));
        let result = ctx.decide_room(&loaded.prepared.pre, question);
        let answer = self.finish(
            slot,
            &loaded,
            (start, &ctx),
            result,
            RoomAnswer::allows,
            (
                question.point(),
                "the action is refused unless the tenant's policy fails open",
            ),
        )?;
        Ok(RoomOutcome {
            version: loaded.record.version,
            answer,
        })
    }

    fn handle_stanza(
        &self,
        slot: &Slot,
        stanza: &ComponentStanza,
        max_stanza_bytes: usize,
    ) -> Result<ComponentOutcome, PluginError> {
        let loaded = slot.active.load_full();
        let start = Instant::now();
        let still_active = || Arc::ptr_eq(&slot.active.load(), &loaded);
        let ctx = self.context(slot, &loaded, Some(&still_active));
        let result = ctx.handle_stanza(&loaded.prepared.pre, stanza, max_stanza_bytes);
        let result = self.finish(
            slot,
            &loaded,
            (start, &ctx),
            result,
            Result::is_ok,
            ("handle", "the sender gets an error reply"),
        )?;
        Ok(ComponentOutcome {
            version: loaded.record.version,
            result,
        })
    }

    /// Accounts for one call of `loaded`: the slot's figures, the metrics and the
    /// version's health. A failure is logged as one record whose first fields are the
    /// tenant, plugin, version and cause, then the decision point, the time and the
    /// detail (with what the plugin printed, a panic message or a traceback, on one line).
    fn finish<T>(
        &self,
        slot: &Slot,
        loaded: &Loaded,
        (start, ctx): (Instant, &CallContext<'_>),
        result: Result<T, call::CallFailure>,
        allows: impl FnOnce(&T) -> bool,
        (point, consequence): (&'static str, &'static str),
    ) -> Result<T, PluginError> {
        let elapsed = start.elapsed();
        let version = loaded.record.version;
        slot.stats
            .record_memory(ctx.memory_bytes.load(std::sync::atomic::Ordering::Relaxed) as u64);
        if ctx.reused.get() {
            slot.stats.record_reused();
        }
        match result {
            Ok(answer) => {
                let (outcome, label) = if allows(&answer) {
                    (Outcome::Ok, "ok")
                } else {
                    (Outcome::Denied, "denied")
                };
                slot.stats.record(outcome, elapsed);
                record_metrics(slot, label, elapsed);
                if let Some(h) = loaded.health.answered() {
                    health::store(self.store.as_ref(), &slot.tenant, &slot.slot, version, h);
                }
                Ok(answer)
            }
            Err((cause, detail)) => {
                slot.stats.record(Outcome::Failed(cause), elapsed);
                record_metrics(slot, cause.as_str(), elapsed);
                if cause != FailureCause::NotInstalled
                    && let Some(h) = loaded.health.failed()
                {
                    health::store(self.store.as_ref(), &slot.tenant, &slot.slot, version, h);
                }
                tracing::warn!(tenant = %slot.tenant, plugin = %slot.slot, version,
                    cause = %cause, point, elapsed_ms = elapsed.as_millis() as u64,
                    detail = %detail, "plugin call failed; {consequence}");
                Err(PluginError::Failed {
                    tenant: slot.tenant.to_string(),
                    slot: slot.slot.to_string(),
                    version,
                    cause,
                    detail,
                })
            }
        }
    }
}

impl Slot {
    fn info(&self) -> SlotInfo {
        let active = self.active.load().record.version;
        let kept = self.kept.lock().unwrap();
        SlotInfo {
            tenant: self.tenant.to_string(),
            slot: self.slot.to_string(),
            world: self.world,
            active,
            versions: kept
                .iter()
                .map(|l| {
                    version_info(
                        &self.tenant,
                        &self.slot,
                        self.world,
                        &l.record,
                        active,
                        l.health.get(),
                    )
                })
                .collect(),
        }
    }

    /// The newest kept version that has served without failures, other than `except`.
    fn last_good(&self, except: Option<u32>) -> Option<Arc<Loaded>> {
        self.kept
            .lock()
            .unwrap()
            .iter()
            .filter(|l| Some(l.record.version) != except && l.health.get() == VersionHealth::Good)
            .max_by_key(|l| l.record.version)
            .cloned()
    }

    fn snapshot(&self) -> PluginStats {
        self.stats
            .snapshot(&self.tenant, &self.slot, self.active.load().record.version)
    }
}

fn version_info(
    tenant: &str,
    slot: &str,
    world: World,
    record: &VersionRecord,
    active: u32,
    health: VersionHealth,
) -> VersionInfo {
    VersionInfo {
        tenant: tenant.into(),
        slot: slot.into(),
        world,
        version: record.version,
        sha256: record.sha256.clone(),
        size: record.size,
        installed_at_ms: record.installed_at_ms,
        active: record.version == active,
        health,
        config_from: None,
    }
}

/// Drops the oldest of `versions` (oldest first, the new active one last) until at most
/// `keep` are left, sparing `last_good` (which may leave `keep + 1`); returns the dropped.
fn evict(
    versions: &mut Vec<VersionRecord>,
    keep: usize,
    last_good: Option<Arc<Loaded>>,
) -> Vec<VersionRecord> {
    let spare = last_good.map(|l| l.record.version);
    let mut dropped = Vec::new();
    let mut i = 0;
    while versions.len() > keep.max(1) && i + 1 < versions.len() {
        if Some(versions[i].version) == spare {
            i += 1;
        } else {
            dropped.push(versions.remove(i));
        }
    }
    dropped
}

fn check_tenant(tenant: &str) -> Result<(), InstallError> {
    if tenant.is_empty() || tenant.len() > 128 || tenant.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(InstallError::InvalidName {
            what: "tenant",
            value: tenant.into(),
            reason: "1 to 128 characters, no '/' or control characters",
        });
    }
    Ok(())
}

fn check_slot(slot: &str) -> Result<(), InstallError> {
    if slot.is_empty()
        || slot.len() > 64
        || !slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(InstallError::InvalidName {
            what: "slot",
            value: slot.into(),
            reason: "1 to 64 characters from a-z, 0-9, '-' and '_'",
        });
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs blocking work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, InstallError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| InstallError::Internal(format!("plugin task failed: {e}")))
}

/// Prometheus metrics of one plugin call: `heliograph_plugin_calls_total{world,outcome}`
/// and `heliograph_plugin_call_seconds{world}`, with `tenant` and `plugin` labels only when
/// per-tenant labels are on (see `crate::metrics`), so cardinality stays bounded.
fn record_metrics(slot: &Slot, outcome: &'static str, elapsed: std::time::Duration) {
    let mut labels = vec![
        ("world", slot.world.name().to_string()),
        ("outcome", outcome.to_string()),
    ];
    if heliograph_metrics::per_tenant() {
        labels.push(("tenant", slot.tenant.to_string()));
        labels.push(("plugin", slot.slot.to_string()));
    }
    let labels: Vec<metrics::Label> = labels
        .into_iter()
        .map(|(k, v)| metrics::Label::new(k, v))
        .collect();
    metrics::counter!("heliograph_plugin_calls_total", labels.clone()).increment(1);
    let timing: Vec<metrics::Label> = labels
        .into_iter()
        .filter(|l| l.key() != "outcome")
        .collect();
    metrics::histogram!("heliograph_plugin_call_seconds", timing).record(elapsed.as_secs_f64());
}
