//! Heliograph: a multi-tenant XMPP signaling server.
//!
//! The crate is laid out by the path a stanza takes: bytes arrive on a [`transport`],
//! become [`xml`] events, go through stream negotiation in [`session`] (TLS, [`sasl`],
//! binding), are routed by the [`router`] to other sessions or to the server's
//! [`services`] (roster, presence, disco, ...), which persist through [`storage`].
//! [`admin`] is the HTTP admin API, [`cli`] the command-line client for it, [`config`]
//! the TOML configuration and [`server`] wires everything together. [`plugins`] runs
//! tenants' WebAssembly components (authentication and, later, room policy and components).

pub mod admin;
pub mod cli;
pub mod component;
pub use heliograph_config as config;
pub mod edge;
pub use heliograph_metrics as metrics;
pub mod muc;
pub use heliograph_plugins as plugins;
pub mod router;
pub use heliograph_auth::sasl;
pub mod server;
pub mod services;
pub mod session;
pub use heliograph_storage as storage;
pub use heliograph_xmpp::stanza;
pub mod tenants;
pub use heliograph_auth::tokens;
pub mod transport;
pub use heliograph_xml as xml;
