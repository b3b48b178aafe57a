//! Federation endpoint: the live s2s streams (direction, authenticated domain pairs,
//! TLS, authentication method, stanza counts) and the server-wide counters.

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use serde_json::json;

use super::context::Ctx;
use super::response::{ApiError, ApiResult, json};

/// `GET /api/v1/s2s` → `{"enabled":bool,"streams":[...],"counters":{...}}` (operator only).
pub async fn list(ctx: Ctx) -> ApiResult {
    if !ctx.principal.is_operator() {
        return Err(ApiError::Forbidden("server-wide s2s list".into()));
    }
    let Some(s2s) = ctx.server().s2s.get() else {
        return Ok(json(
            StatusCode::OK,
            &json!({ "enabled": false, "streams": [], "counters": {} }),
        ));
    };
    let c = &s2s.counters;
    let counters = json!({
        "stanzas_in": c.stanzas_in.load(Ordering::Relaxed),
        "stanzas_out": c.stanzas_out.load(Ordering::Relaxed),
        "connections_in": c.connections_in.load(Ordering::Relaxed),
        "connections_out": c.connections_out.load(Ordering::Relaxed),
        "bounced": c.bounced.load(Ordering::Relaxed),
        "throttled": c.throttled.load(Ordering::Relaxed),
    });
    Ok(json(
        StatusCode::OK,
        &json!({ "enabled": true, "streams": s2s.streams(), "counters": counters }),
    ))
}
