//! Per-call resource limits: a [`ResourceLimiter`] that caps linear memory and tables,
//! remembers whether a cap was hit, so a resulting trap is reported as `memory` rather than
//! as a generic trap, and counts the instance's linear memory (for the figures).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;

/// Table elements one instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

pub(crate) struct CallLimiter {
    memory_limit: usize,
    pub(crate) memory_hit: bool,
    /// Linear memory the instance has (every memory's size, in bytes): what it was
    /// instantiated with, plus what it grew since. Shared with the caller, which reads it
    /// once the store is gone; a reused instance is rebound to each call's counter.
    memory_bytes: Arc<AtomicUsize>,
    /// The same figure, kept here for a rebinding.
    total: usize,
}

impl CallLimiter {
    pub(crate) fn new(memory_limit: usize, memory_bytes: Arc<AtomicUsize>) -> CallLimiter {
        CallLimiter {
            memory_limit,
            memory_hit: false,
            memory_bytes,
            total: 0,
        }
    }

    /// Reports this instance's memory to `memory_bytes` from now on (a reused instance's
    /// next call), starting with what it has.
    pub(crate) fn rebind(&mut self, memory_bytes: Arc<AtomicUsize>) {
        memory_bytes.store(self.total, Ordering::Relaxed);
        self.memory_bytes = memory_bytes;
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_hit = true;
            return Ok(false);
        }
        let grown = desired.saturating_sub(current);
        self.total += grown;
        self.memory_bytes.fetch_add(grown, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.memory_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        4
    }
}
