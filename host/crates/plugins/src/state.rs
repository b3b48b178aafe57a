//! The data of one call's store ([`CallState`]) and the host API the plugin imports:
//! `host-log` into `tracing` with tenant/plugin/version labels, `host-kv` on the
//! [`PluginStore`] scoped to the call's (tenant, slot), and `host-config`.
//!
//! WASI is linked with no capability at all: no preopened directory, no environment or
//! arguments, sockets denied, stdin empty. What the guest writes to stdout/stderr (a Rust
//! panic message, for instance) is captured, bounded, and logged with the labels.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::authenticator::heliograph::plugin::{
    auth_types, host_config, host_kv, host_log, types,
};
use super::limits::CallLimiter;
use super::settings::PluginSettings;
use super::types::PluginConfig;
use heliograph_storage::{KvWrite, PluginStore};

/// Bytes of guest stdout/stderr kept per call.
const OUTPUT_CAPTURE: usize = 4096;
/// Log lines a plugin may write per call (more are dropped, and one warning says so).
const LOG_LINES_PER_CALL: u32 = 64;
/// Longest message kept per log line, and fields per line.
const LOG_MESSAGE_MAX: usize = 4096;
const LOG_FIELDS_MAX: usize = 32;
/// Longest key-value key.
pub(crate) const KV_KEY_MAX: usize = 256;
/// Most keys `list-keys` returns.
const KV_LIST_MAX: u32 = 1000;

/// Who is calling: the labels of every log line and the scope of the key-value store.
#[derive(Clone)]
pub(crate) struct CallScope {
    pub tenant: Arc<str>,
    pub slot: Arc<str>,
    pub version: u32,
    /// The tenant's rate of log lines.
    pub log_rate: Arc<crate::lograte::LogRate>,
}

/// Everything the host API needs for one call.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    pub(crate) limiter: CallLimiter,
    scope: CallScope,
    config: Arc<PluginConfig>,
    store: Arc<dyn PluginStore>,
    kv_quota: u64,
    kv_max_value: u64,
    kv_write_budget: u64,
    kv_written: u64,
    log_lines: u32,
}

impl CallState {
    pub(crate) fn new(
        settings: &PluginSettings,
        scope: CallScope,
        config: Arc<PluginConfig>,
        store: Arc<dyn PluginStore>,
        memory_bytes: Arc<std::sync::atomic::AtomicUsize>,
    ) -> CallState {
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPTURE);
        let wasi = WasiCtxBuilder::new()
            .stdout(stderr.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limiter: CallLimiter::new(settings.memory_limit_bytes(), memory_bytes),
            scope,
            config,
            store,
            kv_quota: settings.kv_quota_kib << 10,
            kv_max_value: settings.kv_max_value_kib << 10,
            kv_write_budget: settings.kv_call_write_kib << 10,
            kv_written: 0,
            log_lines: 0,
        }
    }

    /// Resets what is per call (key-value write budget, log lines, the memory figure's
    /// counter) before a reused instance serves another call.
    pub(crate) fn begin_call(&mut self, memory_bytes: Arc<std::sync::atomic::AtomicUsize>) {
        self.kv_written = 0;
        self.log_lines = 0;
        self.limiter.rebind(memory_bytes);
    }

    /// Whether the instance may serve another call as far as this state tells: it never
    /// hit the memory cap and wrote nothing to stdout/stderr (the capture is per store,
    /// and output usually means something went wrong).
    pub(crate) fn reusable(&self) -> bool {
        !self.limiter.memory_hit && self.stderr.contents().is_empty()
    }

    /// What the guest wrote to stdout/stderr (bounded), for the log.
    pub(crate) fn captured_output(&self) -> String {
        let bytes = self.stderr.contents();
        String::from_utf8_lossy(&bytes).trim_end().to_string()
    }

    fn check_key(key: &str) -> Result<(), host_kv::KvError> {
        if key.is_empty() {
            return Err(host_kv::KvError::InvalidKey("empty key".into()));
        }
        if key.len() > KV_KEY_MAX {
            return Err(host_kv::KvError::InvalidKey(format!(
                "key is {} bytes, the limit is {KV_KEY_MAX}",
                key.len()
            )));
        }
        Ok(())
    }

    fn unavailable(&self, op: &str, e: heliograph_storage::StorageError) -> host_kv::KvError {
        tracing::error!(tenant = %self.scope.tenant, plugin = %self.scope.slot,
            version = self.scope.version, "plugin key-value {op} failed: {e}");
        host_kv::KvError::Unavailable(format!("{op} failed"))
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}
impl auth_types::Host for CallState {}
impl super::bindings::room_policy::heliograph::plugin::room_types::Host for CallState {}
impl super::bindings::component::heliograph::plugin::component_types::Host for CallState {}

impl host_log::Host for CallState {
    fn log(&mut self, level: types::LogLevel, mut message: String, fields: Vec<types::KeyValue>) {
        let s = &self.scope;
        if s.log_rate.limit().is_off() {
            return; // `[plugins] log_lines_per_second = 0`: no plugin log output
        }
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_CALL {
            if self.log_lines == LOG_LINES_PER_CALL + 1 {
                tracing::warn!(tenant = %s.tenant, plugin = %s.slot, version = s.version,
                    "plugin log: more than {LOG_LINES_PER_CALL} lines in one call; dropping the rest");
            }
            return;
        }
        match s.log_rate.line(std::time::Instant::now()) {
            crate::lograte::Line::Write => {}
            crate::lograte::Line::Drop => return,
            crate::lograte::Line::DropAndReport(dropped) => {
                tracing::warn!(tenant = %s.tenant, plugin = %s.slot, version = s.version,
                    dropped, "plugin log: the tenant's plugins write more than {} lines a second; dropping lines",
                    s.log_rate.limit().per_second());
                return;
            }
        }
        truncate(&mut message, LOG_MESSAGE_MAX);
        let mut kv = String::new();
        for f in fields.iter().take(LOG_FIELDS_MAX) {
            if !kv.is_empty() {
                kv.push(' ');
            }
            kv.push_str(&f.key);
            kv.push('=');
            kv.push_str(&f.value);
        }
        truncate(&mut kv, LOG_MESSAGE_MAX);
        macro_rules! emit {
            ($macro:ident) => {
                tracing::$macro!(target: "heliograph::plugin", tenant = %s.tenant,
                    plugin = %s.slot, version = s.version, fields = %kv, "{message}")
            };
        }
        match level {
            types::LogLevel::Trace => emit!(trace),
            types::LogLevel::Debug => emit!(debug),
            types::LogLevel::Info => emit!(info),
            types::LogLevel::Warn => emit!(warn),
            types::LogLevel::Error => emit!(error),
        }
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

impl host_kv::Host for CallState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, host_kv::KvError> {
        Self::check_key(&key)?;
        self.store
            .kv_get(&self.scope.tenant, &self.scope.slot, &key)
            .map_err(|e| self.unavailable("get", e))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), host_kv::KvError> {
        Self::check_key(&key)?;
        if value.len() as u64 > self.kv_max_value {
            return Err(host_kv::KvError::ValueTooLarge(self.kv_max_value));
        }
        let size = (key.len() + value.len()) as u64;
        if self.kv_written + size > self.kv_write_budget {
            return Err(host_kv::KvError::CallBudgetExhausted);
        }
        self.kv_written += size;
        match self.store.kv_set(
            &self.scope.tenant,
            &self.scope.slot,
            &key,
            &value,
            self.kv_quota,
        ) {
            Ok(KvWrite::Stored) => Ok(()),
            Ok(KvWrite::OverQuota) => Err(host_kv::KvError::QuotaExceeded),
            Err(e) => Err(self.unavailable("set", e)),
        }
    }

    fn delete(&mut self, key: String) -> Result<bool, host_kv::KvError> {
        Self::check_key(&key)?;
        self.store
            .kv_delete(&self.scope.tenant, &self.scope.slot, &key)
            .map_err(|e| self.unavailable("delete", e))
    }

    fn list_keys(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, host_kv::KvError> {
        if prefix.len() > KV_KEY_MAX {
            return Err(host_kv::KvError::InvalidKey("prefix too long".into()));
        }
        self.store
            .kv_list_keys(
                &self.scope.tenant,
                &self.scope.slot,
                &prefix,
                limit.min(KV_LIST_MAX) as usize,
            )
            .map_err(|e| self.unavailable("list-keys", e))
    }
}

impl host_config::Host for CallState {
    fn json(&mut self) -> String {
        self.config.json().to_string()
    }

    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).map(str::to_string)
    }

    fn entries(&mut self) -> Vec<types::KeyValue> {
        self.config
            .entries()
            .iter()
            .map(|(key, value)| types::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }
}
