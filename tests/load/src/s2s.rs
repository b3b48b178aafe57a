//! Federation throughput: two servers started here (`a.test` and `b.test`, each with an
//! s2s listener on a free loopback port and the other in its static host map), one user
//! on each; messages from a.test's user to b.test's in windows (each sent in one go and
//! fully received before the next), over one s2s stream (STARTTLS + dialback). Reports
//! messages per second and the CPU each server spent per message (`/proc/PID/stat`).

use std::net::TcpListener;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;

use crate::procfs;
use crate::target::{SpawnOptions, Target};
use crate::xmpp::{self, LoginSpec, Mech, Session, TransportKind};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct S2sOutcome {
    pub messages: usize,
    pub seconds: f64,
    /// Server CPU seconds spent meanwhile: the sending server (c2s in, s2s out), the
    /// receiving one (s2s in, c2s out).
    pub cpu_sender: f64,
    pub cpu_receiver: f64,
}

impl S2sOutcome {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    pub fn cpu_us_per_message(cpu: f64, messages: usize) -> f64 {
        cpu / messages as f64 * 1e6
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn options(binary: &Path, domain: &str, own: u16, peer: &str, peer_port: u16) -> SpawnOptions {
    SpawnOptions {
        binary: binary.to_path_buf(),
        data_dir: None,
        domain: domain.to_string(),
        scram_iterations: 4096,
        session_queue: 4096,
        storage_url: None,
        resume_timeout: None,
        extra_config: format!(
            "\n[[listen.s2s]]\naddress = \"127.0.0.1:{own}\"\n\n\
             [s2s]\nenabled = true\n\n[s2s.hosts]\n\"{peer}\" = \"127.0.0.1:{peer_port}\"\n\n\
             [tenants.default.s2s]\nenabled = true\n"
        ),
    }
}

async fn user(target: &Target, name: &str) -> anyhow::Result<Session> {
    crate::admin::provision(
        target.admin,
        &target.token,
        &target.domain,
        vec![(name.to_string(), "pw".to_string())],
        1,
    )
    .await?;
    let spec = LoginSpec {
        starttls_addr: target.starttls,
        direct_addr: target.direct,
        http_addr: None,
        domain: target.domain.clone(),
        transport: TransportKind::Plain,
        mech: Mech::Plain,
        tls: xmpp::tls_connector(),
    };
    xmpp::login(&spec, None, name, "pw", "bench")
        .await
        .with_context(|| format!("login of {name}@{}", target.domain))
}

/// Reads `to`'s stream until the message with id `last` arrives; returns how many
/// messages came.
async fn receive_until(to: &mut Session, last: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    loop {
        let el = xmpp::next_stanza(&mut to.io, &mut to.parser).await?;
        if el.name() == "message" {
            n += 1;
            if el.attr("id") == Some(last) {
                return Ok(n);
            }
        }
    }
}

/// Starts the two servers from `binary` and sends `messages` in windows of `window`.
pub async fn run(binary: &Path, messages: usize, window: usize) -> anyhow::Result<S2sOutcome> {
    let (pa, pb) = (free_port()?, free_port()?);
    let a = Target::spawn(&options(binary, "a.test", pa, "b.test", pb))?;
    let b = Target::spawn(&options(binary, "b.test", pb, "a.test", pa))?;
    let mut alice = user(&a, "alice").await?;
    let mut bob = user(&b, "bob").await?;
    let to = "bob@b.test/bench".to_string();
    // Warm-up: the stream comes up (resolution, STARTTLS, dialback both ways).
    alice
        .io
        .write_all(
            format!("<message to='{to}' type='chat' id='warm'><body>warm</body></message>")
                .as_bytes(),
        )
        .await?;
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        receive_until(&mut bob, "warm"),
    )
    .await
    .context("the s2s stream did not come up in 60 s")??;

    let (cpu_a, cpu_b) = (procfs::cpu(a.pid), procfs::cpu(b.pid));
    let started = Instant::now();
    let mut sent = 0;
    let mut received = 0;
    while sent < messages {
        let end = (sent + window.max(1)).min(messages);
        let mut batch = String::new();
        for i in sent..end {
            batch.push_str(&format!(
                "<message to='{to}' type='chat' id='m{i}'><body>message {i}</body></message>"
            ));
        }
        alice.io.write_all(batch.as_bytes()).await?;
        received += receive_until(&mut bob, &format!("m{}", end - 1)).await?;
        sent = end;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_a, cpu_b) = (procfs::cpu(a.pid) - cpu_a, procfs::cpu(b.pid) - cpu_b);
    anyhow::ensure!(
        received == messages,
        "{received} of {messages} messages arrived"
    );
    Ok(S2sOutcome {
        messages,
        seconds,
        cpu_sender: cpu_a.as_secs_f64(),
        cpu_receiver: cpu_b.as_secs_f64(),
    })
}
