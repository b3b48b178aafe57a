//! Admin queries between nodes: the admin API of one node asks another a question that
//! only that node can answer (a MUC room it hosts, the rooms it holds in memory) on
//! `heliograph.query.NODE` (NATS request/reply, with a deadline). The cluster layer
//! carries bytes only; the control layer installs the handler that answers
//! ([`Queries::set_handler`]) and chooses the format (JSON).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;

/// Where a node answers admin queries.
pub fn subject(node: &str) -> String {
    format!("heliograph.query.{node}")
}

/// Answers a query's payload on this node.
pub type QueryHandler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// Why another node gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Nobody answers on the node's subject (it is gone, or runs a version without
    /// admin queries).
    #[error("node {0} does not answer admin queries")]
    NoResponder(String),
    /// The node did not answer within the deadline.
    #[error("node {0} did not answer in time")]
    TimedOut(String),
    /// The request could not be sent.
    #[error("asking node {node} failed: {why}")]
    Failed { node: String, why: String },
}

/// This node's end of admin queries (see the module docs).
pub struct Queries {
    client: async_nats::Client,
    deadline: Duration,
    handler: OnceLock<QueryHandler>,
}

impl Queries {
    pub fn new(client: async_nats::Client, deadline: Duration) -> Arc<Queries> {
        Arc::new(Queries {
            client,
            deadline,
            handler: OnceLock::new(),
        })
    }

    /// Installs what answers the queries other nodes send here (once).
    pub fn set_handler(&self, handler: QueryHandler) {
        let _ = self.handler.set(handler);
    }

    /// Asks `node` and returns its answer.
    pub async fn ask(&self, node: &str, payload: Vec<u8>) -> Result<Vec<u8>, QueryError> {
        use async_nats::RequestErrorKind;
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(self.deadline));
        match self.client.send_request(subject(node), request).await {
            Ok(msg) => Ok(msg.payload.to_vec()),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => QueryError::NoResponder(node.to_string()),
                RequestErrorKind::TimedOut => QueryError::TimedOut(node.to_string()),
                _ => QueryError::Failed {
                    node: node.to_string(),
                    why: e.to_string(),
                },
            }),
        }
    }

    /// Answers the queries other nodes send to this one, each in its own task. Before a
    /// handler is installed (the node is starting), the answer is empty.
    pub async fn serve(self: Arc<Self>, mut sub: async_nats::Subscriber) {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let handler = self.handler.get().cloned();
            let client = self.client.clone();
            tokio::spawn(async move {
                let answer = match handler {
                    Some(h) => h(msg.payload.to_vec()).await,
                    None => Vec::new(),
                };
                if let Err(e) = client.publish(reply, answer.into()).await {
                    tracing::warn!(error = %e, "cluster: admin query answer not sent");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_node_has_its_subject() {
        assert_eq!(super::subject("n3"), "heliograph.query.n3");
    }
}
