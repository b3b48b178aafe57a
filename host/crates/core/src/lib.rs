//! The core layer: sessions, routing and the hook registry.
//!
//! - [`context::Core`]: the state the core owns (config, storage, tenants, routing
//!   table, hooks, plugin host, limits);
//! - [`session`]: one task per stream ([`session::Driver`]) over a transport's
//!   [`session::Link`], and the client stream's negotiation ([`session::StreamCore`]);
//! - [`router`]: the routing table, hosted domains and route lookup;
//! - [`pipeline`]: the steps every stanza passes, whoever sends it;
//! - [`hooks`]: how features (in the services layer, or anyone's) plug in;
//! - [`limits`], [`drain`], [`shutdown`]: connection limits, the drain flag and the
//!   shutdown signal shared with the transports;
//! - [`backlog`]: writes queued behind the message path, bounded;
//! - [`bosh_relay`]: BOSH requests relayed to the cluster node holding their session.
//!
//! Nothing here knows a transport or a particular feature.

pub mod backlog;
pub mod bosh_relay;
pub mod context;
pub mod derivations;
pub mod drain;
pub mod federation;
pub mod hooks;
pub mod limits;
pub mod pipeline;
pub mod registration;
pub mod rescues;
pub mod router;
pub mod session;
pub mod shutdown;
pub mod upload_reservations;

// The layers below, under the names the code uses.
use heliograph_auth::{sasl, tokens};
use heliograph_config as config;
use heliograph_metrics as metrics;
use heliograph_plugins as plugins;
use heliograph_storage as storage;
use heliograph_tenants as tenants;
use heliograph_xml as xml;
use heliograph_xmpp as xmpp;
use heliograph_xmpp::stanza;

pub use context::{Core, OfflineAnnouncer, Uploads};
/// The uploaded-file store of [`Uploads`] (the HTTP listener streams files into it).
pub use heliograph_storage::files;
