//! Tenant operations the admin API and reload perform ([`manage`]) and the plugins a
//! config file names ([`plugin_files`]); the tenant types and registry are in
//! `heliograph_tenants`, re-exported here.

pub mod manage;
pub mod plugin_files;

pub use heliograph_tenants::*;
