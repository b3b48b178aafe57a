//! Every storage trait of `heliograph-storage` on PostgreSQL: the shared store several
//! nodes of a cluster use. [`open`] connects a pool, applies (or checks) the versioned
//! migrations of `migrations/` and returns a [`Storage`] whose calls are timed like
//! sled's (`heliograph_storage_seconds{backend="postgres",op}`).
//!
//! - [`bridge`]: the storage traits are synchronous; calls run on a small runtime of the
//!   store's own, whoever calls them (a blocking thread, a CLI command, a test).
//! - [`migrations`]: the schema's versions, applied under an advisory lock, and the
//!   refusal to run on a schema newer than this build knows.
//! - [`connect`]: the URL (or the file holding it), the pool, TLS where the URL asks.
//! - `store/`: one file per trait, plus export and import.
//!
//! A write returns `Ok` only once its transaction committed (PostgreSQL flushes the commit
//! record before answering, with the default `synchronous_commit`).

pub mod bridge;
pub mod connect;
pub mod migrations;
mod store;
pub mod testing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use heliograph_storage::Storage;

pub use store::PgStore;

/// How to reach the database (the config's `[storage]` keys for PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/db?sslmode=require`, or the key-value form
    /// (`host=/run/postgresql dbname=heliograph`). TLS is used when `sslmode` asks.
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time one storage call may take, waiting for a connection included.
    pub query_timeout: Duration,
    /// PEM file with the CA certificates that sign the server's certificate (TLS); the
    /// system's roots when not given.
    pub ca_file: Option<PathBuf>,
}

impl PgSettings {
    /// Settings with the defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> PgSettings {
        PgSettings {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// What [`open`] does with the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Apply every migration the database lacks.
    Migrate,
    /// Refuse to start unless the schema is exactly this build's.
    Require,
}

/// Why the PostgreSQL store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("database TLS: {0}")]
    Tls(String),
    #[error("starting the database runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("connecting to the database: {0}")]
    Connect(String),
    #[error(
        "the database schema is at version {found}, newer than this build knows ({known}): \
         run a newer heliograph, or restore a backup made for this version"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(
        "the database schema is at version {found}, this build needs {known}: run \
         `heliograph storage migrate` (or set [storage] migrate = true)"
    )]
    SchemaBehind { found: i32, known: i32 },
    #[error("migration {version} ({name}): {message}")]
    Migration {
        version: i32,
        name: &'static str,
        message: String,
    },
}

/// Connects, brings the schema to this build's version (or checks it, with
/// [`Schema::Require`]) and returns every store on the database.
pub fn open(settings: &PgSettings, schema: Schema) -> Result<Storage, PgError> {
    let store = PgStore::connect(settings)?;
    match schema {
        Schema::Migrate => {
            store.migrate(None)?;
        }
        Schema::Require => {
            let found = store.schema_version()?;
            let known = migrations::latest();
            if found > known {
                return Err(PgError::SchemaTooNew { found, known });
            }
            if found < known {
                return Err(PgError::SchemaBehind { found, known });
            }
        }
    }
    Ok(storage(store))
}

/// The stores of `store`, timed.
pub fn storage(store: PgStore) -> Storage {
    let store = Arc::new(store);
    let flusher = store.clone();
    Storage {
        users: store.clone(),
        rosters: store.clone(),
        offline: store.clone(),
        archive: store.clone(),
        account_data: store.clone(),
        pep: store.clone(),
        blocks: store.clone(),
        tenants: store.clone(),
        muc: store.clone(),
        plugins: store.clone(),
        tokens: store.clone(),
        flush: Arc::new(move || flusher.flush()),
        backend: store,
    }
    .metered()
}
