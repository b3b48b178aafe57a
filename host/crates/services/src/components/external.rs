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
use tokio::sync::mpsc;

use crate::pipeline::route_from_hosted;
use crate::router::{HostedDomain, Mailbox, RegisterError, SessionMsg};
use crate::session::StreamErrorCondition;
use crate::stanza::{self, Condition};
use crate::tenants::spec::{ComponentSpec, OnConflict};
use crate::xml::Element;
use heliograph_core::Core;

/// One authenticated component connection.
pub struct ExternalComponent {
    /// Connection id (logs, the live table).
    pub id: u64,
    tenant: String,
    /// The component's settings when it authenticated.
    pub spec: ComponentSpec,
    /// The connection's session mailbox.
    mailbox: Mailbox,
    me: Weak<ExternalComponent>,
}

impl ExternalComponent {
    /// A component connection of `tenant`, reached through the connection's session
    /// mailbox.
    pub fn new(
        id: u64,
        tenant: &str,
        spec: ComponentSpec,
        mailbox: Mailbox,
    ) -> Arc<ExternalComponent> {
        Arc::new_cyclic(|me| ExternalComponent {
            id,
            tenant: tenant.to_string(),
            spec,
            mailbox,
            me: me.clone(),
        })
    }

    pub fn tenant_name(&self) -> &str {
        &self.tenant
    }

    /// Asks the connection to close its stream with this error.
    pub fn close(&self, condition: StreamErrorCondition, text: Option<&str>) {
        let msg = Box::new(SessionMsg::Close(condition, text.map(str::to_owned)));
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.mailbox.try_send(msg) {
            let tx = self.mailbox.clone();
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
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

    fn deliver(&self, core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()> {
        let bounce = match self.mailbox.try_send(Box::new(SessionMsg::Stanza(stanza))) {
            Ok(()) => None,
            Err(e) => {
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                match *e.into_inner() {
                    SessionMsg::Stanza(s) if full => {
                        metrics::counter!("heliograph_component_stanzas_dropped_total", "reason" => "queue_full").increment(1);
                        stanza::error_reply(
                            &s,
                            Condition::ResourceConstraint,
                            Some("the component is overloaded"),
                        )
                    }
                    SessionMsg::Stanza(s) => {
                        stanza::error_reply(&s, Condition::ServiceUnavailable, None)
                    }
                    _ => None,
                }
            }
        };
        let origin = self.as_hosted();
        Box::pin(async move {
            if let (Some(error), Some(origin)) = (bounce, origin) {
                route_from_hosted(&core, origin, error).await;
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
        core: &Core,
        component: &Arc<ExternalComponent>,
    ) -> Result<(), AttachError> {
        let _g = self.registering.lock().unwrap_or_else(|e| e.into_inner());
        let hosted: Arc<dyn HostedDomain> = component.clone();
        let mut replaced: Vec<Arc<dyn HostedDomain>> = Vec::new();
        match component.spec.on_conflict {
            OnConflict::Refuse => {
                let mut done: Vec<&String> = Vec::new();
                for d in &component.spec.domains {
                    if let Err(e) = core.hosted.register(d, hosted.clone()) {
                        for r in done {
                            core.hosted.unregister(r, &hosted);
                        }
                        return Err(e.into());
                    }
                    done.push(d);
                }
            }
            OnConflict::Replace => {
                for d in &component.spec.domains {
                    if let Some(old) = core.hosted.replace(d, hosted.clone()) {
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
                self.detach(core, &victim);
                victim.close(
                    StreamErrorCondition::Conflict,
                    Some("replaced by a new connection"),
                );
            }
        }
        Ok(())
    }

    /// Removes the routes `component` still holds (never a successor's).
    pub fn detach(&self, core: &Core, component: &Arc<ExternalComponent>) {
        let hosted: Arc<dyn HostedDomain> = component.clone();
        for d in &component.spec.domains {
            core.hosted.unregister(d, &hosted);
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
    pub fn reconcile(&self, core: &Core) -> usize {
        let snapshot = core.tenants.snapshot();
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
                self.detach(core, &c);
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
    use crate::storage::Storage;
    use crate::tenants::spec::OnConflict;

    fn core() -> (Arc<Core>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open_sled(dir.path()).unwrap();
        (
            crate::testing::core_with(&crate::Services::default(), storage),
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

    fn component(
        id: u64,
        domains: &[&str],
        on_conflict: OnConflict,
    ) -> (Arc<ExternalComponent>, crate::router::MailboxRx) {
        let (tx, rx) = mpsc::channel(16);
        (
            ExternalComponent::new(id, "t", spec(domains, on_conflict), tx),
            rx,
        )
    }

    #[test]
    fn refuse_keeps_the_first_and_takes_all_domains_or_none() {
        let (core, _dir) = core();
        let conns = Connections::default();
        let (a, _arx) = component(1, &["b.t.test"], OnConflict::Refuse);
        conns.attach(&core, &a).unwrap();
        let (b, _brx) = component(2, &["c.t.test", "b.t.test"], OnConflict::Refuse);
        assert!(conns.attach(&core, &b).is_err());
        // c.t.test was undone: nothing of b's is left.
        assert!(core.hosted.get(&core, "c.t.test").is_none());
        assert_eq!(conns.list().len(), 1);
        // After the first detaches, the domain is free at once.
        conns.detach(&core, &a);
        assert!(core.hosted.get(&core, "b.t.test").is_none());
        conns.attach(&core, &b).unwrap();
        assert!(core.hosted.get(&core, "c.t.test").is_some());
    }

    #[tokio::test]
    async fn replace_closes_the_old_one_which_cannot_remove_the_new_route() {
        let (core, _dir) = core();
        let conns = Connections::default();
        let (a, mut arx) = component(1, &["b.t.test"], OnConflict::Replace);
        conns.attach(&core, &a).unwrap();
        let (b, mut brx) = component(2, &["b.t.test"], OnConflict::Replace);
        conns.attach(&core, &b).unwrap();
        assert!(matches!(
            arx.try_recv().map(|m| *m),
            Ok(SessionMsg::Close(StreamErrorCondition::Conflict, _))
        ));
        assert!(brx.try_recv().is_err());
        // The old connection's own cleanup runs later and must not remove b's route.
        conns.detach(&core, &a);
        let current = core.hosted.get(&core, "b.t.test").unwrap();
        let b_dyn: Arc<dyn HostedDomain> = b.clone();
        assert!(Arc::ptr_eq(&current, &b_dyn));
        assert_eq!(conns.list().len(), 1);
    }
}
