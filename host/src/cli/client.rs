//! A small client of the admin API (hyper-util's legacy client over plain HTTP/1.1),
//! used by the CLI's user and session commands.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How long one API call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error document.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// Nothing listens at the address.
    #[error(
        "cannot connect to the admin API at {base}: connection refused (is the server running?)"
    )]
    NotRunning { base: String },
    /// Any other transport failure.
    #[error("admin API at {base}: {detail}")]
    Transport { base: String, detail: String },
    /// The answer is not what the API documents.
    #[error("unexpected answer from the admin API: {0}")]
    Protocol(String),
}

/// One online session as listed by the API.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Session {
    pub jid: String,
    pub transport: String,
    pub address: String,
    pub priority: i8,
    pub available: bool,
    pub since: u64,
}

/// Client of one server's admin API.
pub struct ApiClient {
    /// `http://host:port`, no trailing slash.
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    /// `base` is the server's admin URL (`http://127.0.0.1:5281`); a trailing `/` or
    /// `/api/v1` is accepted. Only `http://` is supported.
    pub fn new(base: &str, token: impl Into<String>) -> Result<ApiClient, ClientError> {
        let trimmed = base.trim().trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/api/v1").unwrap_or(trimmed);
        if !trimmed.starts_with("http://") {
            return Err(ClientError::Protocol(format!(
                "admin API URL {base:?} must start with http://"
            )));
        }
        trimmed
            .parse::<hyper::Uri>()
            .map_err(|e| ClientError::Protocol(format!("invalid admin API URL {base:?}: {e}")))?;
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(ApiClient {
            base: trimmed.to_string(),
            token: token.into(),
            http,
        })
    }

    /// The base URL in use.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Localparts of the accounts of `domain`.
    pub async fn list_users(&self, domain: &str) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Users {
            users: Vec<String>,
        }
        let path = format!("/users/{}", encode_segment(domain));
        let users: Users = self.call(Method::GET, &path, None).await?;
        Ok(users.users)
    }

    /// Creates `username@domain`; returns the JID the server created.
    pub async fn add_user(
        &self,
        domain: &str,
        username: &str,
        password: &str,
    ) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct Created {
            jid: String,
        }
        let path = format!("/users/{}", encode_segment(domain));
        let body = json!({ "username": username, "password": password });
        let created: Created = self.call(Method::POST, &path, Some(body)).await?;
        Ok(created.jid)
    }

    /// Deletes an account.
    pub async fn remove_user(&self, domain: &str, username: &str) -> Result<(), ClientError> {
        let path = format!(
            "/users/{}/{}",
            encode_segment(domain),
            encode_segment(username)
        );
        self.call_empty(Method::DELETE, &path, None).await
    }

    /// Changes an account's password.
    pub async fn set_password(
        &self,
        domain: &str,
        username: &str,
        password: &str,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/users/{}/{}/password",
            encode_segment(domain),
            encode_segment(username)
        );
        self.call_empty(Method::PUT, &path, Some(json!({ "password": password })))
            .await
    }

    /// Online sessions, of one domain or all.
    pub async fn sessions(&self, domain: Option<&str>) -> Result<Vec<Session>, ClientError> {
        #[derive(Deserialize)]
        struct Sessions {
            sessions: Vec<Session>,
        }
        let path = match domain {
            Some(d) => format!("/sessions/{}", encode_segment(d)),
            None => "/sessions".to_string(),
        };
        let s: Sessions = self.call(Method::GET, &path, None).await?;
        Ok(s.sessions)
    }

    /// Any request; the JSON answer (`null` for an empty one).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let bytes = self.send(method, path, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn call_empty(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(), ClientError> {
        self.send(method, path, body).await.map(|_| ())
    }

    /// Sends a raw body of `content_type` with extra headers; the JSON answer.
    pub async fn upload(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Value, ClientError> {
        let mut extra: Vec<(&str, String)> = vec![(CONTENT_TYPE.as_str(), content_type.into())];
        extra.extend(headers.iter().cloned());
        let bytes = self
            .send_raw(method, path, &extra, Bytes::from(body))
            .await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Sends one request; a non-2xx answer becomes [`ClientError::Api`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Bytes, ClientError> {
        match body {
            Some(v) => {
                let json = [(CONTENT_TYPE.as_str(), "application/json".to_string())];
                self.send_raw(method, path, &json, Bytes::from(v.to_string()))
                    .await
            }
            None => self.send_raw(method, path, &[], Bytes::new()).await,
        }
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        payload: Bytes,
    ) -> Result<Bytes, ClientError> {
        let uri = format!("{}/api/v1{}", self.base, path);
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let req = req
            .body(Full::new(payload))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.transport_error(e))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport {
                    base: self.base.clone(),
                    detail: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Transport {
                base: self.base.clone(),
                detail: "timed out".into(),
            })??;
        if status.is_success() {
            return Ok(bytes);
        }
        #[derive(Deserialize)]
        struct ErrorDoc {
            error: String,
            message: String,
        }
        match serde_json::from_slice::<ErrorDoc>(&bytes) {
            Ok(doc) => Err(ClientError::Api {
                status,
                code: doc.error,
                message: doc.message,
            }),
            Err(_) => Err(ClientError::Api {
                status,
                code: String::new(),
                message: format!("HTTP {status}"),
            }),
        }
    }

    fn transport_error(&self, e: hyper_util::client::legacy::Error) -> ClientError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return ClientError::NotRunning {
                    base: self.base.clone(),
                };
            }
            source = s.source();
        }
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        ClientError::Transport {
            base: self.base.clone(),
            detail,
        }
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments() {
        assert_eq!(encode_segment("alice"), "alice");
        assert_eq!(encode_segment("a b/ï"), "a%20b%2F%C3%AF");
    }

    #[test]
    fn normalizes_base_url() {
        assert_eq!(
            ApiClient::new("http://127.0.0.1:5281/", "t")
                .unwrap()
                .base(),
            "http://127.0.0.1:5281"
        );
        assert_eq!(
            ApiClient::new("http://h:1/api/v1", "t").unwrap().base(),
            "http://h:1"
        );
        assert!(ApiClient::new("https://h:1", "t").is_err());
        assert!(ApiClient::new("h:1", "t").is_err());
    }
}
