//! Cluster mode: equal nodes that find each other through NATS and share one PostgreSQL
//! database.
//!
//! - [`wire`]: the subjects and messages;
//! - [`local`]: this node's sessions as the others replicate them (numbered events, the
//!   digest of heartbeats);
//! - [`peers`]: the other nodes — liveness from heartbeats, and a replica of each one's
//!   sessions kept in the core's router, so routing never waits on the network;
//! - [`components`]: external components connected to any node, their domains routed
//!   to that node from all the others;
//! - [`placement`]: rendezvous hashing of MUC rooms over the live nodes, and the
//!   forwarding of their stanzas to the node hosting them;
//! - [`queries`]: admin queries one node's admin API asks another (the rooms it hosts);
//! - [`bosh`]: BOSH requests for another node's session relayed to that node;
//! - [`handoff`]: stream management resumption on another node — the session moves to
//!   the node its client resumed on ([`arriving`]: what reaches that node for it meanwhile;
//!   [`moved_receipts`]: the receipts of its stanzas kept until the client has them);
//! - [`inflight`]: messages sent to another node kept until it says the client has
//!   them, routed again if it dies (or gives them back) first;
//! - [`delivery`]: the receiving side — messages from other nodes handed to sessions
//!   with a receipt, and the outcome told to their sender;
//! - [`outbox`]: the one publisher (order per sender-recipient pair) and the remote
//!   sessions' way out; [`readers`]: which nodes read the newer frames (compact stanzas,
//!   moved receipts);
//! - [`node`]: the tasks that tie them to a NATS connection.
//!
//! A stanza for a session of another node crosses NATS once, to that node's subject, and
//! is queued there for the session; presence broadcasts, roster pushes, carbons and
//! kicks reach remote sessions the same way, as they go through the router's entries.

pub mod arriving;
pub mod bosh;
pub mod components;
pub mod delivery;
pub mod handoff;
pub mod inflight;
pub mod local;
pub mod moved_receipts;
pub mod node;
pub mod outbox;
pub mod peers;
pub mod placement;
pub mod queries;
pub mod readers;
pub mod wire;

use heliograph_config as config;
use heliograph_core as core;
use heliograph_xml as xml;
use heliograph_xmpp as xmpp;

pub use node::{Cluster, ClusterError, ClusterStatus, NodeStatus};
