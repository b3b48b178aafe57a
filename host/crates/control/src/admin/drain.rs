//! `POST /api/v1/drain`: starts draining this node (see `edge::drain`). Answers 202 at
//! once with the drain settings; the process exits when the drain is done.

use hyper::StatusCode;
use serde_json::json;

use super::context::Ctx;
use super::response::{ApiResult, json};

pub async fn start(ctx: Ctx) -> ApiResult {
    ctx.principal.check_operator("draining the node")?;
    let server = &ctx.api.server;
    let started = server.core.drain.start();
    let cfg = server.config().drain.clone();
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({
            "draining": true,
            "already_draining": !started,
            "sessions": server.core.router.all_entries().len(),
            "see_other_host": cfg.see_other_host,
            "grace_period": cfg.grace_period,
            "deadline": cfg.deadline,
        }),
    ))
}
