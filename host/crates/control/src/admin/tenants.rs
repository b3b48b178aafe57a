//! Tenant endpoints: list, create, show, change, enable/disable, remove (optionally
//! purging data), issue a tenant admin token, and reload the config file.
//!
//! The operator may do everything. A tenant token may show its own tenant and change its
//! own authentication, federation, JWT, token, room-policy, MUC, component, external
//! service (XEP-0215) and call settings;
//! domains, limits (including `muc.max_rooms`, `muc.max_affiliations` and
//! `muc.max_log_messages`), certificates, the enabled state and removal are the
//! operator's.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::context::Ctx;
use super::response::{ApiError, ApiResult, json, no_content};
use crate::tenant_ops;
use crate::tenants::calls_settings::CallsSettings;
use crate::tenants::external_services::ExternalServices;
use crate::tenants::spec::{AuthMethod, ComponentSpec, REDACTED, RoomPolicySetting, TenantTls};
use crate::tenants::{Tenant, TenantSpec};
use crate::tokens::issued::IssuedTokenSettings;
use crate::tokens::jwt::JwtSettings;

/// A tenant as the API shows it.
#[derive(Serialize)]
pub struct TenantView {
    name: String,
    source: &'static str,
    #[serde(flatten)]
    spec: TenantSpec,
    sessions: usize,
    /// Sessions bound since the server started (a rate is the difference of two reads).
    logins_total: u64,
    /// Failed authentication attempts on the tenant's domains since the server started.
    login_failures_total: u64,
    has_token: bool,
}

impl TenantView {
    pub fn of(t: &Tenant) -> TenantView {
        // Inline secrets (JWT HMAC keys, component secrets) are write-only.
        let spec = t.spec.redacted();
        let (logins_total, login_failures_total) = t.login_counts();
        TenantView {
            name: t.name.clone(),
            source: if t.from_config { "config" } else { "api" },
            spec,
            sessions: t.session_count(),
            logins_total,
            login_failures_total,
            has_token: t.token_sha256.is_some(),
        }
    }
}

/// Body of `POST /api/v1/tenants`: `{"name": ..., <TenantSpec fields>}`.
fn new_tenant(ctx: &Ctx) -> Result<(String, TenantSpec), ApiError> {
    let mut body: serde_json::Map<String, serde_json::Value> = ctx.json()?;
    let name = match body.remove("name") {
        Some(serde_json::Value::String(n)) => n,
        _ => return Err(ApiError::BadJson("missing string field `name`".into())),
    };
    let spec = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok((name, spec))
}

/// Partial limits of a `PATCH`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsPatch {
    max_sessions: Option<u32>,
    max_accounts: Option<u64>,
    stanza_rate: Option<u32>,
    stanza_burst: Option<u32>,
    max_stanza_size: Option<usize>,
}

/// Body of `PATCH /api/v1/tenants/{tenant}`: only the fields given change.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TenantPatch {
    domains: Option<Vec<String>>,
    auth: Option<AuthMethod>,
    limits: Option<LimitsPatch>,
    /// `null` removes the tenant's own certificate.
    #[serde(default, with = "double_option")]
    tls: Option<Option<TenantTls>>,
    federate_with: Option<Vec<String>>,
    /// Partial MUC settings: only the keys given change.
    muc: Option<serde_json::Map<String, serde_json::Value>>,
    /// `null` removes the room policy.
    #[serde(default, with = "double_option")]
    room_policy: Option<Option<RoomPolicySetting>>,
    /// The whole list of components (replaces the current one).
    components: Option<Vec<ComponentSpec>>,
    /// `null` turns JWT login off.
    #[serde(default, with = "double_option")]
    jwt: Option<Option<JwtSettings>>,
    /// `null` turns server-issued tokens off.
    #[serde(default, with = "double_option")]
    tokens: Option<Option<IssuedTokenSettings>>,
    /// The whole XEP-0215 section (replaces the current one; a view sent back with
    /// `"turn_secret_set": true` and no `turn_secret` keeps the secret).
    external_services: Option<ExternalServices>,
    /// Call signaling policy.
    calls: Option<CallsSettings>,
    /// Federation (`enabled`, `auth`, `require_valid_certs`, `allow`, `deny`).
    s2s: Option<crate::tenants::s2s_settings::S2sSettings>,
}

/// Distinguishes an absent field from an explicit `null`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// MUC settings that bound a tenant's storage: only the operator changes them.
const OPERATOR_MUC_LIMITS: [&str; 3] = ["max_rooms", "max_affiliations", "max_log_messages"];

impl TenantPatch {
    fn touches_operator_fields(&self) -> bool {
        // Key files are read on the server's disk: only the operator may name them.
        let reads_files = matches!(&self.jwt, Some(Some(j)) if j.reads_files());
        self.domains.is_some()
            || self.limits.is_some()
            || self.tls.is_some()
            || reads_files
            || self
                .muc
                .as_ref()
                .is_some_and(|m| OPERATOR_MUC_LIMITS.iter().any(|k| m.contains_key(*k)))
    }

    fn apply(self, spec: &mut TenantSpec) -> Result<(), ApiError> {
        if let Some(patch) = self.muc {
            let mut current = match serde_json::to_value(&spec.muc) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            current.extend(patch);
            spec.muc = serde_json::from_value(serde_json::Value::Object(current))
                .map_err(|e| ApiError::BadJson(format!("muc: {e}")))?;
        }
        if let Some(d) = self.domains {
            spec.domains = d;
        }
        if let Some(a) = self.auth {
            spec.auth = a;
        }
        if let Some(l) = self.limits {
            let cur = &mut spec.limits;
            cur.max_sessions = l.max_sessions.unwrap_or(cur.max_sessions);
            cur.max_accounts = l.max_accounts.unwrap_or(cur.max_accounts);
            cur.stanza_rate = l.stanza_rate.unwrap_or(cur.stanza_rate);
            cur.stanza_burst = l.stanza_burst.unwrap_or(cur.stanza_burst);
            cur.max_stanza_size = l.max_stanza_size.unwrap_or(cur.max_stanza_size);
        }
        if let Some(t) = self.tls {
            spec.tls = t;
        }
        if let Some(f) = self.federate_with {
            spec.federate_with = f;
        }
        if let Some(p) = self.room_policy {
            spec.room_policy = p;
        }
        // A view sent back keeps the secrets it shows redacted.
        if let Some(mut c) = self.components {
            ComponentSpec::restore_redacted(&mut c, &spec.components).map_err(ApiError::Invalid)?;
            spec.components = c;
        }
        if let Some(mut j) = self.jwt {
            if let Some(j) = j.as_mut() {
                j.restore_redacted(spec.jwt.as_ref()).map_err(|index| {
                    ApiError::Invalid(format!(
                        "jwt key {index}: {REDACTED:?} keeps the secret of a key with the same kid and alg, and there is none"
                    ))
                })?;
            }
            spec.jwt = j;
        }
        if let Some(t) = self.tokens {
            spec.tokens = t;
        }
        if let Some(mut e) = self.external_services {
            e.restore_secret(&spec.external_services)
                .map_err(|e| ApiError::Invalid(format!("external_services: {e}")))?;
            spec.external_services = e;
        }
        if let Some(s) = self.s2s {
            spec.s2s = s;
        }
        if let Some(c) = self.calls {
            spec.calls = c;
        }
        Ok(())
    }
}

fn tenant_param(ctx: &Ctx) -> Result<String, ApiError> {
    let name = ctx.param("tenant")?.to_string();
    ctx.principal.check_tenant(&name)?;
    Ok(name)
}

/// `GET /api/v1/tenants` (operator) → `{"tenants":[...]}`
pub async fn list(ctx: Ctx) -> ApiResult {
    ctx.principal.check_operator("the tenant list")?;
    let tenants: Vec<TenantView> = ctx
        .server()
        .core
        .tenants
        .snapshot()
        .list()
        .iter()
        .map(|t| TenantView::of(t))
        .collect();
    Ok(json(StatusCode::OK, &json!({ "tenants": tenants })))
}

/// `POST /api/v1/tenants` (operator) → 201 with the tenant.
pub async fn create(ctx: Ctx) -> ApiResult {
    ctx.principal.check_operator("creating tenants")?;
    let (name, spec) = new_tenant(&ctx)?;
    let t = tenant_ops::create(&ctx.api.server, &name, spec)
        .await
        .map_err(ApiError::from_tenant)?;
    Ok(json(StatusCode::CREATED, &TenantView::of(&t)))
}

/// `GET /api/v1/tenants/{tenant}` → the tenant.
pub async fn show(ctx: Ctx) -> ApiResult {
    let name = tenant_param(&ctx)?;
    let t = ctx
        .server()
        .core
        .tenants
        .by_name(&name)
        .ok_or(ApiError::NoSuchTenant(name))?;
    Ok(json(StatusCode::OK, &TenantView::of(&t)))
}

/// `PATCH /api/v1/tenants/{tenant}` → the changed tenant.
pub async fn patch(ctx: Ctx) -> ApiResult {
    let name = tenant_param(&ctx)?;
    let body: TenantPatch = ctx.json()?;
    if body.touches_operator_fields() {
        ctx.principal
            .check_operator(
                "changing domains, limits (muc.max_rooms, muc.max_affiliations and muc.max_log_messages included) or certificates",
            )?;
    }
    let current = ctx
        .server()
        .core
        .tenants
        .by_name(&name)
        .ok_or_else(|| ApiError::NoSuchTenant(name.clone()))?;
    let mut spec = current.spec.clone();
    body.apply(&mut spec)?;
    let t = tenant_ops::update(&ctx.api.server, &name, spec)
        .await
        .map_err(ApiError::from_tenant)?;
    Ok(json(StatusCode::OK, &TenantView::of(&t)))
}

async fn set_enabled(ctx: Ctx, enabled: bool) -> ApiResult {
    let name = tenant_param(&ctx)?;
    ctx.principal
        .check_operator("enabling or disabling tenants")?;
    let t = tenant_ops::set_enabled(&ctx.api.server, &name, enabled)
        .await
        .map_err(ApiError::from_tenant)?;
    Ok(json(StatusCode::OK, &TenantView::of(&t)))
}

/// `POST /api/v1/tenants/{tenant}/enable` (operator).
pub async fn enable(ctx: Ctx) -> ApiResult {
    set_enabled(ctx, true).await
}

/// `POST /api/v1/tenants/{tenant}/disable` (operator): its sessions end with host-gone.
pub async fn disable(ctx: Ctx) -> ApiResult {
    set_enabled(ctx, false).await
}

/// `DELETE /api/v1/tenants/{tenant}[?purge=true]` (operator) → 204.
pub async fn remove(ctx: Ctx) -> ApiResult {
    let name = tenant_param(&ctx)?;
    ctx.principal.check_operator("removing tenants")?;
    let purge = matches!(ctx.query_param("purge"), Some("true" | "1" | "yes"));
    tenant_ops::remove(&ctx.api.server, &name, purge)
        .await
        .map_err(ApiError::from_tenant)?;
    Ok(no_content())
}

/// `POST /api/v1/tenants/{tenant}/token` (operator) → `{"token": ...}`, shown only once.
pub async fn token(ctx: Ctx) -> ApiResult {
    let name = tenant_param(&ctx)?;
    ctx.principal.check_operator("issuing tenant tokens")?;
    let token = tenant_ops::issue_token(&ctx.api.server, &name)
        .await
        .map_err(ApiError::from_tenant)?;
    Ok(json(
        StatusCode::CREATED,
        &json!({ "tenant": name, "token": token }),
    ))
}

/// `POST /api/v1/reload` (operator): re-reads the config file and applies the changes.
pub async fn reload(ctx: Ctx) -> ApiResult {
    ctx.principal
        .check_operator("reloading the configuration")?;
    let report = tenant_ops::reload(&ctx.api.server)
        .await
        .map_err(ApiError::from_tenant)?;
    Ok(json(StatusCode::OK, &report))
}
