//! Federation settings: the server-wide `[s2s]` section (on/off, the dialback secret,
//! the static host map, timeouts and limits) and the `[[listen.s2s]]` listeners. Which
//! tenants federate, and with whom, is each tenant's `[tenants.NAME.s2s]`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::TlsMode;

/// `[s2s]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Bind the `[[listen.s2s]]` listeners and route to other servers.
    pub enabled: bool,
    /// The secret dialback keys are derived from (XEP-0185); generated into the data dir
    /// when absent.
    pub dialback_secret: Option<String>,
    /// Remote domains reached at a fixed address instead of through DNS
    /// (`"example.net" = "127.0.0.1:5269"`).
    pub hosts: BTreeMap<String, String>,
    /// PEM file of the certificate authorities peers' certificates are verified against
    /// (SASL EXTERNAL, `require_valid_certs`); none: the system's authorities.
    pub ca_file: Option<PathBuf>,
    /// Seconds to connect, negotiate and authenticate an outgoing stream.
    pub connect_timeout: u64,
    /// Seconds an incoming stream may take to authenticate.
    pub negotiation_timeout: u64,
    /// Seconds without traffic before an outgoing stream is closed.
    pub idle_timeout: u64,
    /// Stanzas held per remote domain while its connection comes up.
    pub queue_limit: usize,
    /// Largest stanza accepted from a peer, in bytes.
    pub max_stanza_size: usize,
    /// Incoming connections at once from one remote domain (0 = no limit).
    pub max_connections_per_domain: usize,
    /// The DNS server SRV and A/AAAA lookups go to (`"127.0.0.1:5353"`); none: the
    /// system's resolver configuration.
    pub resolver: Option<SocketAddr>,
    /// The port of a domain without SRV records (RFC 6120 §3.2.2: 5269).
    pub fallback_port: u16,
    /// Seconds one TCP connection attempt may take before the next address is tried
    /// (`connect_timeout` bounds them all).
    pub attempt_timeout: u64,
    /// Stanzas per second accepted from one remote domain over all its incoming streams
    /// (0 = no limit). A faster peer is slowed down (its streams are not read), not cut off.
    pub rate: u32,
    /// Stanzas a remote domain may send at once above `rate` (0 = twice `rate`).
    pub burst: u32,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            enabled: false,
            dialback_secret: None,
            hosts: BTreeMap::new(),
            ca_file: None,
            connect_timeout: 15,
            negotiation_timeout: 30,
            idle_timeout: 600,
            queue_limit: 1000,
            max_stanza_size: 256 * 1024,
            max_connections_per_domain: 8,
            resolver: None,
            fallback_port: 5269,
            attempt_timeout: 5,
            rate: 0,
            burst: 0,
        }
    }
}

/// `[[listen.s2s]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S2sListener {
    pub address: SocketAddr,
    /// STARTTLS (RFC 6120) or TLS from the first byte (XEP-0368).
    pub tls: TlsMode,
    /// Refuse stanzas and dialback before TLS.
    pub require_tls: bool,
}

impl Default for S2sListener {
    fn default() -> Self {
        S2sListener {
            address: "0.0.0.0:5269".parse().unwrap(),
            tls: TlsMode::Starttls,
            require_tls: true,
        }
    }
}

/// The default listeners: 5269 with STARTTLS and 5270 with direct TLS.
pub fn default_listeners() -> Vec<S2sListener> {
    vec![
        S2sListener::default(),
        S2sListener {
            address: "0.0.0.0:5270".parse().unwrap(),
            tls: TlsMode::Direct,
            ..S2sListener::default()
        },
    ]
}
