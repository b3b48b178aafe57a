//! Test databases: `HELIOGRAPH_TEST_POSTGRES_URL` names a server (and a database to
//! connect to for administration, e.g. `host=/tmp/pg port=5432 user=postgres
//! dbname=postgres`); [`TestDb::create`] makes a fresh database there for one test and
//! drops it afterwards. Without the variable, tests that need PostgreSQL skip, unless
//! `HELIOGRAPH_REQUIRE_POSTGRES=1` (as `tests/run.sh` sets), when they fail.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::config::Host;

use crate::PgSettings;

/// The server for tests.
pub const URL_VAR: &str = "HELIOGRAPH_TEST_POSTGRES_URL";
/// Set to 1 to make a missing server a failure rather than a skip.
pub const REQUIRE_VAR: &str = "HELIOGRAPH_REQUIRE_POSTGRES";

/// A database of its own for one test, dropped with this value.
pub struct TestDb {
    pub name: String,
    /// Key-value connection string for the database.
    pub url: String,
    admin: tokio_postgres::Config,
}

/// True when tests must not skip for want of a server.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

impl TestDb {
    /// A fresh database, or `None` (skip) when no server is configured and none is
    /// required. Panics when one is required or configured but unusable.
    pub fn create() -> Option<TestDb> {
        let Ok(url) = std::env::var(URL_VAR) else {
            assert!(
                !required(),
                "{REQUIRE_VAR}=1 but {URL_VAR} is not set: no PostgreSQL to test against"
            );
            eprintln!("skipped: {URL_VAR} is not set");
            return None;
        };
        let admin: tokio_postgres::Config = url
            .parse()
            .unwrap_or_else(|e| panic!("{URL_VAR} is not a connection string: {e}"));
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hg_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        admin_sql(&admin, format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating test database {name} at {URL_VAR}: {e}"));
        let url = connection_string(&admin, &name);
        Some(TestDb { name, url, admin })
    }

    /// Settings for this database, with short timeouts.
    pub fn settings(&self) -> PgSettings {
        let mut s = PgSettings::new(self.url.clone());
        s.pool_size = 8;
        s
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = admin_sql(
            &self.admin,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The key-value form of `admin` pointed at `dbname`.
pub fn connection_string(admin: &tokio_postgres::Config, dbname: &str) -> String {
    let mut parts = Vec::new();
    if let Some(host) = admin.get_hosts().first() {
        match host {
            Host::Tcp(h) => parts.push(format!("host={h}")),
            Host::Unix(p) => parts.push(format!("host={}", p.display())),
        }
    }
    if let Some(port) = admin.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = admin.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(pw) = admin.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(pw)));
    }
    parts.push(format!("dbname={dbname}"));
    parts.join(" ")
}

/// Runs one statement on the admin database, from a thread of its own (callers may be
/// inside an async runtime).
pub fn admin_sql(admin: &tokio_postgres::Config, sql: String) -> Result<(), String> {
    let admin = admin.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, conn) = admin
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            client.batch_execute(&sql).await.map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}
