//! Test harness shared by the integration tests: starts the real `heliograph` binary on
//! ephemeral loopback ports with a temporary data dir, and a raw XMPP client that speaks
//! the wire protocol directly (plain, STARTTLS, direct TLS) using the server's own parser.

#![allow(dead_code)]

pub mod nats;
pub mod tcp_proxy;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use heliograph::sasl::{self, ScramHash};
use heliograph::storage::{Account, Storage};
use heliograph::xml::{Element, ParserLimits, StreamEvent, StreamParser, ns};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A running server process, stopped with SIGTERM on drop.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub starttls: String,
    pub direct: String,
    pub admin: String,
    /// The HTTP listener (BOSH and WebSocket), plain HTTP.
    pub http: String,
    /// The XEP-0114 component listener.
    pub component: String,
    /// The s2s listener (STARTTLS), when the config enables federation.
    pub s2s: String,
    pub token: String,
    pub log: PathBuf,
    /// The executable [`TestServer::launch`] starts: this build's, or another version's
    /// (see [`TestServer::start_as`]).
    binary: PathBuf,
}

impl TestServer {
    /// Starts a server for `localhost` with these accounts (localpart, password) and extra
    /// TOML appended to the `[general]` section.
    pub fn start(users: &[(&str, &str)], general_extra: &str) -> TestServer {
        Self::start_with(users, general_extra, "")
    }

    /// Like `start`, with extra settings for the STARTTLS listener.
    pub fn start_with(
        users: &[(&str, &str)],
        general_extra: &str,
        starttls_extra: &str,
    ) -> TestServer {
        Self::start_full(users, general_extra, starttls_extra, "")
    }

    /// Like `start`, with extra settings for the HTTP listener (BOSH and WebSocket).
    pub fn start_http(users: &[(&str, &str)], http_extra: &str) -> TestServer {
        Self::start_full(users, "", "", http_extra)
    }

    /// Every knob: extra TOML for `[general]`, the STARTTLS listener and the HTTP listener.
    pub fn start_full(
        users: &[(&str, &str)],
        general_extra: &str,
        starttls_extra: &str,
        http_extra: &str,
    ) -> TestServer {
        let dir = Self::prepare_full(users, general_extra, starttls_extra, http_extra);
        TestServer::launched_in(dir)
    }

    /// Like `start`, running `binary` (another version of the server) instead of this
    /// build's; [`TestServer::set_binary`] switches a stopped server to another.
    pub fn start_as(binary: &Path, users: &[(&str, &str)], general_extra: &str) -> TestServer {
        let dir = Self::prepare_full(users, general_extra, "", "");
        TestServer::launched_as(dir, binary.to_path_buf())
    }

    /// The next [`TestServer::launch`] starts `binary`.
    pub fn set_binary(&mut self, binary: &Path) {
        self.binary = binary.to_path_buf();
    }

    /// A directory with the accounts and the configuration of [`TestServer::start_full`].
    fn prepare_full(
        users: &[(&str, &str)],
        general_extra: &str,
        starttls_extra: &str,
        http_extra: &str,
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        {
            let storage = Storage::open_sled(&data.join("db")).unwrap();
            for (u, p) in users {
                let creds = sasl::derive_credentials(p, 4096).unwrap();
                storage
                    .users
                    .create_user(&Account::new(*u, "localhost"), &creds)
                    .unwrap();
            }
        }
        let config = format!(
            "[general]\nhosts = [\"localhost\"]\ndata_dir = \"{}\"\nlog_level = \"debug\"\n{general_extra}\n\
             [[listen.c2s]]\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\n{starttls_extra}\n\
             [[listen.c2s]]\naddress = \"127.0.0.1:0\"\ntls = \"direct\"\n\
             [[listen.http]]\naddress = \"127.0.0.1:0\"\n{http_extra}\n\
             [[listen.component]]\naddress = \"127.0.0.1:0\"\n\
             [listen.admin]\naddress = \"127.0.0.1:0\"\n",
            data.display()
        );
        let cfg_path = dir.path().join("heliograph.toml");
        std::fs::write(&cfg_path, config).unwrap();
        dir
    }

    /// Starts the server on the `heliograph.toml` already written in `dir`.
    fn launched_in(dir: tempfile::TempDir) -> TestServer {
        TestServer::launched_as(dir, PathBuf::from(env!("CARGO_BIN_EXE_heliograph")))
    }

    fn launched_as(dir: tempfile::TempDir, binary: PathBuf) -> TestServer {
        let mut server = TestServer {
            dir,
            child: None,
            starttls: String::new(),
            direct: String::new(),
            admin: String::new(),
            http: String::new(),
            component: String::new(),
            s2s: String::new(),
            token: String::new(),
            log: PathBuf::new(),
            binary,
        };
        server.launch();
        server
    }

    /// A server with its own config: `body` follows the `[general]` section's
    /// `data_dir` and `log_level` lines and must name every listener (on port 0, or a
    /// port the test picked free). `accounts` are (localpart, domain, password).
    pub fn start_config(accounts: &[(&str, &str, &str)], body: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        {
            let storage = Storage::open_sled(&data.join("db")).unwrap();
            for (u, d, p) in accounts {
                let creds = sasl::derive_credentials(p, 4096).unwrap();
                storage
                    .users
                    .create_user(&Account::new(*u, *d), &creds)
                    .unwrap();
            }
        }
        let config = format!(
            "[general]\ndata_dir = \"{}\"\nlog_level = \"debug\"\n{body}\n",
            data.display()
        );
        std::fs::write(dir.path().join("heliograph.toml"), config).unwrap();
        TestServer::launched_in(dir)
    }

    /// Appends a `[c2s]` section and restarts the server with it.
    pub fn with_c2s(mut self, settings: &str) -> TestServer {
        let path = self.dir.path().join("heliograph.toml");
        let mut cfg = std::fs::read_to_string(&path).unwrap();
        cfg.push_str(&format!("\n[c2s]\n{settings}\n"));
        std::fs::write(&path, cfg).unwrap();
        self.restart();
        self
    }

    /// Starts the server process (again, after it exited on its own).
    pub fn launch(&mut self) {
        let ready = self.dir.path().join("ready.json");
        let _ = std::fs::remove_file(&ready);
        self.log = self.dir.path().join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("heliograph.toml"))
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let doc: serde_json::Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str(&text)
            {
                break v;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "server not ready: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        for l in doc["listeners"].as_array().unwrap() {
            let addr = l["address"].as_str().unwrap().to_string();
            // Every listener on an ephemeral port: a kind missing from the config would
            // bind its fixed default and collide with whatever else runs here.
            let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
            assert!(
                ![5222, 5223, 5280, 5281, 5347].contains(&port),
                "test server bound the fixed default port of {l}"
            );
            match (l["kind"].as_str().unwrap(), l["tls"].as_str()) {
                ("c2s", Some("starttls")) => self.starttls = addr,
                ("c2s", Some("direct")) => self.direct = addr,
                ("admin", _) => self.admin = addr,
                ("http", _) => self.http = addr,
                ("component", _) => self.component = addr,
                ("s2s", Some("starttls")) => self.s2s = addr,
                _ => {}
            }
        }
        let token_file = doc["admin_token_file"].as_str().unwrap();
        self.token = std::fs::read_to_string(token_file)
            .unwrap()
            .trim()
            .to_string();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait, and return the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    /// SIGKILL: the process dies on the spot, as in a crash (nothing is flushed or closed).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit on its own; returns its exit code (None on timeout
    /// or a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops and starts again on the same data dir.
    pub fn restart(&mut self) {
        assert_eq!(self.stop(), Some(0), "clean shutdown: {}", self.log_text());
        self.launch();
    }
}

/// Sends a ping to the server and waits for its answer: the server handles a session's
/// stanzas in order, so whatever the client sent before (a message to store offline, say)
/// has been processed when this returns. Elements read on the way are dropped.
pub async fn ping_barrier(c: &mut RawClient) {
    c.send_raw("<iq type='get' id='barrier'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = c
        .next_matching(|e| e.name() == "iq" && e.attr("id") == Some("barrier"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

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

pub fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// A raw XMPP client for tests.
pub struct RawClient {
    io: Io,
    parser: StreamParser,
    pending: std::collections::VecDeque<StreamEvent>,
    pub header: Option<heliograph::xml::StreamHeader>,
    pub closed: bool,
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The stanza error condition of an error reply (the `urn:ietf:params:xml:ns:xmpp-stanzas`
/// child other than `<text/>`).
pub fn stanza_error_condition(el: &Element) -> Option<String> {
    el.child("error", ns::CLIENT)?
        .children()
        .find(|c| c.ns() == ns::STANZAS_ERRORS && c.name() != "text")
        .map(|c| c.name().to_string())
}

impl RawClient {
    /// STARTTLS, PLAIN login and bind on `domain` (a tenant's domain other than
    /// `localhost`), as `user` with `password` and `resource`.
    pub async fn login_on(
        server: &TestServer,
        domain: &str,
        user: &str,
        password: &str,
        resource: &str,
    ) -> RawClient {
        let mut c = RawClient::connect(&server.starttls).await;
        c.open_to(domain).await;
        c.starttls().await;
        c.open_to(domain).await;
        let r = c.auth_plain(user, password).await;
        assert!(r.is("success", ns::SASL), "{r}");
        c.open_to(domain).await;
        c.bind_here(Some(resource)).await;
        c
    }

    pub async fn connect(addr: &str) -> RawClient {
        let s = TcpStream::connect(addr).await.unwrap();
        RawClient::from_io(Io::Plain(s))
    }

    /// Connects from a chosen local address (e.g. 127.0.0.2, another "client address").
    pub async fn connect_from(addr: &str, source: &str) -> RawClient {
        RawClient::from_io(Io::Plain(connect_from(addr, source).await))
    }

    /// Wraps an already connected plain socket.
    pub fn from_stream(s: TcpStream) -> RawClient {
        RawClient::from_io(Io::Plain(s))
    }

    pub async fn connect_direct_tls(addr: &str) -> RawClient {
        let s = TcpStream::connect(addr).await.unwrap();
        let tls = tls_connector()
            .connect(ServerName::try_from("localhost").unwrap(), s)
            .await
            .unwrap();
        RawClient::from_io(Io::Tls(Box::new(tls)))
    }

    fn from_io(io: Io) -> RawClient {
        RawClient {
            io,
            parser: StreamParser::new(ParserLimits {
                max_stanza_bytes: 1 << 20,
                max_depth: 64,
            }),
            pending: Default::default(),
            header: None,
            closed: false,
        }
    }

    pub async fn send_raw(&mut self, data: &str) {
        let r = match &mut self.io {
            Io::Plain(s) => s.write_all(data.as_bytes()).await,
            Io::Tls(s) => {
                s.write_all(data.as_bytes()).await.unwrap();
                s.flush().await
            }
            Io::Gone => panic!("no connection"),
        };
        r.unwrap();
    }

    /// Like [`RawClient::send_raw`], handing back a failed write (the server may have cut
    /// the connection).
    pub async fn try_send_raw(&mut self, data: &str) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => s.write_all(data.as_bytes()).await,
            Io::Tls(s) => {
                s.write_all(data.as_bytes()).await?;
                s.flush().await
            }
            Io::Gone => Err(std::io::Error::other("no connection")),
        }
    }

    pub async fn send(&mut self, el: &Element) {
        self.send_raw(&el.to_string_in(ns::CLIENT)).await;
    }

    pub async fn open(&mut self) {
        self.send_raw(
            "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams'>",
        )
        .await;
    }

    async fn read_more(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        let n = match &mut self.io {
            Io::Plain(s) => s.read(&mut buf).await,
            Io::Tls(s) => s.read(&mut buf).await,
            Io::Gone => return false,
        };
        match n {
            Ok(0) | Err(_) => {
                self.closed = true;
                false
            }
            Ok(n) => {
                self.parser.feed(&buf[..n]).expect("server sent bad XML");
                while let Some(ev) = self.parser.next_event().expect("server sent bad XML") {
                    self.pending.push_back(ev);
                }
                true
            }
        }
    }

    /// Next stream event from the server (header, element or close), `None` on EOF.
    pub async fn next_event(&mut self) -> Option<StreamEvent> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(ev) = self.pending.pop_front() {
                    if let StreamEvent::Open(h) = &ev {
                        self.header = Some(h.clone());
                    }
                    return Some(ev);
                }
                if !self.read_more().await {
                    return None;
                }
            }
        })
        .await
        .expect("timed out waiting for the server")
    }

    /// Next top-level element, skipping headers; panics on close.
    pub async fn next(&mut self) -> Element {
        loop {
            match self.next_event().await {
                Some(StreamEvent::Stanza(el)) => return el,
                Some(StreamEvent::Open(_)) => continue,
                other => panic!("expected an element, got {other:?}"),
            }
        }
    }

    /// The ids of the messages that arrive before the answer to a ping sent now: with
    /// the answer, nothing sent earlier is pending any more.
    pub async fn message_ids_until_barrier(&mut self) -> Vec<String> {
        self.send_raw("<iq type='get' id='barrier'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        let mut ids = Vec::new();
        loop {
            let el = self.next().await;
            if el.name() == "iq" && el.attr("id") == Some("barrier") {
                return ids;
            }
            if el.name() == "message" {
                ids.push(el.attr("id").unwrap_or_default().to_string());
            }
        }
    }

    /// Reads until an element satisfying `pred` arrives (others are dropped).
    pub async fn next_matching(&mut self, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            let el = self.next().await;
            if pred(&el) {
                return el;
            }
        }
    }

    /// Reads until the stream error and close; returns the error condition name.
    pub async fn expect_stream_error(&mut self) -> String {
        loop {
            match self.next_event().await {
                Some(StreamEvent::Stanza(el)) if el.is("error", ns::STREAM) => {
                    let cond = el
                        .children()
                        .find(|c| c.ns() == ns::STREAMS_ERRORS && c.name() != "text");
                    return cond.map(|c| c.name().to_string()).unwrap_or_default();
                }
                Some(_) => continue,
                None => panic!("connection closed without a stream error"),
            }
        }
    }

    /// Opens the stream and reads the features.
    pub async fn open_and_features(&mut self) -> Element {
        self.open().await;
        self.next_matching(|e| e.is("features", ns::STREAM)).await
    }

    /// Runs STARTTLS on a plain connection.
    pub async fn starttls(&mut self) {
        self.send_raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        let proceed = self.next().await;
        assert!(proceed.is("proceed", ns::TLS), "{proceed}");
        let Io::Plain(s) = std::mem::replace(&mut self.io, Io::Gone) else {
            panic!("already TLS")
        };
        let tls = tls_connector()
            .connect(ServerName::try_from("localhost").unwrap(), s)
            .await
            .unwrap();
        self.io = Io::Tls(Box::new(tls));
        self.parser.reset();
    }

    /// Channel-binding data the client side sees (for SCRAM-PLUS).
    pub fn exporter(&self) -> Option<Vec<u8>> {
        let Io::Tls(s) = &self.io else { return None };
        let mut out = vec![0u8; 32];
        s.get_ref()
            .1
            .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
            .ok()?;
        Some(out)
    }

    /// PLAIN authentication; returns the `<success/>` or `<failure/>` element.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Element {
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send_raw(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
        ))
        .await;
        self.next().await
    }

    /// SCRAM authentication (optionally -PLUS with tls-exporter); returns success/failure.
    pub async fn auth_scram(
        &mut self,
        hash: ScramHash,
        plus: bool,
        user: &str,
        password: &str,
    ) -> Element {
        use heliograph::sasl::client::{ClientChannelBinding, ScramClient};
        let b64 = base64::engine::general_purpose::STANDARD;
        let cb = if plus {
            ClientChannelBinding::Plus {
                name: "tls-exporter".into(),
                data: self.exporter().unwrap(),
            }
        } else {
            ClientChannelBinding::Unsupported
        };
        let mech = match (hash, plus) {
            (ScramHash::Sha1, false) => "SCRAM-SHA-1",
            (ScramHash::Sha1, true) => "SCRAM-SHA-1-PLUS",
            (ScramHash::Sha256, false) => "SCRAM-SHA-256",
            (ScramHash::Sha256, true) => "SCRAM-SHA-256-PLUS",
        };
        let mut client = ScramClient::new(hash, user, password, cb).unwrap();
        let first = client.client_first();
        self.send_raw(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            b64.encode(first)
        ))
        .await;
        let challenge = self.next().await;
        if !challenge.is("challenge", ns::SASL) {
            return challenge;
        }
        let server_first = String::from_utf8(b64.decode(challenge.text()).unwrap()).unwrap();
        let Ok(final_msg) = client.handle_server_first(&server_first) else {
            panic!("bad server-first")
        };
        self.send_raw(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            b64.encode(final_msg)
        ))
        .await;
        let outcome = self.next().await;
        if outcome.is("success", ns::SASL) {
            let server_final = String::from_utf8(b64.decode(outcome.text()).unwrap()).unwrap();
            client
                .handle_server_final(&server_final)
                .expect("server signature must verify");
        }
        outcome
    }

    /// Drops the connection with a TCP reset (no `</stream>`, no FIN): how a phone's
    /// connection dies when its network goes.
    pub fn reset(mut self) {
        let tcp = match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
            Io::Gone => return,
        };
        tcp.set_zero_linger().unwrap();
        self.io = Io::Gone;
    }
    /// SASL2 PLAIN with Bind 2 (tag `app`, user agent `ua-1`) enabling resumable stream
    /// management inline; the `<success/>` (or failure) element.
    pub async fn auth_sasl2_plain_resumable(&mut self, user: &str, password: &str) -> Element {
        self.auth_sasl2_plain(
            user,
            password,
            "<user-agent id='ua-1'/><bind xmlns='urn:xmpp:bind:0'><tag>app</tag>\
             <enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>",
        )
        .await
    }

    /// SASL2 (XEP-0388) PLAIN with `inline` (Bind 2, stream management requests) inside
    /// `<authenticate/>`; returns the `<success/>` or `<failure/>`.
    pub async fn auth_sasl2_plain(&mut self, user: &str, password: &str, inline: &str) -> Element {
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send_raw(&format!(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>\
             <initial-response>{payload}</initial-response>{inline}</authenticate>"
        ))
        .await;
        self.next_matching(|e| e.ns() == "urn:xmpp:sasl:2").await
    }

    /// STARTTLS and PLAIN authentication, stopping before the stream restart's bind.
    pub async fn authenticated(addr: &str, user: &str, password: &str) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        c.open_and_features().await;
        c.starttls().await;
        c.open_and_features().await;
        let r = c.auth_plain(user, password).await;
        assert!(r.is("success", ns::SASL), "{r}");
        c.parser.reset();
        c
    }

    /// Opens a stream to `domain` (a fresh one after a restart); returns the features.
    pub async fn open_to(&mut self, domain: &str) -> Element {
        self.parser.reset();
        self.send_raw(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ))
        .await;
        self.next_matching(|e| e.is("features", ns::STREAM)).await
    }

    /// After SASL success: restart, bind (with a resource or not) and return the full JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> String {
        self.parser.reset();
        let features = self.open_and_features().await;
        assert!(features.has_child("bind", ns::BIND), "{features}");
        self.bind_here(resource).await
    }

    /// Binds a resource on a stream already open after authentication; the full JID.
    pub async fn bind_here(&mut self, resource: Option<&str>) -> String {
        let mut bind = Element::new("bind", ns::BIND);
        if let Some(r) = resource {
            bind.push_child(Element::new("resource", ns::BIND).with_text(r));
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "bind1")
            .with_child(bind);
        self.send(&iq).await;
        let reply = self.next_matching(|e| e.attr("id") == Some("bind1")).await;
        assert_eq!(reply.attr("type"), Some("result"), "{reply}");
        reply
            .child("bind", ns::BIND)
            .unwrap()
            .child_text("jid", ns::BIND)
            .unwrap()
    }

    /// STARTTLS, PLAIN login and bind in one go.
    pub async fn login(
        addr: &str,
        user: &str,
        password: &str,
        resource: Option<&str>,
    ) -> (RawClient, String) {
        let mut c = RawClient::authenticated(addr, user, password).await;
        let jid = c.bind(resource).await;
        (c, jid)
    }
}

/// A TCP connection to `addr` from the local address `source` (any port).
pub async fn connect_from(addr: &str, source: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}
