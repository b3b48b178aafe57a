//! BOSH across nodes: each node's `sid`s name it (`NODE~random`); a BOSH request that the
//! load balancer sends to another node than the session's is relayed to the session's
//! node on `heliograph.bosh.NODE` (NATS request/reply, with a deadline longer than the
//! longest BOSH `wait`), answered there by the HTTP listener holding the session as if
//! it had come there, and the answer goes back to the client from the node it asked.
//!
//! The payload is the `sid`, a newline and the request body as the client sent it; the
//! answer is the response body.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use crate::core::Core;
use crate::core::bosh_relay::{BoshRelay, RelayError};

/// Where a node answers relayed BOSH requests.
pub fn subject(node: &str) -> String {
    format!("heliograph.bosh.{node}")
}

/// The separator between the node and the random part of a `sid`.
const SID_SEPARATOR: char = '~';

/// The node a `sid` names.
pub fn node_of(sid: &str) -> Option<&str> {
    sid.split_once(SID_SEPARATOR)
        .map(|(node, _)| node)
        .filter(|n| !n.is_empty())
}

/// The relay of this node (see the module docs).
pub struct BoshNodes {
    node: String,
    client: async_nats::Client,
}

impl BoshNodes {
    pub fn new(node: String, client: async_nats::Client) -> BoshNodes {
        BoshNodes { node, client }
    }

    /// Answers the requests other nodes relay to this one.
    pub async fn serve(
        core: Arc<Core>,
        client: async_nats::Client,
        mut sub: async_nats::Subscriber,
    ) {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let core = core.clone();
            let client = client.clone();
            tokio::spawn(async move {
                metrics::counter!("heliograph_cluster_bosh_relayed_total", "way" => "in")
                    .increment(1);
                let answer = answer(&core, &msg.payload).await;
                if let Err(e) = client.publish(reply, answer.into()).await {
                    tracing::warn!(error = %e, "cluster: relayed BOSH answer not sent");
                }
            });
        }
    }
}

/// This node's answer to a relayed request (`sid`, newline, body).
async fn answer(core: &Core, payload: &[u8]) -> Vec<u8> {
    let not_found = || crate::xmpp::bosh::terminate("item-not-found").into_bytes();
    let Some(nl) = payload.iter().position(|b| *b == b'\n') else {
        return crate::xmpp::bosh::terminate("bad-request").into_bytes();
    };
    let Ok(sid) = std::str::from_utf8(&payload[..nl]) else {
        return crate::xmpp::bosh::terminate("bad-request").into_bytes();
    };
    match core
        .bosh_relays
        .answer_here(sid, payload[nl + 1..].to_vec())
    {
        Some(answer) => answer.await,
        None => not_found(),
    }
}

impl BoshRelay for BoshNodes {
    fn new_sid(&self) -> String {
        use rand::Rng;
        let n: u128 = rand::rng().random();
        format!("{}{SID_SEPARATOR}{n:032x}", self.node)
    }

    fn owner(&self, sid: &str) -> Option<String> {
        node_of(sid).filter(|n| *n != self.node).map(str::to_string)
    }

    fn relay(
        &self,
        node: String,
        sid: String,
        body: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, RelayError>> {
        let client = self.client.clone();
        Box::pin(async move {
            metrics::counter!("heliograph_cluster_bosh_relayed_total", "way" => "out").increment(1);
            let mut payload = Vec::with_capacity(sid.len() + 1 + body.len());
            payload.extend_from_slice(sid.as_bytes());
            payload.push(b'\n');
            payload.extend_from_slice(&body);
            let unreachable = |why: String| RelayError::Unreachable {
                node: node.clone(),
                why,
            };
            // The client's own request timeout (10 s) is shorter than a long poll.
            let request = async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(deadline));
            match client.send_request(subject(&node), request).await {
                Err(e) => Err(unreachable(e.to_string())),
                Ok(msg) => Ok(msg.payload.to_vec()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sid_names_its_node() {
        assert_eq!(node_of("n1~00ff"), Some("n1"));
        assert_eq!(node_of("00ff"), None);
    }
}
