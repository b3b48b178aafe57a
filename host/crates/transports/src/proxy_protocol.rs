//! PROXY protocol v1 and v2 (HAProxy's `send-proxy` / `send-proxy-v2`) on accepted
//! sockets: reads exactly the header, no byte more, so the XMPP or TLS bytes behind it
//! stay in the socket. Parsing is done by the `ppp` crate.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte signature that starts a v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header line, CRLF included (spec: 107 bytes).
const V1_MAX: usize = 107;
/// Largest v2 header we accept (16-byte prefix + addresses + TLVs).
const V2_MAX: usize = 16 + 512;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// The PROXY step of an accepted connection on a listener with `proxy_protocol` on:
/// refuses peers outside `trusted`, reads the header within `limit`, and returns the
/// address the connection is then known by (the client's, or the peer's own for a header
/// without addresses). `None`: close the connection (already logged and counted).
pub async fn accept<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    trusted: &[heliograph_config::IpRange],
    limit: std::time::Duration,
    transport: &'static str,
) -> Option<SocketAddr> {
    let refuse = |reason: &'static str| {
        metrics::counter!(
            "heliograph_connections_refused_total",
            "transport" => transport,
            "reason" => reason
        )
        .increment(1);
    };
    if !trusted.iter().any(|r| r.contains(peer.ip())) {
        tracing::info!(peer = %peer, "PROXY protocol connection from an untrusted address refused");
        refuse("untrusted_proxy");
        return None;
    }
    match tokio::time::timeout(limit, read_header(stream)).await {
        Ok(Ok(Some(client))) => {
            tracing::debug!(proxy = %peer, client = %client, "PROXY header");
            Some(client)
        }
        Ok(Ok(None)) => Some(peer),
        Ok(Err(e)) => {
            tracing::info!(peer = %peer, error = %e, "PROXY protocol header refused");
            refuse("bad_proxy_header");
            None
        }
        Err(_) => {
            refuse("bad_proxy_header");
            None
        }
    }
}

/// Reads a v1 or v2 header from `stream`. Returns the client's address, or `None` for a
/// header that carries none (v2 `LOCAL`, e.g. the proxy's health checks; v1 `UNKNOWN`).
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyError> {
    let mut buf = vec![0u8; 12];
    stream.read_exact(&mut buf).await?;
    if &buf[..] == V2_SIGNATURE {
        buf.resize(16, 0);
        stream.read_exact(&mut buf[12..16]).await?;
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if 16 + len > V2_MAX {
            return Err(ProxyError::Malformed("v2 header too long".into()));
        }
        buf.resize(16 + len, 0);
        stream.read_exact(&mut buf[16..]).await?;
        parse_v2(&buf)
    } else if buf.starts_with(b"PROXY ") {
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(ProxyError::Malformed("v1 header too long".into()));
            }
            buf.push(stream.read_u8().await?);
        }
        parse_v1(&buf)
    } else {
        Err(ProxyError::Missing)
    }
}

/// Parses a whole v1 header line (`PROXY TCP4 src dst sport dport\r\n`).
pub fn parse_v1(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let header =
        ppp::v1::Header::try_from(bytes).map_err(|e| ProxyError::Malformed(format!("{e:?}")))?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Unknown => None,
    })
}

/// Parses a whole v2 header (signature, version/command, family, length, addresses, TLVs).
pub fn parse_v2(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let header =
        ppp::v2::Header::try_from(bytes).map_err(|e| ProxyError::Malformed(format!("{e:?}")))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn v1_tcp4_and_rest_untouched() {
        let data = b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 5222\r\n<stream:stream";
        let mut r = &data[..];
        let addr = read_header(&mut r).await.unwrap();
        assert_eq!(addr, Some("192.0.2.7:51234".parse().unwrap()));
        assert_eq!(r, b"<stream:stream");
    }

    #[tokio::test]
    async fn v1_tcp6_and_unknown() {
        let mut r = &b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 5222\r\n"[..];
        assert_eq!(
            read_header(&mut r).await.unwrap(),
            Some("[2001:db8::1]:4000".parse().unwrap())
        );
        let mut r = &b"PROXY UNKNOWN\r\n"[..];
        assert_eq!(read_header(&mut r).await.unwrap(), None);
    }

    #[tokio::test]
    async fn v2_proxy_and_local() {
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "203.0.113.9:40000".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:5222".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut data = header.clone();
        data.extend_from_slice(b"<x/>");
        let mut r = &data[..];
        assert_eq!(
            read_header(&mut r).await.unwrap(),
            Some("203.0.113.9:40000".parse().unwrap())
        );
        assert_eq!(r, b"<x/>");

        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        let mut r = &local[..];
        assert_eq!(read_header(&mut r).await.unwrap(), None);
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let mut r = &b"<?xml version='1.0'?><stream:stream>"[..];
        assert!(matches!(
            read_header(&mut r).await,
            Err(ProxyError::Missing)
        ));
        let mut r = &b"PROXY TCP4 nonsense here 1 2\r\n"[..];
        assert!(matches!(
            read_header(&mut r).await,
            Err(ProxyError::Malformed(_))
        ));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        let mut r = long.as_bytes();
        assert!(matches!(
            read_header(&mut r).await,
            Err(ProxyError::Malformed(_))
        ));
    }
}
