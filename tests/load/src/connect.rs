//! The `connect` scenario: N full logins at a target rate with bounded concurrency, the
//! server's CPU time sampled every `segment` logins (so the login rate and cost at 1k and
//! at 15k online can be compared), and the sessions kept for holding idle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use crate::procfs;
use crate::stats::Samples;
use crate::xmpp::{self, LoginSpec, Mech, Session, TransportKind};

/// Password of every load account.
pub const PASSWORD: &str = "load-password";

/// Localpart of load account `i`.
pub fn username(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

/// What to connect; serializable so it can be handed to worker processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectJob {
    pub starttls: SocketAddr,
    pub direct: SocketAddr,
    /// Plain-HTTP listener for BOSH and WebSocket.
    #[serde(default)]
    pub http: Option<SocketAddr>,
    pub domain: String,
    pub transport: TransportKind,
    pub mech: Mech,
    pub user_prefix: String,
    /// First account index.
    pub first: usize,
    pub count: usize,
    /// Logins started per second; 0 = as fast as `concurrency` allows.
    pub rate: f64,
    pub concurrency: usize,
    /// Source addresses 127.0.0.1 ..= 127.0.0.sources.
    pub sources: usize,
    /// Sample server CPU every this many logins (0 = never).
    pub segment: usize,
    /// HS256 secret for `--mech jwt` (tokens are minted before the run).
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// `kid` of the JWT key, if the tenant names its keys.
    #[serde(default)]
    pub jwt_kid: Option<String>,
    /// Enable resumable stream management (XEP-0198) after login.
    #[serde(default)]
    pub sm: bool,
    /// The passwords of accounts `first..first + count` in order, when they are not the
    /// load password (`--mech token`: the minted tokens).
    #[serde(default)]
    pub passwords: Vec<String>,
}

impl<'de> Deserialize<'de> for TransportKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        <TransportKind as clap::ValueEnum>::from_str(&s, true).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Mech {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        <Mech as clap::ValueEnum>::from_str(&s, true).map_err(serde::de::Error::custom)
    }
}

/// Logins and server CPU within one stretch of `segment` logins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    /// Sessions online at the end of the segment.
    pub online: usize,
    pub logins: usize,
    pub seconds: f64,
    pub server_cpu_s: f64,
}

impl Segment {
    pub fn rate(&self) -> f64 {
        self.logins as f64 / self.seconds.max(1e-9)
    }
    pub fn cpu_ms_per_login(&self) -> f64 {
        self.server_cpu_s * 1e3 / self.logins.max(1) as f64
    }
}

/// Result of a connect run.
pub struct ConnectOutcome {
    pub ok: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub latencies: Samples,
    pub elapsed: Duration,
    pub segments: Vec<Segment>,
    pub sessions: Vec<(usize, Session)>,
}

/// Rate limiter: when the `k`-th start is due.
pub fn start_offset(k: usize, rate: f64) -> Duration {
    if rate <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(k as f64 / rate)
    }
}

impl ConnectJob {
    /// Where and how each login of this job connects.
    pub fn spec(&self) -> LoginSpec {
        LoginSpec {
            starttls_addr: self.starttls,
            direct_addr: self.direct,
            http_addr: self.http,
            domain: self.domain.clone(),
            transport: self.transport,
            mech: self.mech,
            tls: xmpp::tls_connector(),
        }
    }
}

/// Runs the logins; `server_pid` (if any) is sampled at segment boundaries.
pub async fn run(job: &ConnectJob, server_pid: Option<u32>) -> ConnectOutcome {
    let spec = Arc::new(job.spec());
    // JWT mode: every token is minted before the clock starts.
    let passwords: Arc<Vec<String>> = Arc::new(match (&job.mech, &job.jwt_secret) {
        (Mech::Jwt, Some(secret)) => (0..job.count)
            .map(|k| {
                let user = username(&job.user_prefix, job.first + k);
                crate::jwt::mint(secret, job.jwt_kid.as_deref(), &user, 3600)
            })
            .collect(),
        _ => job.passwords.clone(),
    });
    let sem = Arc::new(Semaphore::new(job.concurrency.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let spawner = {
        let job = job.clone();
        let sem = sem.clone();
        tokio::spawn(async move {
            for k in 0..job.count {
                let due = start + start_offset(k, job.rate);
                tokio::time::sleep_until(due.into()).await;
                let permit = sem.clone().acquire_owned().await.expect("semaphore open");
                let spec = spec.clone();
                let tx = tx.clone();
                let i = job.first + k;
                let user = username(&job.user_prefix, i);
                let source = xmpp::source_ip(i, job.sources);
                let sm = job.sm;
                let password = passwords
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| PASSWORD.to_string());
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let r = tokio::time::timeout(Duration::from_secs(60), async {
                        let mut s =
                            xmpp::login(&spec, Some(source), &user, &password, "load").await?;
                        if sm {
                            xmpp::enable_sm(&mut s).await?;
                        }
                        Ok(s)
                    })
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("login timed out after 60 s")));
                    drop(permit);
                    let _ = tx.send((i, r, t0.elapsed()));
                });
            }
        })
    };
    let mut out = ConnectOutcome {
        ok: 0,
        failed: 0,
        first_error: None,
        latencies: Samples::new(),
        elapsed: Duration::ZERO,
        segments: Vec::new(),
        sessions: Vec::with_capacity(job.count),
    };
    let mut seg_start = (
        Instant::now(),
        server_pid.map(procfs::cpu).unwrap_or_default(),
        0,
    );
    let mut done = 0;
    while done < job.count {
        let Some((i, r, latency)) = rx.recv().await else {
            break;
        };
        done += 1;
        match r {
            Ok(s) => {
                out.ok += 1;
                out.latencies.record(latency.as_nanos() as u64);
                out.sessions.push((i, s));
            }
            Err(e) => {
                out.failed += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!("{i}: {e:#}"));
                }
            }
        }
        if job.segment > 0 && (done % job.segment == 0 || done == job.count) {
            let now = Instant::now();
            let cpu = server_pid.map(procfs::cpu).unwrap_or_default();
            out.segments.push(Segment {
                online: out.ok,
                logins: done - seg_start.2,
                seconds: (now - seg_start.0).as_secs_f64(),
                server_cpu_s: cpu.saturating_sub(seg_start.1).as_secs_f64(),
            });
            seg_start = (now, cpu, done);
        }
    }
    out.elapsed = start.elapsed();
    let _ = spawner.await;
    out
}

/// Keeps sessions idle until `stop` is set; returns the task handles.
pub fn hold(
    sessions: Vec<(usize, Session)>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    sessions
        .into_iter()
        .map(|(_, s)| tokio::spawn(xmpp::hold_idle(s, stop.clone())))
        .collect()
}

/// What a worker process reports to its parent (one JSON line on stdout).
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReport {
    pub ok: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub latencies_ns: Vec<u64>,
    pub elapsed_s: f64,
}

/// Splits `count` accounts starting at `first` into `procs` contiguous ranges.
pub fn split(first: usize, count: usize, procs: usize) -> Vec<(usize, usize)> {
    let procs = procs.max(1);
    let base = count / procs;
    let extra = count % procs;
    let mut out = Vec::with_capacity(procs);
    let mut at = first;
    for p in 0..procs {
        let n = base + usize::from(p < extra);
        if n > 0 {
            out.push((at, n));
        }
        at += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_evenly() {
        assert_eq!(split(0, 10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(5, 2, 4), vec![(5, 1), (6, 1)]);
        assert_eq!(split(0, 7, 0), vec![(0, 7)]);
    }

    #[test]
    fn rate_schedule() {
        assert_eq!(start_offset(10, 0.0), Duration::ZERO);
        assert_eq!(start_offset(10, 100.0), Duration::from_millis(100));
    }

    #[test]
    fn job_round_trips_through_json() {
        let job = ConnectJob {
            starttls: "127.0.0.1:1".parse().unwrap(),
            direct: "127.0.0.1:2".parse().unwrap(),
            http: Some("127.0.0.1:3".parse().unwrap()),
            domain: "d".into(),
            transport: TransportKind::Tls,
            mech: Mech::Jwt,
            user_prefix: "u".into(),
            first: 3,
            count: 4,
            rate: 0.0,
            concurrency: 8,
            sources: 50,
            segment: 0,
            jwt_secret: Some("s".into()),
            jwt_kid: None,
            passwords: Vec::new(),
            sm: true,
        };
        let text = serde_json::to_string(&job).unwrap();
        let back: ConnectJob = serde_json::from_str(&text).unwrap();
        assert_eq!(back.transport, TransportKind::Tls);
        assert_eq!(back.mech, Mech::Jwt);
        assert_eq!(back.jwt_secret.as_deref(), Some("s"));
        assert_eq!(back.first, 3);
        assert_eq!(back.http, job.http);
    }
}
