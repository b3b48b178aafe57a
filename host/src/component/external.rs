//! A connected XEP-0114 component as a [`HostedDomain`], and the table of live component
//! connections.
//!
//! Each connection registers every domain of its component in `server.hosted` once its
//! handshake succeeds: all of them or none (a refused domain undoes the others). With
//! `on_conflict = "replace"` the previous holder is closed with `<conflict/>`; with
//! `"refuse"` the newcomer is. On disconnect the connection unregisters exactly its own
//! routes (a successor's stay), at once, so the component can reconnect immediately.

use std::sync::{Arc, Mutex, Weak};

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use crate::server::Server;
use crate::services::hosted::{HostedDomain, RegisterError, route_from_hosted};
use crate::session::StreamErrorCondition;
use crate::stanza::{self, Condition};
use crate::tenants::spec::{ComponentSpec, OnConflict};
use crate::xml::Element;

/// Why a stream is being closed by the server, with optional text.
pub type CloseReason = (StreamErrorCondition, Option<String>);

/// One authenticated component connection.
pub struct ExternalComponent {
    /// Connection id (logs, the live table).
    pub id: u64,
    tenant: String,
    /// The component's settings when it authenticated.
    pub spec: ComponentSpec,
    outbox: mpsc::Sender<Element>,
    closer: watch::Sender<Option<CloseReason>>,
    me: Weak<ExternalComponent>,
}

impl ExternalComponent {
    /// A component connection of `tenant`; the connection reads stanzas for it from the
    /// returned receiver and closes when the watch says so.
    pub fn new(
        id: u64,
        tenant: &str,
        spec: ComponentSpec,
        queue: usize,
    ) -> (
        Arc<ExternalComponent>,
        mpsc::Receiver<Element>,
        watch::Receiver<Option<CloseReason>>,
    ) {
        let (tx, rx) = mpsc::channel(queue.max(16));
        let (closer, close_rx) = watch::channel(None);
        let c = Arc::new_cyclic(|me| ExternalComponent {
            id,
            tenant: tenant.to_string(),
            spec,
            outbox: tx,
            closer,
            me: me.clone(),
        });
        (c, rx, close_rx)
    }

    pub fn tenant_name(&self) -> &str {
        &self.tenant
    }

    /// Asks the connection to close its stream with this error.
    pub fn close(&self, condition: StreamErrorCondition, text: Option<&str>) {
        self.closer
            .send_replace(Some((condition, text.map(str::to_string))));
    }

    /// True if `domain` is one of the component's.
    pub fn serves(&self, domain: &str) -> bool {
        self.spec.domains.iter().any(|d| d == domain)
    }

    fn as_hosted(&self) -> Option<Arc<dyn HostedDomain>> {
        self.me.upgrade().map(|c| c as Arc<dyn HostedDomain>)
    }
}

impl HostedDomain for ExternalComponent {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn kind(&self) -> &'static str {
        "component"
    }

    fn deliver(&self, server: Arc<Server>, stanza: Element) -> BoxFuture<'static, ()> {
        let bounce = match self.outbox.try_send(stanza) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(s)) => {
                metrics::counter!("heliograph_component_stanzas_dropped_total", "reason" => "queue_full").increment(1);
                stanza::error_reply(
                    &s,
                    Condition::ResourceConstraint,
                    Some("the component is overloaded"),
                )
            }
            Err(mpsc::error::TrySendError::Closed(s)) => {
                stanza::error_reply(&s, Condition::ServiceUnavailable, None)
            }
        };
        let origin = self.as_hosted();
        Box::pin(async move {
            if let (Some(error), Some(origin)) = (bounce, origin) {
                route_from_hosted(&server, &origin, error).await;
            }
        })
    }
}

/// Live component connections by connection id.
#[derive(Default)]
pub struct Connections {
    live: DashMap<u64, Arc<ExternalComponent>>,
    /// Serializes registration so two connections for the same domains cannot interleave.
    registering: Mutex<()>,
}

/// Why a component could not take its domains.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachError {
    #[error(transparent)]
    Taken(#[from] RegisterError),
}

impl Connections {
    /// Registers every domain of `component` in `server.hosted` following its
    /// `on_conflict` setting, and records it as live. Replaced connections are closed with
    /// `<conflict/>`.
    pub fn attach(
        &self,
        server: &Server,
        component: &Arc<ExternalComponent>,
    ) -> Result<(), AttachError> {
        let _g = self.registering.lock().unwrap_or_else(|e| e.into_inner());
        let hosted: Arc<dyn HostedDomain> = component.clone();
        let mut replaced: Vec<Arc<dyn HostedDomain>> = Vec::new();
        match component.spec.on_conflict {
            OnConflict::Refuse => {
                let mut done: Vec<&String> = Vec::new();
                for d in &component.spec.domains {
                    if let Err(e) = server.hosted.register(d, hosted.clone()) {
                        for r in done {
                            server.hosted.unregister(r, &hosted);
                        }
                        return Err(e.into());
                    }
                    done.push(d);
                }
            }
            OnConflict::Replace => {
                for d in &component.spec.domains {
                    if let Some(old) = server.hosted.replace(d, hosted.clone()) {
                        replaced.push(old);
                    }
                }
            }
        }
        self.live.insert(component.id, component.clone());
        for old in replaced {
            let old_ptr = Arc::as_ptr(&old) as *const ();
            let victim = self
                .live
                .iter()
                .find(|e| Arc::as_ptr(e.value()) as *const () == old_ptr)
                .map(|e| e.value().clone());
            if let Some(victim) = victim {
                tracing::info!(
                    conn = victim.id,
                    by = component.id,
                    "component replaced by a new connection"
                );
                // Its other domains (if any) go too: a component is one unit.
                self.detach(server, &victim);
                victim.close(
                    StreamErrorCondition::Conflict,
                    Some("replaced by a new connection"),
                );
            }
        }
        Ok(())
    }

    /// Removes the routes `component` still holds (never a successor's).
    pub fn detach(&self, server: &Server, component: &Arc<ExternalComponent>) {
        let hosted: Arc<dyn HostedDomain> = component.clone();
        for d in &component.spec.domains {
            server.hosted.unregister(d, &hosted);
        }
        self.live
            .remove_if(&component.id, |_, c| Arc::ptr_eq(c, component));
    }

    /// Live connections, in no particular order.
    pub fn list(&self) -> Vec<Arc<ExternalComponent>> {
        self.live.iter().map(|e| e.value().clone()).collect()
    }

    /// Closes connections whose component was removed or disabled, or whose secret or
    /// domains changed (tenant change, reload). Returns how many were closed.
    pub fn reconcile(&self, server: &Server) -> usize {
        let snapshot = server.tenants.snapshot();
        let mut closed = 0;
        for c in self.list() {
            let current = snapshot
                .by_name(c.tenant_name())
                .filter(|t| t.enabled())
                .and_then(|t| t.component(&c.spec.domains[0]).cloned());
            let keep = matches!(&current, Some(spec)
                if spec.secret == c.spec.secret && spec.domains == c.spec.domains);
            if !keep {
                tracing::info!(conn = c.id, tenant = c.tenant_name(), domain = %c.spec.domains[0],
                    "component settings changed or removed: disconnecting it");
                self.detach(server, &c);
                let (cond, text) = match current {
                    None => (StreamErrorCondition::HostGone, "the component was removed"),
                    Some(_) => (
                        StreamErrorCondition::NotAuthorized,
                        "the component's settings changed",
                    ),
                };
                c.close(cond, Some(text));
                closed += 1;
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::storage::Storage;

    fn server() -> (Server, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open_sled(dir.path()).unwrap();
        (
            Server::new(Arc::new(Config::default()), storage, "t".into()),
            dir,
        )
    }

    fn spec(domains: &[&str], on_conflict: OnConflict) -> ComponentSpec {
        ComponentSpec {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            name: None,
            secret: Some("s".into()),
            plugin: None,
            on_conflict,
            hidden: false,
        }
    }

    #[test]
    fn refuse_keeps_the_first_and_takes_all_domains_or_none() {
        let (server, _dir) = server();
        let conns = Connections::default();
        let (a, _arx, _ac) =
            ExternalComponent::new(1, "t", spec(&["b.t.test"], OnConflict::Refuse), 16);
        conns.attach(&server, &a).unwrap();
        let (b, _brx, _bc) = ExternalComponent::new(
            2,
            "t",
            spec(&["c.t.test", "b.t.test"], OnConflict::Refuse),
            16,
        );
        assert!(conns.attach(&server, &b).is_err());
        // c.t.test was undone: nothing of b's is left.
        assert!(server.hosted.get(&server, "c.t.test").is_none());
        assert_eq!(conns.list().len(), 1);
        // After the first detaches, the domain is free at once.
        conns.detach(&server, &a);
        assert!(server.hosted.get(&server, "b.t.test").is_none());
        conns.attach(&server, &b).unwrap();
        assert!(server.hosted.get(&server, "c.t.test").is_some());
    }

    #[test]
    fn replace_closes_the_old_one_which_cannot_remove_the_new_route() {
        let (server, _dir) = server();
        let conns = Connections::default();
        let (a, _arx, ac) =
            ExternalComponent::new(1, "t", spec(&["b.t.test"], OnConflict::Replace), 16);
        conns.attach(&server, &a).unwrap();
        let (b, _brx, bc) =
            ExternalComponent::new(2, "t", spec(&["b.t.test"], OnConflict::Replace), 16);
        conns.attach(&server, &b).unwrap();
        assert_eq!(
            ac.borrow().as_ref().map(|r| r.0),
            Some(StreamErrorCondition::Conflict)
        );
        assert!(bc.borrow().is_none());
        // The old connection's own cleanup runs later and must not remove b's route.
        conns.detach(&server, &a);
        let current = server.hosted.get(&server, "b.t.test").unwrap();
        let b_dyn: Arc<dyn HostedDomain> = b.clone();
        assert!(Arc::ptr_eq(&current, &b_dyn));
        assert_eq!(conns.list().len(), 1);
    }
}
