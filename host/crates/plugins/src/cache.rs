//! The compiled-code cache on disk: `DIR/<engine>/<sha256>.cwasm`, where `<engine>` is a
//! digest of the engine's compatibility hash (wasmtime version, target, settings) and
//! `<sha256>` the hash of the Wasm bytes. A restart deserializes instead of recompiling.
//!
//! Only files this module wrote are ever loaded: uploads that are precompiled artifacts
//! are refused before they get here, names are derived from hashes we computed, and files
//! are written to a temporary name and renamed into place. Wasmtime checks its own header
//! on load as well; a file that fails to load is removed and the Wasm recompiled.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How often the cache was used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Components compiled from Wasm.
    pub compiled: u64,
    /// Components loaded from the cache instead.
    pub hits: u64,
}

pub(crate) struct CompiledCache {
    dir: PathBuf,
    compiled: AtomicU64,
    hits: AtomicU64,
}

/// Feeds `Hash` output into SHA-256 (stable, unlike `DefaultHasher`).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only the digest is used")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Hex SHA-256 of `bytes` (how blobs and cache entries are named).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CompiledCache {
    pub(crate) fn new(root: &Path, engine: &Engine) -> std::io::Result<CompiledCache> {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);
        let dir = root.join(engine_key);
        std::fs::create_dir_all(&dir)?;
        Ok(CompiledCache {
            dir,
            compiled: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
        }
    }

    /// The component for `wasm` (whose hash is `sha256`): from the cache, else compiled
    /// and cached. Blocking; call it off the async runtime.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<Component> {
        debug_assert!(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        let path = self.dir.join(format!("{sha256}.cwasm"));
        if path.exists() {
            // SAFETY: the file was written by `store` below from `Component::serialize`
            // (its name is a hash we computed, in a directory only this cache writes), and
            // wasmtime rejects files from another engine version or configuration.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"),
                        "plugins: unusable compiled-cache entry, recompiling");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"),
                "plugins: cannot write the compiled cache (next start recompiles)");
        }
        Ok(component)
    }

    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        // A name of its own per write: two installs of the same bytes (two tenants, or
        // two hosts sharing the directory) may compile and write at once, and must not
        // write into the same temporary file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
