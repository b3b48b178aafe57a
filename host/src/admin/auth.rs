//! Who is calling: bearer-token authentication of admin API requests.
//!
//! A request carries `Authorization: Bearer <token>`; the token is compared in constant
//! time with the operator token ([`crate::server::Server::admin_token`]). The result is a
//! [`Principal`], which handlers ask what it may touch. Tenant-scoped tokens will add a
//! variant here; handlers already go through [`Principal::check_domain`].
//!
//! Tokens are never logged.

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

use super::response::ApiError;

/// The authenticated caller of an admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: full access to every domain.
    Operator,
}

impl Principal {
    /// Whether the principal may manage `domain` (its users, sessions, ...).
    pub fn may_access_domain(&self, _domain: &str) -> bool {
        match self {
            Principal::Operator => true,
        }
    }

    /// [`Self::may_access_domain`] as an API error.
    pub fn check_domain(&self, domain: &str) -> Result<(), ApiError> {
        if self.may_access_domain(domain) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("domain {domain}")))
        }
    }

    /// Whether the principal sees everything (server-wide listings).
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator)
    }
}

/// Authenticates a request by its `Authorization` header against the operator token.
/// An empty operator token authenticates nobody.
pub fn authenticate(headers: &HeaderMap, operator_token: &str) -> Result<Principal, ApiError> {
    let presented = bearer_token(headers).ok_or(ApiError::Unauthorized)?;
    if !operator_token.is_empty()
        && bool::from(presented.as_bytes().ct_eq(operator_token.as_bytes()))
    {
        return Ok(Principal::Operator);
    }
    Err(ApiError::Unauthorized)
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn accepts_operator_token() {
        assert_eq!(
            authenticate(&headers(Some("Bearer s3cret")), "s3cret").unwrap(),
            Principal::Operator
        );
        assert_eq!(
            authenticate(&headers(Some("bearer  s3cret ")), "s3cret").unwrap(),
            Principal::Operator
        );
    }

    #[test]
    fn refuses_missing_wrong_or_other_scheme() {
        for h in [
            None,
            Some("Bearer wrong"),
            Some("Basic s3cret"),
            Some("Bearer"),
            Some("s3cret"),
        ] {
            assert!(
                matches!(
                    authenticate(&headers(h), "s3cret"),
                    Err(ApiError::Unauthorized)
                ),
                "{h:?}"
            );
        }
    }

    #[test]
    fn empty_operator_token_authenticates_nobody() {
        assert!(authenticate(&headers(Some("Bearer x")), "").is_err());
    }
}
