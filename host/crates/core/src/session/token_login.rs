//! Logging in with a token: picks the verifier (server-issued tokens by their `hgt.`
//! prefix, JWTs by their shape), checks the token against the stream's tenant, and logs
//! every refusal with tenant, user and the exact reason (never the token itself).

use std::sync::Arc;

use crate::context::Core as Server;
use crate::tenants::AuthMethod;
use crate::tokens::issued::{self, TokenKind};
use crate::tokens::{TokenError, localpart_for, looks_like_jwt};

/// How a token login was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Jwt,
    ServerAccess,
    ServerRefresh,
}

impl TokenSource {
    fn label(self) -> &'static str {
        match self {
            TokenSource::Jwt => "jwt",
            TokenSource::ServerAccess => "access-token",
            TokenSource::ServerRefresh => "refresh-token",
        }
    }
}

/// A successful token login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLogin {
    /// The user's localpart in the stream's domain.
    pub local: String,
    pub source: TokenSource,
}

/// True if `password` should be checked as a token rather than a password.
pub fn is_token(password: &str) -> bool {
    issued::is_issued(password) || looks_like_jwt(password)
}

/// Verifies `token` for a login to `domain`. `claimed_user` is the username the client
/// gave alongside the token (PLAIN's authcid), which must name the token's user.
pub async fn verify(
    server: &Arc<Server>,
    domain: &str,
    token: &str,
    claimed_user: Option<&str>,
    mechanism: &str,
) -> Result<TokenLogin, TokenError> {
    let result = check(server, domain, token, claimed_user).await;
    let tenant = server
        .tenant_of(domain)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    match &result {
        Ok(login) => tracing::info!(
            tenant = %tenant,
            user = %format!("{}@{domain}", login.local),
            mechanism,
            source = login.source.label(),
            "token accepted"
        ),
        Err(e) => log_refusal(&tenant, claimed_user.unwrap_or("-"), domain, mechanism, e),
    }
    crate::metrics::token_login(
        result
            .as_ref()
            .map(|l| l.source.label())
            .map_err(|e| e.label()),
    );
    result
}

/// Logs a refused token with tenant, user and the exact reason (never the token).
pub fn log_refusal(tenant: &str, user: &str, domain: &str, mechanism: &str, e: &TokenError) {
    tracing::info!(
        tenant = %tenant,
        user,
        domain,
        mechanism,
        reason = e.label(),
        "token refused: {e}"
    );
}

async fn check(
    server: &Arc<Server>,
    domain: &str,
    token: &str,
    claimed_user: Option<&str>,
) -> Result<TokenLogin, TokenError> {
    let tenant = server.tenant_of(domain).ok_or(TokenError::NotEnabled)?;
    let now = super::auth::unix_now();
    let login = if issued::is_issued(token) {
        if tenant.spec.tokens.is_none() {
            return Err(TokenError::NotEnabled);
        }
        let store = server.storage.tokens.clone();
        let users = server.storage.users.clone();
        let (name, d, t) = (tenant.name.clone(), domain.to_string(), token.to_string());
        let internal = tenant.spec.auth == AuthMethod::Internal;
        let verified = server
            .storage
            .read(move || {
                let v = issued::verify(store.as_ref(), &name, &d, &t, now)?;
                // An internal account that was deleted takes its tokens with it.
                if internal
                    && users
                        .credentials(&v.account)
                        .map_err(|e| TokenError::Storage(e.to_string()))?
                        .is_none()
                {
                    return Err(TokenError::Revoked);
                }
                Ok(v)
            })
            .await?;
        TokenLogin {
            local: verified.account.local,
            source: match verified.kind {
                TokenKind::Access => TokenSource::ServerAccess,
                TokenKind::Refresh => TokenSource::ServerRefresh,
            },
        }
    } else {
        let jwt = tenant.jwt.as_ref().ok_or(TokenError::NotEnabled)?;
        let id = jwt.verify(token, domain, now)?;
        TokenLogin {
            local: id.local,
            source: TokenSource::Jwt,
        }
    };
    if let Some(user) = claimed_user
        && localpart_for(user, domain).ok().as_deref() != Some(login.local.as_str())
    {
        return Err(TokenError::IdentityMismatch);
    }
    Ok(login)
}
