//! Server-issued token endpoints, scoped like the account endpoints (a tenant token
//! reaches only its own domains): mint an access and/or refresh token for a user, list
//! the user's refresh tokens, revoke one refresh token, or revoke everything.
//!
//! Revocation is immediate for new logins (access tokens included: the user's revocation
//! sequence moves on). Sessions already open are not ended, as in MongooseIM: revoking a
//! token withdraws a credential, it does not log anybody out (delete the account or
//! change its password for that).

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::context::{Ctx, storage_error};
use super::response::{ApiError, ApiResult, json};
use crate::storage::Account;
use crate::tenants::AuthMethod;
use crate::tokens::issued::{self, IssuedTokenSettings, TokenKind};

/// Body of `POST .../tokens` (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    /// `access`, `refresh` or `both` (default).
    #[serde(default)]
    kind: Option<String>,
}

/// The account and its tenant's token settings; refuses tenants without tokens.
async fn target(ctx: &Ctx) -> Result<(Account, String, IssuedTokenSettings), ApiError> {
    let domain = ctx.domain()?;
    let account = ctx.account(&domain, ctx.param("username")?)?;
    let tenant = ctx
        .server()
        .core
        .tenants
        .by_domain(&domain)
        .ok_or_else(|| ApiError::UnknownDomain(domain.clone()))?;
    let settings = tenant.spec.tokens.ok_or_else(|| {
        ApiError::Conflict(format!(
            "tenant {} does not issue tokens (set its `tokens` settings first)",
            tenant.name
        ))
    })?;
    if tenant.spec.auth == AuthMethod::Internal {
        let users = ctx.server().core.storage.users.clone();
        let a = account.clone();
        let exists = ctx
            .blocking(move || users.credentials(&a))
            .await?
            .map_err(|e| storage_error(&account, e))?
            .is_some();
        if !exists {
            return Err(ApiError::NoSuchUser(account.to_string()));
        }
    }
    Ok((account, tenant.name.clone(), settings))
}

fn token_error(e: crate::tokens::TokenError) -> ApiError {
    ApiError::internal("token storage", e)
}

/// `POST /api/v1/users/{domain}/{username}/tokens` `{"kind"?}` → 201 with the tokens.
pub async fn mint(ctx: Ctx) -> ApiResult {
    let (account, tenant, settings) = target(&ctx).await?;
    let req: MintRequest = if ctx.body.is_empty() {
        MintRequest::default()
    } else {
        ctx.json()?
    };
    let kinds = match req.kind.as_deref().unwrap_or("both") {
        "both" => vec![TokenKind::Access, TokenKind::Refresh],
        "access" => vec![TokenKind::Access],
        "refresh" => vec![TokenKind::Refresh],
        other => {
            return Err(ApiError::BadJson(format!(
                "kind must be access, refresh or both, not {other:?}"
            )));
        }
    };
    let store = ctx.server().core.storage.tokens.clone();
    let a = account.clone();
    let minted = ctx
        .blocking(move || {
            let now = heliograph_xmpp::unix_now();
            kinds
                .into_iter()
                .map(|k| {
                    let ttl = match k {
                        TokenKind::Access => settings.access_ttl_secs,
                        TokenKind::Refresh => settings.refresh_ttl_secs,
                    };
                    issued::mint(store.as_ref(), &tenant, &a, k, ttl, now)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .map_err(token_error)?;
    tracing::info!(account = %account, kinds = minted.len(), "admin API: tokens minted");
    let mut body = json!({ "jid": account.to_string() });
    for m in minted {
        let key = match m.kind {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        };
        body[key] = json!(m);
    }
    Ok(json(StatusCode::CREATED, &body))
}

/// `GET /api/v1/users/{domain}/{username}/tokens` → the user's refresh tokens.
pub async fn list(ctx: Ctx) -> ApiResult {
    let (account, _, _) = target(&ctx).await?;
    let store = ctx.server().core.storage.tokens.clone();
    let a = account.clone();
    let (records, seq) = ctx
        .blocking(move || {
            Ok::<_, crate::storage::StorageError>((
                store.list_refresh(&a)?,
                store.revocation_seq(&a)?,
            ))
        })
        .await?
        .map_err(|e| storage_error(&account, e))?;
    let now = heliograph_xmpp::unix_now();
    let live: Vec<_> = records
        .into_iter()
        .filter(|r| r.seq == seq && r.expires_at > now)
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "jid": account.to_string(), "refresh_tokens": live }),
    ))
}

/// `DELETE /api/v1/users/{domain}/{username}/tokens` → `{"revoked": n}`: every token of
/// the user (access and refresh) stops working now.
pub async fn revoke_all(ctx: Ctx) -> ApiResult {
    let (account, _, _) = target(&ctx).await?;
    let store = ctx.server().core.storage.tokens.clone();
    let a = account.clone();
    let n = ctx
        .blocking(move || store.revoke_all(&a))
        .await?
        .map_err(|e| storage_error(&account, e))?;
    tracing::info!(account = %account, refresh_tokens = n, "admin API: all tokens revoked");
    Ok(json(
        StatusCode::OK,
        &json!({ "jid": account.to_string(), "revoked": n, "access_tokens_revoked": true }),
    ))
}

/// `DELETE /api/v1/users/{domain}/{username}/tokens/{id}` → `{"revoked": 1}`, or 404.
pub async fn revoke_one(ctx: Ctx) -> ApiResult {
    let (account, _, _) = target(&ctx).await?;
    let id = ctx.param("id")?.to_string();
    let store = ctx.server().core.storage.tokens.clone();
    let (a, i) = (account.clone(), id.clone());
    let existed = ctx
        .blocking(move || store.revoke_refresh(&a, &i))
        .await?
        .map_err(|e| storage_error(&account, e))?;
    if !existed {
        return Err(ApiError::NoSuchToken(format!(
            "no refresh token {id:?} for {account}"
        )));
    }
    tracing::info!(account = %account, id = %id, "admin API: refresh token revoked");
    Ok(json(
        StatusCode::OK,
        &json!({ "jid": account.to_string(), "revoked": 1 }),
    ))
}
