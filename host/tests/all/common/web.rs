//! Web clients for the integration tests: a raw BOSH client over a hyper HTTP/1.1 client
//! and an RFC 7395 WebSocket client (tokio-tungstenite), both speaking the wire format
//! directly and parsing with the server's own XML parser.

#![allow(dead_code)]

use std::collections::VecDeque;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use heliograph::sasl::ScramHash;
use heliograph::sasl::client::{ClientChannelBinding, ScramClient};
use heliograph::xml::parser::parse_element;
use heliograph::xml::{Element, ParserLimits, ns};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

fn limits() -> ParserLimits {
    ParserLimits {
        max_stanza_bytes: 1 << 20,
        max_depth: 64,
    }
}

/// A raw HTTP response.
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// The body parsed as `<body/>`.
    pub fn element(&self) -> Element {
        parse_element(&self.body, HTTPBIND, limits())
            .unwrap_or_else(|e| panic!("bad body {:?}: {e}", String::from_utf8_lossy(&self.body)))
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one HTTP request to the server.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = tokio::time::timeout(TIMEOUT, client().request(req))
        .await
        .expect("HTTP request timed out")
        .expect("HTTP request failed");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// GET on the admin API with the operator token.
/// Panics unless the admin API lists a session with the full JID `jid` (`why` says what
/// its absence would mean).
pub async fn assert_session_listed(admin: &str, token: &str, jid: &str, why: &str) {
    let sessions = admin_get(admin, token, "/api/v1/sessions").await;
    assert!(
        sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["jid"] == jid),
        "{jid} is not online: {why}: {sessions}"
    );
}

pub async fn admin_get(admin: &str, token: &str, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let r = http(
        "GET",
        &format!("http://{admin}{path}"),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

/// An admin API call with `token` and a JSON body (none when `null`): the status, the
/// JSON answer (`null` when there is none) and the answer as text.
pub async fn admin_call(
    admin: &str,
    token: &str,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value, String) {
    let auth = format!("Bearer {token}");
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let r = http(
        method,
        &format!("http://{admin}{path}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    let doc = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status.as_u16(), doc, text)
}

/// Posts a raw BOSH body.
pub async fn bosh_post(addr: &str, body: &str) -> HttpResponse {
    http(
        "POST",
        &format!("http://{addr}/http-bind"),
        &[("content-type", "text/xml; charset=utf-8")],
        body.to_string(),
    )
    .await
}

/// The `condition` of a terminate body, "" when it is not one.
pub fn terminate_condition(body: &Element) -> Option<String> {
    (body.attr("type") == Some("terminate"))
        .then(|| body.attr("condition").unwrap_or("").to_string())
}

/// A BOSH session driven request by request.
pub struct Bosh {
    pub addr: String,
    pub sid: String,
    pub rid: u64,
    pub creation: Element,
    pub headers: Vec<(String, String)>,
    pending: VecDeque<Element>,
}

impl Bosh {
    /// Creates a session with these extra attributes on the creation request.
    pub async fn create(addr: &str, attrs: &str) -> Bosh {
        Self::create_with_headers(addr, attrs, &[]).await
    }

    pub async fn create_with_headers(addr: &str, attrs: &str, headers: &[(&str, &str)]) -> Bosh {
        let rid: u64 = 1_000_000 + u64::from(rand_u16());
        let body = format!(
            "<body rid='{rid}' to='localhost' xml:lang='en' ver='1.6' xmpp:version='1.0' {attrs} \
             xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'/>"
        );
        let mut h: Vec<(&str, &str)> = vec![("content-type", "text/xml; charset=utf-8")];
        h.extend_from_slice(headers);
        let r = http("POST", &format!("http://{addr}/http-bind"), &h, body).await;
        assert_eq!(r.status, 200);
        let el = r.element();
        let sid = el
            .attr("sid")
            .unwrap_or_else(|| panic!("no sid in {el}"))
            .to_string();
        let mut b = Bosh {
            addr: addr.to_string(),
            sid,
            rid,
            creation: el.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pending: VecDeque::new(),
        };
        b.pending.extend(el.children().cloned());
        b
    }

    /// Next rid to use (and consumes it).
    pub fn next_rid(&mut self) -> u64 {
        self.rid += 1;
        self.rid
    }

    /// Sends a request with an explicit rid, extra attributes and payload; returns the
    /// raw response.
    pub async fn raw(&self, rid: u64, attrs: &str, payload: &str) -> HttpResponse {
        let body = format!(
            "<body rid='{rid}' sid='{}' {attrs} xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'>{payload}</body>",
            self.sid
        );
        let mut h: Vec<(&str, &str)> = vec![("content-type", "text/xml; charset=utf-8")];
        for (k, v) in &self.headers {
            h.push((k, v));
        }
        http("POST", &format!("http://{}/http-bind", self.addr), &h, body).await
    }

    /// Sends the next request; returns the response body and queues its payload.
    pub async fn send_with(&mut self, attrs: &str, payload: &str) -> Element {
        let rid = self.next_rid();
        let r = self.raw(rid, attrs, payload).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let el = r.element();
        self.pending.extend(el.children().cloned());
        el
    }

    pub async fn send(&mut self, payload: &str) -> Element {
        self.send_with("", payload).await
    }

    /// Next payload element, polling as needed; panics on terminate.
    pub async fn next(&mut self) -> Element {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(el) = self.pending.pop_front() {
                return el;
            }
            assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
            let body = self.send("").await;
            assert!(
                terminate_condition(&body).is_none(),
                "session terminated: {body}"
            );
        }
    }

    pub async fn next_matching(&mut self, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            let el = self.next().await;
            if pred(&el) {
                return el;
            }
        }
    }

    /// PLAIN login, restart and bind; returns the full JID.
    pub async fn login_plain(&mut self, user: &str, password: &str) -> String {
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let r = self
            .send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
            ))
            .await;
        let _ = r;
        let outcome = self.next_matching(|e| e.ns() == ns::SASL).await;
        assert!(outcome.is("success", ns::SASL), "{outcome}");
        self.restart_and_bind().await
    }

    /// SCRAM login, restart and bind; returns the full JID.
    pub async fn login_scram(&mut self, hash: ScramHash, user: &str, password: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mech = match hash {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        };
        let mut client =
            ScramClient::new(hash, user, password, ClientChannelBinding::Unsupported).unwrap();
        let first = client.client_first();
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            b64.encode(first)
        ))
        .await;
        let challenge = self.next_matching(|e| e.ns() == ns::SASL).await;
        assert!(challenge.is("challenge", ns::SASL), "{challenge}");
        let server_first = String::from_utf8(b64.decode(challenge.text()).unwrap()).unwrap();
        let final_msg = client.handle_server_first(&server_first).unwrap();
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            b64.encode(final_msg)
        ))
        .await;
        let outcome = self.next_matching(|e| e.ns() == ns::SASL).await;
        assert!(outcome.is("success", ns::SASL), "{outcome}");
        let server_final = String::from_utf8(b64.decode(outcome.text()).unwrap()).unwrap();
        client.handle_server_final(&server_final).unwrap();
        self.restart_and_bind().await
    }

    async fn restart_and_bind(&mut self) -> String {
        self.send_with("xmpp:restart='true' to='localhost'", "")
            .await;
        let features = self.next_matching(|e| e.is("features", ns::STREAM)).await;
        assert!(features.has_child("bind", ns::BIND), "{features}");
        self.send("<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await;
        let reply = self.next_matching(|e| e.attr("id") == Some("bind1")).await;
        assert_eq!(reply.attr("type"), Some("result"), "{reply}");
        reply
            .child("bind", ns::BIND)
            .unwrap()
            .child_text("jid", ns::BIND)
            .unwrap()
    }

    /// Creates a session and logs in with PLAIN.
    pub async fn login(addr: &str, user: &str, password: &str, attrs: &str) -> (Bosh, String) {
        let mut b = Bosh::create(addr, attrs).await;
        let jid = b.login_plain(user, password).await;
        (b, jid)
    }
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (t % 60000) as u16
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An RFC 7395 client.
pub struct WsClient {
    pub ws: WsStream,
    /// Pings seen while reading.
    pub pings: usize,
}

/// Why a WebSocket connection was refused: the HTTP status.
pub async fn ws_connect_status(addr: &str, protocol: Option<&str>, origin: Option<&str>) -> u16 {
    match ws_try(addr, protocol, origin).await {
        Ok(_) => 101,
        Err(status) => status,
    }
}

async fn ws_try(addr: &str, protocol: Option<&str>, origin: Option<&str>) -> Result<WsClient, u16> {
    let mut req = format!("ws://{addr}/xmpp-websocket")
        .into_client_request()
        .unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            assert_eq!(
                resp.headers()
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap()),
                Some("xmpp")
            );
            Ok(WsClient { ws, pings: 0 })
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("WebSocket connect failed: {e}"),
    }
}

/// What the server sent next.
#[derive(Debug)]
pub enum WsEvent {
    Element(Element),
    Close(Option<u16>),
    Eof,
}

impl WsClient {
    pub async fn connect(addr: &str) -> WsClient {
        ws_try(addr, Some("xmpp"), None).await.expect("upgrade")
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn open(&mut self) {
        self.send(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
        )
        .await;
    }

    pub async fn event(&mut self) -> WsEvent {
        loop {
            let m = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for the server");
            match m {
                None | Some(Err(_)) => return WsEvent::Eof,
                Some(Ok(Message::Text(t))) => {
                    let el = parse_element(t.as_bytes(), ns::CLIENT, limits())
                        .unwrap_or_else(|e| panic!("bad frame {t}: {e}"));
                    return WsEvent::Element(el);
                }
                Some(Ok(Message::Ping(_))) => self.pings += 1,
                Some(Ok(Message::Close(f))) => return WsEvent::Close(f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn next(&mut self) -> Element {
        match self.event().await {
            WsEvent::Element(el) => el,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    pub async fn next_matching(&mut self, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            let el = self.next().await;
            if pred(&el) {
                return el;
            }
        }
    }

    /// Opens the stream; returns the features.
    pub async fn open_and_features(&mut self) -> Element {
        self.open().await;
        let open = self.next().await;
        assert!(open.is("open", FRAMING), "{open}");
        self.next_matching(|e| e.is("features", ns::STREAM)).await
    }

    /// PLAIN login, restart, bind; returns the full JID.
    pub async fn login(addr: &str, user: &str, password: &str) -> (WsClient, String) {
        let mut c = WsClient::connect(addr).await;
        c.open_and_features().await;
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
        ))
        .await;
        let outcome = c.next().await;
        assert!(outcome.is("success", ns::SASL), "{outcome}");
        let jid = c.restart_and_bind().await;
        (c, jid)
    }

    pub async fn restart_and_bind(&mut self) -> String {
        let features = self.open_and_features().await;
        assert!(features.has_child("bind", ns::BIND), "{features}");
        self.send("<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await;
        let reply = self.next_matching(|e| e.attr("id") == Some("bind1")).await;
        assert_eq!(reply.attr("type"), Some("result"), "{reply}");
        reply
            .child("bind", ns::BIND)
            .unwrap()
            .child_text("jid", ns::BIND)
            .unwrap()
    }

    /// Reads until the stream error; returns its condition.
    pub async fn expect_stream_error(&mut self) -> String {
        loop {
            match self.event().await {
                WsEvent::Element(el) if el.is("error", ns::STREAM) => {
                    return el
                        .children()
                        .find(|c| c.ns() == ns::STREAMS_ERRORS && c.name() != "text")
                        .map(|c| c.name().to_string())
                        .unwrap_or_default();
                }
                WsEvent::Element(_) => continue,
                other => panic!("no stream error, got {other:?}"),
            }
        }
    }
}

/// A message stanza (as text) with this body.
pub fn message(to: &str, body: &str) -> String {
    format!("<message xmlns='jabber:client' to='{to}' type='chat'><body>{body}</body></message>")
}

/// The text of a message's `<body/>`.
pub fn body_text(el: &Element) -> Option<String> {
    el.child_text("body", ns::CLIENT)
}

/// Scram login helper for raw use in tests.
pub fn scram_hashes() -> [ScramHash; 2] {
    [ScramHash::Sha1, ScramHash::Sha256]
}
