//! Who the client really is behind a reverse proxy: trusted proxy ranges, and the client
//! address and scheme taken from `Forwarded` (RFC 7239) or `X-Forwarded-For` /
//! `X-Forwarded-Proto` — believed only when the TCP peer is a trusted proxy.
//!
//! The client is the right-most address in the chain that is not itself a trusted proxy
//! (addresses further left were written by the client and can be forged).

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;

pub use heliograph_config::IpRange;
use heliograph_config::ip_range::canonical;

/// The client as the listener should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr {
    /// For logs and the sessions API: `ip:port` of a direct peer, `ip` of a forwarded one.
    pub display: String,
    /// The client's IP (for limits and the loopback check).
    pub ip: IpAddr,
    /// A trusted proxy said the client used HTTPS.
    pub forwarded_https: bool,
}

/// Resolves the client behind `peer` using the headers when `peer` is a trusted proxy.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpRange]) -> ClientAddr {
    let direct = ClientAddr {
        display: peer.to_string(),
        ip: canonical(peer.ip()),
        forwarded_https: false,
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer.ip()) {
        return direct;
    }
    let (chain, proto) = match forwarded(headers) {
        Some(f) => f,
        None => (x_forwarded_for(headers), x_forwarded_proto(headers)),
    };
    let client = chain.iter().rev().copied().find(|ip| !is_trusted(*ip));
    let forwarded_https = proto.is_some_and(|p| p.eq_ignore_ascii_case("https"));
    match client.or_else(|| chain.first().copied()) {
        Some(ip) => ClientAddr {
            display: canonical(ip).to_string(),
            ip: canonical(ip),
            forwarded_https,
        },
        None => ClientAddr {
            forwarded_https,
            ..direct
        },
    }
}

/// Parses a node of `X-Forwarded-For` or a `for=` value: `1.2.3.4`, `1.2.3.4:80`,
/// `"[2001:db8::1]:80"`, `2001:db8::1`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    header_values(headers, "x-forwarded-for")
        .filter_map(parse_node)
        .collect()
}

fn x_forwarded_proto(headers: &HeaderMap) -> Option<String> {
    header_values(headers, "x-forwarded-proto")
        .last()
        .map(|s| s.trim().to_string())
}

/// `Forwarded: for=1.2.3.4;proto=https, for=...`: the chain of `for` nodes and the `proto`
/// of the last element (the one added by the proxy next to us). `None` without the header.
fn forwarded(headers: &HeaderMap) -> Option<(Vec<IpAddr>, Option<String>)> {
    headers.get("forwarded")?;
    let mut chain = Vec::new();
    let mut proto = None;
    for element in header_values(headers, "forwarded") {
        let mut this_proto = None;
        for pair in element.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "for" => chain.extend(parse_node(v)),
                "proto" => this_proto = Some(v.trim().trim_matches('"').to_string()),
                _ => {}
            }
        }
        proto = this_proto;
    }
    Some((chain, proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ranges(list: &[&str]) -> Vec<IpRange> {
        list.iter().map(|s| IpRange::parse(s).unwrap()).collect()
    }

    #[test]
    fn ranges_parse_and_match() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.1.2.3".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one = IpRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            IpRange::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            IpRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(IpRange::parse("1.2.3.4/33").is_none());
        assert!(IpRange::parse("nope").is_none());
    }

    #[test]
    fn untrusted_peer_headers_ignored() {
        let peer: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = client_addr(peer, &h, &ranges(&["127.0.0.1"]));
        assert_eq!(c.display, "198.51.100.7:5000");
        assert!(!c.forwarded_https);
    }

    #[test]
    fn x_forwarded_for_takes_rightmost_untrusted() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = client_addr(peer, &h, &ranges(&["127.0.0.1", "10.0.0.0/8"]));
        assert_eq!(c.display, "203.0.113.9");
        assert!(c.forwarded_https);
    }

    #[test]
    fn forwarded_header_preferred() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let h = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\";proto=https",
            ),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        let c = client_addr(peer, &h, &ranges(&["127.0.0.1"]));
        assert_eq!(c.display, "2001:db8::1");
        assert!(c.forwarded_https);
    }

    #[test]
    fn trusted_peer_without_headers_is_itself() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let c = client_addr(peer, &HeaderMap::new(), &ranges(&["127.0.0.1"]));
        assert_eq!(c.display, "127.0.0.1:5000");
        assert!(c.ip.is_loopback());
    }
}
