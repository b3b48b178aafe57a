//! BOSH (XEP-0124/0206) and WebSocket (RFC 7395) transports for the load client: full
//! login (SASL, restart, bind) over the server's public HTTP listener, then a bridge task
//! that turns the session into a byte stream ([`Io::Web`]) so the `connect` and `chat`
//! scenarios run unchanged. Outgoing bytes are cut at top-level element boundaries (one
//! stanza per WebSocket message; complete stanzas in each BOSH body); incoming stanzas are
//! written back as their serialized bytes.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use heliograph::sasl::ScramHash;
use heliograph::sasl::client::{ClientChannelBinding, ScramClient, plain_initial_response};
use heliograph::xml::parser::parse_element;
use heliograph::xml::{Element, ParserLimits, StreamParser, ns};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::xmpp::{Io, LoginSpec, Mech, Session, TransportKind, connect_tcp};

pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// Seconds a BOSH request may be held by the server.
const BOSH_WAIT: u32 = 60;
/// Buffer between the bridge task and the scenario.
const PIPE: usize = 256 * 1024;

fn limits() -> ParserLimits {
    ParserLimits {
        max_stanza_bytes: 1 << 20,
        max_depth: 64,
    }
}

/// Appends to `ends` the offset just past each complete top-level element of `buf` (a
/// closing tag at depth 0, such as `</stream:stream>`, counts as one). Quoted attribute
/// values may contain `>`; text between elements is ignored.
pub fn element_ends(buf: &[u8], ends: &mut Vec<usize>) {
    let mut depth = 0usize;
    let mut i = 0;
    while i < buf.len() {
        if buf[i] != b'<' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        let mut quote = None;
        loop {
            let Some(&c) = buf.get(j) else { return };
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == b'\'' || c == b'"' => quote = Some(c),
                None if c == b'>' => break,
                None => {}
            }
            j += 1;
        }
        let tag = &buf[i..=j];
        if tag.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                ends.push(j + 1);
            }
        } else if tag.starts_with(b"<?") || tag.starts_with(b"<!") {
        } else if tag.ends_with(b"/>") {
            if depth == 0 {
                ends.push(j + 1);
            }
        } else {
            depth += 1;
        }
        i = j + 1;
    }
}

/// The payload of a BOSH response `<body ...>payload</body>` (empty for `<body .../>`),
/// and whether the body is a terminate.
pub fn body_payload(body: &[u8]) -> (&[u8], bool) {
    let Some(open_end) = open_tag_end(body) else {
        return (&[], false);
    };
    let open = &body[..=open_end];
    let terminate =
        find(open, b"type=\"terminate\"").is_some() || find(open, b"type='terminate'").is_some();
    if open.ends_with(b"/>") {
        return (&[], terminate);
    }
    let close = rfind(body, b"</body>").unwrap_or(body.len());
    (&body[open_end + 1..close.max(open_end + 1)], terminate)
}

fn open_tag_end(buf: &[u8]) -> Option<usize> {
    let start = find(buf, b"<body")?;
    let mut quote = None;
    for (k, &c) in buf[start..].iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'>' => return Some(start + k),
            None => {}
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Login over BOSH or WebSocket; the bridge task carries the session afterwards.
pub async fn login(
    spec: &LoginSpec,
    source: Option<IpAddr>,
    user: &str,
    password: &str,
    resource: &str,
) -> anyhow::Result<Session> {
    let addr = spec
        .http_addr
        .context("no HTTP listener (BOSH/WebSocket) on the server")?;
    let mut conn = match spec.transport {
        TransportKind::Bosh => WebLogin::Bosh(Bosh::create(addr, source, &spec.domain).await?),
        TransportKind::Websocket => WebLogin::Ws(ws_open(addr, source, &spec.domain).await?),
        _ => bail!("not a web transport"),
    };
    conn.features().await?;
    authenticate(&mut conn, spec.mech, user, password).await?;
    conn.restart(&spec.domain).await?;
    conn.send(&format!(
        "<iq xmlns='{}' type='set' id='bind'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>",
        ns::CLIENT,
        ns::BIND
    ))
    .await?;
    let result = conn.next_stanza().await?;
    if result.attr("type") != Some("result") {
        bail!("bind failed: {}", result.to_string_in(ns::CLIENT));
    }
    let full_jid = result
        .child("bind", ns::BIND)
        .and_then(|b| b.child_text("jid", ns::BIND))
        .context("bind result without a JID")?;
    let (app, bridge) = tokio::io::duplex(PIPE);
    let presence = format!("<presence xmlns='{}'/>", ns::CLIENT);
    match conn {
        WebLogin::Ws(mut ws) => {
            ws.send(Message::text(presence)).await?;
            tokio::spawn(ws_bridge(ws, bridge));
        }
        // The initial presence is the bridge's first request (a held request would only
        // come back after `wait`).
        WebLogin::Bosh(b) => {
            tokio::spawn(bosh_bridge(b, bridge, presence.into_bytes()));
        }
    }
    // The scenario's parser sees the stanzas without a stream header: give it one.
    let mut parser = StreamParser::new(limits());
    parser.feed(
        format!(
            "<stream:stream xmlns='{}' xmlns:stream='{}'>",
            ns::CLIENT,
            ns::STREAM
        )
        .as_bytes(),
    )?;
    let _ = parser.next_event()?;
    Ok(Session {
        io: Io::Web(app),
        parser,
        full_jid,
        sm: None,
    })
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

enum WebLogin {
    Bosh(Bosh),
    Ws(WsStream),
}

async fn ws_open(
    addr: SocketAddr,
    source: Option<IpAddr>,
    domain: &str,
) -> anyhow::Result<WsStream> {
    let tcp = connect_tcp(addr, source).await?;
    let mut req = format!("ws://{addr}/xmpp-websocket").into_client_request()?;
    req.headers_mut()
        .insert("sec-websocket-protocol", "xmpp".parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .context("WebSocket upgrade")?;
    ws.send(Message::text(ws_open_frame(domain))).await?;
    Ok(ws)
}

fn ws_open_frame(domain: &str) -> String {
    format!("<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>")
}

impl WebLogin {
    async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        match self {
            WebLogin::Ws(ws) => ws.send(Message::text(xml.to_string())).await?,
            WebLogin::Bosh(b) => b.request("", xml).await?,
        }
        Ok(())
    }

    /// Next stanza (or stream features), skipping `<open/>`.
    async fn next_stanza(&mut self) -> anyhow::Result<Element> {
        match self {
            WebLogin::Ws(ws) => loop {
                let msg = ws
                    .next()
                    .await
                    .context("WebSocket closed by the server")??;
                let Message::Text(text) = msg else { continue };
                let el = parse_element(text.as_bytes(), ns::CLIENT, limits())?;
                if el.is("open", FRAMING) {
                    continue;
                }
                if el.is("close", FRAMING) || el.is("error", ns::STREAM) {
                    bail!("stream ended: {}", text.as_str());
                }
                return Ok(el);
            },
            WebLogin::Bosh(b) => loop {
                if let Some(el) = b.pending.pop_front() {
                    return Ok(el);
                }
                b.request("", "").await?;
            },
        }
    }

    async fn features(&mut self) -> anyhow::Result<Element> {
        let f = self.next_stanza().await?;
        if !f.is("features", ns::STREAM) {
            bail!("expected stream features, got <{}>", f.name());
        }
        Ok(f)
    }

    async fn restart(&mut self, domain: &str) -> anyhow::Result<()> {
        match self {
            WebLogin::Ws(ws) => ws.send(Message::text(ws_open_frame(domain))).await?,
            WebLogin::Bosh(b) => {
                b.request(
                    &format!("xmpp:restart='true' to='{domain}' xml:lang='en'"),
                    "",
                )
                .await?
            }
        }
        self.features().await?;
        Ok(())
    }
}

async fn authenticate(
    conn: &mut WebLogin,
    mech: Mech,
    user: &str,
    password: &str,
) -> anyhow::Result<()> {
    let sasl = |name: &str, mech: Option<&str>, data: &[u8]| {
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
    };
    match mech {
        Mech::Fast => bail!("FAST logins need TLS; BOSH and WebSocket run on plain HTTP here"),
        Mech::Plain | Mech::Jwt | Mech::Token => {
            let data = plain_initial_response(None, user, password);
            conn.send(&sasl("auth", Some("PLAIN"), &data)).await?;
            let answer = conn.next_stanza().await?;
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
            conn.send(&sasl("auth", Some("SCRAM-SHA-256"), first.as_bytes()))
                .await?;
            let challenge = conn.next_stanza().await?;
            if !challenge.is("challenge", ns::SASL) {
                bail!("SCRAM failed: {}", challenge.to_string_in(ns::CLIENT));
            }
            let server_first = String::from_utf8(B64.decode(challenge.text().trim())?)?;
            let last = client.handle_server_first(&server_first)?;
            conn.send(&sasl("response", None, last.as_bytes())).await?;
            let answer = conn.next_stanza().await?;
            if !answer.is("success", ns::SASL) {
                bail!("SCRAM failed: {}", answer.to_string_in(ns::CLIENT));
            }
            let server_final = String::from_utf8(B64.decode(answer.text().trim())?)?;
            client.handle_server_final(&server_final)?;
        }
    }
    Ok(())
}

/// WebSocket after login: bytes from the scenario go out one stanza per message; stanzas
/// received are written back. `</stream:stream>` or end of input closes the stream.
async fn ws_bridge(mut ws: WsStream, mut app: DuplexStream) {
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out: Vec<u8> = Vec::new();
    let mut ends = Vec::new();
    let mut closing = false;
    while !closing {
        tokio::select! {
            r = app.read(&mut chunk) => {
                let n = r.unwrap_or_default();
                if n == 0 {
                    closing = true;
                } else {
                    out.extend_from_slice(&chunk[..n]);
                }
                ends.clear();
                element_ends(&out, &mut ends);
                let mut at = 0;
                for &end in &ends {
                    let piece = &out[at..end];
                    at = end;
                    if piece.starts_with(b"</") {
                        closing = true;
                        break;
                    }
                    let text = String::from_utf8_lossy(piece).into_owned();
                    if ws.feed(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                out.drain(..at);
                if ws.flush().await.is_err() {
                    return;
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if t.as_str().starts_with("<close") {
                        break;
                    }
                    if app.write_all(t.as_bytes()).await.is_err() {
                        closing = true;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    }
    let _ = ws
        .send(Message::text(format!("<close xmlns='{FRAMING}'/>")))
        .await;
    let _ = ws.close(None).await;
}

/// One HTTP/1.1 connection to the BOSH endpoint.
type Conn = SendRequest<Full<Bytes>>;

async fn open_conn(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Conn> {
    let tcp = connect_tcp(addr, source).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn post(conn: &mut Conn, addr: SocketAddr, body: String) -> anyhow::Result<Bytes> {
    conn.ready().await?;
    let req = hyper::Request::post(format!("http://{addr}/http-bind"))
        .header("host", addr.to_string())
        .header("content-type", "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(body)))?;
    let resp = conn.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// A BOSH session.
struct Bosh {
    addr: SocketAddr,
    source: Option<IpAddr>,
    sid: String,
    rid: u64,
    /// Requests the server allows at once (`requests`).
    requests: usize,
    /// The login's connection (taken by the bridge).
    conn: Option<Conn>,
    pending: VecDeque<Element>,
}

impl Bosh {
    async fn create(
        addr: SocketAddr,
        source: Option<IpAddr>,
        domain: &str,
    ) -> anyhow::Result<Bosh> {
        let mut conn = open_conn(addr, source).await?;
        let rid = 1_000_000 + u64::from(std::process::id() % 1000) * 1000;
        let body = format!(
            "<body rid='{rid}' to='{domain}' xml:lang='en' ver='1.6' wait='{BOSH_WAIT}' hold='1' \
             xmpp:version='1.0' xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'/>"
        );
        let resp = post(&mut conn, addr, body).await?;
        let el = parse_element(&resp, HTTPBIND, limits())?;
        let sid = el
            .attr("sid")
            .with_context(|| format!("no sid in {}", String::from_utf8_lossy(&resp)))?
            .to_string();
        let requests = el
            .attr("requests")
            .and_then(|r| r.parse().ok())
            .unwrap_or(2usize)
            .max(1);
        Ok(Bosh {
            addr,
            source,
            sid,
            rid,
            requests,
            conn: Some(conn),
            pending: el.children().cloned().collect(),
        })
    }

    fn body(&mut self, attrs: &str, payload: &[u8]) -> String {
        self.rid += 1;
        format!(
            "<body rid='{}' sid='{}' {attrs} xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'>{}</body>",
            self.rid,
            self.sid,
            String::from_utf8_lossy(payload)
        )
    }

    /// One request at a time (login): queues the response's payload.
    async fn request(&mut self, attrs: &str, payload: &str) -> anyhow::Result<()> {
        let body = self.body(attrs, payload.as_bytes());
        let conn = self.conn.as_mut().context("no connection")?;
        let resp = post(conn, self.addr, body).await?;
        let el = parse_element(&resp, HTTPBIND, limits())?;
        if el.attr("type") == Some("terminate") {
            bail!(
                "BOSH session terminated: {}",
                String::from_utf8_lossy(&resp)
            );
        }
        self.pending.extend(el.children().cloned());
        Ok(())
    }
}

/// Delivers BOSH responses in rid order although they arrive over several connections.
#[derive(Default)]
pub struct InOrder {
    next: u64,
    ready: BTreeMap<u64, Bytes>,
}

impl InOrder {
    pub fn new(first: u64) -> Self {
        InOrder {
            next: first,
            ready: BTreeMap::new(),
        }
    }

    /// Stores the response to `rid`; returns every response now deliverable, in order.
    pub fn push(&mut self, rid: u64, body: Bytes) -> Vec<Bytes> {
        self.ready.insert(rid, body);
        let mut out = Vec::new();
        while let Some(b) = self.ready.remove(&self.next) {
            out.push(b);
            self.next += 1;
        }
        out
    }
}

/// BOSH after login: keeps one request held by the server for incoming stanzas, sends
/// outgoing stanzas in new requests (at most `requests` at once, each on its own HTTP
/// connection), and delivers response payloads in rid order.
async fn bosh_bridge(mut b: Bosh, mut app: DuplexStream, first: Vec<u8>) {
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(u64, anyhow::Result<(Conn, Bytes)>)>();
    let mut idle: Vec<Conn> = b.conn.take().into_iter().collect();
    let mut order = InOrder::new(b.rid + 1);
    let mut inflight = 0usize;
    let mut out = first;
    let mut ends = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut closing = false;
    let mut input_open = true;
    loop {
        // Send what is complete while the server allows more requests; keep one held.
        while inflight < b.requests {
            ends.clear();
            element_ends(&out, &mut ends);
            let mut take = ends.last().copied().unwrap_or(0);
            let mut attrs = "";
            if let Some(pos) = ends
                .iter()
                .scan(0, |at, &e| {
                    let s = *at;
                    *at = e;
                    Some((s, e))
                })
                .find(|&(s, _)| out[s..].starts_with(b"</"))
            {
                take = pos.0;
                closing = true;
            }
            if closing && take == 0 {
                attrs = "type='terminate'";
            } else if take == 0 && inflight > 0 {
                break;
            }
            let body = b.body(attrs, &out[..take]);
            out.drain(..take);
            let rid = b.rid;
            let conn = idle.pop();
            let (addr, source, tx) = (b.addr, b.source, tx.clone());
            inflight += 1;
            tokio::spawn(async move {
                let r = async {
                    let mut c = match conn {
                        Some(c) => c,
                        None => open_conn(addr, source).await?,
                    };
                    let body = post(&mut c, addr, body).await?;
                    Ok((c, body))
                }
                .await;
                let _ = tx.send((rid, r));
            });
            if !attrs.is_empty() {
                // Terminate sent: wait for its answer only.
                input_open = false;
                break;
            }
        }
        tokio::select! {
            r = app.read(&mut chunk), if input_open && !closing => {
                match r {
                    Ok(0) | Err(_) => closing = true,
                    Ok(n) => out.extend_from_slice(&chunk[..n]),
                }
            }
            Some((rid, r)) = rx.recv() => {
                inflight -= 1;
                let Ok((c, body)) = r else { return };
                idle.push(c);
                for body in order.push(rid, body) {
                    let (payload, terminate) = body_payload(&body);
                    if !payload.is_empty() && app.write_all(payload).await.is_err() {
                        closing = true;
                    }
                    if terminate {
                        return;
                    }
                }
                if !input_open && inflight == 0 {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_ends_cut_at_stanza_boundaries() {
        let s = b"<message to='a>b' id='1'><body>1 2</body></message><presence/><iq type='x'><q";
        let mut ends = Vec::new();
        element_ends(s, &mut ends);
        let first = s.iter().position(|&c| c == b'<').unwrap();
        assert_eq!(first, 0);
        assert_eq!(ends.len(), 2);
        assert!(s[..ends[0]].ends_with(b"</message>"));
        assert_eq!(&s[ends[0]..ends[1]], b"<presence/>");
        ends.clear();
        element_ends(b"<presence/></stream:stream>", &mut ends);
        assert_eq!(ends, vec![11, 27]);
        ends.clear();
        element_ends(b"<message><body>x", &mut ends);
        assert!(ends.is_empty());
    }

    #[test]
    fn body_payloads() {
        let b = b"<body xmlns=\"http://jabber.org/protocol/httpbind\" sid=\"s\"><message xmlns=\"jabber:client\"><body>1 2</body></message></body>";
        let (p, t) = body_payload(b);
        assert_eq!(
            p,
            b"<message xmlns=\"jabber:client\"><body>1 2</body></message>"
        );
        assert!(!t);
        assert_eq!(body_payload(b"<body xmlns='x' a='>'/>"), (&b""[..], false));
        let (p, t) = body_payload(b"<body type=\"terminate\" condition=\"x\"/>");
        assert!(p.is_empty() && t);
    }

    #[test]
    fn responses_delivered_in_rid_order() {
        let mut o = InOrder::new(5);
        assert!(o.push(6, Bytes::from_static(b"b")).is_empty());
        assert_eq!(
            o.push(5, Bytes::from_static(b"a")),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
        assert_eq!(o.push(7, Bytes::from_static(b"c")).len(), 1);
    }
}
