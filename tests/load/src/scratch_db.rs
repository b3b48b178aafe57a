//! A fresh PostgreSQL database for one run, made on the server the caller names and
//! dropped at the end, so runs never see each other's accounts or sessions. The SQL goes
//! through the storage crate's own test helpers (`heliograph_storage_postgres::testing`).

use anyhow::Context as _;
use heliograph_storage_postgres::testing::{admin_sql, connection_string};

/// A database of this run's own, dropped (with its connections) with this value.
pub struct ScratchDb {
    pub name: String,
    /// Key-value connection string for it, for the nodes' `[storage] url`.
    pub url: String,
    admin: tokio_postgres::Config,
}

impl ScratchDb {
    /// Creates `PREFIX_PID_MILLIS` on the server of `admin_url` (a connection string to a
    /// database there the user may create databases from, e.g. `dbname=postgres`).
    pub fn create(admin_url: &str, prefix: &str) -> anyhow::Result<ScratchDb> {
        let admin: tokio_postgres::Config = admin_url
            .parse()
            .with_context(|| format!("--postgres-url {admin_url:?} is not a connection string"))?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let name = format!("{prefix}_{}_{millis}", std::process::id());
        admin_sql(&admin, format!("CREATE DATABASE {name}"))
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("creating database {name}"))?;
        Ok(ScratchDb {
            url: connection_string(&admin, &name),
            name,
            admin,
        })
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Err(e) = admin_sql(
            &self.admin,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("dropping database {}: {e}", self.name);
        }
    }
}
