//! The door to other servers: the routing pipeline hands a stanza for a remote domain to
//! the [`Federation`] installed at startup (the s2s transport), once it has checked that
//! the sender's tenant federates with that domain. Local tenants never reach each other
//! this way: a domain served here, by any tenant, is never remote.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::context::Core;
use crate::xml::Element;

/// What carries stanzas to other servers (implemented by the s2s transport).
pub trait Federation: Send + Sync + 'static {
    /// Queues `stanza` (from `local` to `remote`, both domains) for the stream to
    /// `remote`, opening it if needed. Delivery failures come back as error stanzas
    /// routed to the sender.
    fn send(&self, core: &Arc<Core>, local: &str, remote: &str, stanza: Element);

    /// Like [`Federation::send`] for a sender that can be slowed down (a client
    /// session): when the stream's queue is full it waits for room, as a client sending
    /// faster than a local recipient reads does, and bounces only if no room came in
    /// time. By default the same as `send`.
    fn send_waiting<'a>(
        &'a self,
        core: &'a Arc<Core>,
        local: &'a str,
        remote: &'a str,
        stanza: Element,
    ) -> BoxFuture<'a, ()> {
        self.send(core, local, remote, stanza);
        Box::pin(async {})
    }
}

/// Why a stanza could not be handed to another server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The domain is served here (by a tenant the sender cannot reach), or federation
    /// is off for the sender's tenant or for this domain.
    #[error("{0} is not served here")]
    NotFederated(String),
}

/// Hands `stanza` from `local` to the remote domain `remote` if the sender's tenant
/// federates with it; otherwise says why not (the caller bounces).
pub fn forward(
    core: &Arc<Core>,
    local: &str,
    remote: &str,
    stanza: Element,
) -> Result<(), (Refusal, Element)> {
    let stanza = checked(core, local, remote, stanza)?;
    if let Some(federation) = core.federation.get() {
        federation.send(core, local, remote, stanza);
    }
    Ok(())
}

/// Like [`forward`] for a client's stanza: waits for room when the stream to `remote`
/// is backed up (see [`Federation::send_waiting`]).
pub async fn forward_paced(
    core: &Arc<Core>,
    local: &str,
    remote: &str,
    stanza: Element,
) -> Result<(), (Refusal, Element)> {
    let stanza = checked(core, local, remote, stanza)?;
    if let Some(federation) = core.federation.get() {
        federation.send_waiting(core, local, remote, stanza).await;
    }
    Ok(())
}

/// True if `local`'s tenant may send stanzas to `remote` over the federation.
pub fn permits(core: &Arc<Core>, local: &str, remote: &str) -> bool {
    !core.serves_domain(remote)
        && core.hosted(remote).is_none()
        && core.federation.get().is_some()
        && core
            .tenant_of_any(local)
            .is_some_and(|t| t.spec.s2s.permits(remote))
}

/// The stanza back if `local`'s tenant may send it to `remote` over the federation.
fn checked(
    core: &Arc<Core>,
    local: &str,
    remote: &str,
    stanza: Element,
) -> Result<Element, (Refusal, Element)> {
    if permits(core, local, remote) {
        Ok(stanza)
    } else {
        Err((Refusal::NotFederated(remote.to_string()), stanza))
    }
}
