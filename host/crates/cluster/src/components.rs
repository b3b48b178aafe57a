//! External components (XEP-0114) on any node: each node lists in its heartbeats the
//! component domains its connections hold; the other nodes register those domains as
//! [`RemoteComponent`]s, which forward every stanza for the domain to the holding node.
//! There the component's own hosted entry takes it; what the component sends is routed
//! from that node like any stanza (remote sessions included). A node that stops listing
//! a domain, or dies, takes its remote entries with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::core::Core;
use crate::core::router::HostedDomain;
use crate::outbox::Outgoing;
use crate::wire::Direct;
use crate::xml::Element;

/// What a local external component registers as (`HostedDomain::kind`).
const LOCAL_KIND: &str = "component";

/// One component domain a node holds, as its heartbeat lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ComponentDomain {
    pub domain: String,
    pub tenant: String,
}

/// The component domains this node's connections hold now, sorted.
pub fn local_domains(core: &Core) -> Vec<ComponentDomain> {
    let mut out: Vec<ComponentDomain> = core
        .hosted
        .registered_of_kind(LOCAL_KIND)
        .into_iter()
        .map(|(domain, hosted)| ComponentDomain {
            domain,
            tenant: hosted.tenant().to_string(),
        })
        .collect();
    out.sort_by(|a, b| a.domain.cmp(&b.domain));
    out
}

/// A component domain held by a connection on another node.
pub struct RemoteComponent {
    node: Arc<str>,
    tenant: String,
    out: mpsc::Sender<Outgoing>,
}

impl HostedDomain for RemoteComponent {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn kind(&self) -> &'static str {
        "remote component"
    }

    fn deliver(&self, _core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()> {
        let msg = Outgoing::Direct {
            node: self.node.clone(),
            msg: Direct::Hosted { stanza },
        };
        if self.out.try_send(msg).is_err() {
            tracing::warn!(node = %self.node, "cluster: outgoing queue full; stanza for a component dropped");
        }
        Box::pin(async {})
    }
}

/// A domain registered for another node, with the entry registered for it.
type Registered = (ComponentDomain, Arc<dyn HostedDomain>);

/// The remote component entries this node registered, by the node holding them.
pub struct RemoteComponents {
    out: mpsc::Sender<Outgoing>,
    by_node: Mutex<HashMap<String, Vec<Registered>>>,
}

impl RemoteComponents {
    pub fn new(out: mpsc::Sender<Outgoing>) -> RemoteComponents {
        RemoteComponents {
            out,
            by_node: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the entries for `node` what its heartbeat lists. A domain a local
    /// connection holds stays local.
    pub fn sync(&self, core: &Core, node: &str, listed: &[ComponentDomain]) {
        let mut by_node = self.by_node.lock().unwrap_or_else(|e| e.into_inner());
        let held = by_node.entry(node.to_string()).or_default();
        let mut kept = Vec::new();
        for (d, hosted) in held.drain(..) {
            if listed.contains(&d) {
                kept.push((d, hosted));
            } else {
                core.hosted.unregister(&d.domain, &hosted);
                tracing::info!(domain = d.domain, node, "cluster: remote component gone");
            }
        }
        for d in listed {
            if kept.iter().any(|(k, _)| k == d) {
                continue;
            }
            let hosted: Arc<dyn HostedDomain> = Arc::new(RemoteComponent {
                node: node.into(),
                tenant: d.tenant.clone(),
                out: self.out.clone(),
            });
            match core.hosted.register(&d.domain, hosted.clone()) {
                Ok(()) => {
                    tracing::info!(
                        domain = d.domain,
                        node,
                        "cluster: component on another node"
                    );
                    kept.push((d.clone(), hosted));
                }
                Err(e) => tracing::debug!(error = %e, "cluster: remote component not registered"),
            }
        }
        // A domain that could not be registered (held here) is tried again with the
        // node's next heartbeat.
        *held = kept;
    }

    /// Removes the entries of nodes not in `live`.
    pub fn retain_nodes(&self, core: &Core, live: &[String]) {
        let mut by_node = self.by_node.lock().unwrap_or_else(|e| e.into_inner());
        by_node.retain(|node, held| {
            if live.contains(node) {
                return true;
            }
            for (d, hosted) in held.drain(..) {
                if core.hosted.unregister(&d.domain, &hosted) {
                    tracing::info!(domain = d.domain, node, "cluster: component's node gone");
                }
            }
            false
        });
    }
}
