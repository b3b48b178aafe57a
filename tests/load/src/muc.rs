//! The `muc` scenario: R rooms of O occupants on the server's MUC service. Every session
//! joins its room (the first one creates it as an instant room: join, then submit the
//! owner form); then the first K occupants of each room post groupchat messages at a
//! total broadcast rate for T seconds after a warm-up. Each message carries its sender,
//! sequence number and send time; every occupant (the sender included, as XEP-0045
//! reflects messages) computes latency from it and counts deliveries, so losses are
//! sent × O − delivered and per-sender order is checked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use heliograph::xml::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::chat::now_ns;
use crate::procfs;
use crate::stats::Samples;
use crate::xmpp::{Session, next_stanza};

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

/// The room of session `i` with `occupants` per room, and its nickname.
pub fn room_of(i: usize, occupants: usize) -> usize {
    i / occupants.max(1)
}

/// The bare JID of room `r`.
pub fn room_jid(r: usize, service: &str) -> String {
    format!("load-room{r}@{service}")
}

/// Whether a presence is the joiner's own (status code 110).
fn is_self_presence(p: &Element) -> bool {
    p.is("presence", heliograph::xml::ns::CLIENT)
        && p.attr("type").is_none()
        && p.child("x", MUC_USER).is_some_and(|x| {
            x.children()
                .any(|c| c.name() == "status" && c.attr("code") == Some("110"))
        })
}

/// Whether a self-presence says the join created the room (status code 201).
fn created_room(p: &Element) -> bool {
    p.child("x", MUC_USER).is_some_and(|x| {
        x.children()
            .any(|c| c.name() == "status" && c.attr("code") == Some("201"))
    })
}

/// Joins `room` as `nick` and waits for the self-presence; the creator (or whoever the
/// server says created the room, status 201: a temporary room left empty is gone, and the
/// next join makes it anew) also unlocks the room with the owner form (instant room,
/// XEP-0045 §10.1.2). Returns the join latency.
pub async fn join(
    s: &mut Session,
    room: &str,
    nick: &str,
    creator: bool,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let presence = format!(
        "<presence to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
    );
    s.io.write_all(presence.as_bytes()).await?;
    let created;
    loop {
        let el = next_stanza(&mut s.io, &mut s.parser).await?;
        if el.name() == "presence" && el.attr("type") == Some("error") {
            bail!(
                "join {room} refused: {}",
                el.to_string_in(heliograph::xml::ns::CLIENT)
            );
        }
        if is_self_presence(&el) {
            created = created_room(&el);
            break;
        }
    }
    if creator || created {
        let iq = format!(
            "<iq type='set' to='{room}' id='unlock'><query xmlns='{MUC}#owner'>\
             <x xmlns='jabber:x:data' type='submit'/></query></iq>"
        );
        s.io.write_all(iq.as_bytes()).await?;
        loop {
            let el = next_stanza(&mut s.io, &mut s.parser).await?;
            if el.name() == "iq" && el.attr("id") == Some("unlock") {
                if el.attr("type") != Some("result") {
                    bail!(
                        "unlocking {room} failed: {}",
                        el.to_string_in(heliograph::xml::ns::CLIENT)
                    );
                }
                break;
            }
        }
    }
    Ok(t0.elapsed())
}

/// Appends one groupchat message from `sender` to `room`.
pub fn write_groupchat(out: &mut Vec<u8>, room: &str, sender: u64, seq: u64, ts: u64) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "<message to='{room}' type='groupchat' id='g{seq}'><body>{sender} {seq} {ts}</body></message>"
    );
}

/// Finds complete `<body>SENDER SEQ TS</body>` payloads; returns how many leading bytes
/// are consumed (the rest may hold an incomplete message).
pub fn scan_groupchat(buf: &[u8], found: &mut Vec<(u64, u64, u64)>) -> usize {
    const OPEN: &[u8] = b"<body>";
    const CLOSE: &[u8] = b"</body>";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut at = 0;
    loop {
        let Some(open) = find(&buf[at..], OPEN) else {
            return buf.len().saturating_sub(OPEN.len() - 1).max(at);
        };
        let start = at + open + OPEN.len();
        let Some(close) = find(&buf[start..], CLOSE) else {
            return at + open;
        };
        if let Ok(text) = std::str::from_utf8(&buf[start..start + close]) {
            let mut parts = text.split(' ').map(|p| p.parse::<u64>());
            if let (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            {
                found.push((a, b, c));
            }
        }
        at = start + close + CLOSE.len();
    }
}

/// Shared broadcast state.
struct Control {
    stop: AtomicBool,
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// Messages sent × occupants of the room: deliveries owed.
    owed: AtomicU64,
    delivered: AtomicU64,
}

/// What one session saw.
#[derive(Default)]
struct SessionResult {
    sent: u64,
    received: u64,
    out_of_order: u64,
    latencies: Samples,
    error: Option<String>,
}

/// One occupant: receives everything; a sender also posts `per_sender` messages/s.
async fn occupant(
    mut s: Session,
    room: String,
    index: u64,
    per_sender: f64,
    occupants: u64,
    ctl: Arc<Control>,
) -> SessionResult {
    let mut res = SessionResult::default();
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(4096);
    let mut found = Vec::new();
    let mut next_seq: std::collections::HashMap<u64, u64> = Default::default();
    let sending = per_sender > 0.0;
    let tick = if sending {
        Duration::from_secs_f64((1.0 / per_sender).clamp(0.002, 0.05))
    } else {
        Duration::from_secs(3600)
    };
    let start = Instant::now() + tick.mul_f64((index % 97) as f64 / 97.0);
    let mut interval = tokio::time::interval_at(start.into(), tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopped_at: Option<Instant> = None;
    loop {
        if stopped_at.is_none() && ctl.stop.load(Ordering::Relaxed) {
            stopped_at = Some(Instant::now());
        }
        tokio::select! {
            r = s.io.read(&mut chunk) => {
                let n = match r {
                    Ok(0) => { res.error = Some("connection closed".into()); break; }
                    Err(e) => { res.error = Some(e.to_string()); break; }
                    Ok(n) => n,
                };
                rbuf.extend_from_slice(&chunk[..n]);
                found.clear();
                let used = scan_groupchat(&rbuf, &mut found);
                rbuf.drain(..used);
                let now = now_ns();
                let in_window = now >= ctl.window_start.load(Ordering::Relaxed)
                    && now < ctl.window_end.load(Ordering::Relaxed);
                for &(sender, seq, ts) in &found {
                    let expected = next_seq.entry(sender).or_insert(0);
                    if seq != *expected {
                        res.out_of_order += 1;
                    }
                    *expected = seq + 1;
                    res.received += 1;
                    if in_window {
                        res.latencies.record(now.saturating_sub(ts));
                    }
                }
                ctl.delivered.fetch_add(found.len() as u64, Ordering::Relaxed);
            }
            _ = interval.tick(), if sending && stopped_at.is_none() => {
                let due = (start.elapsed().as_secs_f64() * per_sender) as u64;
                let now = now_ns();
                let n = due.saturating_sub(res.sent);
                for _ in 0..n {
                    write_groupchat(&mut out, &room, index, res.sent, now);
                    res.sent += 1;
                }
                ctl.owed.fetch_add(n * occupants, Ordering::Relaxed);
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if !out.is_empty() {
            if let Err(e) = s.io.write_all(&out).await {
                res.error = Some(e.to_string());
                break;
            }
            out.clear();
        }
        if let Some(t) = stopped_at
            && (ctl.delivered.load(Ordering::Relaxed) >= ctl.owed.load(Ordering::Relaxed)
                || t.elapsed() > Duration::from_secs(10))
        {
            break;
        }
    }
    res
}

/// The scenario's parameters.
#[derive(Debug, Clone)]
pub struct MucJob {
    pub rooms: usize,
    pub occupants: usize,
    /// Senders per room (the first K occupants).
    pub senders: usize,
    /// Groupchat messages per second over all rooms.
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Joins in progress at once (after each room's creator).
    pub join_concurrency: usize,
    /// The MUC service's domain (`conference.localhost`).
    pub service: String,
}

/// Figures of one run.
pub struct MucOutcome {
    pub joins: usize,
    pub join_seconds: f64,
    pub join_latencies: Samples,
    pub join_cpu: Duration,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub delivered_in_window: u64,
    pub window: Duration,
    pub latencies: Samples,
    pub server_cpu: Duration,
    pub errors: usize,
    pub first_error: Option<String>,
}

impl MucOutcome {
    pub fn joins_per_s(&self) -> f64 {
        self.joins as f64 / self.join_seconds.max(1e-9)
    }
    pub fn deliveries_per_s(&self) -> f64 {
        self.delivered_in_window as f64 / self.window.as_secs_f64().max(1e-9)
    }
    pub fn cpu_us_per_delivery(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.delivered_in_window.max(1) as f64
    }
    pub fn cpu_ms_per_join(&self) -> f64 {
        self.join_cpu.as_secs_f64() * 1e3 / self.joins.max(1) as f64
    }
}

/// Joins every session (sessions[i] goes to room i / O), then broadcasts and measures.
pub async fn run(job: &MucJob, sessions: Vec<Session>, pid: u32) -> anyhow::Result<MucOutcome> {
    let o = job.occupants.max(1);
    anyhow::ensure!(
        sessions.len() == job.rooms * o,
        "{} sessions for {} rooms of {o}",
        sessions.len(),
        job.rooms
    );
    let mut slots: Vec<Option<Session>> = sessions.into_iter().map(Some).collect();
    let cpu0 = procfs::cpu(pid);
    let t0 = Instant::now();
    let mut join_latencies = Samples::new();
    // Creators first (every room at once), then everyone else, bounded.
    let mut waves: Vec<Vec<usize>> = vec![(0..job.rooms).map(|r| r * o).collect()];
    waves.push((0..slots.len()).filter(|i| i % o != 0).collect());
    for wave in waves {
        let sem = Arc::new(tokio::sync::Semaphore::new(job.join_concurrency.max(1)));
        let mut tasks = Vec::new();
        for i in wave {
            let mut s = slots[i].take().expect("each session joins once");
            let room = room_jid(room_of(i, o), &job.service);
            let permit = sem.clone().acquire_owned().await?;
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let r = join(&mut s, &room, &format!("u{i}"), i % o == 0).await;
                (i, s, r)
            }));
        }
        for t in tasks {
            let (i, s, r) = t.await?;
            let latency = r.with_context(|| format!("session {i}"))?;
            join_latencies.record(latency.as_nanos() as u64);
            slots[i] = Some(s);
        }
    }
    let join_seconds = t0.elapsed().as_secs_f64();
    let join_cpu = procfs::cpu(pid).saturating_sub(cpu0);
    // Let the join presences settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ctl = Arc::new(Control {
        stop: AtomicBool::new(false),
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(u64::MAX),
        owed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    });
    let senders = job.senders.clamp(1, o);
    let per_sender = job.rate / (job.rooms * senders).max(1) as f64;
    let mut tasks = Vec::new();
    for (i, s) in slots.into_iter().enumerate() {
        let s = s.expect("joined");
        let rate = if i % o < senders { per_sender } else { 0.0 };
        tasks.push(tokio::spawn(occupant(
            s,
            room_jid(room_of(i, o), &job.service),
            i as u64,
            rate,
            o as u64,
            ctl.clone(),
        )));
    }
    tokio::time::sleep(job.warmup).await;
    let c0 = procfs::cpu(pid);
    ctl.window_start.store(now_ns(), Ordering::Relaxed);
    tokio::time::sleep(job.duration).await;
    ctl.window_end.store(now_ns(), Ordering::Relaxed);
    let c1 = procfs::cpu(pid);
    ctl.stop.store(true, Ordering::Relaxed);
    let window = Duration::from_nanos(
        ctl.window_end.load(Ordering::Relaxed) - ctl.window_start.load(Ordering::Relaxed),
    );
    let mut out = MucOutcome {
        joins: job.rooms * o,
        join_seconds,
        join_latencies,
        join_cpu,
        sent: 0,
        delivered: 0,
        lost: 0,
        out_of_order: 0,
        delivered_in_window: 0,
        window,
        latencies: Samples::new(),
        server_cpu: c1.saturating_sub(c0),
        errors: 0,
        first_error: None,
    };
    for t in tasks {
        let r = t.await?;
        out.sent += r.sent;
        out.delivered += r.received;
        out.out_of_order += r.out_of_order;
        out.delivered_in_window += r.latencies.len() as u64;
        out.latencies.extend(&r.latencies);
        if let Some(e) = r.error {
            out.errors += 1;
            out.first_error.get_or_insert(e);
        }
    }
    out.lost = (out.sent * o as u64).saturating_sub(out.delivered);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_and_creators() {
        assert_eq!(
            (room_of(0, 20), room_of(19, 20), room_of(20, 20)),
            (0, 0, 1)
        );
        assert_eq!(
            room_jid(3, "conference.localhost"),
            "load-room3@conference.localhost"
        );
    }

    #[test]
    fn scans_reflected_groupchat_split_anywhere() {
        let mut msg = Vec::new();
        write_groupchat(&mut msg, "r@c", 4, 7, 123);
        write_groupchat(&mut msg, "r@c", 5, 0, 456);
        // The server stamps `from` and namespaces: bodies are still found.
        let msg = String::from_utf8(msg)
            .unwrap()
            .replace("<message ", "<message from='r@c/u4' xmlns='jabber:client' ")
            .into_bytes();
        for cut in 0..msg.len() {
            let mut buf = msg[..cut].to_vec();
            let mut found = Vec::new();
            let used = scan_groupchat(&buf, &mut found);
            buf.drain(..used);
            buf.extend_from_slice(&msg[cut..]);
            scan_groupchat(&buf, &mut found);
            assert_eq!(found, vec![(4, 7, 123), (5, 0, 456)], "cut at {cut}");
        }
        // Chat-mode bodies (two numbers) are not groupchat payloads.
        let mut found = Vec::new();
        scan_groupchat(b"<body>1 2</body>", &mut found);
        assert!(found.is_empty());
    }

    fn parse(text: &str) -> Element {
        heliograph::xml::parser::parse_element(
            text.as_bytes(),
            heliograph::xml::ns::CLIENT,
            heliograph::xml::ParserLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn self_presence_is_recognized() {
        let p = parse(
            "<presence xmlns='jabber:client' from='r@c/u0'><x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='owner' role='moderator'/><status code='110'/><status code='201'/></x></presence>",
        );
        assert!(is_self_presence(&p));
        let other = parse(
            "<presence xmlns='jabber:client' from='r@c/u1'><x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='none' role='participant'/></x></presence>",
        );
        assert!(!is_self_presence(&other));
    }
}
