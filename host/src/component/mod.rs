//! Third-party components: a tenant's own services on subdomains of its domains.
//!
//! - External components (XEP-0114): [`listener`] accepts connections on
//!   `[[listen.component]]`, [`connection`] runs the handshake ([`handshake`]) and the
//!   stanza exchange ([`namespace`] moves stanzas between `jabber:component:accept` and
//!   `jabber:client`), [`external`] makes a connection a hosted domain and keeps the table
//!   of live connections (conflict/replace, reconcile on tenant changes).
//! - Wasm components: [`wasm`] runs a tenant's `component` plugin for its subdomain.
//! - [`ComponentResolver`] finds configured components that are not registered: Wasm
//!   ones, and external ones that are not connected ([`absent`]).
//! - [`discovery`] lists a tenant's components in its disco#items.
//!
//! Which components exist, their secrets and slots are tenant settings
//! ([`crate::tenants::spec::ComponentSpec`]), so they change at runtime through the admin
//! API and config reload like everything about tenants.

pub mod absent;
pub mod connection;
pub mod discovery;
pub mod external;
pub mod handshake;
pub mod listener;
pub mod namespace;
pub mod wasm;

use std::sync::Arc;

use crate::server::Server;
use crate::services::hosted::{HostedDomain, HostedResolver};

pub use external::{Connections, ExternalComponent};

/// Resolves configured component domains that no connection holds: Wasm components
/// (served by their plugin) and external components that are offline.
pub struct ComponentResolver;

impl HostedResolver for ComponentResolver {
    fn resolve(&self, server: &Server, domain: &str) -> Option<Arc<dyn HostedDomain>> {
        let snapshot = server.tenants.snapshot();
        let tenant = snapshot.by_component(domain)?;
        let spec = tenant.component(domain)?;
        Some(match &spec.plugin {
            Some(slot) => Arc::new(wasm::WasmComponent::new(&tenant.name, slot, spec)),
            None => Arc::new(absent::AbsentComponent {
                tenant: tenant.name.clone(),
            }),
        })
    }
}

/// Applies tenant changes to live components (removed, disabled, secret changed: closed).
pub fn reconcile(server: &Server) {
    let n = server.components.reconcile(server);
    if n > 0 {
        tracing::info!(
            closed = n,
            "component connections closed after a tenant change"
        );
    }
}
