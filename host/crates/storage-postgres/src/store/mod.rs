//! [`PgStore`]: the pool, the store's runtime, reachability, migrations, and the helpers
//! every trait's file uses: [`PgStore::call`] (a pooled connection, the call's deadline,
//! errors mapped to `StorageError`), JSON columns, validated account keys.
//!
//! Atomicity, in short (each is one statement or one transaction):
//! - `create_user`, `create_tenant_record`: `INSERT … ON CONFLICT DO NOTHING`; no row
//!   inserted means `AlreadyExists`.
//! - `put_item` / `remove_item`: the item change and the version bump are one statement;
//!   the version row's lock orders concurrent writers, so versions stay monotonic.
//! - `roster`: version and items read by one statement (one snapshot).
//! - `take_all`: `DELETE … RETURNING`; of two nodes taking at once, the second finds the
//!   rows gone once the first commits, so each message is returned once.
//! - `kv_set` / `kv_delete`: the (tenant, slot) usage row is locked first, then the
//!   entry is written and the usage updated in the same transaction.
//! - archive `append`: one `INSERT … SELECT FROM unnest(…)` for the whole batch;
//!   `query`: counts and page from one statement (one snapshot); `retract`: one `UPDATE`
//!   choosing the message among the conversation's newest.

mod account_data;
mod archive;
mod blocks;
mod dump;
mod muc;
mod offline;
mod pep;
mod plugins;
mod rosters;
mod tenants;
mod tokens;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use heliograph_storage::{Account, StorageError, StorageResult, key_part};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bridge::Bridge;
use crate::migrations::{self, CREATE_SCHEMA_TABLE, CURRENT_VERSION, LOCK_KEY, MIGRATIONS};
use crate::{PgError, PgSettings};

/// How often the background check asks the database whether it answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Every store on one PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    bridge: Arc<Bridge>,
    query_timeout: Duration,
    reachable: Arc<AtomicBool>,
}

/// A failure inside a call, before it is reported as a [`StorageError`].
pub(crate) enum Fail {
    Db(tokio_postgres::Error),
    Pool(String),
    Storage(StorageError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Fail {
        Fail::Storage(e)
    }
}

impl Fail {
    /// No connection from the pool: the error with its causes ("error performing TLS
    /// handshake: invalid peer certificate: UnknownIssuer"), since the pool's own message
    /// names only the step that failed.
    pub(crate) fn pool(e: deadpool_postgres::PoolError) -> Fail {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let more = c.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            cause = c.source();
        }
        Fail::Pool(text)
    }

    fn into_storage(self, what: &str) -> StorageError {
        match self {
            Fail::Storage(e) => e,
            Fail::Pool(e) => StorageError::Backend(format!("{what}: {e}")),
            Fail::Db(e) => match e.as_db_error() {
                Some(db) => StorageError::Backend(format!(
                    "{what}: {} ({})",
                    db.message(),
                    db.code().code()
                )),
                None => StorageError::Backend(format!("{what}: {e}")),
            },
        }
    }
}

pub(crate) type Res<T> = Result<T, Fail>;

impl PgStore {
    /// Starts the store's runtime and pool, and the background reachability check. No
    /// connection is required to succeed here: calls fail until the database answers.
    pub fn connect(settings: &PgSettings) -> Result<PgStore, PgError> {
        let bridge = Arc::new(Bridge::new(2).map_err(PgError::Runtime)?);
        // The pool's connections are spawned on the runtime that first uses them: ours.
        let pool = {
            let _entered = bridge.handle().enter();
            crate::connect::pool(settings)?
        };
        let reachable = Arc::new(AtomicBool::new(true));
        bridge.handle().spawn(probe(
            pool.clone(),
            reachable.clone(),
            settings.query_timeout,
        ));
        Ok(PgStore {
            pool,
            bridge,
            query_timeout: settings.query_timeout,
            reachable,
        })
    }

    /// Runs `f` with a pooled connection on the store's runtime, within the call deadline.
    pub(crate) fn call<T, F, Fut>(&self, what: &'static str, f: F) -> StorageResult<T>
    where
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Res<T>> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let deadline = self.query_timeout;
        self.bridge.run(async move {
            let work = async {
                let client = pool.get().await.map_err(Fail::pool)?;
                f(client).await
            };
            match tokio::time::timeout(deadline, work).await {
                Ok(result) => result.map_err(|e| e.into_storage(what)),
                Err(_) => Err(StorageError::Backend(format!(
                    "{what}: no answer from the database within {deadline:?}"
                ))),
            }
        })
    }

    /// The schema version recorded in the database (0 for an empty database).
    pub fn schema_version(&self) -> Result<i32, PgError> {
        self.call("reading the schema version", |c| async move {
            if !has_schema_table(&c).await? {
                return Ok(0);
            }
            Ok(c.query_one(CURRENT_VERSION, &[]).await?.get::<_, i32>(0))
        })
        .map_err(|e| PgError::Connect(e.to_string()))
    }

    /// Applies every migration up to `target` (all when `None`); returns the versions
    /// applied. Refuses a database newer than this build.
    pub fn migrate(&self, target: Option<i32>) -> Result<Vec<i32>, PgError> {
        let target = target.unwrap_or_else(migrations::latest);
        let outcome = self.call("migrating", move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
                .await?;
            if !has_schema_table(&tx).await? {
                tx.batch_execute(CREATE_SCHEMA_TABLE).await?;
            }
            let found: i32 = tx.query_one(CURRENT_VERSION, &[]).await?.get(0);
            if found > migrations::latest() {
                return Ok(Err(PgError::SchemaTooNew {
                    found,
                    known: migrations::latest(),
                }));
            }
            let mut applied = Vec::new();
            for m in MIGRATIONS
                .iter()
                .filter(|m| m.version > found && m.version <= target)
            {
                if let Err(e) = tx.batch_execute(m.sql).await {
                    return Ok(Err(PgError::Migration {
                        version: m.version,
                        name: m.name,
                        message: Fail::Db(e).into_storage("applying").to_string(),
                    }));
                }
                tx.execute(
                    "INSERT INTO heliograph_schema (version, name) VALUES ($1, $2)",
                    &[&m.version, &m.name],
                )
                .await?;
                applied.push(m.version);
            }
            tx.commit().await?;
            Ok(Ok(applied))
        });
        let applied = outcome.map_err(|e| PgError::Connect(e.to_string()))??;
        for v in &applied {
            tracing::info!(version = v, "database migration applied");
        }
        Ok(applied)
    }

    /// Nothing to flush: every write committed before it returned.
    pub fn flush(&self) -> StorageResult<()> {
        Ok(())
    }

    pub(crate) fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }
}

/// Whether the table of applied versions exists (an empty database has none).
async fn has_schema_table(c: &impl deadpool_postgres::GenericClient) -> Res<bool> {
    let row = c
        .query_one("SELECT to_regclass('heliograph_schema') IS NOT NULL", &[])
        .await?;
    Ok(row.get(0))
}

/// Asks the database every second whether it answers; `/health/ready` reads the result.
async fn probe(pool: Pool, reachable: Arc<AtomicBool>, deadline: Duration) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let check = async {
            let client = pool.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        };
        let ok = matches!(tokio::time::timeout(deadline, check).await, Ok(Some(_)));
        if reachable.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("the database answers again");
            } else {
                tracing::error!("the database does not answer");
            }
        }
    }
}

/// An account's (domain, localpart), checked like every backend checks them.
pub(crate) fn account(account: &Account) -> StorageResult<(String, String)> {
    Ok((
        key_part(&account.domain, "domain")?.to_string(),
        key_part(&account.local, "localpart")?.to_string(),
    ))
}

/// A value as JSON text for a `jsonb` column (bound as `CAST($n::text AS jsonb)`).
pub(crate) fn json<T: Serialize>(value: &T) -> StorageResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StorageError::Backend(format!("encoding {}: {e}", std::any::type_name::<T>())))
}

/// A `jsonb` column read as text (`column::text`).
pub(crate) fn parse<T: DeserializeOwned>(text: &str, at: &str) -> Res<T> {
    serde_json::from_str(text).map_err(|e| {
        Fail::Storage(StorageError::Corrupt(format!(
            "{} at {at}: {e}",
            std::any::type_name::<T>()
        )))
    })
}

/// u64 values stored in `bigint` columns.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
