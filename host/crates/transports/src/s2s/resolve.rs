//! Where a remote domain's server listens (RFC 6120 §3.2, XEP-0368): the static host map
//! of `[s2s.hosts]` first; else DNS SRV records `_xmpps-server._tcp.DOMAIN` (direct TLS)
//! and `_xmpp-server._tcp.DOMAIN` (STARTTLS), merged in priority order with RFC 2782's
//! weighted random order within a priority, each target's A/AAAA records in turn; a
//! single "." target means the domain offers no s2s service; without any SRV record,
//! the domain's own A/AAAA records on the fallback port (5269). Lookups go to the name
//! servers of `[s2s] resolver`, or the system's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use heliograph_config::S2sConfig;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use rand::Rng;

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
    #[error("{domain}: DNS lookup failed ({message})")]
    Dns { domain: String, message: String },
    #[error("{domain}: the SRV records say there is no XMPP server (\".\" target)")]
    NoService { domain: String },
    #[error("{domain}: no SRV target or A/AAAA record gave an address")]
    NoAddress { domain: String },
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host name (without the trailing dot).
    pub host: String,
    pub direct_tls: bool,
}

/// The DNS resolver of the s2s service, rebuilt when `[s2s] resolver` changes.
#[derive(Default)]
pub struct Dns {
    cached: Mutex<Option<(Option<SocketAddr>, TokioResolver)>>,
}

impl Dns {
    /// The resolver for the configured name server (`None`: the system's).
    fn resolver(&self, server: Option<SocketAddr>) -> Result<TokioResolver, ResolveError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, r)) = cached.as_ref()
            && *key == server
        {
            return Ok(r.clone());
        }
        let mut builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => {
                TokioResolver::builder_tokio().map_err(|e| ResolveError::Setup(e.to_string()))?
            }
        };
        builder.options_mut().timeout = Duration::from_secs(3);
        builder.options_mut().attempts = 2;
        let r = builder
            .build()
            .map_err(|e| ResolveError::Setup(e.to_string()))?;
        *cached = Some((server, r.clone()));
        Ok(r)
    }

    /// The addresses of `domain`'s server, best first (see the module docs).
    pub async fn targets(
        &self,
        config: &S2sConfig,
        domain: &str,
    ) -> Result<Vec<Target>, ResolveError> {
        if let Some(value) = config.hosts.get(domain) {
            return static_targets(domain, value).await;
        }
        let resolver = self.resolver(config.resolver)?;
        let (secure, plain) = tokio::join!(
            srv(&resolver, domain, "_xmpps-server", true),
            srv(&resolver, domain, "_xmpp-server", false),
        );
        let (secure, plain) = (secure?, plain?);
        let records: Vec<SrvTarget> = secure
            .iter()
            .chain(plain.iter())
            .flatten()
            .cloned()
            .collect();
        let said_none = |r: &Option<Vec<SrvTarget>>| r.as_ref().is_some_and(|v| v.is_empty());
        if records.is_empty() {
            if said_none(&secure) || said_none(&plain) {
                return Err(ResolveError::NoService {
                    domain: domain.into(),
                });
            }
            // No SRV record at all: the domain itself (RFC 6120 §3.2.2).
            let addrs = lookup_ip(&resolver, domain).await?;
            return nonempty(
                domain,
                addrs
                    .into_iter()
                    .map(|ip| Target {
                        addr: SocketAddr::new(ip, config.fallback_port),
                        direct_tls: false,
                    })
                    .collect(),
            );
        }
        // The thread-local generator is not held across the lookups below.
        let ordered = order(records, &mut rand::rng());
        let mut out = Vec::new();
        for t in ordered {
            // A target that does not resolve is skipped; the next one may.
            match lookup_ip(&resolver, &t.host).await {
                Ok(addrs) => out.extend(addrs.into_iter().map(|ip| Target {
                    addr: SocketAddr::new(ip, t.port),
                    direct_tls: t.direct_tls,
                })),
                Err(e) => {
                    tracing::debug!(domain, target = %t.host, error = %e, "SRV target does not resolve")
                }
            }
        }
        nonempty(domain, out)
    }
}

fn nonempty(domain: &str, targets: Vec<Target>) -> Result<Vec<Target>, ResolveError> {
    if targets.is_empty() {
        Err(ResolveError::NoAddress {
            domain: domain.into(),
        })
    } else {
        Ok(targets)
    }
}

/// A static `[s2s.hosts]` entry: `HOST:PORT`, or `tls://HOST:PORT` for direct TLS.
async fn static_targets(domain: &str, value: &str) -> Result<Vec<Target>, ResolveError> {
    let (value, direct_tls) = match value.strip_prefix("tls://") {
        Some(rest) => (rest, true),
        None => (value, false),
    };
    if !value.contains(':') {
        return Err(ResolveError::BadStaticEntry {
            domain: domain.into(),
            value: value.into(),
        });
    }
    let addrs = tokio::net::lookup_host(value)
        .await
        .map_err(|source| ResolveError::Lookup {
            domain: domain.into(),
            source,
        })?;
    Ok(addrs.map(|addr| Target { addr, direct_tls }).collect())
}

/// The SRV records of `service` for `domain`: `None` if there are none, `Some(empty)` if
/// the only one is the "." target (RFC 2782: the service is decidedly not available).
async fn srv(
    resolver: &TokioResolver,
    domain: &str,
    service: &str,
    direct_tls: bool,
) -> Result<Option<Vec<SrvTarget>>, ResolveError> {
    let name = format!("{service}._tcp.{domain}.");
    let lookup = match resolver.srv_lookup(name.as_str()).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(None),
        Err(e) => {
            return Err(ResolveError::Dns {
                domain: domain.into(),
                message: e.to_string(),
            });
        }
    };
    let records: Vec<SrvTarget> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(SrvTarget {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                host: s.target.to_ascii().trim_end_matches('.').to_string(),
                direct_tls,
            }),
            _ => None,
        })
        .collect();
    if records.is_empty() {
        return Ok(None);
    }
    if records.len() == 1 && records[0].host.is_empty() {
        return Ok(Some(Vec::new()));
    }
    Ok(Some(
        records.into_iter().filter(|r| !r.host.is_empty()).collect(),
    ))
}

async fn lookup_ip(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
    let name = if host.parse::<IpAddr>().is_ok() {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let found = resolver
        .lookup_ip(name.as_str())
        .await
        .map_err(|e| ResolveError::Dns {
            domain: host.into(),
            message: e.to_string(),
        })?;
    Ok(found.iter().collect())
}

/// SRV records in the order to try them (RFC 2782): lowest priority first; within a
/// priority, a weighted random order (weight 0 has a small chance of coming first).
pub fn order(mut records: Vec<SrvTarget>, rng: &mut impl Rng) -> Vec<SrvTarget> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .position(|r| r.priority != priority)
            .unwrap_or(records.len());
        let mut group: Vec<SrvTarget> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.random_range(0..=total);
            let mut running = 0u32;
            let index = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(index));
        }
    }
    out
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
        let dns = Dns::default();
        let t = dns.targets(&config, "example.net").await.unwrap();
        assert_eq!(t[0].addr, "127.0.0.1:5999".parse().unwrap());
        assert!(!t[0].direct_tls);
        let t = dns.targets(&config, "direct.example").await.unwrap();
        assert!(t[0].direct_tls);
        assert!(matches!(
            dns.targets(&config, "bad.example").await,
            Err(ResolveError::BadStaticEntry { .. })
        ));
    }

    fn rec(priority: u16, weight: u16, host: &str) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            port: 5269,
            host: host.into(),
            direct_tls: false,
        }
    }

    #[test]
    fn lower_priorities_always_come_first() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let o = order(
                vec![
                    rec(20, 5, "c"),
                    rec(10, 1, "a"),
                    rec(10, 100, "b"),
                    rec(30, 0, "d"),
                ],
                &mut rng,
            );
            let priorities: Vec<u16> = o.iter().map(|r| r.priority).collect();
            assert_eq!(priorities, vec![10, 10, 20, 30]);
        }
    }

    #[test]
    fn weights_share_the_first_place_in_proportion() {
        let mut rng = rand::rng();
        let trials = 4000;
        let heavy_first = (0..trials)
            .filter(|_| {
                order(vec![rec(10, 1, "light"), rec(10, 9, "heavy")], &mut rng)[0].host == "heavy"
            })
            .count();
        // RFC 2782 draws from 0..=sum, so the heavy one comes first 9 times in 11
        // (82 %); the band is wide enough that a correct order never misses it.
        let share = heavy_first as f64 / trials as f64;
        assert!((0.77..0.87).contains(&share), "heavy first {share}");
    }
}
