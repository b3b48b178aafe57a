//! Token authentication: externally signed JWTs ([`jwt`]) and tokens the server issues
//! itself ([`issued`], MongooseIM-style access and refresh tokens), plus the reasons a
//! token is refused ([`TokenError`]) with the SASL condition each maps to.
//!
//! Both kinds are checked against one tenant: its own keys, its own audience and issuer,
//! and its own domains, so a token minted for one tenant never logs in to another.

pub mod fast;
pub mod issued;
pub mod jwt;
#[cfg(test)]
mod tests;
pub mod upload;

use crate::sasl::SaslFailure;

/// Why a token was refused. The `Display` text is for logs: it names the problem, never
/// the token or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf/iat in the future)")]
    NotYetValid,
    #[error("bad signature")]
    BadSignature,
    #[error("unknown key id {0:?}")]
    UnknownKid(String),
    #[error("no key for algorithm {0}")]
    NoKeyForAlgorithm(String),
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("missing claim {0:?}")]
    MissingClaim(String),
    #[error("user {user:?} is not of this stream's domain {domain:?}")]
    WrongDomain { user: String, domain: String },
    #[error("token revoked")]
    Revoked,
    #[error("the user named by the token does not match the requested identity")]
    IdentityMismatch,
    #[error("token authentication is not enabled for this tenant")]
    NotEnabled,
    #[error("storage: {0}")]
    Storage(String),
}

impl TokenError {
    /// The SASL condition a client gets (RFC 6120 §6.5): `credentials-expired` for an
    /// expired token, `temporary-auth-failure` when storage failed, `not-authorized` for
    /// everything else (a username that is not the token's user included), so a client
    /// learns nothing about keys or configuration.
    pub fn sasl_failure(&self) -> SaslFailure {
        match self {
            TokenError::Expired => SaslFailure::CredentialsExpired,
            TokenError::Storage(_) => SaslFailure::TemporaryAuthFailure,
            _ => SaslFailure::NotAuthorized,
        }
    }

    /// A short stable label for logs and metrics (`expired`, `bad-signature`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not-yet-valid",
            TokenError::BadSignature => "bad-signature",
            TokenError::UnknownKid(_) => "unknown-kid",
            TokenError::NoKeyForAlgorithm(_) => "no-key-for-algorithm",
            TokenError::WrongAudience => "wrong-audience",
            TokenError::WrongIssuer => "wrong-issuer",
            TokenError::Malformed(_) => "malformed",
            TokenError::MissingClaim(_) => "missing-claim",
            TokenError::WrongDomain { .. } => "wrong-domain",
            TokenError::Revoked => "revoked",
            TokenError::IdentityMismatch => "identity-mismatch",
            TokenError::NotEnabled => "not-enabled",
            TokenError::Storage(_) => "storage",
        }
    }

    /// The text sent to the client in `<failure><text/>`: generic, no key material.
    pub fn client_text(&self) -> &'static str {
        match self {
            TokenError::Expired => "token expired",
            TokenError::Storage(_) => "authentication is temporarily unavailable",
            TokenError::IdentityMismatch => "token does not match the requested identity",
            _ => "invalid token",
        }
    }
}

/// True if `s` has the shape of a compact JWS (three base64url segments, the first one
/// a JSON header). Used to route a PLAIN password to JWT validation.
pub fn looks_like_jwt(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64url = |x: &str| {
        !x.is_empty()
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    b64url(h) && b64url(p) && b64url(sig) && h.starts_with("eyJ")
}

/// Maps a JWT user claim (a localpart or a bare JID) to a localpart of `domain`.
pub fn localpart_for(user: &str, domain: &str) -> Result<String, TokenError> {
    let (local, user_domain) = match user.split_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (user, None),
    };
    if let Some(d) = user_domain {
        let d = heliograph_xmpp::jid::normalize_domain(d).unwrap_or_default();
        if d != domain {
            return Err(TokenError::WrongDomain {
                user: user.to_string(),
                domain: domain.to_string(),
            });
        }
    }
    heliograph_xmpp::jid::normalize_localpart(local, domain)
        .ok_or_else(|| TokenError::Malformed("the username claim is not a valid localpart".into()))
}
