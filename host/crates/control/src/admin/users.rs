//! Account endpoints: list, create, delete, change password.
//!
//! Passwords are turned into SCRAM keys (PBKDF2, on the blocking pool) and never stored,
//! logged or echoed back. Deleting an account or changing its password ends its sessions.

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::context::{Ctx, storage_error};
use super::response::{ApiError, ApiResult, json, no_content};

/// Body of `POST /users/{domain}`. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
}

/// Body of `PUT /users/{domain}/{username}/password`. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// `GET /api/v1/users/{domain}` → `{"domain":..., "users":[...]}`
pub async fn list(ctx: Ctx) -> ApiResult {
    let domain = ctx.domain()?;
    let users = ctx.server().core.storage.users.clone();
    let d = domain.clone();
    let names = ctx
        .blocking(move || users.list_users(&d))
        .await?
        .map_err(|e| ApiError::internal(&format!("listing users of {domain}"), e))?;
    Ok(json(
        StatusCode::OK,
        &json!({ "domain": domain, "users": names }),
    ))
}

/// `POST /api/v1/users/{domain}` `{"username","password"}` → 201 `{"jid":...}`
pub async fn create(ctx: Ctx) -> ApiResult {
    let domain = ctx.domain()?;
    let body: NewUser = ctx.json()?;
    let account = ctx.account(&domain, &body.username)?;
    let users = ctx.server().core.storage.users.clone();
    check_account_limit(&ctx, &domain).await?;

    // Cheap check first so a duplicate does not cost a key derivation; `create_user`
    // still decides races.
    let (u, a) = (users.clone(), account.clone());
    let existing = ctx
        .blocking(move || u.credentials(&a))
        .await?
        .map_err(|e| storage_error(&account, e))?;
    if existing.is_some() {
        return Err(ApiError::UserExists(account.to_string()));
    }
    let creds = ctx.derive_credentials(body.password).await?;
    let a = account.clone();
    ctx.blocking(move || users.create_user(&a, &creds))
        .await?
        .map_err(|e| storage_error(&account, e))?;
    tracing::info!(account = %account, "admin API: account created");
    Ok(json(
        StatusCode::CREATED,
        &json!({ "jid": account.to_string() }),
    ))
}

/// Refuses a new account when the tenant owning `domain` has reached `max_accounts`.
async fn check_account_limit(ctx: &Ctx, domain: &str) -> Result<(), ApiError> {
    let Some(tenant) = ctx.server().core.tenants.by_domain(domain) else {
        return Err(ApiError::UnknownDomain(domain.to_string()));
    };
    let max = tenant.spec.limits.max_accounts;
    if max == 0 {
        return Ok(());
    }
    let users = ctx.server().core.storage.users.clone();
    let domains = tenant.spec.domains.clone();
    let count = ctx
        .blocking(move || {
            domains
                .iter()
                .map(|d| users.count_users(d))
                .sum::<Result<usize, _>>()
        })
        .await?
        .map_err(|e| ApiError::internal("counting accounts", e))?;
    if count as u64 >= max {
        return Err(ApiError::LimitReached(format!(
            "tenant {} has reached its limit of {max} accounts",
            tenant.name
        )));
    }
    Ok(())
}

/// `DELETE /api/v1/users/{domain}/{username}` → 204; ends the account's sessions.
pub async fn delete(ctx: Ctx) -> ApiResult {
    let domain = ctx.domain()?;
    let account = ctx.account(&domain, ctx.param("username")?)?;
    let users = ctx.server().core.storage.users.clone();
    let a = account.clone();
    let tokens = ctx.server().core.storage.tokens.clone();
    ctx.blocking(move || {
        users.delete_user(&a)?;
        // A later account of the same name must not inherit the old tokens.
        tokens.revoke_all(&a).map(drop)
    })
    .await?
    .map_err(|e| storage_error(&account, e))?;
    ctx.server().core.verified_passwords.forget(&account);
    let kicked = ctx.server().core.router.kick_account(&account);
    // The sessions are gone and new messages bounce: nothing archived later survives.
    ctx.server()
        .services
        .mam
        .forget_account(&ctx.server().core, &account)
        .await;
    heliograph_services::upload::delete_account_files(&ctx.server().core, &account).await;
    tracing::info!(account = %account, sessions_ended = kicked, "admin API: account deleted");
    Ok(no_content())
}

/// `PUT /api/v1/users/{domain}/{username}/password` `{"password"}` → 204; ends the
/// account's sessions.
pub async fn set_password(ctx: Ctx) -> ApiResult {
    let domain = ctx.domain()?;
    let account = ctx.account(&domain, ctx.param("username")?)?;
    let body: NewPassword = ctx.json()?;
    let users = ctx.server().core.storage.users.clone();

    let (u, a) = (users.clone(), account.clone());
    let existing = ctx
        .blocking(move || u.credentials(&a))
        .await?
        .map_err(|e| storage_error(&account, e))?;
    if existing.is_none() {
        return Err(ApiError::NoSuchUser(account.to_string()));
    }
    let creds = ctx.derive_credentials(body.password).await?;
    let a = account.clone();
    let tokens = ctx.server().core.storage.tokens.clone();
    ctx.blocking(move || {
        users.set_credentials(&a, &creds)?;
        // XEP-0484: a password change invalidates the account's FAST tokens.
        tokens.delete_fast(&a)
    })
    .await?
    .map_err(|e| storage_error(&account, e))?;
    ctx.server().core.verified_passwords.forget(&account);
    let kicked = ctx.server().core.router.kick_account(&account);
    tracing::info!(account = %account, sessions_ended = kicked, "admin API: password changed");
    Ok(no_content())
}
