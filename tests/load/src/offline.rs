//! The `offline` scenario: 1:1 messages with half the recipients offline, then the offline
//! recipients logging in and popping what was stored for them. The storage backend's cost
//! shows here: every second message is a durable write (the offline store), and every
//! login of the second phase reads and deletes a queue.
//!
//! Phase 1: P senders, each with one online recipient and one offline recipient, send M
//! messages to each, alternating, `window` at a time followed by a ping; the ping's answer
//! means the server has routed (delivered or stored) everything before it, as a session's
//! stanzas are handled in order. Messages/s = 2·P·M ÷ the time until every sender had its
//! last answer and every online recipient its M messages.
//!
//! Phase 2: the P offline recipients log in (initial presence triggers the delivery of their
//! stored messages) and read until they have their M messages each: logins/s and
//! messages/s of that phase, and each recipient's time from the start of its login to its
//! M-th message.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt;

use crate::chat::{now_ns, write_message};
use crate::connect::{self, ConnectJob};
use crate::procfs;
use crate::stats::Samples;
use crate::xmpp::{self, Session};
use heliograph::xml::ns;

/// Time allowed for either phase.
const DEADLINE: Duration = Duration::from_secs(300);

/// What to run.
pub struct OfflineJob {
    pub pairs: usize,
    /// Messages to each recipient, per sender.
    pub messages: usize,
    /// Messages sent before each ping.
    pub window: usize,
    pub domain: String,
    pub user_prefix: String,
}

/// What was measured.
#[derive(Debug, Default)]
pub struct OfflineOutcome {
    pub sent: u64,
    /// Messages bounced with an error (storage refused them).
    pub errors: u64,
    pub send_seconds: f64,
    pub send_cpu: Duration,
    /// The database's CPU in phase 1 (with `--db-pid`).
    pub send_db_cpu: Duration,
    /// Messages the offline recipients got in phase 2.
    pub popped: u64,
    pub pop_seconds: f64,
    pub pop_cpu: Duration,
    pub pop_db_cpu: Duration,
    /// Per recipient: start of its login to its last stored message.
    pub pop_latency: Samples,
}

/// Accounts: senders `0..P`, online recipients `P..2P`, offline recipients `2P..3P`.
pub fn accounts(pairs: usize) -> usize {
    pairs * 3
}

fn jid(job: &OfflineJob, i: usize) -> String {
    format!("{}@{}", connect::username(&job.user_prefix, i), job.domain)
}

/// Sends one sender's messages, a window and a ping at a time; returns how many came back
/// as errors.
async fn send_all(job: &OfflineJob, i: usize, mut s: Session) -> anyhow::Result<u64> {
    let online = jid(job, job.pairs + i);
    let offline = jid(job, 2 * job.pairs + i);
    let total = 2 * job.messages;
    let window = job.window.max(1);
    let mut errors = 0;
    let mut buf = Vec::new();
    let mut seq = 0;
    let mut round = 0;
    while seq < total {
        buf.clear();
        let end = (seq + window).min(total);
        while seq < end {
            let to = if seq % 2 == 0 { &online } else { &offline };
            write_message(&mut buf, to, seq as u64, now_ns());
            seq += 1;
        }
        let id = format!("w{round}");
        buf.extend_from_slice(
            format!("<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>").as_bytes(),
        );
        s.io.write_all(&buf).await?;
        loop {
            let el = xmpp::next_stanza(&mut s.io, &mut s.parser).await?;
            if el.name() == "iq" && el.attr("id") == Some(id.as_str()) {
                break;
            }
            if el.name() == "message" && el.attr("type") == Some("error") {
                errors += 1;
            }
        }
        round += 1;
    }
    Ok(errors)
}

/// Reads until `count` chat messages arrived; returns when the last one did.
async fn receive(mut s: Session, count: usize) -> anyhow::Result<Instant> {
    let mut got = 0;
    while got < count {
        let el = xmpp::next_stanza(&mut s.io, &mut s.parser).await?;
        if el.is("message", ns::CLIENT) && el.attr("type") == Some("chat") {
            got += 1;
        }
    }
    Ok(Instant::now())
}

/// Phase 1 with the logged-in senders and online recipients (in account order).
async fn phase_one(
    job: &OfflineJob,
    senders: Vec<Session>,
    online: Vec<Session>,
    pid: u32,
    db_pid: Option<u32>,
    o: &mut OfflineOutcome,
) -> anyhow::Result<()> {
    let cpu0 = procfs::cpu(pid);
    let db0 = db_pid.map(procfs::tree_cpu).unwrap_or_default();
    let t0 = Instant::now();
    let receivers: Vec<_> = online
        .into_iter()
        .map(|s| tokio::spawn(receive(s, job.messages)))
        .collect();
    let job_ref = std::sync::Arc::new(OfflineJob {
        pairs: job.pairs,
        messages: job.messages,
        window: job.window,
        domain: job.domain.clone(),
        user_prefix: job.user_prefix.clone(),
    });
    let sends: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let job = job_ref.clone();
            tokio::spawn(async move { send_all(&job, i, s).await })
        })
        .collect();
    let all = async {
        for t in sends {
            o.errors += t.await??;
        }
        for t in receivers {
            t.await??;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(DEADLINE, all)
        .await
        .context("phase 1 did not finish in time")??;
    o.send_seconds = t0.elapsed().as_secs_f64();
    o.send_cpu = procfs::cpu(pid).saturating_sub(cpu0);
    o.send_db_cpu = db_pid
        .map(procfs::tree_cpu)
        .unwrap_or_default()
        .saturating_sub(db0);
    o.sent = (2 * job.pairs * job.messages) as u64;
    Ok(())
}

/// Phase 2: the offline recipients log in, all at once, and read their stored messages.
async fn phase_two(
    job: &OfflineJob,
    login: &ConnectJob,
    pid: u32,
    db_pid: Option<u32>,
    o: &mut OfflineOutcome,
) -> anyhow::Result<()> {
    let spec = login.spec();
    let cpu0 = procfs::cpu(pid);
    let db0 = db_pid.map(procfs::tree_cpu).unwrap_or_default();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..job.pairs)
        .map(|k| {
            let spec = spec.clone();
            let i = 2 * job.pairs + k;
            let user = connect::username(&job.user_prefix, i);
            let source = Some(xmpp::source_ip(i, login.sources));
            let count = job.messages;
            tokio::spawn(async move {
                let started = Instant::now();
                let s = xmpp::login(&spec, source, &user, connect::PASSWORD, "load").await?;
                let done = receive(s, count).await?;
                anyhow::Ok(done - started)
            })
        })
        .collect();
    let all = async {
        for t in tasks {
            let took = t.await??;
            o.pop_latency.record(took.as_nanos() as u64);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(DEADLINE, all)
        .await
        .context("phase 2 did not finish in time")??;
    o.pop_seconds = t0.elapsed().as_secs_f64();
    o.pop_cpu = procfs::cpu(pid).saturating_sub(cpu0);
    o.pop_db_cpu = db_pid
        .map(procfs::tree_cpu)
        .unwrap_or_default()
        .saturating_sub(db0);
    o.popped = (job.pairs * job.messages) as u64;
    Ok(())
}

/// Runs both phases. `login` is the job that logs in the scenario's accounts (`first` = 0);
/// `pid` is the server's, `db_pid` the database's (its CPU is measured too when given).
pub async fn run(
    job: &OfflineJob,
    login: &ConnectJob,
    pid: u32,
    db_pid: Option<u32>,
) -> anyhow::Result<OfflineOutcome> {
    let mut first = login.clone();
    first.first = 0;
    first.count = 2 * job.pairs;
    let mut r = connect::run(&first, None).await;
    if r.failed > 0 {
        bail!("{} logins failed: {:?}", r.failed, r.first_error);
    }
    r.sessions.sort_by_key(|(i, _)| *i);
    let mut sessions: Vec<Session> = r.sessions.into_iter().map(|(_, s)| s).collect();
    let online = sessions.split_off(job.pairs);
    let mut o = OfflineOutcome::default();
    phase_one(job, sessions, online, pid, db_pid, &mut o).await?;
    phase_two(job, login, pid, db_pid, &mut o).await?;
    Ok(o)
}
