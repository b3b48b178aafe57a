//! Synchronous calls on an async driver. The storage traits are synchronous (the server
//! calls them on blocking threads through `heliograph_storage::blocking`, and at startup,
//! in the CLI and in tests from plain threads), while tokio-postgres is async. The store
//! owns a small multi-thread runtime: [`Bridge::run`] spawns the call's future there and
//! waits for its result on a channel.
//!
//! Why a runtime of its own rather than the caller's `Handle::block_on`: `block_on` panics
//! on an async worker thread, and a few callers (startup, tenant loading) are async code
//! calling the traits directly; a channel wait is safe from any thread. The pool's
//! connections live on this runtime too, so they never depend on which runtime the caller
//! happens to be on, and the server's own runtime never runs database I/O.
//!
//! Export and import stream records to and from the caller's thread (a file), so they run
//! with [`Bridge::block_on`], refused on an async thread.

use std::future::Future;
use std::sync::mpsc;

use heliograph_storage::{StorageError, StorageResult};
use tokio::runtime::{Handle, Runtime};

/// The store's runtime.
pub struct Bridge {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Bridge {
    /// Starts the runtime with `threads` workers.
    pub fn new(threads: usize) -> std::io::Result<Bridge> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("heliograph-pg")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Bridge {
            runtime: Some(runtime),
            handle,
        })
    }

    /// The runtime's handle, for background tasks.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on the store's runtime and waits for it, from any thread.
    pub fn run<T, F>(&self, fut: F) -> StorageResult<T>
    where
        F: Future<Output = StorageResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| StorageError::Backend("the database runtime has stopped".into()))?
    }

    /// Runs `fut` on the calling thread (which may block inside it, e.g. on a file), its
    /// I/O driven by the store's runtime. Refused on an async runtime's thread.
    pub fn block_on<F: Future>(&self, fut: F) -> StorageResult<F::Output> {
        if Handle::try_current().is_ok() {
            return Err(StorageError::Backend(
                "export and import run on a plain thread, not inside an async runtime".into(),
            ));
        }
        Ok(self.handle.block_on(fut))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Safe from any context, async included (a plain drop is not).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
