//! Responses of the admin API: JSON bodies, the [`ApiError`] enum every handler returns on
//! failure, and its mapping to an HTTP status and a JSON error document
//! `{"error":"<short code>","message":"<human text>"}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

/// The response type of every admin API handler.
pub type ApiResponse = Response<Full<Bytes>>;

/// Result of a handler.
pub type ApiResult = Result<ApiResponse, ApiError>;

/// Everything that can go wrong in an admin request. Each variant maps to one HTTP status
/// and one stable short code (the `error` field), documented for API clients.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON or lacks required fields.
    #[error("invalid JSON body: {0}")]
    BadJson(String),
    /// A username is not a valid JID localpart.
    #[error("invalid username {0:?}: not a valid JID localpart")]
    InvalidUsername(String),
    /// A password is empty or cannot be prepared (SASLprep).
    #[error("{0}")]
    InvalidPassword(String),
    /// A path segment is not valid percent-encoded UTF-8.
    #[error("invalid path: {0}")]
    BadPath(String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The token is valid but does not grant access to this resource.
    #[error("this token does not grant access to {0}")]
    Forbidden(String),
    /// No route matches the path.
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    /// The domain is not served by this server.
    #[error("unknown domain {0}")]
    UnknownDomain(String),
    /// No such account.
    #[error("no such user {0}")]
    NoSuchUser(String),
    /// The path exists but not with this method; carries the allowed methods.
    #[error("method not allowed")]
    MethodNotAllowed(Vec<Method>),
    /// The account already exists.
    #[error("user {0} already exists")]
    UserExists(String),
    /// The body is larger than the limit (in bytes).
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A request body not declared with the media type the route takes.
    #[error("request body must have content type {0}")]
    UnsupportedMediaType(&'static str),
    /// A plugin install, rollback or removal was refused; the text says exactly why.
    #[error("{0}")]
    Plugin(#[from] crate::plugins::InstallError),
    /// The server runs no plugin host.
    #[error("this server runs no plugin host")]
    NoPluginHost,
    /// No such token.
    #[error("{0}")]
    NoSuchToken(String),
    /// No such tenant.
    #[error("no tenant named {0:?}")]
    NoSuchTenant(String),
    /// No such online session.
    #[error("no online session {0}")]
    NoSuchSession(String),
    /// No such MUC room (or occupant in it).
    #[error("{0}")]
    NoSuchRoom(String),
    /// Something already exists or belongs to someone else (tenant, domain).
    #[error("{0}")]
    Conflict(String),
    /// Tenant settings or a config file are invalid.
    #[error("{0}")]
    Invalid(String),
    /// A tenant limit prevents the change.
    #[error("{0}")]
    LimitReached(String),
    /// Storage or another internal failure. The detail is logged, never sent.
    #[error("internal server error")]
    Internal(String),
    /// The cluster node that holds what was asked for did not answer.
    #[error("{0}")]
    NodeUnreachable(String),
}

impl ApiError {
    /// HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadJson(_)
            | ApiError::InvalidUsername(_)
            | ApiError::InvalidPassword(_)
            | ApiError::BadPath(_)
            | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NoSuchTenant(_)
            | ApiError::NoSuchRoom(_)
            | ApiError::NoSuchToken(_)
            | ApiError::NoSuchSession(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::LimitReached(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NoRoute(_) | ApiError::UnknownDomain(_) | ApiError::NoSuchUser(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UserExists(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NoPluginHost => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin(e) => plugin_status(e),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NodeUnreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable short code put in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "bad_json",
            ApiError::InvalidUsername(_) => "invalid_username",
            ApiError::InvalidPassword(_) => "invalid_password",
            ApiError::BadPath(_) => "bad_path",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NoRoute(_) => "not_found",
            ApiError::UnknownDomain(_) => "unknown_domain",
            ApiError::NoSuchUser(_) => "user_not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::UserExists(_) => "user_exists",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::NoPluginHost => "no_plugin_host",
            ApiError::Plugin(e) => plugin_code(e),
            ApiError::NoSuchTenant(_) => "tenant_not_found",
            ApiError::NoSuchRoom(_) => "room_not_found",
            ApiError::NoSuchSession(_) => "session_not_found",
            ApiError::NoSuchToken(_) => "token_not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Invalid(_) => "invalid",
            ApiError::LimitReached(_) => "limit_reached",
            ApiError::Internal(_) => "internal_error",
            ApiError::NodeUnreachable(_) => "node_unreachable",
        }
    }

    /// Wraps an internal failure; `context` says what was being done. The detail is logged
    /// (at error level) when the response is built and never sent to the client.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(format!("{context}: {err}"))
    }

    /// Maps a tenant operation failure.
    pub fn from_tenant(e: crate::tenant_ops::TenantError) -> ApiError {
        use crate::tenant_ops::TenantError as T;
        match e {
            T::NotFound(n) => ApiError::NoSuchTenant(n),
            e @ (T::Exists(_) | T::Registry(_) | T::ConfigManaged(_) | T::NoConfigFile) => {
                ApiError::Conflict(e.to_string())
            }
            e @ (T::Invalid(_) | T::Tls { .. } | T::Jwt { .. } | T::Config(_)) => {
                ApiError::Invalid(e.to_string())
            }
            T::Storage(e) => ApiError::internal("tenant storage", e),
        }
    }

    /// Renders the error as a JSON response with the headers its status requires.
    pub fn into_response(self) -> ApiResponse {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail = %detail, "admin API internal error");
        }
        if let ApiError::Plugin(
            e @ (crate::plugins::InstallError::Storage(_)
            | crate::plugins::InstallError::Internal(_)),
        ) = &self
        {
            tracing::error!(detail = %e, "admin API: plugin operation failed");
        }
        let body = ErrorBody {
            error: self.code(),
            message: if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
                "internal server error".to_string()
            } else {
                self.to_string()
            },
        };
        let mut resp = json(self.status(), &body);
        match &self {
            ApiError::Unauthorized => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"heliograph\""),
                );
            }
            ApiError::MethodNotAllowed(allowed) => {
                let allow = allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// Status of a refused plugin operation: 413 too large, 404 nothing installed, 409 a
/// version or world that does not fit the slot, 500 storage, 400 anything wrong with the
/// upload or its configuration.
fn plugin_status(e: &crate::plugins::InstallError) -> StatusCode {
    use crate::plugins::InstallError as E;
    match e {
        E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        E::NotInstalled { .. } => StatusCode::NOT_FOUND,
        E::UnknownVersion { .. } | E::NoGoodVersion { .. } | E::WorldMismatch { .. } => {
            StatusCode::CONFLICT
        }
        E::Storage(_) | E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Short code of a refused plugin operation.
fn plugin_code(e: &crate::plugins::InstallError) -> &'static str {
    use crate::plugins::InstallError as E;
    match e {
        E::TooLarge { .. } => "payload_too_large",
        E::NotInstalled { .. } => "plugin_not_found",
        E::UnknownVersion { .. } => "unknown_version",
        E::NoGoodVersion { .. } => "no_good_version",
        E::WorldMismatch { .. } => "world_mismatch",
        E::Storage(_) | E::Internal(_) => "internal_error",
        E::InvalidConfig(_) => "invalid_config",
        E::InvalidName { .. } => "invalid_name",
        _ => "invalid_plugin",
    }
}

/// The JSON error document.
#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// A JSON response with the given status.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> ApiResponse {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut resp = Response::new(Full::new(Bytes::from(bytes)));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::internal("serializing response", e).into_response(),
    }
}

/// An empty `204 No Content` response.
pub fn no_content() -> ApiResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_not_allowed_lists_allow() {
        let resp = ApiError::MethodNotAllowed(vec![Method::GET, Method::POST]).into_response();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "GET, POST");
    }

    #[test]
    fn internal_detail_is_not_sent() {
        let resp = ApiError::internal("listing users", "disk on fire").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = format!("{:?}", resp.body());
        assert!(body.contains("internal_error"), "{body}");
        assert!(!body.contains("disk on fire"), "{body}");
    }
}
