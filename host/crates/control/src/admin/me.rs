//! `GET /api/v1/me`: who the presented token is, so a client (the console) can show only
//! what that token may use without probing operator-only endpoints.

use hyper::StatusCode;
use serde_json::json;

use super::auth::Principal;
use super::context::Ctx;
use super::response::{ApiResult, json};

/// → `{"principal":"operator"}` or `{"principal":"tenant","tenant":NAME,"domains":[...]}`.
pub async fn show(ctx: Ctx) -> ApiResult {
    let body = match &ctx.principal {
        Principal::Operator => json!({ "principal": "operator" }),
        Principal::Tenant(name) => {
            let domains = ctx
                .server()
                .core
                .tenants
                .by_name(name)
                .map(|t| t.spec.domains.clone())
                .unwrap_or_default();
            json!({ "principal": "tenant", "tenant": name, "domains": domains })
        }
        // Routes other than the OpenAPI document never run without a token.
        Principal::Anonymous => json!({ "principal": "anonymous" }),
    };
    Ok(json(StatusCode::OK, &body))
}
