//! BOSH across cluster nodes: a request whose `sid` names a session another node holds
//! (the load balancer sent it to the wrong one) is relayed to that node, answered there as
//! if it had arrived there, and the answer goes back to the client from here.
//!
//! The HTTP listeners register as [`BoshEndpoint`]s (they answer relayed requests for
//! their sessions); the cluster layer installs the [`BoshRelay`] that names the node in
//! each new `sid` and carries requests between nodes. Nothing here knows either.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;

/// An HTTP listener's BOSH sessions, as relayed requests reach them.
pub trait BoshEndpoint: Send + Sync {
    /// `sid` is one of this listener's sessions (live, or ended recently).
    fn holds(&self, sid: &str) -> bool;

    /// Answers the request `body` (the whole `<body/>`, as the client sent it) for the
    /// session `sid`.
    fn answer(&self, sid: &str, body: Vec<u8>) -> BoxFuture<'static, Vec<u8>>;
}

/// Why a request could not be relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The node did not answer in time, or is not there (dead, or NATS is down).
    #[error("node {node} did not answer: {why}")]
    Unreachable { node: String, why: String },
}

/// What carries requests between nodes (the cluster layer).
pub trait BoshRelay: Send + Sync {
    /// A new `sid` that names this node.
    fn new_sid(&self) -> String;

    /// The node `sid` names, when it is another one than this.
    fn owner(&self, sid: &str) -> Option<String>;

    /// Has `node` answer `body` for `sid`; gives up after `deadline`.
    fn relay(
        &self,
        node: String,
        sid: String,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, RelayError>>;
}

/// The listeners and the relay of this node.
#[derive(Default)]
pub struct BoshRelays {
    endpoints: RwLock<Vec<Arc<dyn BoshEndpoint>>>,
    relay: OnceLock<Arc<dyn BoshRelay>>,
}

impl BoshRelays {
    /// A listener serving BOSH (registered when it starts).
    pub fn add_endpoint(&self, endpoint: Arc<dyn BoshEndpoint>) {
        self.endpoints
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(endpoint);
    }

    /// Installs the relay (once, by the cluster layer at startup).
    pub fn set_relay(&self, relay: Arc<dyn BoshRelay>) {
        let _ = self.relay.set(relay);
    }

    /// The relay, in a cluster.
    pub fn relay(&self) -> Option<&Arc<dyn BoshRelay>> {
        self.relay.get()
    }

    /// A new `sid`: naming this node in a cluster, `None` (the listener picks one) alone.
    pub fn new_sid(&self) -> Option<String> {
        self.relay.get().map(|r| r.new_sid())
    }

    /// The answer of the listener holding `sid` to a relayed request, if one holds it.
    pub fn answer_here(&self, sid: &str, body: Vec<u8>) -> Option<BoxFuture<'static, Vec<u8>>> {
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        let holder = endpoints.iter().find(|e| e.holds(sid))?;
        Some(holder.answer(sid, body))
    }
}
