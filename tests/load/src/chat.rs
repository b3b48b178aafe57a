//! The `chat` scenario: P pairs, each side sending to the other, either at a total target
//! rate or keeping a window of messages in flight per sender, for T seconds after a
//! warm-up. Every message carries its sequence number and send time in its body; the
//! receiver computes end-to-end latency from it and checks that nothing is lost or
//! reordered. Each session answers the server's pings ([`crate::ping`]), as any client
//! does. The same scenario runs against the minimal relay (`relay` binary), which
//! forwards the same bytes between the same pairs.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::procfs;
use crate::stats::Samples;

/// Process-wide time base for the timestamps carried in messages.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the time base.
pub fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// How senders pace themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Total messages per second over all senders.
    Rate(f64),
    /// Messages in flight per sender: each received message triggers the next send.
    Window(usize),
}

/// Appends one chat message from sender `seq` at `ts` to `to`.
pub fn write_message(out: &mut Vec<u8>, to: &str, seq: u64, ts: u64) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "<message to='{to}' type='chat' id='m{seq}'><body>{seq} {ts}</body></message>"
    );
}

/// Finds complete `<body>SEQ TS</body>` payloads in a receive buffer. Returns the parsed
/// (seq, ts) pairs and how many leading bytes are fully consumed (the rest may hold an
/// incomplete message and must be kept).
pub fn scan_bodies(buf: &[u8], found: &mut Vec<(u64, u64)>) -> usize {
    const OPEN: &[u8] = b"<body>";
    const CLOSE: &[u8] = b"</body>";
    let mut at = 0;
    loop {
        let Some(open) = find(&buf[at..], OPEN) else {
            // Keep a tail that could be the start of "<body>".
            return buf.len().saturating_sub(OPEN.len() - 1).max(at);
        };
        let content_start = at + open + OPEN.len();
        let Some(close) = find(&buf[content_start..], CLOSE) else {
            return at + open;
        };
        let content = &buf[content_start..content_start + close];
        if let Some((seq, ts)) = parse_body(content) {
            found.push((seq, ts));
        }
        at = content_start + close + CLOSE.len();
    }
}

fn parse_body(content: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(content).ok()?;
    let (a, b) = text.split_once(' ')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Shared run state.
pub struct Control {
    /// Senders stop sending new messages once set.
    pub stop: AtomicBool,
    /// Latencies are recorded for messages received in [window_start, window_end) (ns of
    /// the time base; `u64::MAX` = unset).
    pub window_start: AtomicU64,
    pub window_end: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    stop_tx: tokio::sync::watch::Sender<bool>,
}

impl Control {
    pub fn new() -> Arc<Control> {
        Arc::new(Control {
            stop: AtomicBool::new(false),
            // Unset until the warm-up is over: nothing is recorded before.
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            stop_tx: tokio::sync::watch::channel(false).0,
        })
    }

    /// Tells every session to stop sending.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stop_tx.send_replace(true);
    }
}

/// What one session saw.
#[derive(Default)]
pub struct SessionResult {
    /// Stream management `<a/>` the server sent.
    pub acks: u64,
    pub sent: u64,
    pub received: u64,
    pub out_of_order: u64,
    pub latencies: Samples,
    pub error: Option<String>,
}

/// Stream management on a chat session: the client answers the server's `<r/>` with its
/// count and asks for the server's count every `ask_every` messages it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmChat {
    pub ask_every: u64,
}

/// Runs one side of a pair on an already-established connection: sends to `to` as paced
/// and receives the partner's messages, with stream management when `sm` is given
/// (`handled`: the stanzas the session had received when it began, its `h` so far).
#[allow(clippy::too_many_arguments)]
pub async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    to: String,
    pace: Pace,
    senders: usize,
    index: usize,
    ctl: Arc<Control>,
    sm: Option<SmChat>,
    handled: u32,
) -> (S, SessionResult) {
    let mut res = SessionResult::default();
    let mut scanner = crate::sm::SmScanner::in_stream_at(handled);
    let mut sm_found = crate::sm::Found::default();
    let mut pings = crate::ping::PingAnswers::new();
    let mut asked_at = 0u64;
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(4096);
    let mut found = Vec::new();
    let mut expected_seq = 0u64;
    // Rate mode: this sender's share, checked on a tick.
    let (per_sender, tick) = match pace {
        Pace::Rate(r) => {
            let per = r / senders.max(1) as f64;
            let period = if per > 0.0 {
                Duration::from_secs_f64((1.0 / per).clamp(0.002, 0.05))
            } else {
                Duration::from_millis(50)
            };
            (per, period)
        }
        Pace::Window(_) => (0.0, Duration::from_secs(3600)),
    };
    // Stagger the senders' ticks over one period.
    let phase = tick.mul_f64((index % 97) as f64 / 97.0);
    let start = Instant::now() + phase;
    let mut interval = tokio::time::interval_at(start.into(), tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Pace::Window(w) = pace {
        for _ in 0..w {
            write_message(&mut out, &to, res.sent, now_ns());
            res.sent += 1;
        }
        if let Err(e) = io.write_all(&out).await {
            res.error = Some(e.to_string());
            return (io, res);
        }
        out.clear();
    }
    let mut stopped_at: Option<Instant> = None;
    let mut stop_rx = ctl.stop_tx.subscribe();
    loop {
        if ctl.stop.load(Ordering::Relaxed) && stopped_at.is_none() {
            stopped_at = Some(Instant::now());
        }
        tokio::select! {
            r = io.read(&mut chunk) => {
                let n = match r {
                    Ok(0) => { res.error = Some("connection closed".into()); break; }
                    Err(e) => { res.error = Some(e.to_string()); break; }
                    Ok(n) => n,
                };
                if sm.is_some() {
                    sm_found.clear();
                    scanner.scan(&chunk[..n], &mut sm_found);
                    for &h in &sm_found.requests {
                        crate::sm::write_ack(&mut out, h);
                    }
                    res.acks += sm_found.acks.len() as u64;
                    if let Some(e) = sm_found.stream_error.take() {
                        res.error = Some(e);
                        break;
                    }
                }
                pings.scan(&chunk[..n], &mut out);
                rbuf.extend_from_slice(&chunk[..n]);
                found.clear();
                let used = scan_bodies(&rbuf, &mut found);
                rbuf.drain(..used);
                let now = now_ns();
                let in_window = now >= ctl.window_start.load(Ordering::Relaxed)
                    && now < ctl.window_end.load(Ordering::Relaxed);
                for &(seq, ts) in &found {
                    if seq != expected_seq {
                        res.out_of_order += 1;
                    }
                    expected_seq = seq + 1;
                    res.received += 1;
                    if in_window {
                        res.latencies.record(now.saturating_sub(ts));
                    }
                }
                ctl.received.fetch_add(found.len() as u64, Ordering::Relaxed);
                if matches!(pace, Pace::Window(_)) && !ctl.stop.load(Ordering::Relaxed) {
                    for _ in 0..found.len() {
                        write_message(&mut out, &to, res.sent, now);
                        res.sent += 1;
                    }
                    ctl.sent.fetch_add(found.len() as u64, Ordering::Relaxed);
                }
            }
            _ = interval.tick(), if matches!(pace, Pace::Rate(_)) && stopped_at.is_none() => {
                let due = (start.elapsed().as_secs_f64() * per_sender) as u64;
                let now = now_ns();
                let n = due.saturating_sub(res.sent);
                for _ in 0..n {
                    write_message(&mut out, &to, res.sent, now);
                    res.sent += 1;
                }
                ctl.sent.fetch_add(n, Ordering::Relaxed);
            }
            _ = stop_rx.changed(), if stopped_at.is_none() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)), if stopped_at.is_some() => {}
        }
        if let Some(SmChat { ask_every }) = sm
            && res.sent >= asked_at + ask_every.max(1)
        {
            out.extend_from_slice(crate::sm::request().as_bytes());
            asked_at = res.sent;
        }
        if !out.is_empty() {
            if let Err(e) = io.write_all(&out).await {
                res.error = Some(e.to_string());
                break;
            }
            out.clear();
        }
        // After stop: wait for the partner's messages to drain, then finish.
        if let Some(t) = stopped_at
            && (ctl.received.load(Ordering::Relaxed) >= ctl.sent.load(Ordering::Relaxed)
                || t.elapsed() > Duration::from_secs(10))
        {
            break;
        }
    }
    // Acknowledge everything received before leaving: the server keeps unacknowledged
    // stanzas and, when the session ends, stores them offline, where the next run's
    // login on the same account would get them again.
    if sm.is_some() && res.error.is_none() {
        out.clear();
        crate::sm::write_ack(&mut out, scanner.handled());
        let _ = io.write_all(&out).await;
    }
    (io, res)
}

/// Aggregated chat figures.
pub struct ChatOutcome {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub delivered_in_window: u64,
    pub window: Duration,
    pub latencies: Samples,
    pub server_cpu: Duration,
    /// CPU of the other watched processes over the window (see [`Watched`]).
    pub other_cpu: Vec<Duration>,
    pub errors: usize,
    pub first_error: Option<String>,
}

impl ChatOutcome {
    pub fn rate(&self) -> f64 {
        self.delivered_in_window as f64 / self.window.as_secs_f64().max(1e-9)
    }
    pub fn cpu_us_per_msg(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.delivered_in_window.max(1) as f64
    }
}

/// Runs every session task, opens the measurement window after `warmup` for `duration`,
/// samples `pid`'s CPU at both ends, stops and drains. Each connection comes with its
/// partner's JID and the stanzas it received so far (its stream management `h`).
pub async fn drive<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    conns: Vec<(S, String, u32)>,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
    pid: u32,
    sm: Option<SmChat>,
) -> (ChatOutcome, Vec<S>) {
    let watched = Watched {
        servers: vec![pid],
        others: Vec::new(),
    };
    drive_watching(conns, pace, warmup, duration, &watched, sm).await
}

/// The processes whose CPU a chat run samples over its measurement window.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// Their CPU is summed into [`ChatOutcome::server_cpu`] (the nodes of a cluster).
    pub servers: Vec<u32>,
    /// Each one's CPU goes to [`ChatOutcome::other_cpu`], in this order (NATS).
    pub others: Vec<u32>,
}

impl Watched {
    fn sample(&self) -> (Duration, Vec<Duration>) {
        (
            self.servers.iter().map(|p| procfs::cpu(*p)).sum(),
            self.others.iter().map(|p| procfs::cpu(*p)).collect(),
        )
    }
}

/// [`drive`], sampling the CPU of every process in `watched`.
pub async fn drive_watching<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    conns: Vec<(S, String, u32)>,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
    watched: &Watched,
    sm: Option<SmChat>,
) -> (ChatOutcome, Vec<S>) {
    let ctl = Control::new();
    let senders = conns.len();
    let mut tasks = Vec::with_capacity(senders);
    if let Pace::Window(w) = pace {
        ctl.sent.fetch_add((w * senders) as u64, Ordering::Relaxed);
    }
    for (i, (io, to, handled)) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(run_session(
            io,
            to,
            pace,
            senders,
            i,
            ctl.clone(),
            sm,
            handled,
        )));
    }
    tokio::time::sleep(warmup).await;
    let (cpu0, others0) = watched.sample();
    ctl.window_start.store(now_ns(), Ordering::Relaxed);
    tokio::time::sleep(duration).await;
    ctl.window_end.store(now_ns(), Ordering::Relaxed);
    let (cpu1, others1) = watched.sample();
    let window = Duration::from_nanos(
        ctl.window_end.load(Ordering::Relaxed) - ctl.window_start.load(Ordering::Relaxed),
    );
    ctl.request_stop();
    let mut out = ChatOutcome {
        sent: 0,
        received: 0,
        lost: 0,
        out_of_order: 0,
        delivered_in_window: 0,
        window,
        latencies: Samples::new(),
        server_cpu: cpu1.saturating_sub(cpu0),
        other_cpu: others1
            .iter()
            .zip(&others0)
            .map(|(b, a)| b.saturating_sub(*a))
            .collect(),
        errors: 0,
        first_error: None,
    };
    let mut ios = Vec::with_capacity(senders);
    for t in tasks {
        match t.await {
            Ok((io, r)) => {
                out.sent += r.sent;
                out.received += r.received;
                out.out_of_order += r.out_of_order;
                out.delivered_in_window += r.latencies.len() as u64;
                out.latencies.extend(&r.latencies);
                if let Some(e) = r.error {
                    out.errors += 1;
                    out.first_error.get_or_insert(e);
                }
                ios.push(io);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e.to_string());
            }
        }
    }
    out.lost = out.sent.saturating_sub(out.received);
    (out, ios)
}

/// Ends every stream with the closing handshake: `</stream:stream>`, then reads until
/// the server closes (at most `limit`). Dropping the connections instead would reset
/// them, losing what the client wrote last (its final stream management ack) and leaving
/// resumable sessions behind whose stanzas the next login of the same account receives.
pub async fn close_all<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    ios: Vec<S>,
    limit: Duration,
) {
    let tasks: Vec<_> = ios
        .into_iter()
        .map(|mut io| {
            tokio::spawn(async move {
                if io.write_all(b"</stream:stream>").await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 16 * 1024];
                let _ = tokio::time::timeout(limit, async {
                    while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
                })
                .await;
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_split_messages() {
        let mut msg = Vec::new();
        write_message(&mut msg, "b@d/r", 7, 123);
        write_message(&mut msg, "b@d/r", 8, 456);
        // Feed in every split position: every message is found exactly once.
        for cut in 0..msg.len() {
            let mut buf = msg[..cut].to_vec();
            let mut found = Vec::new();
            let used = scan_bodies(&buf, &mut found);
            buf.drain(..used);
            buf.extend_from_slice(&msg[cut..]);
            let used = scan_bodies(&buf, &mut found);
            assert!(used <= buf.len());
            assert_eq!(found, vec![(7, 123), (8, 456)], "cut at {cut}");
        }
    }

    #[test]
    fn server_rewritten_stanzas_are_found() {
        let stanza = b"<message from='a@d/r' to='b@d/r' type='chat' id='m1' xmlns='jabber:client'><body>1 99</body></message>";
        let mut found = Vec::new();
        let used = scan_bodies(stanza, &mut found);
        assert_eq!(found, vec![(1, 99)]);
        // Only a possible partial "<body>" tail is kept.
        assert_eq!(used, stanza.len() - 5);
    }

    #[tokio::test]
    async fn pair_over_a_duplex_pipe_loses_nothing() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let conns = vec![(a, "b".to_string(), 0), (b, "a".to_string(), 0)];
        let (out, _) = drive(
            conns,
            Pace::Window(4),
            Duration::from_millis(20),
            Duration::from_millis(100),
            std::process::id(),
            None,
        )
        .await;
        assert_eq!(out.errors, 0, "{:?}", out.first_error);
        assert_eq!(out.lost, 0);
        // Only messages received inside the measured window count.
        assert!(out.delivered_in_window < out.received, "{}", out.received);
        assert_eq!(out.out_of_order, 0);
        assert!(out.delivered_in_window > 0);
    }
}
