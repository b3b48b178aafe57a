//! The `soak` scenario: mixed load for a long time with random disconnects, checking that
//! the server keeps every message it acknowledged, does not grow, and stays up.
//!
//! Concurrently, until `duration` is over:
//! - login loops connect, authenticate (SCRAM-SHA-256 or PLAIN, over plain TCP, STARTTLS
//!   or direct TLS; on the plugin tenant PLAIN through its Wasm authenticator), get the
//!   roster and leave, half cleanly and half with a TCP reset;
//! - pairs of users chat with resumable stream management (XEP-0198). Each client drops
//!   its connection abruptly after a random lifetime, then resumes the session or, now
//!   and then, waits out the resume timeout and logs in fresh (offline storage then holds
//!   what the old session had not delivered);
//! - MUC occupants post groupchat messages, leave and rejoin their room, and check that
//!   the room reflects each of their own messages back to them;
//! - pairs of BOSH users chat, logging out cleanly and in again;
//! - the server's RSS is sampled every `rss_interval`.
//!
//! Every 1:1 message carries a unique number in its body and goes into a ledger. A message
//! counts as acknowledged once the server's `<a h='…'/>` covers it (for BOSH, which has no
//! stream management here, once the server answered a ping sent after it: stanzas of one
//! session are handled in order). After `duration`, a drain phase brings every chat and
//! BOSH client back online (resumed or fresh, collecting offline messages) and waits until
//! every acknowledged message was received or the drain deadline passed; the ones never
//! received are lost. Receiving one twice (a retransmission after resumption) counts as a
//! duplicate, which XEP-0198 allows.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heliograph::xml::{Element, StreamEvent, StreamParser, ns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::connect::PASSWORD;
use crate::procfs;
use crate::xmpp::{self, Io, LoginSpec, Mech, TransportKind};

/// Body prefix of 1:1 soak messages: `soak N`.
const CHAT_PREFIX: &str = "soak ";
/// Body prefix of groupchat soak messages: `soakmuc N`.
const MUC_PREFIX: &str = "soakmuc ";

/// The scenario's parameters.
#[derive(Debug, Clone)]
pub struct SoakJob {
    /// STARTTLS c2s listener (plain TCP and STARTTLS).
    pub starttls: SocketAddr,
    /// Direct TLS c2s listener.
    pub direct: SocketAddr,
    /// Plain-HTTP listener for BOSH (no BOSH clients without it).
    pub http: Option<SocketAddr>,
    pub domain: String,
    /// Domain of a tenant whose logins go through a Wasm authenticator plugin, with
    /// accounts `{prefix}p0 ..` and the load password.
    pub plugin_domain: Option<String>,
    pub plugin_users: usize,
    /// The MUC service (`conference.<domain>`).
    pub muc_service: String,
    /// Localpart prefix of every account.
    pub prefix: String,
    pub duration: Duration,
    /// 1:1 chat pairs with stream management.
    pub pairs: usize,
    pub rooms: usize,
    pub occupants: usize,
    pub bosh_pairs: usize,
    /// Login loops on the main domain (each with its own account).
    pub login_loops: usize,
    /// Shortest and longest lifetime of a chat connection before it is cut.
    pub cut_min: Duration,
    pub cut_max: Duration,
    /// The server's `[c2s] resume_timeout`: a fresh login waits this long (plus a margin)
    /// after a cut so that the old session is gone.
    pub resume_timeout: Duration,
    /// Share of cuts followed by a fresh login instead of a resumption.
    pub fresh_share: f64,
    /// Mean interval between two messages of one chat or BOSH client.
    pub message_interval: Duration,
    /// Longest drain after `duration`.
    pub drain: Duration,
    pub rss_interval: Duration,
    pub seed: u64,
    /// The server's pid (RSS, liveness).
    pub pid: u32,
}

impl SoakJob {
    /// Main-domain accounts the job logs in with (localpart, password); the plugin
    /// tenant's accounts live in its plugin's configuration.
    pub fn accounts(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for i in 0..self.pairs * 2 {
            v.push(chat_user(&self.prefix, i));
        }
        for i in 0..self.rooms * self.occupants {
            v.push(format!("{}m{i}", self.prefix));
        }
        for i in 0..self.bosh_pairs * 2 {
            v.push(format!("{}b{i}", self.prefix));
        }
        for i in 0..self.login_loops {
            v.push(format!("{}l{i}", self.prefix));
        }
        v.into_iter().map(|u| (u, PASSWORD.to_string())).collect()
    }

    fn spec(&self, domain: &str, transport: TransportKind, mech: Mech) -> LoginSpec {
        LoginSpec {
            starttls_addr: self.starttls,
            direct_addr: self.direct,
            http_addr: self.http,
            domain: domain.to_string(),
            transport,
            mech,
            tls: xmpp::tls_connector(),
        }
    }
}

fn chat_user(prefix: &str, i: usize) -> String {
    format!("{prefix}c{i}")
}

/// Why a soak run failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SoakFailure {
    #[error("{0} acknowledged messages were never received")]
    Lost(u64),
    #[error("server RSS grew from {baseline} KiB to {end} KiB (ratio {ratio:.3} > {limit})")]
    Growth {
        baseline: u64,
        end: u64,
        ratio: f64,
        limit: f64,
    },
    #[error("the server died during the run")]
    ServerDied,
}

/// RSS at the end may exceed the baseline by this factor at most.
pub const RSS_LIMIT: f64 = 1.10;
/// Runs shorter than this are not judged on memory (too little time to reach a plateau).
pub const RSS_JUDGED_FROM: Duration = Duration::from_secs(600);
/// The baseline RSS is the first sample at or after this point (or mid-run when shorter).
pub const RSS_BASELINE_AT: Duration = Duration::from_secs(300);

/// Distinct error messages kept for the report.
const MAX_ERRORS: usize = 50;

/// A small deterministic generator (SplitMix64): timing choices only.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Uniform in [lo, hi].
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo).mul_f64(self.unit())
    }
}

/// Which scenario a ledger message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Bosh,
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    acked: bool,
    received: u32,
}

/// Every 1:1 message sent, whether the server acknowledged it, and how often it arrived.
#[derive(Debug, Default)]
pub struct Ledger {
    msgs: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
    /// Soak bodies received whose number no client sent (must stay 0).
    unknown: AtomicU64,
}

/// What the ledger holds at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LedgerCounts {
    pub sent: u64,
    pub acked: u64,
    /// Messages received at least once.
    pub received: u64,
    /// Extra copies received.
    pub duplicates: u64,
    /// Acknowledged, never received.
    pub lost: u64,
    /// Not acknowledged (the connection was cut first) and never received: the sender
    /// could not know they arrived, so they are not losses.
    pub unacked_missing: u64,
}

impl Ledger {
    /// A new message number, recorded as sent.
    pub fn send(&self, kind: Kind) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.msgs.lock().expect("ledger").insert(
            id,
            Entry {
                kind,
                acked: false,
                received: 0,
            },
        );
        id
    }

    pub fn ack(&self, id: u64) {
        if let Some(e) = self.msgs.lock().expect("ledger").get_mut(&id) {
            e.acked = true;
        }
    }

    /// Records a receipt; false for a number never sent.
    pub fn receive(&self, id: u64) -> bool {
        match self.msgs.lock().expect("ledger").get_mut(&id) {
            Some(e) => {
                e.received += 1;
                true
            }
            None => {
                self.unknown.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Bodies received that no client sent.
    pub fn unknown(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
    }

    /// Acknowledged messages not received yet.
    pub fn outstanding(&self) -> u64 {
        self.msgs
            .lock()
            .expect("ledger")
            .values()
            .filter(|e| e.acked && e.received == 0)
            .count() as u64
    }

    /// Counts for one kind of message.
    pub fn counts(&self, kind: Kind) -> LedgerCounts {
        let mut c = LedgerCounts::default();
        for e in self.msgs.lock().expect("ledger").values() {
            if e.kind != kind {
                continue;
            }
            c.sent += 1;
            c.acked += u64::from(e.acked);
            c.received += u64::from(e.received > 0);
            c.duplicates += u64::from(e.received.saturating_sub(1));
            c.lost += u64::from(e.acked && e.received == 0);
            c.unacked_missing += u64::from(!e.acked && e.received == 0);
        }
        c
    }
}

/// The number in a soak body, if the body is one.
pub fn parse_body(body: &str, prefix: &str) -> Option<u64> {
    body.strip_prefix(prefix)?.trim().parse().ok()
}

/// Counters shared by every task.
#[derive(Debug, Default)]
struct Counters {
    logins: AtomicU64,
    plugin_logins: AtomicU64,
    login_failures: AtomicU64,
    clean_closes: AtomicU64,
    cuts: AtomicU64,
    resumes: AtomicU64,
    resume_failures: AtomicU64,
    fresh_logins: AtomicU64,
    stream_errors: AtomicU64,
    bounces: AtomicU64,
    muc_joins: AtomicU64,
    muc_join_failures: AtomicU64,
    muc_leaves: AtomicU64,
    muc_sent: AtomicU64,
    muc_received: AtomicU64,
    muc_echo_missing: AtomicU64,
    bosh_logins: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Load,
    /// Clients reconnect and collect; no new messages.
    Drain,
    Done,
}

struct Ctx {
    job: SoakJob,
    ledger: Ledger,
    n: Counters,
    phase: watch::Receiver<Phase>,
    /// Chat and BOSH clients online in the drain phase.
    drained: AtomicU64,
    /// Distinct error messages (at most [`MAX_ERRORS`]) and how often each came.
    errors: Mutex<Vec<(String, u64)>>,
    server_died: AtomicBool,
}

impl Ctx {
    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn error(&self, what: impl std::fmt::Display) {
        let what = what.to_string();
        let mut e = self.errors.lock().expect("errors");
        if let Some(slot) = e.iter_mut().find(|(w, _)| *w == what) {
            slot.1 += 1;
        } else if e.len() < MAX_ERRORS {
            e.push((what, 1));
        }
    }

    /// Sleeps `d`, cut short when the phase passes `Load`; true if still loading.
    async fn nap(&self, d: Duration) -> bool {
        let mut rx = self.phase.clone();
        let _ = tokio::time::timeout(d, rx.wait_for(|p| *p != Phase::Load)).await;
        self.phase() == Phase::Load
    }

    /// Sleeps `d`, cut short only at `Done`; true unless done.
    async fn wait(&self, d: Duration) -> bool {
        let mut rx = self.phase.clone();
        let _ = tokio::time::timeout(d, rx.wait_for(|p| *p == Phase::Done)).await;
        self.phase() != Phase::Done
    }
}

/// A connection after login: raw I/O and the stream parser.
struct Link {
    io: Io,
    parser: StreamParser,
    buf: Vec<u8>,
}

/// How a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connection closed by the server")]
    Closed,
    #[error("stream closed by the server")]
    StreamClosed,
    #[error("stream error: {0}")]
    Stream(String),
    #[error("XML: {0}")]
    Xml(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Link {
    fn new(io: Io, parser: StreamParser) -> Self {
        Link {
            io,
            parser,
            buf: vec![0u8; 16 * 1024],
        }
    }

    /// Stanzas the parser already holds (no read).
    fn drain_parsed(&mut self, out: &mut Vec<Element>) -> Result<(), LinkError> {
        loop {
            match self.parser.next_event() {
                Ok(Some(StreamEvent::Stanza(el))) if el.is("error", ns::STREAM) => {
                    return Err(LinkError::Stream(el.to_string_in(ns::CLIENT)));
                }
                Ok(Some(StreamEvent::Stanza(el))) => out.push(el),
                Ok(Some(StreamEvent::Open(_))) => {}
                Ok(Some(StreamEvent::Close)) => return Err(LinkError::StreamClosed),
                Ok(None) => return Ok(()),
                Err(e) => return Err(LinkError::Xml(e.to_string())),
            }
        }
    }

    /// One read; appends the complete stanzas. Cancel-safe (nothing happens after the
    /// read's await point that a cancellation could cut).
    async fn read(&mut self, out: &mut Vec<Element>) -> Result<(), LinkError> {
        let n = self.io.read(&mut self.buf).await?;
        if n == 0 {
            return Err(LinkError::Closed);
        }
        self.parser
            .feed(&self.buf[..n])
            .map_err(|e| LinkError::Xml(e.to_string()))?;
        self.drain_parsed(out)
    }

    /// Sends `</stream:stream>` and waits (briefly) for the server's; returns the stanzas
    /// that came meanwhile (delivered: the stream ended cleanly after them).
    async fn close(mut self) -> Vec<Element> {
        let _ = self.io.write_all(b"</stream:stream>").await;
        let mut received = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.read(&mut received).await.is_ok() {}
        })
        .await;
        let _ = self.io.shutdown().await;
        received
    }
}

fn is_stanza(el: &Element) -> bool {
    crate::sm::is_stanza(el.name().as_bytes())
}

fn ping_reply(el: &Element) -> Option<String> {
    (el.name() == "iq" && el.attr("type") == Some("get") && el.has_child("ping", ns::PING)).then(
        || {
            Element::new("iq", ns::CLIENT)
                .with_attr("type", "result")
                .with_attr("id", el.attr("id").unwrap_or(""))
                .to_string_in(ns::CLIENT)
        },
    )
}

fn chat_message(to: &str, id: u64) -> String {
    format!("<message to='{to}' type='chat' id='s{id}'><body>{CHAT_PREFIX}{id}</body></message>")
}

/// A chat client's stream management state across connections.
struct SmClient {
    /// Resumption id of the current session, if it can be resumed.
    id: Option<String>,
    /// Stanzas received in this session (our `h`).
    inbound: u32,
    /// Stanzas sent in this session.
    outbound: u32,
    /// Sent stanzas not yet acknowledged: (their count, the ledger number of a message).
    unacked: VecDeque<(u32, Option<u64>)>,
}

impl SmClient {
    fn new() -> Self {
        SmClient {
            id: None,
            inbound: 0,
            outbound: 0,
            unacked: VecDeque::new(),
        }
    }

    fn sent(&mut self, msg: Option<u64>) {
        self.outbound = self.outbound.wrapping_add(1);
        self.unacked.push_back((self.outbound, msg));
    }

    /// The server handled `h` of our stanzas.
    fn acked(&mut self, h: u32, ledger: &Ledger) {
        while let Some(&(n, msg)) = self.unacked.front() {
            if n.wrapping_sub(h) as i32 > 0 {
                break;
            }
            self.unacked.pop_front();
            if let Some(id) = msg {
                ledger.ack(id);
            }
        }
    }

    /// A new session (fresh login): what was not acknowledged stays unacknowledged.
    fn fresh(&mut self, id: String) {
        self.id = Some(id);
        self.inbound = 0;
        self.outbound = 0;
        self.unacked.clear();
    }

    /// After `<resumed h='…'/>`: acknowledged up to `h`; the rest is given up (not resent),
    /// and counting goes on from the server's `h`.
    fn resumed(&mut self, h: u32, ledger: &Ledger) {
        self.acked(h, ledger);
        self.unacked.clear();
        self.outbound = h;
    }
}

/// One 1:1 chat client (account `i`, partner `i ^ 1`).
struct ChatClient {
    ctx: Arc<Ctx>,
    user: String,
    to: String,
    spec: LoginSpec,
    source: IpAddr,
    sm: SmClient,
    rng: Rng,
}

impl ChatClient {
    /// Handles incoming stanzas; returns what to write back.
    fn handle(&mut self, stanzas: &[Element], counted: bool, out: &mut String) {
        for el in stanzas {
            if el.ns() == crate::sm::NS {
                match el.name() {
                    "r" => out.push_str(&crate::sm::ack(self.sm.inbound)),
                    "a" => {
                        if let Some(h) = el.attr("h").and_then(|h| h.parse().ok()) {
                            self.sm.acked(h, &self.ctx.ledger);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if !is_stanza(el) {
                continue;
            }
            if counted {
                self.sm.inbound = self.sm.inbound.wrapping_add(1);
            }
            if el.name() == "message" {
                if el.attr("type") == Some("error") {
                    inc(&self.ctx.n.bounces);
                    self.ctx.error(format!(
                        "{} got a bounce: {}",
                        self.user,
                        el.to_string_in(ns::CLIENT)
                    ));
                } else if let Some(id) = el
                    .child_text("body", ns::CLIENT)
                    .and_then(|b| parse_body(&b, CHAT_PREFIX))
                    && !self.ctx.ledger.receive(id)
                {
                    self.ctx
                        .error(format!("{} received unknown message {id}", self.user));
                }
            }
            if let Some(reply) = ping_reply(el) {
                out.push_str(&reply);
                self.sm.sent(None);
            }
        }
    }

    /// Logs in fresh: bind, enable resumable SM, then initial presence (in that order, so
    /// the offline messages that presence releases are covered by stream management).
    async fn login(&mut self) -> anyhow::Result<Link> {
        let (mut io, mut parser) =
            xmpp::authenticated(&self.spec, Some(self.source), &self.user, PASSWORD).await?;
        xmpp::bind(&mut io, &mut parser, "soak").await?;
        io.write_all(crate::sm::enable_resumable().as_bytes())
            .await?;
        let mut link = Link::new(io, parser);
        let mut stanzas = Vec::new();
        let mut out = String::new();
        let id = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                link.drain_parsed(&mut stanzas)?;
                if let Some(p) = stanzas.iter().position(|el| {
                    el.is("enabled", crate::sm::NS) || el.is("failed", crate::sm::NS)
                }) {
                    let el = stanzas.remove(p);
                    // Stanzas before <enabled/> are not counted; after it they are.
                    let after = stanzas.split_off(p);
                    self.handle(&stanzas, false, &mut out);
                    stanzas = after;
                    anyhow::ensure!(
                        el.name() == "enabled",
                        "SM refused: {}",
                        el.to_string_in(ns::CLIENT)
                    );
                    return el
                        .attr("id")
                        .map(str::to_string)
                        .ok_or_else(|| anyhow::anyhow!("<enabled/> without id"));
                }
                link.read(&mut stanzas).await?;
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("no <enabled/> within 30 s"))??;
        self.sm.fresh(id);
        self.handle(&stanzas, true, &mut out);
        out.push_str("<presence/>");
        self.sm.sent(None);
        link.io.write_all(out.as_bytes()).await?;
        inc(&self.ctx.n.logins);
        Ok(link)
    }

    /// Resumes the previous session; falls back to a fresh login when refused.
    async fn connect(&mut self) -> anyhow::Result<Link> {
        if let Some(id) = self.sm.id.clone() {
            match xmpp::resume_stream(
                &self.spec,
                Some(self.source),
                &self.user,
                PASSWORD,
                &id,
                self.sm.inbound,
            )
            .await
            {
                Ok((io, parser, h)) => {
                    self.sm.resumed(h, &self.ctx.ledger);
                    inc(&self.ctx.n.resumes);
                    return Ok(Link::new(io, parser));
                }
                Err(e) => {
                    inc(&self.ctx.n.resume_failures);
                    self.ctx.error(format!("{}: resume: {e:#}", self.user));
                    self.sm.id = None;
                }
            }
        }
        inc(&self.ctx.n.fresh_logins);
        self.login().await
    }

    /// Runs a connection until `until` (or the drain, or an error). Returns Ok(true) when
    /// the lifetime ran out, Ok(false) when the phase moved on.
    async fn live(&mut self, link: &mut Link, until: Instant) -> Result<bool, LinkError> {
        let mut stanzas = Vec::new();
        let mut out = String::new();
        // Stanzas the resumption or login already parsed.
        link.drain_parsed(&mut stanzas)?;
        self.handle(&stanzas, true, &mut out);
        let mut phase = self.ctx.phase.clone();
        let mut next_send = Instant::now() + self.send_gap();
        loop {
            if !out.is_empty() {
                link.io.write_all(out.as_bytes()).await?;
                out.clear();
            }
            let loading = *phase.borrow() == Phase::Load;
            if !loading {
                return Ok(false);
            }
            stanzas.clear();
            tokio::select! {
                r = link.read(&mut stanzas) => {
                    r?;
                    self.handle(&stanzas, true, &mut out);
                }
                _ = tokio::time::sleep_until(next_send.into()) => {
                    let id = self.ctx.ledger.send(Kind::Chat);
                    out.push_str(&chat_message(&self.to, id));
                    self.sm.sent(Some(id));
                    out.push_str(&crate::sm::request());
                    next_send = Instant::now() + self.send_gap();
                }
                _ = tokio::time::sleep_until(until.into()) => return Ok(true),
                _ = phase.changed() => {}
            }
        }
    }

    fn send_gap(&mut self) -> Duration {
        let m = self.ctx.job.message_interval;
        self.rng.between(m / 2, m + m / 2)
    }

    /// Asks for an ack and reads until every sent stanza is acknowledged (or `limit`).
    async fn settle(&mut self, link: &mut Link, limit: Duration) -> Result<(), LinkError> {
        link.io.write_all(crate::sm::request().as_bytes()).await?;
        let deadline = Instant::now() + limit;
        let mut stanzas = Vec::new();
        let mut out = String::new();
        while !self.sm.unacked.is_empty() && Instant::now() < deadline {
            stanzas.clear();
            match tokio::time::timeout_at(deadline.into(), link.read(&mut stanzas)).await {
                Ok(r) => r?,
                Err(_) => break,
            }
            self.handle(&stanzas, true, &mut out);
            if !out.is_empty() {
                link.io.write_all(out.as_bytes()).await?;
                out.clear();
            }
        }
        Ok(())
    }

    /// Online through the drain until `Done`, answering the server, then a clean close.
    async fn hold(&mut self, mut link: Link) {
        let _ = self.settle(&mut link, Duration::from_secs(10)).await;
        self.ctx.drained.fetch_add(1, Ordering::Relaxed);
        let mut phase = self.ctx.phase.clone();
        let mut stanzas = Vec::new();
        let mut out = String::new();
        loop {
            if *phase.borrow() == Phase::Done {
                break;
            }
            stanzas.clear();
            tokio::select! {
                r = link.read(&mut stanzas) => {
                    if let Err(e) = r {
                        self.ctx.error(format!("{} during the drain: {e}", self.user));
                        self.ctx.drained.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                    self.handle(&stanzas, true, &mut out);
                    if !out.is_empty() && link.io.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                _ = phase.changed() => {}
            }
        }
        // Acknowledge everything so that the server has nothing to route again.
        let _ = link
            .io
            .write_all(crate::sm::ack(self.sm.inbound).as_bytes())
            .await;
        link.close().await;
    }

    async fn run(mut self) {
        while self.ctx.phase() != Phase::Done {
            let link = match tokio::time::timeout(Duration::from_secs(60), self.connect()).await {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    inc(&self.ctx.n.login_failures);
                    self.ctx.error(format!("{}: login: {e:#}", self.user));
                    if !self.ctx.wait(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    inc(&self.ctx.n.login_failures);
                    self.ctx.error(format!("{}: login timed out", self.user));
                    continue;
                }
            };
            let mut link = link;
            if self.ctx.phase() != Phase::Load {
                self.hold(link).await;
                return;
            }
            let job = &self.ctx.job;
            let until = Instant::now() + self.rng.between(job.cut_min, job.cut_max);
            match self.live(&mut link, until).await {
                Ok(false) => {
                    self.hold(link).await;
                    return;
                }
                Ok(true) => {}
                Err(e) => {
                    inc(&self.ctx.n.stream_errors);
                    self.ctx.error(format!("{}: {e}", self.user));
                }
            }
            if self.rng.chance(0.1) {
                // A clean end: everything acknowledged, then </stream:stream>.
                let _ = self.settle(&mut link, Duration::from_secs(10)).await;
                link.close().await;
                inc(&self.ctx.n.clean_closes);
                self.sm.id = None;
                if !self
                    .ctx
                    .nap(self.rng.between(Duration::ZERO, Duration::from_secs(3)))
                    .await
                {
                    continue;
                }
            } else {
                crate::resume::reset(link.io);
                inc(&self.ctx.n.cuts);
                if self.rng.chance(self.ctx.job.fresh_share) {
                    // Wait out the resume timeout: the session's unacknowledged messages
                    // go to offline storage, and the next login is a fresh one.
                    self.sm.id = None;
                    let wait = self.ctx.job.resume_timeout + Duration::from_secs(3);
                    if !self.ctx.wait(wait).await {
                        return;
                    }
                } else {
                    let _ = self
                        .ctx
                        .nap(self.rng.between(Duration::ZERO, Duration::from_secs(3)))
                        .await;
                }
            }
        }
    }
}

/// A login loop: login, roster, leave (cleanly or with a reset), pause, again.
async fn login_loop(ctx: Arc<Ctx>, k: usize, plugin: bool, mut rng: Rng) {
    let job = &ctx.job;
    let mut round = 0usize;
    while ctx.phase() == Phase::Load {
        let (domain, user) = match (&job.plugin_domain, plugin) {
            (Some(d), true) => (
                d.clone(),
                format!("{}p{}", job.prefix, round % job.plugin_users.max(1)),
            ),
            _ => (job.domain.clone(), format!("{}l{k}", job.prefix)),
        };
        round += 1;
        // The plugin (plugins/allowlist) refuses logins without TLS.
        let transport = if plugin {
            [TransportKind::Starttls, TransportKind::Tls][round % 2]
        } else {
            [
                TransportKind::Plain,
                TransportKind::Starttls,
                TransportKind::Tls,
            ][(round + k) % 3]
        };
        let mech = if plugin || round.is_multiple_of(2) {
            Mech::Plain
        } else {
            Mech::ScramSha256
        };
        let spec = job.spec(&domain, transport, mech);
        let source = xmpp::source_ip(round, 50);
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            let s = xmpp::login(&spec, Some(source), &user, PASSWORD, "login").await?;
            let mut link = Link::new(s.io, s.parser);
            link.io
                .write_all(b"<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
                .await?;
            let mut stanzas = Vec::new();
            loop {
                link.read(&mut stanzas).await?;
                if let Some(el) = stanzas
                    .iter()
                    .find(|el| el.name() == "iq" && el.attr("id") == Some("roster"))
                {
                    anyhow::ensure!(
                        el.attr("type") == Some("result"),
                        "roster get failed: {}",
                        el.to_string_in(ns::CLIENT)
                    );
                    break;
                }
                stanzas.clear();
            }
            anyhow::Ok(link)
        })
        .await;
        match r {
            Ok(Ok(link)) => {
                inc(if plugin {
                    &ctx.n.plugin_logins
                } else {
                    &ctx.n.logins
                });
                if rng.chance(0.5) {
                    link.close().await;
                    inc(&ctx.n.clean_closes);
                } else {
                    crate::resume::reset(link.io);
                    inc(&ctx.n.cuts);
                }
            }
            Ok(Err(e)) => {
                inc(&ctx.n.login_failures);
                ctx.error(format!("{user}@{domain}: login: {e:#}"));
            }
            Err(_) => {
                inc(&ctx.n.login_failures);
                ctx.error(format!("{user}@{domain}: login timed out"));
            }
        }
        ctx.nap(rng.between(Duration::from_millis(100), Duration::from_millis(600)))
            .await;
    }
}

/// A MUC occupant: login, then join, post, leave, rejoin; now and then a new login.
async fn occupant(ctx: Arc<Ctx>, i: usize, mut rng: Rng) {
    let job = &ctx.job;
    let user = format!("{}m{i}", job.prefix);
    let room = format!(
        "{}-room{}@{}",
        job.prefix,
        i % job.rooms.max(1),
        job.muc_service
    );
    let spec = job.spec(&job.domain, TransportKind::Plain, Mech::Plain);
    let source = xmpp::source_ip(i, 50);
    'login: while ctx.phase() == Phase::Load {
        let mut s = match tokio::time::timeout(
            Duration::from_secs(30),
            xmpp::login(&spec, Some(source), &user, PASSWORD, "muc"),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                inc(&ctx.n.login_failures);
                ctx.error(format!("{user}: login: {e:#}"));
                ctx.nap(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => {
                inc(&ctx.n.login_failures);
                ctx.error(format!("{user}: login timed out"));
                continue;
            }
        };
        inc(&ctx.n.logins);
        for _ in 0..1 + rng.next_u64() % 3 {
            if ctx.phase() != Phase::Load {
                break;
            }
            match tokio::time::timeout(
                Duration::from_secs(30),
                crate::muc::join(&mut s, &room, &user, false),
            )
            .await
            {
                Ok(Ok(_)) => inc(&ctx.n.muc_joins),
                r => {
                    // A room just made anew by someone else is locked until its creator
                    // unlocks it: try again shortly.
                    inc(&ctx.n.muc_join_failures);
                    if let Ok(Err(e)) = r
                        && !format!("{e:#}").contains("item-not-found")
                    {
                        ctx.error(format!("{user}: join: {e:#}"));
                    }
                    ctx.nap(rng.between(Duration::from_millis(200), Duration::from_secs(2)))
                        .await;
                    continue;
                }
            }
            let mut link = Link::new(s.io, s.parser);
            let stay = rng.between(Duration::from_secs(15), Duration::from_secs(60));
            let r = in_room(&ctx, &mut link, &room, &user, stay, &mut rng).await;
            s = xmpp::Session {
                io: link.io,
                parser: link.parser,
                full_jid: s.full_jid,
                sm: None,
            };
            if let Err(e) = r {
                inc(&ctx.n.stream_errors);
                ctx.error(format!("{user} in {room}: {e:#}"));
                continue 'login;
            }
            inc(&ctx.n.muc_leaves);
            ctx.nap(rng.between(Duration::from_millis(500), Duration::from_secs(4)))
                .await;
        }
        let link = Link::new(s.io, s.parser);
        if rng.chance(0.5) {
            link.close().await;
            inc(&ctx.n.clean_closes);
        } else {
            crate::resume::reset(link.io);
            inc(&ctx.n.cuts);
        }
        ctx.nap(rng.between(Duration::from_millis(500), Duration::from_secs(4)))
            .await;
    }
}

/// In a room for `stay`: posts now and then, counts deliveries, then leaves once its own
/// messages came back (or 10 s passed: the missing ones are counted).
async fn in_room(
    ctx: &Ctx,
    link: &mut Link,
    room: &str,
    nick: &str,
    stay: Duration,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let mut pending: std::collections::HashSet<u64> = Default::default();
    let until = Instant::now() + stay;
    let gap = |rng: &mut Rng| rng.between(Duration::from_millis(700), Duration::from_secs(3));
    let mut next_send = Instant::now() + gap(rng);
    let mut stanzas = Vec::new();
    let mut leaving: Option<Instant> = None;
    let mut out = String::new();
    loop {
        if !out.is_empty() {
            link.io.write_all(out.as_bytes()).await?;
            out.clear();
        }
        let now = Instant::now();
        if leaving.is_none() && (now >= until || ctx.phase() != Phase::Load) {
            leaving = Some(now + Duration::from_secs(10));
        }
        if let Some(t) = leaving
            && (pending.is_empty() || now >= t)
        {
            break;
        }
        stanzas.clear();
        tokio::select! {
            r = link.read(&mut stanzas) => {
                r?;
                for el in &stanzas {
                    if let Some(reply) = ping_reply(el) {
                        out.push_str(&reply);
                    }
                    if el.name() != "message" || el.attr("type") != Some("groupchat") {
                        continue;
                    }
                    let Some(id) = el.child_text("body", ns::CLIENT).and_then(|b| parse_body(&b, MUC_PREFIX)) else { continue };
                    inc(&ctx.n.muc_received);
                    if el.attr("from").is_some_and(|f| f.ends_with(&format!("/{nick}"))) {
                        pending.remove(&id);
                    }
                }
            }
            _ = tokio::time::sleep_until(next_send.into()), if leaving.is_none() => {
                let id = ctx.ledger.next.fetch_add(1, Ordering::Relaxed);
                out.push_str(&format!(
                    "<message to='{room}' type='groupchat' id='g{id}'><body>{MUC_PREFIX}{id}</body></message>"
                ));
                pending.insert(id);
                inc(&ctx.n.muc_sent);
                next_send = Instant::now() + gap(rng);
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    ctx.n
        .muc_echo_missing
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
    if !pending.is_empty() {
        ctx.error(format!(
            "{nick} in {room}: {} own messages not reflected",
            pending.len()
        ));
    }
    // Leave and wait for the self-presence of type unavailable.
    link.io
        .write_all(format!("<presence to='{room}/{nick}' type='unavailable'/>").as_bytes())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        stanzas.clear();
        match tokio::time::timeout_at(deadline.into(), link.read(&mut stanzas)).await {
            Err(_) => anyhow::bail!("no unavailable self-presence from {room} within 10 s"),
            Ok(r) => r?,
        }
        if stanzas.iter().any(|el| {
            el.name() == "presence"
                && el.attr("type") == Some("unavailable")
                && el.attr("from") == Some(&format!("{room}/{nick}"))
        }) {
            return Ok(());
        }
    }
}

/// A BOSH chat client: login, chat for a while (each message followed by a ping whose
/// answer marks it handled), clean logout, again. Through the drain it stays online.
async fn bosh_client(ctx: Arc<Ctx>, i: usize, mut rng: Rng) {
    let job = &ctx.job;
    let user = format!("{}b{i}", job.prefix);
    let to = format!("{}b{}@{}", job.prefix, i ^ 1, job.domain);
    let mech = if i.is_multiple_of(2) {
        Mech::Plain
    } else {
        Mech::ScramSha256
    };
    let spec = job.spec(&job.domain, TransportKind::Bosh, mech);
    let source = xmpp::source_ip(i, 50);
    loop {
        let s = match tokio::time::timeout(
            Duration::from_secs(30),
            xmpp::login(&spec, Some(source), &user, PASSWORD, "bosh"),
        )
        .await
        {
            Ok(Ok(s)) => s,
            r => {
                inc(&ctx.n.login_failures);
                ctx.error(format!(
                    "{user}: BOSH login: {}",
                    match r {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "timed out".into(),
                    }
                ));
                if !ctx.wait(Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        inc(&ctx.n.bosh_logins);
        let mut link = Link::new(s.io, s.parser);
        let stay = rng.between(Duration::from_secs(15), Duration::from_secs(60));
        let mut drained = false;
        let r = bosh_session(&ctx, &mut link, &to, stay, &mut rng, &mut drained).await;
        if let Err(e) = r {
            inc(&ctx.n.stream_errors);
            ctx.error(format!("{user}: BOSH: {e:#}"));
            if drained {
                ctx.drained.fetch_sub(1, Ordering::Relaxed);
            }
            if ctx.phase() == Phase::Done {
                return;
            }
            continue;
        }
        // A BOSH logout's answer carries what the server still held for the session.
        for el in link.close().await {
            if el.name() == "message" {
                bosh_received(&ctx, &el);
            }
        }
        inc(&ctx.n.clean_closes);
        if drained || ctx.phase() == Phase::Done {
            return;
        }
        if ctx.phase() == Phase::Drain {
            continue;
        }
        ctx.nap(rng.between(Duration::from_secs(1), Duration::from_secs(5)))
            .await;
    }
}

/// A message that reached a BOSH client: a bounce, or one of the ledger's.
fn bosh_received(ctx: &Ctx, el: &Element) {
    if el.attr("type") == Some("error") {
        inc(&ctx.n.bounces);
        ctx.error(format!("BOSH bounce: {}", el.to_string_in(ns::CLIENT)));
    } else if let Some(id) = el
        .child_text("body", ns::CLIENT)
        .and_then(|b| parse_body(&b, CHAT_PREFIX))
        && !ctx.ledger.receive(id)
    {
        ctx.error(format!("BOSH client received unknown message {id}"));
    }
}

/// One BOSH session: chat until `stay` passed while loading, or until `Done` once the
/// drain began (counted in `ctx.drained`, and `drained` set, once its pings are
/// answered); then wait for the pings still unanswered (10 s at most).
async fn bosh_session(
    ctx: &Ctx,
    link: &mut Link,
    to: &str,
    stay: Duration,
    rng: &mut Rng,
    drained: &mut bool,
) -> anyhow::Result<()> {
    let until = Instant::now() + stay;
    let gap = |rng: &mut Rng| {
        let m = ctx.job.message_interval;
        rng.between(m, m * 2)
    };
    let mut next_send = Instant::now() + gap(rng);
    let mut pings: HashMap<String, u64> = HashMap::new();
    let mut stanzas = Vec::new();
    let mut out = String::new();
    let mut phase = ctx.phase.clone();
    let started_in_load = ctx.phase() == Phase::Load;
    let mut stopping: Option<Instant> = None;
    loop {
        if !out.is_empty() {
            link.io.write_all(out.as_bytes()).await?;
            out.clear();
        }
        let p = *phase.borrow();
        let now = Instant::now();
        if p != Phase::Load && !*drained && pings.is_empty() {
            ctx.drained.fetch_add(1, Ordering::Relaxed);
            *drained = true;
        }
        if stopping.is_none() {
            let over = if started_in_load && p == Phase::Load {
                now >= until
            } else {
                p == Phase::Done
            };
            // A session that was loading when the drain began stays for it.
            if over {
                stopping = Some(now + Duration::from_secs(10));
            }
        }
        if let Some(t) = stopping
            && (pings.is_empty() || now >= t)
        {
            return Ok(());
        }
        stanzas.clear();
        tokio::select! {
            r = link.read(&mut stanzas) => {
                r?;
                for el in &stanzas {
                    if let Some(reply) = ping_reply(el) {
                        out.push_str(&reply);
                    }
                    match el.name() {
                        "iq" => {
                            if let Some(id) = el.attr("id").and_then(|id| pings.remove(id))
                                && el.attr("type") == Some("result")
                            {
                                ctx.ledger.ack(id);
                            }
                        }
                        "message" => bosh_received(ctx, el),
                        _ => {}
                    }
                }
            }
            _ = tokio::time::sleep_until(next_send.into()), if stopping.is_none() && p == Phase::Load => {
                let id = ctx.ledger.send(Kind::Bosh);
                out.push_str(&chat_message(to, id));
                let ping = format!("bp{id}");
                out.push_str(&format!(
                    "<iq type='get' id='{ping}' to='{}'><ping xmlns='{}'/></iq>",
                    ctx.job.domain,
                    ns::PING
                ));
                pings.insert(ping, id);
                next_send = Instant::now() + gap(rng);
            }
            _ = phase.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// RSS samples: (seconds since the start, KiB).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RssTrace {
    pub samples: Vec<(u64, u64)>,
}

impl RssTrace {
    /// The baseline: the first sample at or after 5 minutes, or after half the run when
    /// it is shorter than 10 minutes.
    pub fn baseline(&self, duration: Duration) -> Option<(u64, u64)> {
        let at = if duration >= RSS_JUDGED_FROM {
            RSS_BASELINE_AT
        } else {
            duration / 2
        };
        self.samples
            .iter()
            .copied()
            .find(|&(t, _)| t >= at.as_secs())
    }

    pub fn max(&self) -> u64 {
        self.samples.iter().map(|s| s.1).max().unwrap_or(0)
    }
}

/// Everything a soak run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    pub duration_s: f64,
    pub drain_s: f64,
    pub logins: u64,
    pub plugin_logins: u64,
    pub login_failures: u64,
    pub clean_closes: u64,
    pub cuts: u64,
    pub resumes: u64,
    pub resume_failures: u64,
    pub fresh_logins: u64,
    pub stream_errors: u64,
    pub bounces: u64,
    pub chat: LedgerCounts,
    pub bosh: LedgerCounts,
    /// Soak bodies received that no client sent (must be 0).
    pub unknown_received: u64,
    pub bosh_logins: u64,
    pub muc_joins: u64,
    pub muc_join_failures: u64,
    pub muc_leaves: u64,
    pub muc_sent: u64,
    pub muc_received: u64,
    pub muc_echo_missing: u64,
    pub rss_baseline_at_s: u64,
    pub rss_baseline_kib: u64,
    /// At the end of the load (before the drain).
    pub rss_end_kib: u64,
    pub rss_after_drain_kib: u64,
    pub rss_max_kib: u64,
    pub rss_ratio: f64,
    pub rss: RssTrace,
    pub server_died: bool,
    /// Distinct errors the clients met, with how often each came.
    pub errors: Vec<(String, u64)>,
}

impl SoakReport {
    /// Lost messages of every kind.
    pub fn lost(&self) -> u64 {
        self.chat.lost + self.bosh.lost
    }

    /// The verdict: every failure found (empty: passed).
    pub fn failures(&self) -> Vec<SoakFailure> {
        let mut f = Vec::new();
        if self.lost() > 0 {
            f.push(SoakFailure::Lost(self.lost()));
        }
        if self.duration_s >= RSS_JUDGED_FROM.as_secs_f64()
            && self.rss_baseline_kib > 0
            && self.rss_ratio > RSS_LIMIT
        {
            f.push(SoakFailure::Growth {
                baseline: self.rss_baseline_kib,
                end: self.rss_end_kib,
                ratio: self.rss_ratio,
                limit: RSS_LIMIT,
            });
        }
        if self.server_died {
            f.push(SoakFailure::ServerDied);
        }
        f
    }
}

fn rss_now(pid: u32) -> Option<u64> {
    procfs::sample(pid).ok().map(|s| s.rss_kib)
}

/// Runs the soak against a server whose accounts exist (see [`SoakJob::accounts`]).
pub async fn run(job: SoakJob, progress: impl Fn(&str) + Send + Sync + 'static) -> SoakReport {
    let (phase_tx, phase_rx) = watch::channel(Phase::Load);
    let ctx = Arc::new(Ctx {
        job: job.clone(),
        ledger: Ledger::default(),
        n: Counters::default(),
        phase: phase_rx,
        drained: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        server_died: AtomicBool::new(false),
    });
    let mut seeds = Rng::new(job.seed);
    let mut tasks = Vec::new();
    let mut drainers = 0u64;
    let transports = [
        TransportKind::Plain,
        TransportKind::Starttls,
        TransportKind::Tls,
    ];
    for i in 0..job.pairs * 2 {
        let mech = if i % 3 == 0 {
            Mech::ScramSha256
        } else {
            Mech::Plain
        };
        let client = ChatClient {
            ctx: ctx.clone(),
            user: chat_user(&job.prefix, i),
            to: format!("{}@{}", chat_user(&job.prefix, i ^ 1), job.domain),
            spec: job.spec(&job.domain, transports[i % 3], mech),
            source: xmpp::source_ip(i, 50),
            sm: SmClient::new(),
            rng: Rng::new(seeds.next_u64()),
        };
        drainers += 1;
        tasks.push(tokio::spawn(client.run()));
    }
    if job.http.is_some() {
        for i in 0..job.bosh_pairs * 2 {
            drainers += 1;
            tasks.push(tokio::spawn(bosh_client(
                ctx.clone(),
                i,
                Rng::new(seeds.next_u64()),
            )));
        }
    }
    for i in 0..job.rooms * job.occupants {
        tasks.push(tokio::spawn(occupant(
            ctx.clone(),
            i,
            Rng::new(seeds.next_u64()),
        )));
    }
    for k in 0..job.login_loops {
        tasks.push(tokio::spawn(login_loop(
            ctx.clone(),
            k,
            false,
            Rng::new(seeds.next_u64()),
        )));
    }
    if job.plugin_domain.is_some() {
        tasks.push(tokio::spawn(login_loop(
            ctx.clone(),
            0,
            true,
            Rng::new(seeds.next_u64()),
        )));
    }

    // Load: sample RSS until the duration is over or the server is gone.
    let start = Instant::now();
    let mut rss = RssTrace::default();
    let mut next_sample = start;
    let mut next_report = start + Duration::from_secs(60);
    while start.elapsed() < job.duration {
        if Instant::now() >= next_sample {
            match rss_now(job.pid) {
                Some(kib) => rss.samples.push((start.elapsed().as_secs(), kib)),
                None => {
                    ctx.server_died.store(true, Ordering::Relaxed);
                    progress("the server is gone");
                    break;
                }
            }
            next_sample += job.rss_interval;
        }
        if Instant::now() >= next_report {
            let chat = ctx.ledger.counts(Kind::Chat);
            progress(&format!(
                "{:>4} s: RSS {} KiB ({}), logins {}, chat sent {} acked {} received {}, resumes {}, cuts {}, MUC {} sent, errors {}",
                start.elapsed().as_secs(),
                rss.samples.last().map(|s| s.1).unwrap_or(0),
                std::fs::read_to_string(format!("/proc/{}/status", job.pid))
                    .ok()
                    .and_then(|status| Some((
                        procfs::rss_split_from_status(&status)?,
                        procfs::threads_from_status(&status)?,
                    )))
                    .map(|((anon, file), threads)| format!(
                        "anonymous {anon}, file-backed {file}, {threads} threads"
                    ))
                    .unwrap_or_default(),
                get(&ctx.n.logins) + get(&ctx.n.plugin_logins),
                chat.sent,
                chat.acked,
                chat.received,
                get(&ctx.n.resumes),
                get(&ctx.n.cuts),
                get(&ctx.n.muc_sent),
                ctx.errors
                    .lock()
                    .expect("errors")
                    .iter()
                    .map(|e| e.1)
                    .sum::<u64>(),
            ));
            next_report += Duration::from_secs(60);
        }
        let wake = next_sample.min(next_report).min(start + job.duration);
        tokio::time::sleep_until(wake.into()).await;
    }
    let load_s = start.elapsed().as_secs_f64();
    let rss_end = rss_now(job.pid);
    if let Some(kib) = rss_end {
        rss.samples.push((start.elapsed().as_secs(), kib));
    }

    // Drain: everyone back online, until every acknowledged message arrived.
    let _ = phase_tx.send(Phase::Drain);
    let drain_start = Instant::now();
    progress("load over; draining");
    if !ctx.server_died.load(Ordering::Relaxed) {
        while drain_start.elapsed() < job.drain {
            if ctx.drained.load(Ordering::Relaxed) >= drainers && ctx.ledger.outstanding() == 0 {
                break;
            }
            if rss_now(job.pid).is_none() {
                ctx.server_died.store(true, Ordering::Relaxed);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Done);
    // One deadline for all: a client that does not stop is counted and aborted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            abort.abort();
            ctx.error("a client did not stop within 30 s of the end");
        }
    }
    let rss_after = rss_now(job.pid);
    if rss_after.is_none() {
        ctx.server_died.store(true, Ordering::Relaxed);
    }

    let (baseline_at, baseline) = rss.baseline(job.duration).unwrap_or((0, 0));
    let end = rss_end.unwrap_or(0);
    let n = &ctx.n;
    SoakReport {
        duration_s: load_s,
        drain_s,
        logins: get(&n.logins),
        plugin_logins: get(&n.plugin_logins),
        login_failures: get(&n.login_failures),
        clean_closes: get(&n.clean_closes),
        cuts: get(&n.cuts),
        resumes: get(&n.resumes),
        resume_failures: get(&n.resume_failures),
        fresh_logins: get(&n.fresh_logins),
        stream_errors: get(&n.stream_errors),
        bounces: get(&n.bounces),
        chat: ctx.ledger.counts(Kind::Chat),
        bosh: ctx.ledger.counts(Kind::Bosh),
        unknown_received: ctx.ledger.unknown(),
        bosh_logins: get(&n.bosh_logins),
        muc_joins: get(&n.muc_joins),
        muc_join_failures: get(&n.muc_join_failures),
        muc_leaves: get(&n.muc_leaves),
        muc_sent: get(&n.muc_sent),
        muc_received: get(&n.muc_received),
        muc_echo_missing: get(&n.muc_echo_missing),
        rss_baseline_at_s: baseline_at,
        rss_baseline_kib: baseline,
        rss_end_kib: end,
        rss_after_drain_kib: rss_after.unwrap_or(0),
        rss_max_kib: rss.max(),
        rss_ratio: if baseline > 0 {
            end as f64 / baseline as f64
        } else {
            0.0
        },
        rss,
        server_died: ctx.server_died.load(Ordering::Relaxed),
        errors: ctx.errors.lock().expect("errors").clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_cover_sent_stanzas_in_order() {
        let ledger = Ledger::default();
        let mut sm = SmClient::new();
        sm.fresh("x".into());
        sm.sent(None); // presence
        let a = ledger.send(Kind::Chat);
        sm.sent(Some(a));
        let b = ledger.send(Kind::Chat);
        sm.sent(Some(b));
        sm.acked(2, &ledger);
        assert_eq!(ledger.counts(Kind::Chat).acked, 1);
        assert_eq!(sm.unacked.len(), 1);
        // Resumed with h=2: b was never handled; counting goes on from 2.
        sm.resumed(2, &ledger);
        assert!(sm.unacked.is_empty());
        let c = ledger.send(Kind::Chat);
        sm.sent(Some(c));
        assert_eq!(sm.unacked.front(), Some(&(3, Some(c))));
        sm.acked(3, &ledger);
        assert!(ledger.receive(a));
        assert!(ledger.receive(a));
        assert!(!ledger.receive(999));
        let counts = ledger.counts(Kind::Chat);
        assert_eq!(
            counts,
            LedgerCounts {
                sent: 3,
                acked: 2,
                received: 1,
                duplicates: 1,
                lost: 1,
                unacked_missing: 1,
            }
        );
        assert_eq!(ledger.outstanding(), 1);
        assert_eq!(ledger.unknown(), 1);
        assert_eq!(ledger.counts(Kind::Bosh).sent, 0);
    }

    #[test]
    fn acks_wrap_around() {
        let ledger = Ledger::default();
        let mut sm = SmClient::new();
        sm.outbound = u32::MAX - 1;
        let a = ledger.send(Kind::Chat);
        sm.sent(Some(a)); // u32::MAX
        let b = ledger.send(Kind::Chat);
        sm.sent(Some(b)); // 0
        sm.acked(0, &ledger);
        assert!(sm.unacked.is_empty());
        assert_eq!(ledger.counts(Kind::Chat).acked, 2);
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body("soak 17", CHAT_PREFIX), Some(17));
        assert_eq!(parse_body("soakmuc 5", MUC_PREFIX), Some(5));
        assert_eq!(parse_body("soakmuc 5", CHAT_PREFIX), None);
        assert_eq!(parse_body("hello", CHAT_PREFIX), None);
        assert_eq!(
            chat_message("a@b", 3),
            "<message to='a@b' type='chat' id='s3'><body>soak 3</body></message>"
        );
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let (x, y) = (a.unit(), b.unit());
            assert_eq!(x, y);
            assert!((0.0..1.0).contains(&x));
            let d = a.between(Duration::from_secs(10), Duration::from_secs(60));
            b.between(Duration::from_secs(10), Duration::from_secs(60));
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(60));
        }
    }

    fn report(duration_s: f64, baseline: u64, end: u64, lost: u64) -> SoakReport {
        SoakReport {
            duration_s,
            drain_s: 1.0,
            logins: 1,
            plugin_logins: 0,
            login_failures: 0,
            clean_closes: 0,
            cuts: 0,
            resumes: 0,
            resume_failures: 0,
            fresh_logins: 0,
            stream_errors: 0,
            bounces: 0,
            chat: LedgerCounts {
                lost,
                ..Default::default()
            },
            bosh: LedgerCounts::default(),
            unknown_received: 0,
            bosh_logins: 0,
            muc_joins: 0,
            muc_join_failures: 0,
            muc_leaves: 0,
            muc_sent: 0,
            muc_received: 0,
            muc_echo_missing: 0,
            rss_baseline_at_s: 300,
            rss_baseline_kib: baseline,
            rss_end_kib: end,
            rss_after_drain_kib: end,
            rss_max_kib: end,
            rss_ratio: end as f64 / baseline as f64,
            rss: RssTrace::default(),
            server_died: false,
            errors: Vec::new(),
        }
    }

    #[test]
    fn verdicts() {
        assert!(report(1800.0, 100_000, 109_000, 0).failures().is_empty());
        assert_eq!(
            report(1800.0, 100_000, 100_000, 2).failures(),
            vec![SoakFailure::Lost(2)]
        );
        let f = report(1800.0, 100_000, 111_000, 0).failures();
        assert!(matches!(f[..], [SoakFailure::Growth { end: 111_000, .. }]));
        // Short runs are not judged on memory.
        assert!(report(300.0, 100_000, 200_000, 0).failures().is_empty());
        let mut r = report(1800.0, 100_000, 100_000, 0);
        r.server_died = true;
        assert_eq!(r.failures(), vec![SoakFailure::ServerDied]);
    }

    #[test]
    fn rss_baseline_is_the_first_sample_from_minute_five() {
        let trace = RssTrace {
            samples: (0..=180).map(|k| (k * 10, 1000 + k)).collect(),
        };
        assert_eq!(trace.baseline(Duration::from_secs(1800)), Some((300, 1030)));
        assert_eq!(trace.baseline(Duration::from_secs(120)), Some((60, 1006)));
        assert_eq!(trace.max(), 1180);
    }
}
