//! Tokens the server issues itself, in the spirit of MongooseIM's token authentication:
//! a logged-in client asks for an access token (short-lived, default 1 h) and a refresh
//! token (long-lived, default 25 days) and later logs in with either one.
//!
//! Format: `hgt.<kind>.<payload>.<mac>`, where kind is `a` (access) or `r` (refresh),
//! payload the base64url JSON [`Claims`] and mac the base64url HMAC-SHA-256 of
//! `hgt.<kind>.<payload>` under the tenant's signing key (kept in storage, so a token of
//! one tenant never verifies at another). Revocation is immediate: every token carries the
//! account's revocation sequence at issue time and is refused once the sequence moved on;
//! a refresh token is usable only while its stored record exists.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::TokenError;
use heliograph_storage::{Account, RefreshRecord, TokenStore};

/// Prefix of every server-issued token.
pub const PREFIX: &str = "hgt.";

/// Default access token lifetime (MongooseIM's default).
pub const DEFAULT_ACCESS_SECS: u64 = 3600;
/// Default refresh token lifetime (MongooseIM's default).
pub const DEFAULT_REFRESH_SECS: u64 = 25 * 24 * 3600;

/// A tenant's server-issued token settings (`[tenants.NAME.tokens]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedTokenSettings {
    /// Access token lifetime in seconds.
    #[serde(default = "default_access")]
    pub access_ttl_secs: u64,
    /// Refresh token lifetime in seconds.
    #[serde(default = "default_refresh")]
    pub refresh_ttl_secs: u64,
}

fn default_access() -> u64 {
    DEFAULT_ACCESS_SECS
}
fn default_refresh() -> u64 {
    DEFAULT_REFRESH_SECS
}

impl Default for IssuedTokenSettings {
    fn default() -> Self {
        IssuedTokenSettings {
            access_ttl_secs: DEFAULT_ACCESS_SECS,
            refresh_ttl_secs: DEFAULT_REFRESH_SECS,
        }
    }
}

/// Access or refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    fn tag(self) -> &'static str {
        match self {
            TokenKind::Access => "a",
            TokenKind::Refresh => "r",
        }
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Localpart.
    pub u: String,
    /// Domain.
    pub d: String,
    /// Revocation sequence at issue time.
    pub s: u64,
    pub iat: u64,
    pub exp: u64,
    /// Refresh token id (refresh tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A freshly minted token with its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Minted {
    pub token: String,
    pub kind: TokenKind,
    pub expires_at: u64,
    /// Refresh token id (for listing and revoking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A checked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub kind: TokenKind,
    pub account: Account,
    pub expires_at: u64,
}

fn mac(key: &[u8], signed: &str) -> Result<Vec<u8>, TokenError> {
    let mut m = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|_| TokenError::Storage("invalid signing key".into()))?;
    m.update(signed.as_bytes());
    Ok(m.finalize().into_bytes().to_vec())
}

fn storage_err(e: heliograph_storage::StorageError) -> TokenError {
    TokenError::Storage(e.to_string())
}

/// True if `s` looks like a server-issued token.
pub fn is_issued(s: &str) -> bool {
    s.starts_with(PREFIX)
}

/// Mints a token of `kind` for `account` of `tenant`, valid `ttl` seconds from `now`.
/// A refresh token is recorded in storage.
pub fn mint(
    store: &dyn TokenStore,
    tenant: &str,
    account: &Account,
    kind: TokenKind,
    ttl: u64,
    now: u64,
) -> Result<Minted, TokenError> {
    let key = store.signing_key(tenant).map_err(storage_err)?;
    let seq = store.revocation_seq(account).map_err(storage_err)?;
    let id = match kind {
        TokenKind::Refresh => Some(format!("{:032x}", rand::random::<u128>())),
        TokenKind::Access => None,
    };
    let claims = Claims {
        u: account.local.clone(),
        d: account.domain.clone(),
        s: seq,
        iat: now,
        exp: now.saturating_add(ttl),
        id: id.clone(),
    };
    let payload = B64URL
        .encode(serde_json::to_vec(&claims).map_err(|e| TokenError::Malformed(e.to_string()))?);
    let signed = format!("{PREFIX}{}.{payload}", kind.tag());
    let sig = B64URL.encode(mac(&key, &signed)?);
    if let Some(id) = &id {
        store
            .put_refresh(
                account,
                &RefreshRecord {
                    id: id.clone(),
                    issued_at: now,
                    expires_at: claims.exp,
                    seq,
                },
            )
            .map_err(storage_err)?;
    }
    Ok(Minted {
        token: format!("{signed}.{sig}"),
        kind,
        expires_at: claims.exp,
        id,
    })
}

/// Checks a token for a login to `domain` of `tenant` at `now`: signature, expiry,
/// domain, revocation sequence and (refresh tokens) the stored record.
pub fn verify(
    store: &dyn TokenStore,
    tenant: &str,
    domain: &str,
    token: &str,
    now: u64,
) -> Result<Verified, TokenError> {
    let malformed = |w: &str| TokenError::Malformed(w.to_string());
    let rest = token
        .strip_prefix(PREFIX)
        .ok_or_else(|| malformed("not a server token"))?;
    let (signed_rest, sig) = rest.rsplit_once('.').ok_or_else(|| malformed("no MAC"))?;
    let (tag, payload) = signed_rest
        .split_once('.')
        .ok_or_else(|| malformed("no payload"))?;
    let kind = match tag {
        "a" => TokenKind::Access,
        "r" => TokenKind::Refresh,
        _ => return Err(malformed("unknown token kind")),
    };
    let sig = B64URL.decode(sig).map_err(|_| malformed("MAC encoding"))?;
    let key = store.signing_key(tenant).map_err(storage_err)?;
    let expected = mac(&key, &token[..PREFIX.len() + signed_rest.len()])?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &sig[..])) {
        return Err(TokenError::BadSignature);
    }
    let claims: Claims = serde_json::from_slice(
        &B64URL
            .decode(payload)
            .map_err(|_| malformed("payload encoding"))?,
    )
    .map_err(|_| malformed("payload"))?;
    if claims.d != domain {
        return Err(TokenError::WrongDomain {
            user: format!("{}@{}", claims.u, claims.d),
            domain: domain.to_string(),
        });
    }
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    let account = Account::new(claims.u.clone(), claims.d.clone());
    let seq = store.revocation_seq(&account).map_err(storage_err)?;
    if claims.s != seq {
        return Err(TokenError::Revoked);
    }
    if kind == TokenKind::Refresh {
        let id = claims.id.as_deref().ok_or_else(|| malformed("no id"))?;
        if store.refresh(&account, id).map_err(storage_err)?.is_none() {
            return Err(TokenError::Revoked);
        }
    }
    Ok(Verified {
        kind,
        account,
        expires_at: claims.exp,
    })
}
