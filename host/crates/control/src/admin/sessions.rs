//! Session endpoints: who is online, server-wide or per domain, as the router reports it,
//! and ending one session.

use hyper::StatusCode;
use serde_json::json;

use super::context::Ctx;
use super::response::{ApiError, ApiResult, json, no_content};
use heliograph_xmpp::StreamErrorCondition;

/// `GET /api/v1/sessions` → `{"sessions":[SessionInfo...]}` (operator only).
pub async fn list_all(ctx: Ctx) -> ApiResult {
    if !ctx.principal.is_operator() {
        return Err(ApiError::Forbidden("server-wide session list".into()));
    }
    let sessions = with_flags(&ctx, None);
    Ok(json(StatusCode::OK, &json!({ "sessions": sessions })))
}

/// `GET /api/v1/sessions/{domain}` → `{"sessions":[SessionInfo...]}`
pub async fn list_domain(ctx: Ctx) -> ApiResult {
    let domain = ctx.domain()?;
    let sessions = with_flags(&ctx, Some(&domain));
    Ok(json(StatusCode::OK, &json!({ "sessions": sessions })))
}

/// The sessions with the features' per-session settings that are on (`carbons`).
fn with_flags(ctx: &Ctx, domain: Option<&str>) -> Vec<heliograph_core::router::SessionInfo> {
    let core = &ctx.server().core;
    core.router
        .sessions_with_flags(domain, |entry| core.hooks.session_flags(core, entry))
}

/// `DELETE /api/v1/sessions/{domain}/{username}/{resource}` → 204: the session ends with a
/// `<policy-violation/>` stream error (the account stays; the client may log in again).
pub async fn end(ctx: Ctx) -> ApiResult {
    let domain = ctx.domain()?;
    let account = ctx.account(&domain, ctx.param("username")?)?;
    let resource = ctx.param("resource")?;
    let entry = ctx
        .server()
        .core
        .router
        .resource(&account, resource)
        .ok_or_else(|| ApiError::NoSuchSession(format!("{account}/{resource}")))?;
    entry.close(
        StreamErrorCondition::PolicyViolation,
        Some("session ended by an administrator"),
    );
    tracing::info!(jid = %entry.full_jid, "admin API: ended a session");
    Ok(no_content())
}
