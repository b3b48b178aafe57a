//! The admin API: JSON over HTTP/1.1 under `/api/v1`, on the admin listener (loopback
//! port 5281 by default), modelled on MongooseIM's REST API.
//!
//! | Method | Path | Success |
//! |--------|------|---------|
//! | GET    | `/api/v1/users/{domain}` | 200 `{"domain":"d","users":["alice"]}` |
//! | POST   | `/api/v1/users/{domain}` `{"username","password"}` | 201 `{"jid":"alice@d"}` |
//! | DELETE | `/api/v1/users/{domain}/{username}` | 204 (ends the account's sessions) |
//! | PUT    | `/api/v1/users/{domain}/{username}/password` `{"password"}` | 204 (ends sessions) |
//! | GET    | `/api/v1/sessions`, `/api/v1/sessions/{domain}` | 200 `{"sessions":[...]}` |
//! | DELETE | `/api/v1/sessions/{domain}/{username}/{resource}` | 204 (the session ends) |
//! | GET    | `/api/v1/me` | 200 `{"principal":"operator"}` or `{"principal":"tenant",...}` |
//! | GET/POST | `/api/v1/tenants/{tenant}/rooms` | 200 `{"rooms":[...]}` / 201 room |
//! | GET/DELETE | `/api/v1/tenants/{tenant}/rooms/{room}` | 200 room with occupants / 204 |
//! | POST   | `/api/v1/tenants/{tenant}/rooms/{room}/kick` `{"nick","reason"?}` | 204 |
//! | GET    | `/api/v1/tenants/{tenant}/rooms/{room}/log?after=&limit=` | 200 `{"entries":[...],"next"}` |
//!
//! Every request needs `Authorization: Bearer <token>` ([`auth`]). Errors are
//! `{"error":"<code>","message":"<text>"}` with the status of [`response::ApiError`]:
//! 400 bad JSON / invalid name / empty password, 401 bad token, 404 unknown route, domain
//! or user, 405 wrong method (with `Allow`), 409 existing user, 413 body over 64 KiB
//! (plugin uploads: over `plugins.max_upload_mib`), 415 body not JSON (plugin uploads: not
//! `application/wasm`), 500 storage failure. Plugin endpoints: see [`plugins`].
//!
//! The same listener serves the web console ([`crate::console`], `/console/`), a client
//! of this API with no endpoint of its own.
//!
//! Layout: [`routes`] holds the route table and dispatch, [`users`] and [`sessions`] the
//! handlers, [`context`] what handlers share, [`response`] the JSON/error helpers.

pub mod auth;
pub mod cluster;
pub mod context;
pub mod drain;
pub mod me;
pub mod openapi;
pub mod plugins;
pub mod response;
pub mod room_nodes;
pub mod rooms;
pub mod routes;
pub mod s2s;
pub mod sessions;
pub mod tenants;
pub mod tokens;
pub mod users;

/// Test support (in-memory storage, an API on an ephemeral port), for this crate's
/// tests and, with the `testing` feature, for the CLI's.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Server;
use crate::sasl::{SaslFailure, StoredCredentials};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Turns a password into stored credentials: `(password, iterations)`.
pub type CredentialDeriver =
    Arc<dyn Fn(&str, u32) -> Result<StoredCredentials, SaslFailure> + Send + Sync>;

/// The admin API bound to a server.
pub struct AdminApi {
    server: Arc<Server>,
    derive: CredentialDeriver,
}

impl AdminApi {
    /// The API of `server`, deriving credentials with [`crate::sasl::derive_credentials`].
    pub fn new(server: Arc<Server>) -> Self {
        AdminApi {
            server,
            derive: Arc::new(crate::sasl::derive_credentials),
        }
    }

    /// Replaces the credential derivation (tests use a cheap one).
    pub fn with_credential_deriver(mut self, derive: CredentialDeriver) -> Self {
        self.derive = derive;
        self
    }

    /// Serves HTTP/1.1 connections from `listener` until `shutdown` completes, then stops
    /// accepting, lets in-flight requests finish (idle keep-alive connections are closed)
    /// and returns once every connection is done.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let api = Arc::new(self);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        conns.spawn(serve_connection(api.clone(), stream, peer, stop_rx.clone()));
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "admin API: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        while conns.join_next().await.is_some() {}
        tracing::debug!("admin API stopped");
    }
}

/// Serves `server`'s admin API on `listener` until `shutdown` completes (see
/// [`AdminApi::serve`]).
pub async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    AdminApi::new(server).serve(listener, shutdown).await
}

/// One connection: requests until the client closes or shutdown is signalled, after which
/// the request in flight (if any) is finished.
async fn serve_connection(
    api: Arc<AdminApi>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let api = api.clone();
        async move {
            if let Some(resp) =
                crate::console::handle(req.method(), req.uri().path(), req.headers())
            {
                return Ok::<_, Infallible>(resp);
            }
            if let Some(resp) = crate::health::handle(&api.server, req.method(), req.uri().path()) {
                return Ok::<_, Infallible>(resp);
            }
            Ok::<_, Infallible>(routes::dispatch(api, req).await)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let stopping = async move {
        // Err means the server is gone: stop as well.
        let _ = stop.wait_for(|stopping| *stopping).await.map(|_| ());
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "admin API connection ended with an error");
    }
}
