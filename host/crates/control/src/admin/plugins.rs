//! Plugin endpoints: install (upload), list with figures, reconfigure, roll back, remove.
//!
//! The operator may manage every tenant's plugins; a tenant token only its own tenant's
//! (403 elsewhere). An upload is the raw component with `Content-Type: application/wasm`
//! (at most `plugins.max_upload_mib`); its configuration, a JSON object, rides in the
//! `Heliograph-Plugin-Config` header (absent: the active version's configuration is kept,
//! `{}` in a new slot; the answer's `config_from` says which version it came from). Refusals carry the host's exact
//! reason ([`crate::plugins::InstallError`]): 400 for a bad component or configuration,
//! 404 nothing installed, 409 unknown version or another world in the slot, 413 too large,
//! 415 wrong content type.

use hyper::StatusCode;
use serde::Serialize;
use serde_json::json;

use super::context::Ctx;
use super::response::{ApiError, ApiResult, json, no_content};
use crate::plugins::{CacheStats, InstallError, PluginConfig, PluginHost, PluginStats, SlotInfo};

/// The header carrying an upload's configuration (a JSON object).
pub const CONFIG_HEADER: &str = "heliograph-plugin-config";

/// A slot as the API shows it: versions kept, the active one, its figures.
#[derive(Serialize)]
struct SlotView {
    #[serde(flatten)]
    info: SlotInfo,
    /// Whether the tenant's `auth` names this slot.
    bound_to_auth: bool,
    /// Whether the tenant's `room_policy` names this slot.
    bound_to_room_policy: bool,
    stats: Option<PluginStats>,
}

fn host(ctx: &Ctx) -> Result<&PluginHost, ApiError> {
    ctx.server()
        .core
        .plugin_host()
        .ok_or(ApiError::NoPluginHost)
}

/// The `{tenant}` parameter: accessible to the caller and an existing tenant.
fn tenant(ctx: &Ctx) -> Result<String, ApiError> {
    let name = ctx.param("tenant")?.to_string();
    ctx.principal.check_tenant(&name)?;
    if ctx.server().core.tenants.by_name(&name).is_none() {
        return Err(ApiError::NoSuchTenant(name));
    }
    Ok(name)
}

fn views(ctx: &Ctx, host: &PluginHost, tenant: Option<&str>) -> Vec<SlotView> {
    host.list(tenant)
        .into_iter()
        .map(|info| {
            let tenant = ctx.server().core.tenants.by_name(&info.tenant);
            let bound_to_auth = tenant.as_ref().is_some_and(|t| {
                matches!(&t.spec.auth, crate::tenants::AuthMethod::Plugin { plugin } if *plugin == info.slot)
            });
            let bound_to_room_policy = tenant.as_ref().is_some_and(|t| {
                t.spec
                    .room_policy
                    .as_ref()
                    .is_some_and(|p| p.plugin == info.slot)
            });
            let stats = host.stats(&info.tenant, &info.slot);
            SlotView {
                info,
                bound_to_auth,
                bound_to_room_policy,
                stats,
            }
        })
        .collect()
}

/// `GET /api/v1/plugins` (operator) → every slot, the cache counters, the allocator.
pub async fn list_all(ctx: Ctx) -> ApiResult {
    ctx.principal.check_operator("every tenant's plugins")?;
    let host = host(&ctx)?;
    let cache: CacheStats = host.cache_stats();
    Ok(json(
        StatusCode::OK,
        &json!({
            "plugins": views(&ctx, host, None),
            "cache": { "compiled": cache.compiled, "hits": cache.hits },
            "pooling_allocator": host.uses_pooling_allocator(),
        }),
    ))
}

/// `GET /api/v1/tenants/{tenant}/plugins` → `{"tenant", "plugins": [...]}`.
pub async fn list(ctx: Ctx) -> ApiResult {
    let tenant = tenant(&ctx)?;
    let host = host(&ctx)?;
    Ok(json(
        StatusCode::OK,
        &json!({ "tenant": tenant, "plugins": views(&ctx, host, Some(&tenant)) }),
    ))
}

/// `PUT /api/v1/tenants/{tenant}/plugins/{slot}` (body: the component) → the new version.
pub async fn install(ctx: Ctx) -> ApiResult {
    let tenant = tenant(&ctx)?;
    let slot = ctx.param("slot")?.to_string();
    // Without the header the new version keeps the active version's configuration (an
    // empty one in a new slot); the answer's `config_from` names that version.
    let config = match ctx.headers.get(CONFIG_HEADER) {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                InstallError::InvalidConfig(format!("the {CONFIG_HEADER} header is not ASCII"))
            })?;
            Some(PluginConfig::from_json(text)?)
        }
    };
    let host = host(&ctx)?;
    // The world is the one the slot holds, or for a new slot the one whose interface the
    // component exports (authenticator, room-policy, component).
    let info = host
        .install_detecting_world(&tenant, &slot, ctx.body.to_vec(), config)
        .await?;
    crate::cluster::plugin_changed(ctx.server(), &tenant, &slot);
    Ok(json(StatusCode::OK, &info))
}

/// `PUT /api/v1/tenants/{tenant}/plugins/{slot}/config` (JSON object) → the new version:
/// the active component with this configuration.
pub async fn configure(ctx: Ctx) -> ApiResult {
    let tenant = tenant(&ctx)?;
    let slot = ctx.param("slot")?.to_string();
    let value: serde_json::Value = ctx.json()?;
    let config = PluginConfig::from_value(value)?;
    let info = host(&ctx)?.reconfigure(&tenant, &slot, config).await?;
    crate::cluster::plugin_changed(ctx.server(), &tenant, &slot);
    Ok(json(StatusCode::OK, &info))
}

/// `POST /api/v1/tenants/{tenant}/plugins/{slot}/rollback[?version=N]` → the version now
/// active.
pub async fn rollback(ctx: Ctx) -> ApiResult {
    let tenant = tenant(&ctx)?;
    let slot = ctx.param("slot")?.to_string();
    let version = match ctx.query_param("version") {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| ApiError::Invalid(format!("version must be a number, not {v:?}")))?,
        ),
    };
    let info = host(&ctx)?.rollback(&tenant, &slot, version).await?;
    crate::cluster::plugin_changed(ctx.server(), &tenant, &slot);
    Ok(json(StatusCode::OK, &info))
}

/// `DELETE /api/v1/tenants/{tenant}/plugins/{slot}` → 204.
pub async fn remove(ctx: Ctx) -> ApiResult {
    let tenant = tenant(&ctx)?;
    let slot = ctx.param("slot")?.to_string();
    host(&ctx)?.remove(&tenant, &slot).await?;
    crate::cluster::plugin_changed(ctx.server(), &tenant, &slot);
    Ok(no_content())
}
