//! The schema's versions: the SQL files of `migrations/`, numbered from 1, each applied
//! once and recorded in `heliograph_schema` (version, name, when). Migrating takes a
//! transaction-scoped advisory lock, so nodes starting together apply each migration
//! once; every pending migration and its record commit together, so a failed migration
//! leaves the schema as it was. A database whose recorded version is newer than
//! [`latest`] belongs to a newer build: nothing is applied and the caller refuses it.

/// One schema version.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts, rosters, offline messages, block lists, tenants",
        sql: include_str!("../migrations/0001_accounts_rosters_offline_blocks_tenants.sql"),
    },
    Migration {
        version: 2,
        name: "MUC rooms and logs, tokens, plugins",
        sql: include_str!("../migrations/0002_rooms_tokens_plugins.sql"),
    },
    Migration {
        version: 3,
        name: "message archive, archive preferences, account data",
        sql: include_str!("../migrations/0003_archive_account_data.sql"),
    },
    Migration {
        version: 4,
        name: "PEP nodes",
        sql: include_str!("../migrations/0004_pep_nodes.sql"),
    },
];

/// The version this build's schema is at.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The table recording applied versions.
pub(crate) const CREATE_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS heliograph_schema (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Key of the advisory lock held while migrating (any constant shared by every node).
pub(crate) const LOCK_KEY: i64 = 0x4865_6c69_6f67_7261; // "Heliogra"

/// The recorded version (0 when nothing was applied).
pub(crate) const CURRENT_VERSION: &str = "SELECT coalesce(max(version), 0) FROM heliograph_schema";
