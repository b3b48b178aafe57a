//! Hosted domains: addresses served inside this server by something other than the user
//! account router — a tenant's multi-user chat service (`conference.example.com`), an
//! external XEP-0114 component, a Wasm-hosted component.
//!
//! A hosted domain belongs to one tenant and is reachable from that tenant's users (and
//! from federated tenants) exactly like the tenant's own domains; other tenants see it as
//! a remote domain. Stanzas to any JID on the domain are handed to its
//! [`HostedDomain::deliver`]; stanzas it sends go through the same routing pipeline as
//! everyone's (`crate::pipeline::route` with an `Origin::Hosted`).
//!
//! Domains are found in two ways: registered one by one ([`HostedDomains::register`], for
//! components that connect and disconnect) or computed by a [`HostedResolver`] (for
//! services every tenant has, such as MUC, whose domains follow the tenants' domains
//! without registration).

use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use futures_util::future::BoxFuture;

use crate::context::Core;
use crate::xml::Element;

/// Something that serves every JID on one domain.
pub trait HostedDomain: Send + Sync + 'static {
    /// The name of the tenant the domain belongs to.
    fn tenant(&self) -> &str;
    /// What serves the domain, for logs and discovery (`"muc"`, `"component"`, ...).
    fn kind(&self) -> &'static str;
    /// Handles one stanza addressed to the domain or to a JID on it. `from` is the
    /// sender's stamped full JID, `to` is normalized.
    fn deliver(&self, core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()>;
    /// Handles a stanza another cluster node forwarded here because this node hosts its
    /// target (see [`super::Placement`]): like [`Self::deliver`], without asking the
    /// placement again.
    fn deliver_here(&self, core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()> {
        self.deliver(core, stanza)
    }
}

/// Computes hosted domains on demand (for example `conference.<tenant domain>`).
pub trait HostedResolver: Send + Sync + 'static {
    /// The hosted domain `domain`, if this resolver serves it.
    fn resolve(&self, core: &Core, domain: &str) -> Option<Arc<dyn HostedDomain>>;
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    /// Another hosted entity holds the domain.
    #[error("{0} is already served by another hosted entity")]
    Taken(String),
}

/// Registered hosted domains and resolvers.
#[derive(Default)]
pub struct HostedDomains {
    registered: DashMap<String, Arc<dyn HostedDomain>>,
    resolvers: RwLock<Vec<Arc<dyn HostedResolver>>>,
}

impl HostedDomains {
    /// Registers `domain`; refused if it is taken.
    pub fn register(
        &self,
        domain: &str,
        hosted: Arc<dyn HostedDomain>,
    ) -> Result<(), RegisterError> {
        match self.registered.entry(domain.to_string()) {
            dashmap::Entry::Occupied(_) => Err(RegisterError::Taken(domain.to_string())),
            dashmap::Entry::Vacant(v) => {
                v.insert(hosted);
                Ok(())
            }
        }
    }

    /// Registers `domain`, replacing (and returning) whatever held it.
    pub fn replace(
        &self,
        domain: &str,
        hosted: Arc<dyn HostedDomain>,
    ) -> Option<Arc<dyn HostedDomain>> {
        self.registered.insert(domain.to_string(), hosted)
    }

    /// Removes `domain` if `hosted` (the same object) still holds it; true if removed.
    /// A component that was replaced cannot remove its successor's route.
    pub fn unregister(&self, domain: &str, hosted: &Arc<dyn HostedDomain>) -> bool {
        self.registered
            .remove_if(domain, |_, current| Arc::ptr_eq(current, hosted))
            .is_some()
    }

    /// Adds a resolver, consulted for domains not registered.
    pub fn add_resolver(&self, resolver: Arc<dyn HostedResolver>) {
        self.resolvers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(resolver);
    }

    /// The hosted entity serving `domain`, if any.
    pub fn get(&self, core: &Core, domain: &str) -> Option<Arc<dyn HostedDomain>> {
        if let Some(h) = self.registered.get(domain) {
            return Some(h.clone());
        }
        let resolvers = self.resolvers.read().unwrap_or_else(|e| e.into_inner());
        resolvers.iter().find_map(|r| r.resolve(core, domain))
    }

    /// Registered domains served by entities of `kind` ([`HostedDomain::kind`]).
    pub fn registered_of_kind(&self, kind: &str) -> Vec<(String, Arc<dyn HostedDomain>)> {
        self.registered
            .iter()
            .filter(|e| e.value().kind() == kind)
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Registered domains of `tenant` with what serves them, sorted by domain.
    pub fn registered_for_tenant(&self, tenant: &str) -> Vec<(String, Arc<dyn HostedDomain>)> {
        let mut out: Vec<_> = self
            .registered
            .iter()
            .filter(|e| e.value().tenant() == tenant)
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str);
    impl HostedDomain for Fake {
        fn tenant(&self) -> &str {
            self.0
        }
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn deliver(&self, _: Arc<Core>, _: Element) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[test]
    fn a_replaced_entity_cannot_remove_its_successor() {
        let hosted = HostedDomains::default();
        let old: Arc<dyn HostedDomain> = Arc::new(Fake("a"));
        let new: Arc<dyn HostedDomain> = Arc::new(Fake("a"));
        hosted.register("c.example", old.clone()).unwrap();
        assert_eq!(
            hosted.register("c.example", new.clone()),
            Err(RegisterError::Taken("c.example".into()))
        );
        hosted.replace("c.example", new.clone());
        assert!(!hosted.unregister("c.example", &old));
        assert_eq!(hosted.registered_for_tenant("a").len(), 1);
        assert!(hosted.unregister("c.example", &new));
        assert!(hosted.registered_for_tenant("a").is_empty());
    }
}
