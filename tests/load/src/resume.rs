//! The `resume` scenario: N sessions with resumable stream management (XEP-0198), every
//! connection cut at once with a TCP reset (no `</stream>`, as a phone losing its
//! network), then every session resumed on a new connection as fast as `concurrency`
//! allows. Reports how long the server took to notice the cuts, resumptions per second,
//! resume latency (connect, TLS, SASL and `<resume/>` to `<resumed/>`), failures, and the
//! server's CPU per resumption.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::{Semaphore, mpsc};

use crate::admin::AdminClient;
use crate::connect::{self, ConnectJob, PASSWORD};
use crate::procfs;
use crate::stats::Samples;
use crate::xmpp::{self, Io, LoginSpec, Session};

/// What the storm measured.
pub struct ResumeOutcome {
    pub sessions: usize,
    /// From the cut until the server listed every session detached.
    pub noticed: Duration,
    pub resumed: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// From the first resume attempt to the last answer.
    pub elapsed: Duration,
    pub latencies: Samples,
    pub server_cpu: Duration,
}

impl ResumeOutcome {
    pub fn per_s(&self) -> f64 {
        self.resumed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn cpu_ms_per_resume(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e3 / self.resumed.max(1) as f64
    }
}

/// Cuts a connection with a reset: SO_LINGER 0, then close.
pub fn reset(io: Io) {
    let tcp = match &io {
        Io::Plain(t) => Some(t),
        Io::Tls(t) => Some(t.get_ref().0),
        _ => None,
    };
    if let Some(t) = tcp {
        let _ = socket2::SockRef::from(t).set_linger(Some(Duration::ZERO));
    }
    drop(io);
}

/// Detached sessions the server lists for accounts `prefix*`.
async fn detached(admin: &mut AdminClient, prefix: &str) -> anyhow::Result<usize> {
    let (status, body) = admin.request("GET", "/api/v1/sessions", None).await?;
    if status != 200 {
        bail!("listing sessions: HTTP {status}: {body}");
    }
    let doc: serde_json::Value = serde_json::from_str(&body).context("sessions JSON")?;
    Ok(doc["sessions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| {
                    s["detached"].as_bool() == Some(true)
                        && s["jid"].as_str().is_some_and(|j| j.starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0))
}

/// Runs the storm on sessions logged in by `job` (which must have `sm` set).
pub async fn run(
    job: &ConnectJob,
    admin_addr: SocketAddr,
    token: &str,
    pid: u32,
) -> anyhow::Result<ResumeOutcome> {
    let mut logged = connect::run(job, None).await;
    if logged.failed > 0 {
        bail!("{} logins failed: {:?}", logged.failed, logged.first_error);
    }
    logged.sessions.sort_by_key(|(i, _)| *i);
    let mut resumable = Vec::with_capacity(logged.sessions.len());
    let cut = Instant::now();
    for (i, s) in logged.sessions {
        let Session { io, sm, .. } = s;
        let sm = sm.context("a session without stream management")?;
        reset(io);
        resumable.push((i, sm.id, sm.h));
    }
    let sessions = resumable.len();
    let mut admin = AdminClient::new(admin_addr, token);
    let deadline = cut + Duration::from_secs(120);
    loop {
        if detached(&mut admin, &job.user_prefix).await? >= sessions {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server did not notice every cut within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let noticed = cut.elapsed();

    let spec = Arc::new(LoginSpec {
        starttls_addr: job.starttls,
        direct_addr: job.direct,
        http_addr: job.http,
        domain: job.domain.clone(),
        transport: job.transport,
        mech: job.mech,
        tls: xmpp::tls_connector(),
    });
    let sem = Arc::new(Semaphore::new(job.concurrency.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cpu0 = procfs::cpu(pid);
    let start = Instant::now();
    for (i, id, h) in resumable {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let (spec, tx) = (spec.clone(), tx.clone());
        let user = connect::username(&job.user_prefix, i);
        let source = xmpp::source_ip(i, job.sources);
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                xmpp::resume(&spec, Some(source), &user, PASSWORD, &id, h),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("resume timed out after 60 s")));
            drop(permit);
            let _ = tx.send((i, r.map(|(io, _)| io), t0.elapsed()));
        });
    }
    drop(tx);
    let mut out = ResumeOutcome {
        sessions,
        noticed,
        resumed: 0,
        failed: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies: Samples::new(),
        server_cpu: Duration::ZERO,
    };
    let mut held = Vec::with_capacity(sessions);
    while let Some((i, r, latency)) = rx.recv().await {
        match r {
            Ok(io) => {
                out.resumed += 1;
                out.latencies.record(latency.as_nanos() as u64);
                held.push(io);
            }
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert(format!("{i}: {e:#}"));
            }
        }
    }
    out.elapsed = start.elapsed();
    out.server_cpu = procfs::cpu(pid).saturating_sub(cpu0);
    for mut io in held {
        use tokio::io::AsyncWriteExt as _;
        let _ = io.write_all(b"</stream:stream>").await;
    }
    Ok(out)
}
