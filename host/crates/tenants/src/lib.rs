//! Tenants: a tenant is a customer app owning one or more XMPP domains, with its own
//! authentication settings, limits, TLS certificate and plugins.
//!
//! Tenants come from the config file (`[tenants.NAME]`, plus the domains of
//! `general.hosts`, which form the tenant `default`) and from the admin API (persisted in
//! storage). The [`registry::Registry`] is read without locks on the hot path and replaced
//! atomically on every change. [`spec`] holds the settings types (with the MUC ones in
//! [`muc_settings`]), [`cert`] the certificates, [`rate`] the per-session stanza shaper.
//! Changing tenants (create, update, reload) is the control layer's job.

pub mod archive_settings;
pub mod calls_settings;
pub mod cert;
pub mod claims;
pub mod external_services;
pub mod muc_settings;
pub mod pep_settings;
pub mod profile_settings;
pub mod push_settings;
pub mod rate;
pub mod registry;
pub mod s2s_settings;
pub mod spec;
pub mod upload_settings;

pub use registry::{Registry, Tenant};
pub use spec::{AuthMethod, Limits, RoomPolicySetting, TenantRecord, TenantSpec};
