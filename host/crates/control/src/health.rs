//! Unauthenticated operational endpoints of the admin listener: `/health/live` (200 while
//! the process serves requests), `/health/ready` (200, or 503 while draining or while the
//! storage's database does not answer) and `/metrics` (Prometheus text format, with
//! `heliograph_ready` and `heliograph_draining` computed as the scrape is answered, so they
//! agree with `/health/ready`). They are answered before the API's token check, as load
//! balancers and Prometheus carry no token; the admin listener is loopback by default, so
//! expose it deliberately.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};

use crate::Server;
use crate::admin::response::ApiResponse;

/// The answer for `method path`, if it is one of these endpoints.
pub fn handle(server: &Server, method: &Method, path: &str) -> Option<ApiResponse> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    match path {
        "/health/live" => Some(text(StatusCode::OK, "live\n".into(), "text/plain")),
        "/health/ready" => Some(match readiness(server) {
            Readiness::Ready => text(StatusCode::OK, "ready\n".into(), "text/plain"),
            Readiness::Draining => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining\n".into(),
                "text/plain",
            ),
            Readiness::StorageUnreachable => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unreachable\n".into(),
                "text/plain",
            ),
        }),
        "/metrics" => {
            // Read at scrape time: the count goes down in many places (bind, any close).
            metrics::gauge!("heliograph_unauthenticated_connections")
                .set(server.core.limits.unauthenticated() as f64);
            metrics::gauge!("heliograph_unauthenticated_buffered_bytes")
                .set(server.core.limits.unauth_buffered() as f64);
            let (queued_stanzas, deepest_queue) = server.core.router.queue_depths();
            let state = crate::metrics::ScrapeState {
                queued_stanzas,
                deepest_queue,
                ready: readiness(server) == Readiness::Ready,
                draining: server.core.drain.is_draining(),
                archive_backlog: server.core.backlog.pending(),
            };
            Some(match crate::metrics::render(state) {
                Some(body) => text(StatusCode::OK, body, "text/plain; version=0.0.4"),
                None => text(
                    StatusCode::NOT_FOUND,
                    "metrics are not enabled\n".into(),
                    "text/plain",
                ),
            })
        }
        _ => None,
    }
}

/// What `/health/ready` answers, and `heliograph_ready` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Ready,
    Draining,
    StorageUnreachable,
}

fn readiness(server: &Server) -> Readiness {
    if server.core.drain.is_draining() {
        Readiness::Draining
    } else if !server.core.storage.backend.reachable() {
        Readiness::StorageUnreachable
    } else {
        Readiness::Ready
    }
}

fn text(status: StatusCode, body: String, content_type: &str) -> ApiResponse {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}
