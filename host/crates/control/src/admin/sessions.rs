//! Session endpoints: who is online, server-wide or per domain, as the router reports it.

use hyper::StatusCode;
use serde_json::json;

use super::context::Ctx;
use super::response::{ApiError, ApiResult, json};

/// `GET /api/v1/sessions` → `{"sessions":[SessionInfo...]}` (operator only).
pub async fn list_all(ctx: Ctx) -> ApiResult {
    if !ctx.principal.is_operator() {
        return Err(ApiError::Forbidden("server-wide session list".into()));
    }
    let sessions = ctx.server().core.router.sessions(None);
    Ok(json(StatusCode::OK, &json!({ "sessions": sessions })))
}

/// `GET /api/v1/sessions/{domain}` → `{"sessions":[SessionInfo...]}`
pub async fn list_domain(ctx: Ctx) -> ApiResult {
    let domain = ctx.domain()?;
    let sessions = ctx.server().core.router.sessions(Some(&domain));
    Ok(json(StatusCode::OK, &json!({ "sessions": sessions })))
}
