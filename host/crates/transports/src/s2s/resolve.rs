//! Where a remote domain's server listens: the static host map of `[s2s.hosts]` first,
//! then the domain itself on the default port 5269 (A/AAAA through the system resolver).

use std::net::SocketAddr;

use heliograph_config::S2sConfig;

/// The default s2s port (RFC 6120 §3.2.2 fallback when there is no SRV record).
pub const DEFAULT_PORT: u16 = 5269;

/// One address to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
}

/// Why a domain has no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{domain}: the static host entry {value:?} is not HOST:PORT")]
    BadStaticEntry { domain: String, value: String },
    #[error("{domain}: no address ({source})")]
    Lookup {
        domain: String,
        source: std::io::Error,
    },
}

/// The addresses of `domain`'s server, best first.
pub async fn targets(config: &S2sConfig, domain: &str) -> Result<Vec<Target>, ResolveError> {
    let (host, direct_tls) = match config.hosts.get(domain) {
        Some(value) => {
            let (value, direct) = match value.strip_prefix("tls://") {
                Some(rest) => (rest, true),
                None => (value.as_str(), false),
            };
            if !value.contains(':') {
                return Err(ResolveError::BadStaticEntry {
                    domain: domain.into(),
                    value: value.into(),
                });
            }
            (value.to_string(), direct)
        }
        None => (format!("{domain}:{DEFAULT_PORT}"), false),
    };
    let addrs = tokio::net::lookup_host(host.as_str())
        .await
        .map_err(|source| ResolveError::Lookup {
            domain: domain.into(),
            source,
        })?;
    Ok(addrs.map(|addr| Target { addr, direct_tls }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_entries_win_and_are_checked() {
        let mut config = S2sConfig::default();
        config
            .hosts
            .insert("example.net".into(), "127.0.0.1:5999".into());
        config
            .hosts
            .insert("direct.example".into(), "tls://127.0.0.1:5998".into());
        config.hosts.insert("bad.example".into(), "nowhere".into());
        let t = targets(&config, "example.net").await.unwrap();
        assert_eq!(t[0].addr, "127.0.0.1:5999".parse().unwrap());
        assert!(!t[0].direct_tls);
        let t = targets(&config, "direct.example").await.unwrap();
        assert!(t[0].direct_tls);
        assert!(matches!(
            targets(&config, "bad.example").await,
            Err(ResolveError::BadStaticEntry { .. })
        ));
    }
}
