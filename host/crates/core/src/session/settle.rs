//! When a client's message is safe: in a cluster, a stream management `<a h/>` covers a
//! message only once its routing outcome survives this node's death — stored (offline,
//! archive), handed to a session here, or taken by the node of a remote session. Until
//! then the message holds a [`Settle`]: the routing work holds it (a task-local, so every
//! copy routed to another node can take a clone along), the cluster keeps a clone with
//! each copy until that node has taken it. When the last clone goes, the session hears
//! [`SessionMsg::Settled`] with the stanza's number, and its count of handled stanzas
//! moves on in order (see `sm`).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::router::{Mailbox, SessionMsg};

/// A share of the wait for one client stanza (see the module's doc).
#[derive(Debug, Clone)]
pub struct Settle(#[allow(dead_code)] Arc<Inner>);

#[derive(Debug)]
struct Inner {
    number: u32,
    session: Mailbox,
}

impl Settle {
    /// The wait for stanza `number` (the client's count after it), told to `session`.
    pub fn new(number: u32, session: Mailbox) -> Settle {
        Settle(Arc::new(Inner { number, session }))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let msg = Box::new(SessionMsg::Settled(self.number));
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.session.try_send(msg)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let session = self.session.clone();
            runtime.spawn(async move {
                let _ = session.send(msg).await;
            });
        }
    }
}

tokio::task_local! {
    static CURRENT: Option<Settle>;
}

/// The wait of the stanza being routed now, if any: whoever keeps a copy of it in memory
/// only (the cluster's messages for other nodes) keeps a clone.
pub fn current() -> Option<Settle> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

/// Runs `f` (routing) as the work of the stanza `settle` waits for.
pub async fn scope<F: Future>(settle: Option<Settle>, f: F) -> F::Output {
    CURRENT.scope(settle, f).await
}

/// Like [`scope`], for routing done without a future.
pub fn sync_scope<R>(settle: Option<Settle>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(settle, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_session_hears_once_the_last_share_is_gone() {
        let (tx, mut rx) = mpsc::channel(4);
        let settle = Settle::new(7, tx);
        let kept = scope(Some(settle), async { current() }).await;
        assert!(rx.try_recv().is_err(), "a copy still holds it");
        assert!(current().is_none());
        drop(kept);
        match rx.try_recv().map(|m| *m) {
            Ok(SessionMsg::Settled(7)) => {}
            other => panic!("{other:?}"),
        }
    }
}
