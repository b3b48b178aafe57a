//! Heliograph: a multi-tenant XMPP signaling server. This crate is the top of the stack:
//! the `heliograph` binary's command line ([`cli`]) and `serve` ([`serve`]: the table of
//! listeners wired to the core). The layers below are their own crates, re-exported here
//! under the names tools and tests use; `docs/ARCHITECTURE.md` describes them.
//!
//! | layer | crate | re-exported as |
//! | --- | --- | --- |
//! | XML | `heliograph-xml` | [`xml`] |
//! | XMPP vocabulary | `heliograph-xmpp` | [`xmpp`], [`stanza`] |
//! | metrics | `heliograph-metrics` | [`metrics`] |
//! | storage | `heliograph-storage` | [`storage`] |
//! | authentication | `heliograph-auth` | [`sasl`], [`tokens`] |
//! | plugins | `heliograph-plugins` | [`plugins`] |
//! | tenants | `heliograph-tenants` | [`tenants`] |
//! | configuration | `heliograph-config` | [`config`] |
//! | core | `heliograph-core` | [`core`] ([`router`], [`session`], [`hooks`], [`pipeline`]) |
//! | features | `heliograph-services` | [`services`] ([`muc`], [`components`]) |
//! | transports | `heliograph-transports` | [`transports`] |
//! | control | `heliograph-control` | [`control`] ([`admin`], [`server`]) |

pub mod cli;
pub mod serve;

pub use heliograph_auth::{sasl, tokens};
pub use heliograph_config as config;
pub use heliograph_control as control;
pub use heliograph_control::admin;
pub use heliograph_core as core;
pub use heliograph_core::{hooks, pipeline, router, session};
pub use heliograph_metrics as metrics;
pub use heliograph_plugins as plugins;
pub use heliograph_services as services;
pub use heliograph_services::{components, muc};
pub use heliograph_storage as storage;
pub use heliograph_tenants as tenants;
pub use heliograph_transports as transports;
pub use heliograph_xml as xml;
pub use heliograph_xmpp as xmpp;
pub use heliograph_xmpp::stanza;

/// The running server and how to start it.
pub mod server {
    pub use crate::serve::{ServeOptions, serve};
    pub use heliograph_control::Server;
}
