//! The cloud edge: what sits between load balancers and the session core.
//!
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers from trusted proxies, giving the
//!   real client address to logs, limits and the sessions API;
//! - [`limits`]: connections per listener and per address, unauthenticated connections,
//!   login attempt rate per address;
//! - [`drain`]: taking a node out of service without losing stanzas;
//! - [`health`]: `/health/live`, `/health/ready` and `/metrics` on the admin listener.

pub mod drain;
pub mod health;
pub mod limits;
pub mod proxy_protocol;

use std::sync::Arc;

/// Edge state shared by every listener.
#[derive(Default)]
pub struct Edge {
    pub limits: Arc<limits::Limits>,
    pub drain: drain::Drain,
}
