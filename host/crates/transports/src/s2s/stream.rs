//! One s2s connection's socket and XML: plain TCP, upgraded to TLS as a server
//! (incoming, certificate by SNI) or as a client (outgoing), with the incremental parser
//! in front. Reads are cancel-safe, so a connection task can wait on the socket and on
//! its queue at once.

use std::sync::Arc;

use heliograph_xml::{Element, ParseError, ParserLimits, StreamEvent, StreamParser, ns};
use heliograph_xmpp::stream_error::StreamErrorCondition;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::TlsStore;

/// The socket, as far as it has been upgraded.
enum Io {
    Plain(TcpStream),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// During an upgrade.
    Taken,
}

/// Why reading a stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Parse(#[from] ParseError),
}

impl StreamFailure {
    /// The stream error to send for it, if one can still be sent.
    pub fn condition(&self) -> Option<StreamErrorCondition> {
        match self {
            StreamFailure::Parse(e) => Some(StreamErrorCondition::from_parse_error(e)),
            _ => None,
        }
    }
}

/// An XML stream on an s2s socket.
pub struct XmlStream {
    io: Io,
    parser: StreamParser,
    buf: Vec<u8>,
}

impl XmlStream {
    pub fn new(tcp: TcpStream, limits: ParserLimits) -> XmlStream {
        XmlStream {
            io: Io::Plain(tcp),
            parser: StreamParser::new(limits),
            buf: vec![0; 16 * 1024],
        }
    }

    /// True once TLS is up.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Server(_) | Io::Client(_))
    }

    /// The certificate chain the peer presented (outgoing TLS).
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        match &self.io {
            Io::Client(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
            Io::Server(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
            _ => None,
        }
    }

    /// The next event. Cancel-safe.
    pub async fn next(&mut self) -> Result<StreamEvent, StreamFailure> {
        loop {
            if let Some(ev) = self.parser.next_event()? {
                return Ok(ev);
            }
            let n = match &mut self.io {
                Io::Plain(s) => s.read(&mut self.buf).await?,
                Io::Server(s) => s.read(&mut self.buf).await?,
                Io::Client(s) => s.read(&mut self.buf).await?,
                Io::Taken => return Err(StreamFailure::Closed),
            };
            if n == 0 {
                return Err(StreamFailure::Closed);
            }
            self.parser.feed(&self.buf[..n])?;
        }
    }

    /// The next top-level element (a stream close or a new header is a failure here).
    pub async fn next_element(&mut self) -> Result<Element, StreamFailure> {
        match self.next().await? {
            StreamEvent::Stanza(el) => Ok(el),
            _ => Err(StreamFailure::Closed),
        }
    }

    /// Writes and flushes.
    pub async fn write(&mut self, data: &str) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => s.write_all(data.as_bytes()).await,
            Io::Server(s) => {
                s.write_all(data.as_bytes()).await?;
                s.flush().await
            }
            Io::Client(s) => {
                s.write_all(data.as_bytes()).await?;
                s.flush().await
            }
            Io::Taken => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes a stanza into the `jabber:server` stream (client-namespace stanzas are
    /// written unqualified, so they take the stream's namespace).
    pub async fn write_element(&mut self, el: &Element) -> std::io::Result<()> {
        self.write(&el.to_string_in(ns::CLIENT)).await
    }

    /// Sends a stream error and closes the stream.
    pub async fn fail(&mut self, condition: StreamErrorCondition, text: Option<&str>) {
        let el = condition.to_element(text);
        let _ = self
            .write(&format!("{}</stream:stream>", el.to_string_in(ns::SERVER)))
            .await;
        self.shutdown().await;
    }

    /// Closes the socket (after the close tag, if the caller wrote one).
    pub async fn shutdown(&mut self) {
        let _ = match &mut self.io {
            Io::Plain(s) => s.shutdown().await,
            Io::Server(s) => s.shutdown().await,
            Io::Client(s) => s.shutdown().await,
            Io::Taken => Ok(()),
        };
    }

    /// TLS as a server (STARTTLS or direct TLS), certificate chosen by SNI or `domain`;
    /// the peer is asked for its certificate (see [`super::certs`]).
    pub async fn accept_tls(
        &mut self,
        tls: &TlsStore,
        domain: Option<&str>,
    ) -> std::io::Result<()> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Taken) else {
            return Err(std::io::ErrorKind::InvalidInput.into());
        };
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let sni = start.client_hello().server_name().map(str::to_string);
        let cert = tls.choose(sni.as_deref().or(domain));
        let config =
            super::certs::server_config(cert.certified.clone()).map_err(std::io::Error::other)?;
        let stream = start.into_stream(Arc::new(config)).await?;
        self.io = Io::Server(Box::new(stream));
        self.parser.reset();
        Ok(())
    }

    /// Starts reading a new stream on the same socket (after SASL success, RFC 6120
    /// §6.4.6); nothing of the old stream may be pending.
    pub fn restart(&mut self) {
        self.parser.reset();
    }

    /// TLS as a client, with `name` as SNI.
    pub async fn connect_tls(
        &mut self,
        config: Arc<ClientConfig>,
        name: &str,
    ) -> std::io::Result<()> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Taken) else {
            return Err(std::io::ErrorKind::InvalidInput.into());
        };
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await?;
        self.io = Io::Client(Box::new(stream));
        self.parser.reset();
        Ok(())
    }
}

/// The opening tag of an s2s stream (with the dialback namespace declared).
pub fn header(from: &str, to: &str, id: Option<&str>) -> String {
    let mut attrs = vec![
        ("xmlns", ns::SERVER),
        ("xmlns:stream", ns::STREAM),
        ("xmlns:db", DIALBACK),
        ("version", "1.0"),
    ];
    if !from.is_empty() {
        attrs.push(("from", from));
    }
    if !to.is_empty() {
        attrs.push(("to", to));
    }
    if let Some(id) = id {
        attrs.push(("id", id));
    }
    format!(
        "<?xml version='1.0'?>{}",
        heliograph_xml::element::open_tag("stream:stream", &attrs)
    )
}

/// `jabber:server:dialback` (XEP-0220).
pub const DIALBACK: &str = "jabber:server:dialback";
/// The dialback stream feature (XEP-0220 §2.4.1).
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

/// Moves every `jabber:server` element of a received stanza to `jabber:client`, the
/// namespace the rest of the server works in.
pub fn to_client_ns(el: &mut Element) {
    if el.ns() == ns::SERVER {
        el.set_ns(ns::CLIENT);
    }
    for child in el.children_mut() {
        to_client_ns(child);
    }
}
