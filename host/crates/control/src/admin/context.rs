//! What a handler gets: the [`Ctx`] of one request (server, caller, path parameters, body)
//! and the checks every handler shares: served domain, username as a JID localpart,
//! password, and running blocking work (storage, PBKDF2) off the async runtime.

use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::AdminApi;
use super::auth::Principal;
use super::response::ApiError;
use crate::Server;
use crate::sasl::StoredCredentials;
use crate::storage::{Account, StorageError};

/// Path parameters of a matched route, percent-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn push(&mut self, name: &'static str, value: String) {
        self.0.push((name, value));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request as a handler sees it.
pub struct Ctx {
    pub api: Arc<AdminApi>,
    pub principal: Principal,
    pub params: Params,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: hyper::HeaderMap,
    /// The request body (empty for routes without one).
    pub body: Bytes,
}

impl Ctx {
    pub fn server(&self) -> &Server {
        &self.api.server
    }

    /// A path parameter the route pattern guarantees.
    pub fn param(&self, name: &str) -> Result<&str, ApiError> {
        self.params.get(name).ok_or_else(|| {
            ApiError::internal("route table", format!("missing path parameter {name}"))
        })
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::BadJson(e.to_string()))
    }

    /// The `{domain}` parameter, normalized, checked to be served here and accessible to
    /// the caller. A tenant token gets the same answer (403) for a domain of another
    /// tenant as for one that does not exist: it cannot tell which domains are served.
    pub fn domain(&self) -> Result<String, ApiError> {
        let raw = self.param("domain")?;
        let unknown = || {
            if self.principal.is_operator() {
                ApiError::UnknownDomain(raw.to_string())
            } else {
                ApiError::Forbidden(format!("domain {raw}"))
            }
        };
        let domain = jid::DomainPart::new(raw)
            .map_err(|_| unknown())?
            .as_str()
            .to_string();
        let owner = self
            .server()
            .core
            .tenants
            .by_domain(&domain)
            .ok_or_else(unknown)?;
        if !self.principal.may_access_domain(&owner.name) {
            return Err(unknown());
        }
        Ok(domain)
    }

    /// A query parameter's value (`?purge=true`), undecoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// The account `username@domain`, the username normalized as a JID localpart.
    pub fn account(&self, domain: &str, username: &str) -> Result<Account, ApiError> {
        Ok(Account::new(normalize_username(username)?, domain))
    }

    /// Runs blocking work (storage calls, key derivation) on the blocking pool. A panic in
    /// it becomes a 500, not a dropped connection.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ApiError::internal("blocking task", e))
    }

    /// Derives the SCRAM credentials of a password with the configured iteration count.
    pub async fn derive_credentials(
        &self,
        password: String,
    ) -> Result<StoredCredentials, ApiError> {
        check_password(&password)?;
        let derive = self.api.derive.clone();
        let iterations = self.server().config().auth.scram_iterations;
        self.blocking(move || derive(&password, iterations))
            .await?
            .map_err(|_| {
                ApiError::InvalidPassword(
                    "password contains characters not allowed by SASLprep".into(),
                )
            })
    }
}

/// Normalizes a username as a JID localpart (RFC 7622 nodeprep).
pub fn normalize_username(username: &str) -> Result<String, ApiError> {
    match jid::NodePart::new(username) {
        Ok(node) => Ok(node.as_str().to_string()),
        Err(_) => Err(ApiError::InvalidUsername(username.to_string())),
    }
}

/// Refuses empty passwords.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.is_empty() {
        return Err(ApiError::InvalidPassword(
            "password must not be empty".into(),
        ));
    }
    Ok(())
}

/// Maps a storage error about `account` to an API error.
pub fn storage_error(account: &Account, err: StorageError) -> ApiError {
    match err {
        StorageError::AlreadyExists => ApiError::UserExists(account.to_string()),
        StorageError::NotFound => ApiError::NoSuchUser(account.to_string()),
        other => ApiError::internal(&format!("storage, account {account}"), other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalized_and_validated() {
        assert_eq!(normalize_username("Alice").unwrap(), "alice");
        for bad in ["", "a@b", "a/b", "a b", "a:b", "<x>", &"x".repeat(1024)] {
            assert!(normalize_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_password_refused() {
        assert!(check_password("").is_err());
        assert!(check_password("x").is_ok());
    }
}
