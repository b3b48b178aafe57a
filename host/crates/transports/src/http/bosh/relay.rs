//! BOSH requests for sessions of other cluster nodes (see
//! [`heliograph_core::bosh_relay`]): a request whose `sid` names another node, and that
//! no session here holds, is relayed to that node and its answer returned; and this
//! listener answers the requests other nodes relay for its own sessions.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heliograph_core::bosh_relay::BoshEndpoint;

use super::body::{self, BodyRequest};
use crate::http::HttpState;

/// How much longer than the longest `wait` a relayed request may take (the NATS trip
/// both ways and the session's own answer).
const RELAY_MARGIN: Duration = Duration::from_secs(10);

/// The answer of the node holding `sid` to `data`, when `sid` is no session of this
/// listener and names another node; `None` otherwise (answered here). A node that does
/// not answer is, to the client, a session that is not there (`item-not-found`).
pub async fn elsewhere(state: &HttpState, sid: &str, data: &Bytes) -> Option<Bytes> {
    if state.bosh.holds(sid) {
        return None;
    }
    let relay = state.core.bosh_relays.relay()?;
    let node = relay.owner(sid)?;
    let deadline = state.bosh_settings.max_wait + RELAY_MARGIN;
    match relay
        .relay(node, sid.to_string(), data.to_vec(), deadline)
        .await
    {
        Ok(answer) => Some(Bytes::from(answer)),
        Err(e) => {
            tracing::info!(sid, error = %e, "BOSH request not relayed");
            Some(Bytes::from(body::terminate("item-not-found")))
        }
    }
}

/// A listener as other nodes' relayed requests reach it.
pub struct Endpoint {
    state: Weak<HttpState>,
}

impl Endpoint {
    pub fn new(state: &Arc<HttpState>) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            state: Arc::downgrade(state),
        })
    }
}

impl BoshEndpoint for Endpoint {
    fn holds(&self, sid: &str) -> bool {
        self.state.upgrade().is_some_and(|s| s.bosh.holds(sid))
    }

    fn answer(&self, sid: &str, data: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let state = self.state.upgrade();
        let sid = sid.to_string();
        Box::pin(async move {
            let Some(state) = state else {
                return body::terminate("item-not-found").into_bytes();
            };
            if data.len() > state.config.max_body_size {
                return body::terminate("policy-violation").into_bytes();
            }
            // As for a request that came here (`bosh_request`): the body is bounded, each
            // stanza is checked against its stream's limit by the session.
            let mut limits = state.core.parser_limits();
            limits.max_stanza_bytes = limits.max_stanza_bytes.max(state.config.max_body_size);
            let answer = match BodyRequest::parse(&data, limits) {
                Ok(req) if req.sid.as_deref() == Some(sid.as_str()) => {
                    super::answer(&state, &sid, req, data.len(), "relayed").await
                }
                Ok(_) => Bytes::from(body::terminate("bad-request")),
                Err(e) => {
                    tracing::info!(error = %e, "bad relayed BOSH request");
                    Bytes::from(body::terminate("bad-request"))
                }
            };
            answer.to_vec()
        })
    }
}
