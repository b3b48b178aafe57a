//! Who is calling: bearer-token authentication of admin API requests.
//!
//! A request carries `Authorization: Bearer <token>`; the token is compared in constant
//! time with the operator token ([`crate::Server::admin_token`]) and, failing
//! that, checked as a tenant token (`NAME.SECRET`, whose hash the tenant stores). The
//! result is a [`Principal`], which handlers ask what it may touch: the operator anything,
//! a tenant only its own tenant, its domains and their users.
//!
//! Tokens are never logged.

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

use super::response::ApiError;
use crate::Server;

/// The authenticated caller of an admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: full access to every domain.
    Operator,
    /// A tenant's own token: its tenant, domains and users only.
    Tenant(String),
    /// No token (only for the public OpenAPI document).
    Anonymous,
}

impl Principal {
    /// Whether the principal may manage `domain` (its users, sessions, ...), given the
    /// tenant that owns the domain.
    pub fn may_access_domain(&self, owner: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(name) => name == owner,
            Principal::Anonymous => false,
        }
    }

    /// [`Self::may_access_domain`] as an API error.
    pub fn check_domain(&self, domain: &str, owner: &str) -> Result<(), ApiError> {
        if self.may_access_domain(owner) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("domain {domain}")))
        }
    }

    /// Whether the principal may see and manage the tenant `name`.
    pub fn check_tenant(&self, name: &str) -> Result<(), ApiError> {
        if self.may_access_domain(name) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("tenant {name}")))
        }
    }

    /// Only the operator may do this.
    pub fn check_operator(&self, what: &str) -> Result<(), ApiError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(what.to_string()))
        }
    }

    /// Whether the principal sees everything (server-wide listings).
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator)
    }
}

/// Authenticates a request by its `Authorization` header: the operator token, or a
/// tenant token. An empty operator token authenticates nobody.
pub fn authenticate(headers: &HeaderMap, server: &Server) -> Result<Principal, ApiError> {
    let presented = bearer_token(headers).ok_or(ApiError::Unauthorized)?;
    if let Some(p) = operator(presented, &server.admin_token) {
        return Ok(p);
    }
    match crate::tenant_ops::tenant_of_token(server, presented) {
        Some(t) => Ok(Principal::Tenant(t.name.clone())),
        None => Err(ApiError::Unauthorized),
    }
}

/// The operator principal if `presented` is the operator token.
fn operator(presented: &str, operator_token: &str) -> Option<Principal> {
    (!operator_token.is_empty()
        && bool::from(presented.as_bytes().ct_eq(operator_token.as_bytes())))
    .then_some(Principal::Operator)
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

    fn authenticate(h: &HeaderMap, token: &str) -> Result<Principal, ApiError> {
        let presented = bearer_token(h).ok_or(ApiError::Unauthorized)?;
        operator(presented, token).ok_or(ApiError::Unauthorized)
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
    fn tenant_principals_see_only_their_tenant() {
        let p = Principal::Tenant("acme".into());
        assert!(p.check_tenant("acme").is_ok());
        assert!(matches!(
            p.check_tenant("other"),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            p.check_domain("x.test", "other"),
            Err(ApiError::Forbidden(_))
        ));
        assert!(p.check_operator("listing tenants").is_err());
        assert!(Principal::Operator.check_domain("x.test", "other").is_ok());
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
