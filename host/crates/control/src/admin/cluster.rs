//! `GET /api/v1/cluster`: the nodes this node knows (sessions, sync state, last heartbeat)
//! and its NATS connection; a server running alone says so.

use hyper::StatusCode;
use serde_json::json;

use super::context::Ctx;
use super::response::{ApiResult, json};

pub async fn status(ctx: Ctx) -> ApiResult {
    ctx.principal.check_operator("reading the cluster status")?;
    let server = &ctx.api.server;
    let body = match server.cluster.get() {
        Some(cluster) => json!({ "clustered": true, "status": cluster.status() }),
        None => json!({
            "clustered": false,
            "sessions": server.core.router.session_count(),
        }),
    };
    Ok(json(StatusCode::OK, &body))
}
