//! The cloud edge: what sits between load balancers and the session core.
//!
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers from trusted proxies, giving the
//!   real client address to logs, limits and the sessions API.

pub mod proxy_protocol;
