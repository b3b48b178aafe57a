//! `[plugins]`: limits and engine settings of the plugin host.
//!
//! Every limit has a default that is safe to run with; the section can be left out.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::lograte::{LogLimit, LogLimitError};
use super::reuse::ReusePolicy;

/// `[plugins]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Milliseconds of CPU time an authenticator call may use (host calls included); its
    /// wall-clock time is bounded at ten times that.
    pub auth_deadline_ms: u64,
    /// Milliseconds of CPU time a room-policy decision may use (wall clock: ten times
    /// that); past it the decision fails (closed unless the tenant opted into open).
    pub room_policy_deadline_ms: u64,
    /// Milliseconds of CPU time a Wasm component may use per stanza (wall clock: ten
    /// times that).
    pub component_deadline_ms: u64,
    /// Milliseconds a plugin's optional `init` may run at install time.
    pub init_deadline_ms: u64,
    /// Linear memory one plugin instance may use, in MiB.
    pub memory_limit_mib: u64,
    /// Largest Wasm upload accepted, in MiB. 64 by default: a Python component
    /// (componentize-py) carries CPython and the modules it imports, 19-21 MiB for the
    /// first-party ones, where a Rust plugin is 0.1-0.3 MiB.
    pub max_upload_mib: u64,
    /// Versions kept per slot for rollback (the active one included). The last version
    /// that served without failures is never dropped, so a slot may keep one more.
    pub keep_versions: usize,
    /// Plugin instances alive at once (calls beyond this wait for a free one, before their
    /// deadline starts); the host also runs no more calls at once than there are CPUs. One
    /// tenant runs at most half of the calls that may run at once (at least one) while
    /// another tenant's calls wait (alone, it may use them all), and waiting calls are
    /// served tenant by tenant. With the pooling allocator this is also
    /// the size of the pool.
    pub max_concurrent_calls: u32,
    /// Use the pooling allocator (falls back to on-demand allocation, with one warning,
    /// when its address space cannot be reserved).
    pub pooling_allocator: bool,
    /// Milliseconds between epoch ticks; deadlines are enforced with this precision.
    pub epoch_tick_ms: u64,
    /// Total key-value data (keys plus values) one (tenant, plugin) pair may keep, in KiB.
    pub kv_quota_kib: u64,
    /// Largest single key-value value, in KiB.
    pub kv_max_value_kib: u64,
    /// Key-value bytes one call may write (writes beyond fail, the store is unchanged).
    pub kv_call_write_kib: u64,
    /// How many calls one instance may serve (see the `reuse` module for the rules):
    /// `"auto"` (the default: `calls:1000` for components of 4 MiB or more, which carry
    /// an interpreter, `never` for smaller ones), `"never"` or `"calls:N"`.
    pub reuse: ReusePolicy,
    /// Per plugin, `"TENANT/SLOT" = "never" | "calls:N" | "auto"`, over `reuse`.
    pub reuse_for: BTreeMap<String, ReusePolicy>,
    /// Seconds an instance may keep serving calls from its creation.
    pub reuse_max_age_s: u64,
    /// Idle instances kept in the whole host (least recently used dropped first); each
    /// holds its linear memory (about 13 MiB for a Python plugin). Never more than the
    /// pool can spare: `max_concurrent_calls` minus the calls that may run at once.
    pub max_idle_instances: u32,
    /// Log lines per second one tenant's plugins may write together, in the long run
    /// (lines over it are dropped, with a warning at most every 10 s saying how many);
    /// 0: no plugin log output at all.
    pub log_lines_per_second: u32,
    /// Log lines one tenant's plugins may write at once after a quiet time (at least 1
    /// unless `log_lines_per_second` is 0).
    pub log_burst: u32,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            auth_deadline_ms: 50,
            room_policy_deadline_ms: 20,
            component_deadline_ms: 50,
            init_deadline_ms: 1000,
            memory_limit_mib: 32,
            max_upload_mib: 64,
            keep_versions: 3,
            max_concurrent_calls: 64,
            pooling_allocator: true,
            epoch_tick_ms: 1,
            kv_quota_kib: 1024,
            kv_max_value_kib: 64,
            kv_call_write_kib: 256,
            reuse: ReusePolicy::Auto,
            reuse_for: BTreeMap::new(),
            reuse_max_age_s: 60,
            max_idle_instances: 8,
            log_lines_per_second: crate::lograte::DEFAULT_LINES_PER_SECOND,
            log_burst: crate::lograte::DEFAULT_BURST,
        }
    }
}

impl PluginSettings {
    pub(crate) fn memory_limit_bytes(&self) -> usize {
        (self.memory_limit_mib as usize) << 20
    }

    /// Calls one instance of (tenant, slot) may serve, for a component of `size` bytes.
    pub fn reuse_calls(&self, tenant: &str, slot: &str, size: u64) -> u32 {
        self.reuse_for
            .get(&format!("{tenant}/{slot}"))
            .copied()
            .unwrap_or(self.reuse)
            .calls_for(size)
    }

    /// The per-tenant plugin log limit of `log_lines_per_second` and `log_burst`.
    pub fn log_limit(&self) -> Result<LogLimit, LogLimitError> {
        LogLimit::new(self.log_lines_per_second, self.log_burst)
    }

    pub(crate) fn max_upload_bytes(&self) -> usize {
        (self.max_upload_mib as usize) << 20
    }

    /// Checks values that would make the host unusable.
    pub fn validate(&self) -> Result<(), String> {
        if self.auth_deadline_ms == 0
            || self.room_policy_deadline_ms == 0
            || self.init_deadline_ms == 0
            || self.component_deadline_ms == 0
        {
            return Err("plugins: deadlines must be at least 1 ms".into());
        }
        if self.epoch_tick_ms == 0 || self.epoch_tick_ms > self.auth_deadline_ms {
            return Err("plugins.epoch_tick_ms must be between 1 and auth_deadline_ms".into());
        }
        if self.memory_limit_mib == 0 || self.memory_limit_mib > 4096 {
            return Err("plugins.memory_limit_mib must be between 1 and 4096".into());
        }
        if self.keep_versions == 0 {
            return Err("plugins.keep_versions must be at least 1".into());
        }
        if let Some(key) = self.reuse_for.keys().find(|k| k.split('/').count() != 2) {
            return Err(format!("plugins.reuse_for: {key:?} is not TENANT/SLOT"));
        }
        if self.max_concurrent_calls == 0 {
            return Err("plugins.max_concurrent_calls must be at least 1".into());
        }
        self.log_limit().map_err(|e| e.to_string())?;
        Ok(())
    }
}
