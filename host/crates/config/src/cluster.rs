//! `[cluster]`: this node's place in a cluster of equal nodes that find each other through
//! NATS and share a PostgreSQL database. Absent, the server runs alone.

use serde::Deserialize;

use crate::{ConfigError, StorageBackend};

/// `[cluster]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// NATS server URLs (`nats://host:port`); the client picks one and fails over.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster (letters, digits, `-` and `_`: it is part
    /// of NATS subjects).
    pub node: String,
    /// Milliseconds between two heartbeats of this node.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A node not heard from for this many milliseconds is dead: its sessions are removed
    /// and messages to them go to offline storage.
    #[serde(default = "default_dead_after_ms")]
    pub dead_after_ms: u64,
    /// `host:port` where clients reach this node's client listener: the address another
    /// node's drain sends its clients to (`see-other-host`). Empty: the first client
    /// listener's bound address (right on one machine or a flat network).
    #[serde(default)]
    pub public_address: String,
    /// How long a node resuming a session of another node (XEP-0198) waits for that node
    /// to hand it over, in milliseconds; the client gets `<failed/>` after that.
    #[serde(default = "default_handoff_timeout_ms")]
    pub handoff_timeout_ms: u64,
}

fn default_handoff_timeout_ms() -> u64 {
    5000
}

fn default_heartbeat_ms() -> u64 {
    500
}

fn default_dead_after_ms() -> u64 {
    3000
}

impl ClusterSettings {
    /// Checks the section against the rest of the configuration.
    pub fn validate(&self, backend: StorageBackend) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("cluster: {m}")));
        if self.nats.is_empty() {
            return invalid("nats needs at least one URL");
        }
        if self.node.is_empty()
            || !self
                .node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid("node must be letters, digits, '-' and '_'");
        }
        if backend != StorageBackend::Postgres {
            return invalid("a cluster needs storage.backend = \"postgres\" (shared data)");
        }
        if self.heartbeat_ms == 0 || self.dead_after_ms <= 2 * self.heartbeat_ms {
            return invalid("dead_after_ms must be more than twice heartbeat_ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const PG: &str = "[storage]\nbackend = \"postgres\"\nurl = \"host=/tmp dbname=x\"\n";

    #[test]
    fn cluster_section_parses_and_needs_postgres() {
        let ok = format!("{PG}[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\nnode = \"n1\"\n");
        let cfg = Config::from_toml(&ok, std::path::Path::new("t")).unwrap();
        let c = cfg.cluster.unwrap();
        assert_eq!((c.node.as_str(), c.heartbeat_ms), ("n1", 500));
        for bad in [
            "[cluster]\nnats = [\"nats://a\"]\nnode = \"n1\"\n".to_string(),
            format!("{PG}[cluster]\nnats = []\nnode = \"n1\"\n"),
            format!("{PG}[cluster]\nnats = [\"nats://a\"]\nnode = \"a.b\"\n"),
            format!("{PG}[cluster]\nnats = [\"nats://a\"]\nnode = \"n\"\nheartbeat_ms = 2000\n"),
        ] {
            assert!(
                Config::from_toml(&bad, std::path::Path::new("t")).is_err(),
                "{bad}"
            );
        }
    }
}
