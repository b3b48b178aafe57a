//! Per-call resource limits: a [`ResourceLimiter`] that caps linear memory and tables and
//! remembers whether a cap was hit, so a resulting trap is reported as `memory` rather than
//! as a generic trap.

use wasmtime::ResourceLimiter;

/// Table elements one instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

pub(crate) struct CallLimiter {
    memory_limit: usize,
    pub(crate) memory_hit: bool,
}

impl CallLimiter {
    pub(crate) fn new(memory_limit: usize) -> CallLimiter {
        CallLimiter {
            memory_limit,
            memory_hit: false,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_hit = true;
            return Ok(false);
        }
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
