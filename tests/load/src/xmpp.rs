//! A lean XMPP client for load: connect (optionally from a chosen 127.0.0.x source
//! address), STARTTLS or direct TLS, SASL PLAIN or SCRAM-SHA-256 (the server crate's own
//! client), resource binding and initial presence. Negotiation uses the server's stream
//! parser; after login the caller owns the raw connection.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use heliograph::sasl::ScramHash;
use heliograph::sasl::client::{ClientChannelBinding, ScramClient, plain_initial_response};
use heliograph::xml::{Element, ParserLimits, StreamEvent, StreamParser, ns};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How the client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Plain TCP, no TLS (needs `require_tls = false` on the STARTTLS listener).
    Plain,
    /// TCP upgraded with STARTTLS.
    Starttls,
    /// TLS from the first byte (XEP-0368 listener).
    Tls,
    /// BOSH (XEP-0124/0206) at `/http-bind` on the HTTP listener.
    Bosh,
    /// XMPP over WebSocket (RFC 7395) at `/xmpp-websocket` on the HTTP listener.
    Websocket,
}

impl TransportKind {
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Plain => "plain",
            TransportKind::Starttls => "starttls",
            TransportKind::Tls => "tls",
            TransportKind::Bosh => "bosh",
            TransportKind::Websocket => "websocket",
        }
    }
}

/// SASL mechanism used by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Mech {
    #[value(name = "plain")]
    #[serde(rename = "PLAIN")]
    Plain,
    #[value(name = "scram-sha-256")]
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// PLAIN with a JWT as the password (the tenant must have `jwt` settings; the job's
    /// `jwt_secret` signs the tokens).
    #[value(name = "jwt")]
    #[serde(rename = "JWT")]
    Jwt,
    /// PLAIN with a server-issued access token as the password (the tenant must have
    /// `tokens`; one token per account is minted through the admin API before the run).
    #[value(name = "token")]
    #[serde(rename = "TOKEN")]
    Token,
    /// XEP-0484 FAST: SASL2 with `HT-SHA-256-NONE` and an inline Bind 2 (TLS only; one
    /// token per account is requested before the run with a SASL2 PLAIN login).
    #[value(name = "fast")]
    #[serde(rename = "FAST")]
    Fast,
}

impl Mech {
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::ScramSha256 => "SCRAM-SHA-256",
            Mech::Jwt => "JWT",
            Mech::Token => "TOKEN",
            Mech::Fast => "FAST",
        }
    }
}

/// A client connection, plain or TLS, or the byte pipe to a BOSH/WebSocket bridge task.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Web(tokio::io::DuplexStream),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Web(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Web(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Web(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Web(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Source address number `i` of `count` in 127.0.0.1 ..= 127.0.0.count, so that many
/// connections to one server port do not exhaust one source address's ephemeral ports.
pub fn source_ip(i: usize, count: usize) -> IpAddr {
    let count = count.clamp(1, 250);
    IpAddr::from([127, 0, 0, 1 + (i % count) as u8])
}

/// TCP connect from `source` (port chosen by the kernel) to `addr`.
pub async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let s = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Accepts any server certificate: load tests run against self-signed certificates.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connector that trusts any certificate (ring provider), offering the cipher
/// suites in the order browsers and Android's TLS stack do: AES-128-GCM first (rustls's
/// own default puts AES-256-GCM with SHA-384 first, which no common client does and which
/// makes the server's handshake hash SHA-384).
pub fn tls_connector() -> TlsConnector {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| suite_rank(s.suite()));
    let provider = Arc::new(provider);
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Where a client like Chrome, Firefox or Android's Conscrypt puts a suite: TLS 1.3 before
/// TLS 1.2, and within each AES-128-GCM, then AES-256-GCM, then ChaCha20 (a stable sort
/// keeps the provider's order otherwise).
fn suite_rank(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384 => 1,
        S::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        _ => 3,
    }
}

/// Where and how to log in.
#[derive(Clone)]
pub struct LoginSpec {
    /// STARTTLS listener (used for plain and STARTTLS).
    pub starttls_addr: SocketAddr,
    /// Direct TLS listener.
    pub direct_addr: SocketAddr,
    /// Plain-HTTP listener (BOSH and WebSocket).
    pub http_addr: Option<SocketAddr>,
    pub domain: String,
    pub transport: TransportKind,
    pub mech: Mech,
    pub tls: TlsConnector,
}

/// A logged-in session: bound, initial presence sent.
pub struct Session {
    pub io: Io,
    pub parser: StreamParser,
    pub full_jid: String,
    /// Stream management, once enabled.
    pub sm: Option<SmState>,
}

/// A session's stream management: its resumption id and the stanzas it handled.
#[derive(Debug, Clone)]
pub struct SmState {
    pub id: String,
    pub h: u32,
}

fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{domain}' version='1.0'>",
        ns::CLIENT,
        ns::STREAM
    )
}

/// Reads until the parser yields an event.
async fn next_event(io: &mut Io, parser: &mut StreamParser) -> anyhow::Result<StreamEvent> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(ev) = parser.next_event()? {
            return Ok(ev);
        }
        let n = io.read(&mut buf).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        parser.feed(&buf[..n])?;
    }
}

/// Reads the next stanza (skipping a stream header), failing on stream close or error.
pub async fn next_stanza(io: &mut Io, parser: &mut StreamParser) -> anyhow::Result<Element> {
    loop {
        match next_event(io, parser).await? {
            StreamEvent::Open(_) => continue,
            StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => {
                bail!("stream error: {}", el.to_string_in(ns::CLIENT))
            }
            StreamEvent::Stanza(el) => return Ok(el),
            StreamEvent::Close => bail!("stream closed by the server"),
        }
    }
}

/// Opens a (new) stream and returns the features.
async fn open_stream(
    io: &mut Io,
    parser: &mut StreamParser,
    domain: &str,
) -> anyhow::Result<Element> {
    parser.reset();
    io.write_all(stream_header(domain).as_bytes()).await?;
    let features = next_stanza(io, parser).await?;
    if !features.is("features", ns::STREAM) {
        bail!("expected stream features, got <{}>", features.name());
    }
    Ok(features)
}

fn limits() -> ParserLimits {
    ParserLimits::default()
}

/// Full login: connect, TLS as asked, SASL, bind `resource`, initial presence.
pub async fn login(
    spec: &LoginSpec,
    source: Option<IpAddr>,
    user: &str,
    password: &str,
    resource: &str,
) -> anyhow::Result<Session> {
    if matches!(
        spec.transport,
        TransportKind::Bosh | TransportKind::Websocket
    ) {
        return crate::web::login(spec, source, user, password, resource).await;
    }
    let (mut io, parser, full_jid) = if spec.mech == Mech::Fast {
        crate::fast::authenticate(spec, source, user, password, resource).await?
    } else {
        let (mut io, mut parser) = authenticated(spec, source, user, password).await?;
        let full_jid = bind(&mut io, &mut parser, resource).await?;
        (io, parser, full_jid)
    };
    io.write_all(b"<presence/>").await?;
    Ok(Session {
        io,
        parser,
        full_jid,
        sm: None,
    })
}

/// Binds `resource` on an authenticated stream; returns the full JID.
pub async fn bind(
    io: &mut Io,
    parser: &mut StreamParser,
    resource: &str,
) -> anyhow::Result<String> {
    io.write_all(
        format!(
            "<iq type='set' id='bind'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>",
            ns::BIND
        )
        .as_bytes(),
    )
    .await?;
    let result = next_stanza(io, parser).await?;
    if result.attr("type") != Some("result") {
        bail!("bind failed: {}", result.to_string_in(ns::CLIENT));
    }
    result
        .child("bind", ns::BIND)
        .and_then(|b| b.child_text("jid", ns::BIND))
        .context("bind result without a JID")
}

/// Connects over TCP (TLS as asked), authenticates and opens the authenticated stream:
/// ready for bind or a stream management `<resume/>`.
pub async fn authenticated(
    spec: &LoginSpec,
    source: Option<IpAddr>,
    user: &str,
    password: &str,
) -> anyhow::Result<(Io, StreamParser)> {
    let (mut io, mut parser) = connected(spec, source).await?;
    authenticate(&mut io, &mut parser, spec.mech, user, password).await?;
    open_stream(&mut io, &mut parser, &spec.domain).await?;
    Ok((io, parser))
}

/// Connects over TCP, TLS as asked (STARTTLS negotiated), and reads the stream features
/// offered before authentication.
pub async fn connected(
    spec: &LoginSpec,
    source: Option<IpAddr>,
) -> anyhow::Result<(Io, StreamParser)> {
    let server_name = ServerName::try_from(spec.domain.clone()).map_err(|e| anyhow!("{e}"))?;
    let mut io = match spec.transport {
        TransportKind::Plain | TransportKind::Starttls => {
            Io::Plain(connect_tcp(spec.starttls_addr, source).await?)
        }
        TransportKind::Tls => {
            let tcp = connect_tcp(spec.direct_addr, source).await?;
            Io::Tls(Box::new(spec.tls.connect(server_name.clone(), tcp).await?))
        }
        TransportKind::Bosh | TransportKind::Websocket => {
            bail!(
                "{} has no raw stream to authenticate on",
                spec.transport.name()
            )
        }
    };
    let mut parser = StreamParser::new(limits());
    open_stream(&mut io, &mut parser, &spec.domain).await?;
    if spec.transport == TransportKind::Starttls {
        io.write_all(format!("<starttls xmlns='{}'/>", ns::TLS).as_bytes())
            .await?;
        let answer = next_stanza(&mut io, &mut parser).await?;
        if !answer.is("proceed", ns::TLS) {
            bail!("STARTTLS refused: <{}>", answer.name());
        }
        let Io::Plain(tcp) = io else { unreachable!() };
        io = Io::Tls(Box::new(spec.tls.connect(server_name, tcp).await?));
        open_stream(&mut io, &mut parser, &spec.domain).await?;
    }
    Ok((io, parser))
}

/// Enables resumable stream management on a bound session; returns the resumption id.
pub async fn enable_sm(s: &mut Session) -> anyhow::Result<String> {
    s.io.write_all(crate::sm::enable_resumable().as_bytes())
        .await?;
    loop {
        let el = next_stanza(&mut s.io, &mut s.parser).await?;
        if el.ns() != crate::sm::NS {
            continue;
        }
        match el.name() {
            "enabled" => {
                let id = el
                    .attr("id")
                    .context("<enabled/> without an id")?
                    .to_string();
                // Stanzas that came with the `<enabled/>` are counted (the self-presence
                // of the initial presence often does): whoever reads the connection next
                // starts after them.
                let mut h = 0u32;
                while let Some(ev) = s.parser.next_event()? {
                    if let StreamEvent::Stanza(el) = ev
                        && el.ns() == ns::CLIENT
                        && crate::sm::is_stanza(el.name().as_bytes())
                    {
                        h = h.wrapping_add(1);
                    }
                }
                s.sm = Some(SmState { id: id.clone(), h });
                return Ok(id);
            }
            "failed" => bail!("stream management refused: {}", el.to_string_in(ns::CLIENT)),
            _ => {}
        }
    }
}

/// Resumes session `previd` on a new connection (XEP-0198 §5); returns the connection
/// once `<resumed/>` came, and the server's `h`.
pub async fn resume(
    spec: &LoginSpec,
    source: Option<IpAddr>,
    user: &str,
    password: &str,
    previd: &str,
    h: u32,
) -> anyhow::Result<(Io, u32)> {
    let (io, _, server_h) = resume_stream(spec, source, user, password, previd, h).await?;
    Ok((io, server_h))
}

/// [`resume`], also returning the parser: it may already hold the stanzas the server
/// retransmitted right after `<resumed/>`.
pub async fn resume_stream(
    spec: &LoginSpec,
    source: Option<IpAddr>,
    user: &str,
    password: &str,
    previd: &str,
    h: u32,
) -> anyhow::Result<(Io, StreamParser, u32)> {
    let (mut io, mut parser) = authenticated(spec, source, user, password).await?;
    io.write_all(crate::sm::resume(previd, h).as_bytes())
        .await?;
    loop {
        let el = next_stanza(&mut io, &mut parser).await?;
        if el.ns() != crate::sm::NS {
            continue;
        }
        match el.name() {
            "resumed" => {
                let server_h = el.attr("h").and_then(|h| h.parse().ok()).unwrap_or(0);
                return Ok((io, parser, server_h));
            }
            "failed" => bail!("resumption failed: {}", el.to_string_in(ns::CLIENT)),
            _ => {}
        }
    }
}

fn sasl_element(name: &str, mech: Option<&str>, data: &[u8]) -> String {
    let payload = if data.is_empty() {
        "=".to_string()
    } else {
        B64.encode(data)
    };
    match mech {
        Some(m) => format!(
            "<{name} xmlns='{}' mechanism='{m}'>{payload}</{name}>",
            ns::SASL
        ),
        None => format!("<{name} xmlns='{}'>{payload}</{name}>", ns::SASL),
    }
}

fn sasl_data(el: &Element) -> anyhow::Result<Vec<u8>> {
    let text = el.text();
    let t = text.trim();
    if t.is_empty() || t == "=" {
        return Ok(Vec::new());
    }
    Ok(B64.decode(t)?)
}

async fn authenticate(
    io: &mut Io,
    parser: &mut StreamParser,
    mech: Mech,
    user: &str,
    password: &str,
) -> anyhow::Result<()> {
    match mech {
        Mech::Fast => bail!("FAST logins go through SASL2 (crate::fast)"),
        Mech::Plain | Mech::Jwt | Mech::Token => {
            let data = plain_initial_response(None, user, password);
            io.write_all(sasl_element("auth", Some("PLAIN"), &data).as_bytes())
                .await?;
            let answer = next_stanza(io, parser).await?;
            if !answer.is("success", ns::SASL) {
                bail!("PLAIN failed: {}", answer.to_string_in(ns::CLIENT));
            }
        }
        Mech::ScramSha256 => {
            let mut client = ScramClient::new(
                ScramHash::Sha256,
                user,
                password,
                ClientChannelBinding::Unsupported,
            )?;
            let first = client.client_first();
            io.write_all(sasl_element("auth", Some("SCRAM-SHA-256"), first.as_bytes()).as_bytes())
                .await?;
            let challenge = next_stanza(io, parser).await?;
            if !challenge.is("challenge", ns::SASL) {
                bail!("SCRAM failed: {}", challenge.to_string_in(ns::CLIENT));
            }
            let server_first = String::from_utf8(sasl_data(&challenge)?)?;
            let last = client.handle_server_first(&server_first)?;
            io.write_all(sasl_element("response", None, last.as_bytes()).as_bytes())
                .await?;
            let answer = next_stanza(io, parser).await?;
            if !answer.is("success", ns::SASL) {
                bail!("SCRAM failed: {}", answer.to_string_in(ns::CLIENT));
            }
            let server_final = String::from_utf8(sasl_data(&answer)?)?;
            client.handle_server_final(&server_final)?;
        }
    }
    Ok(())
}

/// Keeps an idle session alive: answers keepalive pings until the connection ends or
/// `stop` fires, then closes the stream.
pub async fn hold_idle(mut s: Session, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut buf = vec![0u8; 1024];
    loop {
        tokio::select! {
            r = s.io.read(&mut buf) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                if s.parser.feed(&buf[..n]).is_err() { return; }
                while let Ok(Some(ev)) = s.parser.next_event() {
                    let StreamEvent::Stanza(el) = ev else { continue };
                    if let Some(sm) = s.sm.as_mut() {
                        if crate::sm::is_stanza(el.name().as_bytes()) {
                            sm.h = sm.h.wrapping_add(1);
                        } else if el.ns() == crate::sm::NS && el.name() == "r" {
                            let ack = crate::sm::ack(sm.h);
                            if s.io.write_all(ack.as_bytes()).await.is_err() { return; }
                        }
                    }
                    if el.name() == "iq" && el.attr("type") == Some("get")
                        && el.has_child("ping", ns::PING)
                    {
                        let reply = Element::new("iq", ns::CLIENT)
                            .with_attr("type", "result")
                            .with_attr("id", el.attr("id").unwrap_or(""))
                            .to_string_in(ns::CLIENT);
                        if s.io.write_all(reply.as_bytes()).await.is_err() { return; }
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    let _ = s.io.write_all(b"</stream:stream>").await;
    let _ = s.io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_over_loopback() {
        assert_eq!(source_ip(0, 50), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(source_ip(49, 50), IpAddr::from([127, 0, 0, 50]));
        assert_eq!(source_ip(50, 50), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(source_ip(7, 0), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn the_client_offers_aes_128_gcm_first_as_browsers_do() {
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|s| suite_rank(s.suite()));
        let order: Vec<_> = provider.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(order[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(order[1], rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
        assert_eq!(
            order.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }

    #[test]
    fn sasl_elements() {
        assert_eq!(
            sasl_element("auth", Some("PLAIN"), b"\0u\0p"),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHUAcA==</auth>"
        );
        assert_eq!(
            sasl_element("response", None, b""),
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</response>"
        );
    }
}
