//! The control layer: what operators do to a running server.
//!
//! - [`Server`] ([`server`]): the core, the features, the certificates and the operator
//!   token, as the admin API needs them;
//! - [`admin`]: the HTTP admin API (JSON under `/api/v1`, the OpenAPI document);
//! - [`console`]: the web console under `/console/`, static files embedded in the binary;
//! - [`tenant_ops`]: creating, changing, enabling, removing tenants and reloading the
//!   config, each applied at once to sessions, rooms and components;
//! - [`plugin_files`]: plugins the config file names;
//! - [`drain`]: taking a node out of service without losing stanzas;
//! - [`health`]: `/health/live`, `/health/ready` and `/metrics`.

pub mod admin;
pub mod cluster;
pub mod console;
pub mod drain;
pub mod health;
pub mod plugin_files;
pub mod server;
pub mod tenant_ops;

pub use server::Server;

// The layers below, under the names the code uses.
use heliograph_auth::{sasl, tokens};
use heliograph_config as config;
use heliograph_metrics as metrics;
use heliograph_plugins as plugins;
use heliograph_storage as storage;
use heliograph_tenants as tenants;
use heliograph_xmpp::stanza;
