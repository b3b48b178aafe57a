//! The room endpoints in a cluster: a room lives on one node (rendezvous hashing over the
//! live nodes), so a room call through another node's admin API (show, log, create,
//! destroy, kick) runs on the hosting node (an admin query,
//! `heliograph_cluster::queries`), and the room list gathers every live node's rooms,
//! each marked with its `node`. A server running alone answers from its own rooms, as
//! before.
//!
//! Queries and answers are JSON ([`RoomQuery`], [`RoomAnswer`]); a node that does not
//! answer (dying, or of a version without admin queries) makes the list say so in
//! `unreachable` and a call about one of its rooms fail with 503.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::response::ApiError;
use crate::server::Server;
use heliograph_cluster::Cluster;

/// What one node asks another about its rooms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RoomQuery {
    /// The rooms of `tenant` the node holds.
    List { tenant: String },
    /// One room with its occupants.
    Show { tenant: String, room: String },
    /// A page of a room's public log.
    Log {
        tenant: String,
        room: String,
        after: u64,
        limit: usize,
    },
    /// Create a configured room (`muc#roomconfig` fields) with these owners.
    Create {
        tenant: String,
        room: String,
        config: Vec<(String, String)>,
        owners: Vec<String>,
    },
    /// Destroy a room (its occupants get the `<destroy/>` presence).
    Destroy {
        tenant: String,
        room: String,
        alternate: Option<String>,
        reason: Option<String>,
    },
    /// Kick an occupant (307 to everyone).
    Kick {
        tenant: String,
        room: String,
        nick: String,
        reason: Option<String>,
    },
}

/// The hosting node's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RoomAnswer {
    Ok(Value),
    NoSuchRoom(String),
    Invalid(String),
    Conflict(String),
    LimitReached(String),
    /// Anything else; the detail stays in the hosting node's log.
    Failed,
}

/// A room query's result, on its way.
pub type RoomFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send + 'a>>;

/// What the node itself does for a query (the local endpoints' own code).
pub type LocalRooms = for<'a> fn(&'a Arc<Server>, RoomQuery) -> RoomFuture<'a>;

/// Answers the other nodes' room queries with `local` (called once the node joined).
pub fn answer_queries(server: &Arc<Server>, cluster: &Cluster, local: LocalRooms) {
    let server: Weak<Server> = Arc::downgrade(server);
    cluster.queries().set_handler(Arc::new(move |payload| {
        let server = server.clone();
        Box::pin(async move {
            let answer = match (
                server.upgrade(),
                serde_json::from_slice::<RoomQuery>(&payload),
            ) {
                (None, _) => RoomAnswer::Failed,
                (_, Err(e)) => RoomAnswer::Invalid(format!("bad room query: {e}")),
                (Some(server), Ok(query)) => match local(&server, query).await {
                    Ok(v) => RoomAnswer::Ok(v),
                    Err(ApiError::NoSuchRoom(m)) => RoomAnswer::NoSuchRoom(m),
                    Err(ApiError::Invalid(m)) => RoomAnswer::Invalid(m),
                    Err(ApiError::Conflict(m)) => RoomAnswer::Conflict(m),
                    Err(ApiError::LimitReached(m)) => RoomAnswer::LimitReached(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: a room query failed here");
                        RoomAnswer::Failed
                    }
                },
            };
            serde_json::to_vec(&answer).unwrap_or_default()
        })
    }));
}

/// The node hosting `room_jid`, when it is another node of the cluster.
pub fn host_of(server: &Server, room_jid: &str) -> Option<String> {
    server.core.placement.get()?.owner(room_jid)
}

/// Asks `node`; its answer as the endpoint's result.
pub async fn ask(server: &Server, node: &str, query: &RoomQuery) -> Result<Value, ApiError> {
    let cluster = server
        .cluster
        .get()
        .ok_or_else(|| ApiError::internal("room query", "not in a cluster"))?;
    let payload = serde_json::to_vec(query).map_err(|e| ApiError::internal("room query", e))?;
    let bytes = cluster
        .queries()
        .ask(node, payload)
        .await
        .map_err(|e| ApiError::NodeUnreachable(e.to_string()))?;
    match serde_json::from_slice::<RoomAnswer>(&bytes) {
        Ok(RoomAnswer::Ok(v)) => Ok(v),
        Ok(RoomAnswer::NoSuchRoom(m)) => Err(ApiError::NoSuchRoom(m)),
        Ok(RoomAnswer::Invalid(m)) => Err(ApiError::Invalid(m)),
        Ok(RoomAnswer::Conflict(m)) => Err(ApiError::Conflict(m)),
        Ok(RoomAnswer::LimitReached(m)) => Err(ApiError::LimitReached(m)),
        Ok(RoomAnswer::Failed) => Err(ApiError::internal(
            "room query",
            format!("node {node} failed to answer"),
        )),
        Err(e) => Err(ApiError::NodeUnreachable(format!(
            "node {node} gave no room answer: {e}"
        ))),
    }
}

/// The rooms of every live node, each with its `node`, sorted by JID, and the nodes that
/// did not answer. `here` is this node's own list.
pub async fn list_everywhere(
    server: &Arc<Server>,
    tenant: &str,
    here: Vec<Value>,
) -> (Vec<Value>, Vec<String>) {
    let Some(placement) = server.core.placement.get() else {
        return (here, Vec::new());
    };
    let me = placement.this_node().to_string();
    let mark = |mut room: Value, node: &str| {
        if let Some(o) = room.as_object_mut() {
            o.insert("node".into(), json!(node));
        }
        room
    };
    let mut rooms: Vec<Value> = here.into_iter().map(|r| mark(r, &me)).collect();
    let others: Vec<String> = placement
        .live_nodes()
        .into_iter()
        .filter(|n| *n != me)
        .collect();
    let query = RoomQuery::List {
        tenant: tenant.to_string(),
    };
    // Asked all at once: a node that does not answer costs one deadline, not one each.
    let asking: Vec<_> = others
        .into_iter()
        .map(|node| {
            let (server, query) = (server.clone(), query.clone());
            tokio::spawn(async move {
                let answer = ask(&server, &node, &query).await;
                (node, answer)
            })
        })
        .collect();
    let mut unreachable = Vec::new();
    for task in asking {
        let Ok((node, answer)) = task.await else {
            continue;
        };
        match answer {
            Ok(Value::Array(list)) => rooms.extend(list.into_iter().map(|r| mark(r, &node))),
            Ok(_) => unreachable.push(node),
            Err(e) => {
                tracing::warn!(node, error = %e, "admin: a node's rooms are not listed");
                unreachable.push(node);
            }
        }
    }
    let jid = |r: &Value| r["jid"].as_str().unwrap_or_default().to_string();
    rooms.sort_by_key(jid);
    (rooms, unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_answers_read_back() {
        let q = RoomQuery::Log {
            tenant: "t".into(),
            room: "r@conference.x".into(),
            after: 3,
            limit: 10,
        };
        let text = serde_json::to_string(&q).unwrap();
        assert!(text.contains(r#""op":"log""#), "{text}");
        assert_eq!(serde_json::from_str::<RoomQuery>(&text).unwrap(), q);
        let a = RoomAnswer::NoSuchRoom("gone".into());
        let back: RoomAnswer = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
