//! Third-party components: a tenant's own services on subdomains of its domains.
//!
//! - External components (XEP-0114): [`stream`] is the component stream (handshake,
//!   then stanzas; [`handshake`] checks the secret, [`namespace`] moves stanzas between
//!   `jabber:component:accept` and `jabber:client`) run by the session driver over a
//!   transport's link; [`external`] makes a connection a hosted domain and keeps the
//!   table of live connections (conflict/replace, reconcile on tenant changes).
//! - Wasm components: [`wasm`] runs a tenant's `component` plugin for its subdomain.
//! - [`ComponentResolver`] finds configured components that are not registered: Wasm
//!   ones, and external ones that are not connected ([`absent`]).
//! - [`discovery`] lists a tenant's components in its disco#items.
//!
//! Which components exist, their secrets and slots are tenant settings
//! (`ComponentSpec`), so they change at runtime through the admin API and config reload
//! like everything about tenants.

pub mod absent;
pub mod discovery;
pub mod external;
pub mod handshake;
pub mod namespace;
pub mod stream;
pub mod wasm;

use std::sync::Arc;

use heliograph_core::Core;

use crate::hooks::{Address, Feature, Registrar};
use crate::router::{HostedDomain, HostedResolver};

pub use external::{Connections, ExternalComponent};
pub use stream::ComponentStream;

/// The `components` feature over the table of live connections.
pub struct Components(pub Arc<Connections>);

impl Feature for Components {
    fn name(&self) -> &'static str {
        "components"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        r.hosted(Arc::new(ComponentResolver));
        r.disco_items(Address::Host, discovery::items);
    }
}

/// Resolves configured component domains that no connection holds: Wasm components
/// (served by their plugin) and external components that are offline.
pub struct ComponentResolver;

impl HostedResolver for ComponentResolver {
    fn resolve(&self, core: &Core, domain: &str) -> Option<Arc<dyn HostedDomain>> {
        let snapshot = core.tenants.snapshot();
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
pub fn reconcile(core: &Core, connections: &Connections) {
    let n = connections.reconcile(core);
    if n > 0 {
        tracing::info!(
            closed = n,
            "component connections closed after a tenant change"
        );
    }
}
