//! The wasmtime engine: component model, Cranelift, copy-on-write memory images, epoch
//! interruption driven by a ticker thread, and the pooling allocator sized by the
//! settings — or on-demand allocation when the pool's address space cannot be reserved
//! (logged once per process, clearly, because instantiation is then slower).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::settings::PluginSettings;

/// Core instances a component may hold (wit-component adds shim and fixup instances).
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Tables per component instance (the main module's and the shims').
const TABLES_PER_COMPONENT: u32 = 4;

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Builds the engine; the flag says whether it uses the pooling allocator.
pub(crate) fn build(settings: &PluginSettings) -> wasmtime::Result<(Engine, bool)> {
    if settings.pooling_allocator {
        match Engine::new(&config(settings, true)) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => {
                if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        "plugins: the pooling allocator could not reserve its address space; \
                         falling back to on-demand instance allocation (each plugin call then \
                         maps fresh memory and is slower). Lower plugins.max_concurrent_calls \
                         or raise the address-space limit (ulimit -v) to use the pool"
                    );
                }
            }
        }
    }
    Ok((Engine::new(&config(settings, false))?, false))
}

fn config(settings: &PluginSettings, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.cranelift_opt_level(OptLevel::Speed);
    if pooling {
        let n = settings.max_concurrent_calls;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(n)
            .total_tables(n * TABLES_PER_COMPONENT)
            .max_memories_per_component(1)
            .max_memory_size(settings.memory_limit_bytes())
            .total_stacks(0);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Increments the engine's epoch every `tick` on its own thread, so deadlines hold even
/// when the async runtime is busy; stopped when dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Epoch ticks to allow for `deadline_ms`: the deadline is reached after at least
/// `deadline_ms` and at most one tick more.
pub(crate) fn deadline_ticks(deadline_ms: u64, tick_ms: u64) -> u64 {
    deadline_ms.div_ceil(tick_ms) + 1
}
