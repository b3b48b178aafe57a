//! The `heliograph-load` command line and the orchestration of each scenario: find or
//! start the server, provision accounts, run, read the server's cost from /proc, print a
//! human summary and one JSON line per measurement.

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::chat::{self, Pace};
use crate::connect::{self, ConnectJob, ConnectOutcome, WorkerReport};
use crate::procfs;
use crate::stats::{Samples, round3};
use crate::target::{SpawnOptions, Target};
use crate::xmpp::{Mech, TransportKind};

#[derive(Parser, Debug)]
#[command(
    name = "heliograph-load",
    version,
    about = "Load generator for Heliograph"
)]
pub struct Cli {
    /// Also append every JSON measurement line to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Open N sessions with full login at a target rate, report logins/s, latency and
    /// server CPU per login; optionally hold them idle.
    Connect(ConnectArgs),
    /// P pairs exchanging messages; delivered/s, latency, losses, server CPU per message;
    /// optionally the same against the minimal relay.
    Chat(ChatArgs),
    /// R rooms × O occupants on the MUC service: joins/s, then groupchat broadcasts at a
    /// total rate; deliveries/s (fan-out), latency, losses, server CPU per delivery.
    Muc(MucArgs),
    /// 1:1 messages with half the recipients offline (messages/s, server CPU per message),
    /// then the offline recipients log in and pop their stored messages.
    Offline(OfflineArgs),
    /// Server RSS before and after N idle sessions, per transport: KiB per session.
    Memory(MemoryArgs),
    /// N sessions with resumable stream management cut at once by TCP resets, then all
    /// resumed: resumptions/s, latency, failures, server CPU per resumption.
    Resume(ResumeArgs),
    /// Mixed load for a long time (default 30 min) with random disconnects: logins, 1:1
    /// chat with stream management and resumption, MUC, BOSH, plugin logins; checks that
    /// no acknowledged message is lost and that the server's RSS stays flat.
    Soak(SoakArgs),
    /// Federation: two servers started here, messages from a user of one to a user of the
    /// other over s2s in windows; messages/s and each server's CPU per message.
    S2s(S2sArgs),
    /// Cluster: a nats-server and two nodes started here on a fresh PostgreSQL database;
    /// same-node and cross-node chat rounds, interleaved: messages/s, the nodes' and
    /// nats-server's CPU per message, p50/p99, losses, and the cross/same CPU ratio.
    Cluster(crate::cluster::ClusterArgs),
    /// Everything the README reports, in one run.
    Report(ReportArgs),
    /// Internal: one connect worker process (spawned by `--procs`).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        job: String,
    },
}

/// Which server to measure.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Start this `heliograph` binary with a temporary config (default: the one next to
    /// this executable, unless --ready-file or --server-pid is given).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Data directory for a started server; reuse it so accounts exist already.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Target a running server through the ready file it wrote (`serve --ready-file`).
    #[arg(long, conflicts_with_all = ["server_bin", "server_pid"])]
    pub ready_file: Option<PathBuf>,
    /// Target a running server by pid (with --c2s, --c2s-tls, --admin, --token-file; with
    /// --foreign, --c2s only).
    #[arg(long, requires = "c2s")]
    pub server_pid: Option<u32>,
    /// The server given by --server-pid is another XMPP server (ejabberd, Prosody): it has
    /// no admin API, so nothing is provisioned; its accounts PREFIX0, PREFIX1, ... with the
    /// load password (`load-password`) must exist. For logins and messages only.
    #[arg(long, requires = "server_pid")]
    pub foreign: bool,
    /// STARTTLS c2s listener of a running server.
    #[arg(long)]
    pub c2s: Option<SocketAddr>,
    /// Direct TLS c2s listener of a running server.
    #[arg(long)]
    pub c2s_tls: Option<SocketAddr>,
    /// Admin API of a running server.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Admin token file of a running server.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// XMPP domain.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// PBKDF2 iterations configured on a started server.
    #[arg(long, default_value_t = 4096)]
    pub scram_iterations: u32,
    /// `[c2s] session_queue` of a started server.
    #[arg(long, default_value_t = 1024)]
    pub session_queue: usize,
    /// Localpart prefix of the load accounts (`load0`, `load1`, ...).
    #[arg(long, default_value = "load")]
    pub user_prefix: String,
    /// Spread client connections over 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 50)]
    pub sources: usize,
    /// Concurrent account creations while provisioning.
    #[arg(long, default_value_t = 4)]
    pub provision_concurrency: usize,
    /// Run a started server on PostgreSQL at this connection string (an empty database,
    /// or one a previous run with the same --data-dir filled) instead of sled.
    #[arg(long)]
    pub storage_url: Option<String>,
    /// PID of the database server (PostgreSQL's postmaster): its CPU, children included,
    /// is reported per login and per message as well as the server's.
    #[arg(long)]
    pub db_pid: Option<u32>,
    /// `[c2s] resume_timeout` (seconds): written into a started server's config; for a
    /// running server, what its config says (the soak's fresh logins wait it out).
    /// Default: the server's own default, 300.
    #[arg(long)]
    pub resume_timeout: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sessions to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub sessions: usize,
    /// Logins started per second (0 = as fast as --concurrency allows).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Logins in progress at once (per process).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value = "plain")]
    pub transport: TransportKind,
    #[arg(long, value_enum, default_value = "plain")]
    pub mech: Mech,
    /// Seconds to hold the sessions idle after logging in.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
    /// Split the sessions over this many processes.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Report login rate and server CPU per this many logins (single process only).
    #[arg(long, default_value_t = 1000)]
    pub segment: usize,
    /// HS256 secret of the domain's JWT key (`--mech jwt`: PLAIN with a JWT per account,
    /// minted before the run).
    #[arg(long, value_name = "SECRET")]
    pub jwt_secret: Option<String>,
    /// `kid` to put in the JWT header.
    #[arg(long, value_name = "KID")]
    pub jwt_kid: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Pairs of sessions.
    #[arg(long, short = 'p', default_value_t = 100)]
    pub pairs: usize,
    /// Total messages per second (instead of a window).
    #[arg(long, conflicts_with = "window")]
    pub rate: Option<f64>,
    /// Messages in flight per sender (default 8 when --rate is not given).
    #[arg(long)]
    pub window: Option<usize>,
    /// Seconds measured.
    #[arg(long, short = 't', default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    #[arg(long, value_enum, default_value = "plain")]
    pub transport: TransportKind,
    /// Run the same scenario against the minimal relay too and report the ratio.
    #[arg(long)]
    pub against_relay: bool,
    /// The relay binary (default: `relay` next to this executable).
    #[arg(long)]
    pub relay_bin: Option<PathBuf>,
    /// Enable stream management (XEP-0198) on every session: the client answers the
    /// server's ack requests and asks for acks itself every --ack-every messages.
    #[arg(long)]
    pub sm: bool,
    /// With --sm: messages between the client's own `<r/>`.
    #[arg(long, default_value_t = 10)]
    pub ack_every: u64,
}

#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sessions cut and resumed.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub sessions: usize,
    /// Logins and resumptions in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value = "plain")]
    pub transport: TransportKind,
}

#[derive(Args, Debug, Clone)]
pub struct MucArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Rooms.
    #[arg(long, short = 'r', default_value_t = 50)]
    pub rooms: usize,
    /// Occupants per room (one session each).
    #[arg(long, short = 'o', default_value_t = 20)]
    pub occupants: usize,
    /// Occupants of each room that post messages.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Groupchat messages per second over all rooms (each is delivered to every
    /// occupant of its room).
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Seconds measured.
    #[arg(long, short = 't', default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Joins in progress at once.
    #[arg(long, default_value_t = 32)]
    pub join_concurrency: usize,
    /// The MUC service's subdomain.
    #[arg(long, default_value = "conference")]
    pub subdomain: String,
    #[arg(long, value_enum, default_value = "plain")]
    pub transport: TransportKind,
}

#[derive(Args, Debug, Clone)]
pub struct OfflineArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Senders (each has one online and one offline recipient).
    #[arg(short = 'p', long, default_value_t = 100)]
    pub pairs: usize,
    /// Messages per sender to each of its recipients.
    #[arg(short = 'm', long, default_value_t = 50)]
    pub messages: usize,
    /// Messages a sender sends before a ping (and waits for its answer).
    #[arg(long, default_value_t = 8)]
    pub window: usize,
}

#[derive(Args, Debug, Clone)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub sessions: usize,
    /// Transports to measure, each on a freshly started server when this tool starts it.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "plain,tls")]
    pub transports: Vec<TransportKind>,
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Seconds to wait before reading RSS.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Enable resumable stream management on every session before measuring.
    #[arg(long)]
    pub sm: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Seconds of load (then the drain).
    #[arg(long, short = 't', default_value_t = 1800.0)]
    pub duration: f64,
    /// 1:1 chat pairs with resumable stream management.
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    #[arg(long, default_value_t = 3)]
    pub rooms: usize,
    /// Occupants per room.
    #[arg(long, default_value_t = 5)]
    pub occupants: usize,
    /// Pairs of BOSH clients (needs the server's HTTP listener).
    #[arg(long, default_value_t = 2)]
    pub bosh_pairs: usize,
    /// Login loops on the main domain.
    #[arg(long, default_value_t = 2)]
    pub login_loops: usize,
    /// Domain of a tenant authenticating through a Wasm plugin, with accounts
    /// `<prefix>p0 ..` and the load password: one more login loop runs there.
    #[arg(long)]
    pub plugin_domain: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub plugin_users: usize,
    /// Shortest and longest life of a chat connection before it is cut (seconds).
    #[arg(long, default_value_t = 10.0)]
    pub cut_min: f64,
    #[arg(long, default_value_t = 60.0)]
    pub cut_max: f64,
    /// Share of cuts after which the client waits out the resume timeout and logs in
    /// fresh instead of resuming.
    #[arg(long, default_value_t = 0.2)]
    pub fresh_share: f64,
    /// Mean seconds between two messages of one chat or BOSH client.
    #[arg(long, default_value_t = 1.0)]
    pub message_interval: f64,
    /// Longest drain (seconds) after the load: every client back online collecting.
    #[arg(long, default_value_t = 120.0)]
    pub drain: f64,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 10.0)]
    pub rss_interval: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The MUC service's subdomain.
    #[arg(long, default_value = "conference")]
    pub subdomain: String,
    /// Localpart prefix of the soak accounts.
    #[arg(long, default_value = "soak")]
    pub prefix: String,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Idle sessions for the memory and login-rate figures.
    #[arg(long, default_value_t = 15000)]
    pub sessions: usize,
    /// Logins for the SCRAM-SHA-256 over TLS cost figure.
    #[arg(long, default_value_t = 1000)]
    pub scram_logins: usize,
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    #[arg(long)]
    pub relay_bin: Option<PathBuf>,
    /// Logins for the JWT (token) over TLS figure; only on a server started here (its
    /// config has the JWT key), skipped on a running one.
    #[arg(long, default_value_t = 3000)]
    pub token_logins: usize,
    /// MUC fan-out figure: rooms × occupants, groupchat messages per second in all.
    #[arg(long, default_value_t = 50)]
    pub muc_rooms: usize,
    #[arg(long, default_value_t = 20)]
    pub muc_occupants: usize,
    #[arg(long, default_value_t = 500.0)]
    pub muc_rate: f64,
    /// Also write one JSON document with every figure (and every measurement) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    procfs::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let out = Output {
        json: cli.json.clone(),
        taken: Default::default(),
    };
    let r = rt.block_on(async move {
        match cli.command {
            Cmd::Connect(a) => cmd_connect(&out, a).await,
            Cmd::Chat(a) => cmd_chat(&out, a).await.map(|_| ()),
            Cmd::Muc(a) => cmd_muc(&out, a).await.map(|_| ()),
            Cmd::Offline(a) => cmd_offline(&out, a).await.map(|_| ()),
            Cmd::Memory(a) => cmd_memory(&out, a).await.map(|_| ()),
            Cmd::Resume(a) => cmd_resume(&out, a).await.map(|_| ()),
            Cmd::Soak(a) => cmd_soak(&out, a).await,
            Cmd::S2s(a) => cmd_s2s(&out, a).await,
            Cmd::Cluster(a) => crate::cluster::command(&out, a).await,
            Cmd::Report(a) => cmd_report(&out, a).await,
            Cmd::Worker { job } => worker(&job).await,
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heliograph-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where results go.
pub struct Output {
    json: Option<PathBuf>,
    /// Every measurement printed so far (for `report --out`).
    taken: std::sync::Mutex<Vec<Value>>,
}

impl Output {
    pub(crate) fn line(&self, text: &str) {
        println!("{text}");
    }

    pub(crate) fn measurement(&self, v: Value) {
        let text = v.to_string();
        if let Ok(mut taken) = self.taken.lock() {
            taken.push(v);
        }
        println!("{text}");
        if let Some(path) = &self.json
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            let _ = writeln!(f, "{text}");
        }
    }
}

/// `s2s` options.
#[derive(Args, Debug, Clone)]
pub struct S2sArgs {
    /// The heliograph binary for both servers (default: next to this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Messages sent.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Messages sent in one go before waiting for the last of them.
    #[arg(long, default_value_t = 1_000)]
    pub window: usize,
}

async fn cmd_s2s(out: &Output, a: S2sArgs) -> anyhow::Result<()> {
    let binary = match &a.server_bin {
        Some(b) => b.clone(),
        None => sibling("heliograph")?,
    };
    let o = crate::s2s::run(&binary, a.messages, a.window).await?;
    let per = crate::s2s::S2sOutcome::cpu_us_per_message;
    out.line(&format!(
        "s2s: {} messages in {:.2} s = {:.0} msg/s; server CPU per message: sending {:.1} us, \
         receiving {:.1} us",
        o.messages,
        o.seconds,
        o.rate(),
        per(o.cpu_sender, o.messages),
        per(o.cpu_receiver, o.messages),
    ));
    out.measurement(serde_json::json!({
        "measurement": "s2s",
        "messages": o.messages,
        "window": a.window,
        "seconds": o.seconds,
        "messages_per_sec": o.rate(),
        "cpu_us_per_message_sender": per(o.cpu_sender, o.messages),
        "cpu_us_per_message_receiver": per(o.cpu_receiver, o.messages),
    }));
    Ok(())
}

/// A sibling executable of this one (`heliograph`, `relay`).
pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable without a directory")?;
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "no `{name}` binary next to {}; build it or pass its path",
        exe.display()
    )
}

/// Owns the target, and a data dir shared by restarts when none was given.
struct Env {
    args: TargetArgs,
    target: Target,
    _data: Option<tempfile::TempDir>,
    data_dir: Option<PathBuf>,
}

impl Env {
    fn open(args: &TargetArgs) -> anyhow::Result<Env> {
        if let Some(path) = &args.ready_file {
            return Ok(Env {
                target: Target::from_ready_file(path, &args.domain)?,
                args: args.clone(),
                _data: None,
                data_dir: None,
            });
        }
        if let (Some(pid), true) = (args.server_pid, args.foreign) {
            let c2s = args.c2s.context("--c2s")?;
            return Ok(Env {
                target: Target::foreign(pid, c2s, args.c2s_tls.unwrap_or(c2s), &args.domain),
                args: args.clone(),
                _data: None,
                data_dir: None,
            });
        }
        if let Some(pid) = args.server_pid {
            return Ok(Env {
                target: Target::explicit(
                    pid,
                    args.c2s.context("--c2s")?,
                    args.c2s_tls.context("--c2s-tls")?,
                    args.admin.context("--admin")?,
                    args.token_file.as_deref().context("--token-file")?,
                    &args.domain,
                )?,
                args: args.clone(),
                _data: None,
                data_dir: None,
            });
        }
        let (tmp, data_dir) = match &args.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir()?;
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        let mut env = Env {
            target: Target::spawn(&spawn_options(args, &data_dir)?)?,
            args: args.clone(),
            _data: tmp,
            data_dir: Some(data_dir),
        };
        env.target.domain = args.domain.clone();
        Ok(env)
    }

    /// Restarts a started server on the same data (fresh memory baseline); a no-op for a
    /// server this tool does not own.
    fn restart(&mut self) -> anyhow::Result<()> {
        let Some(data) = self.data_dir.clone() else {
            return Ok(());
        };
        self.target.stop();
        self.target = Target::spawn(&spawn_options(&self.args, &data)?)?;
        Ok(())
    }

    async fn provision(&self, out: &Output, count: usize) -> anyhow::Result<()> {
        if self.args.foreign {
            return Ok(());
        }
        let users = (0..count)
            .map(|i| {
                (
                    connect::username(&self.args.user_prefix, i),
                    connect::PASSWORD.to_string(),
                )
            })
            .collect();
        let t0 = std::time::Instant::now();
        let (created, skipped) = crate::admin::provision(
            self.target.admin,
            &self.target.token,
            &self.args.domain,
            users,
            self.args.provision_concurrency,
        )
        .await?;
        if created > 0 {
            out.line(&format!(
                "provisioned {created} accounts ({skipped} existed) in {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
        }
        Ok(())
    }

    fn job(
        &self,
        transport: TransportKind,
        mech: Mech,
        count: usize,
        concurrency: usize,
    ) -> ConnectJob {
        ConnectJob {
            starttls: self.target.starttls,
            direct: self.target.direct,
            http: self.target.http,
            domain: self.args.domain.clone(),
            transport,
            mech,
            user_prefix: self.args.user_prefix.clone(),
            first: 0,
            count,
            rate: 0.0,
            concurrency,
            sources: self.args.sources,
            segment: 1000,
            jwt_secret: None,
            jwt_kid: None,
            passwords: Vec::new(),
            sm: false,
        }
    }
}

fn spawn_options(args: &TargetArgs, data_dir: &std::path::Path) -> anyhow::Result<SpawnOptions> {
    Ok(SpawnOptions {
        binary: match &args.server_bin {
            Some(b) => b.clone(),
            None => sibling("heliograph")?,
        },
        data_dir: Some(data_dir.to_path_buf()),
        domain: args.domain.clone(),
        scram_iterations: args.scram_iterations,
        session_queue: args.session_queue,
        storage_url: args.storage_url.clone(),
        resume_timeout: args.resume_timeout,
        extra_config: String::new(),
    })
}

/// Logged-in sessions, in this process or in worker processes.
enum Held {
    Local {
        stop: tokio::sync::watch::Sender<bool>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    },
    Workers(Vec<std::process::Child>),
}

impl Held {
    async fn release(self) {
        match self {
            Held::Local { stop, tasks } => {
                let _ = stop.send(true);
                for t in tasks {
                    let _ = t.await;
                }
            }
            Held::Workers(children) => {
                tokio::task::spawn_blocking(move || {
                    for mut c in children {
                        drop(c.stdin.take());
                        let _ = c.wait();
                    }
                })
                .await
                .ok();
            }
        }
    }
}

/// Aggregated connect results.
struct ConnectSummary {
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    latencies: Samples,
    elapsed: Duration,
    segments: Vec<connect::Segment>,
    server_cpu: Duration,
}

/// Runs logins (in `procs` processes) and keeps the sessions.
async fn connect_and_hold(
    job: &ConnectJob,
    procs: usize,
    pid: u32,
) -> anyhow::Result<(ConnectSummary, Held)> {
    let cpu0 = procfs::cpu(pid);
    if procs <= 1 {
        let o: ConnectOutcome = connect::run(job, Some(pid)).await;
        let server_cpu = procfs::cpu(pid).saturating_sub(cpu0);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let tasks = connect::hold(o.sessions, &rx);
        return Ok((
            ConnectSummary {
                ok: o.ok,
                failed: o.failed,
                first_error: o.first_error,
                latencies: o.latencies,
                elapsed: o.elapsed,
                segments: o.segments,
                server_cpu,
            },
            Held::Local { stop, tasks },
        ));
    }
    let exe = std::env::current_exe()?;
    let t0 = std::time::Instant::now();
    let mut children = Vec::new();
    for (first, count) in connect::split(job.first, job.count, procs) {
        let mut j = job.clone();
        j.first = first;
        j.count = count;
        if !job.passwords.is_empty() {
            let from = first - job.first;
            j.passwords = job.passwords[from..from + count].to_vec();
        }
        j.rate = job.rate / procs as f64;
        j.segment = 0;
        children.push(
            Command::new(&exe)
                .arg("worker")
                .arg("--job")
                .arg(serde_json::to_string(&j)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    let (children, reports) = tokio::task::spawn_blocking(move || {
        let mut reports = Vec::new();
        for c in children.iter_mut() {
            let mut line = String::new();
            let stdout = c.stdout.as_mut().expect("piped");
            std::io::BufReader::new(stdout).read_line(&mut line)?;
            reports.push(serde_json::from_str::<WorkerReport>(&line).context("worker report")?);
        }
        Ok::<_, anyhow::Error>((children, reports))
    })
    .await??;
    let elapsed = t0.elapsed();
    let server_cpu = procfs::cpu(pid).saturating_sub(cpu0);
    let mut s = ConnectSummary {
        ok: 0,
        failed: 0,
        first_error: None,
        latencies: Samples::new(),
        elapsed,
        segments: Vec::new(),
        server_cpu,
    };
    for r in reports {
        s.ok += r.ok;
        s.failed += r.failed;
        if s.first_error.is_none() {
            s.first_error = r.first_error;
        }
        s.latencies.extend(&Samples::from_values(r.latencies_ns));
    }
    Ok((s, Held::Workers(children)))
}

async fn worker(job: &str) -> anyhow::Result<()> {
    let job: ConnectJob = serde_json::from_str(job)?;
    let o = connect::run(&job, None).await;
    let report = WorkerReport {
        ok: o.ok,
        failed: o.failed,
        first_error: o.first_error,
        latencies_ns: o.latencies.values().to_vec(),
        elapsed_s: o.elapsed.as_secs_f64(),
    };
    println!("{}", serde_json::to_string(&report)?);
    std::io::stdout().flush()?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let tasks = connect::hold(o.sessions, &rx);
    // Hold until the parent closes stdin.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
    })
    .await?;
    Held::Local { stop, tasks }.release().await;
    Ok(())
}

fn connect_json(label: &str, job: &ConnectJob, s: &mut ConnectSummary) -> Value {
    let rate = s.ok as f64 / s.elapsed.as_secs_f64().max(1e-9);
    json!({
        "measurement": label,
        "transport": job.transport.name(),
        "mech": job.mech.name(),
        "sessions": job.count,
        "ok": s.ok,
        "failed": s.failed,
        "logins_per_s": round3(rate),
        "login_p50_ms": round3(s.latencies.percentile_ms(50.0)),
        "login_p99_ms": round3(s.latencies.percentile_ms(99.0)),
        "server_cpu_ms_per_login": round3(s.server_cpu.as_secs_f64() * 1e3 / s.ok.max(1) as f64),
        "segments": s.segments.iter().map(|g| json!({
            "online": g.online, "logins_per_s": round3(g.rate()),
            "server_cpu_ms_per_login": round3(g.cpu_ms_per_login()),
        })).collect::<Vec<_>>(),
        "first_error": s.first_error,
    })
}

fn print_connect(out: &Output, v: &Value) {
    out.line(&format!(
        "connect {} {}: {}/{} ok, {} failed, {} logins/s, login p50 {} ms p99 {} ms, server CPU {} ms/login",
        v["transport"].as_str().unwrap_or(""),
        v["mech"].as_str().unwrap_or(""),
        v["ok"], v["sessions"], v["failed"], v["logins_per_s"], v["login_p50_ms"],
        v["login_p99_ms"], v["server_cpu_ms_per_login"],
    ));
    if let Some(e) = v["first_error"].as_str() {
        out.line(&format!("  first failure: {e}"));
    }
}

async fn cmd_connect(out: &Output, a: ConnectArgs) -> anyhow::Result<()> {
    let env = Env::open(&a.target)?;
    env.provision(out, a.sessions).await?;
    if a.mech == Mech::Jwt && a.jwt_secret.is_none() {
        bail!("--mech jwt needs --jwt-secret (the HS256 secret of the domain's JWT key)");
    }
    let users = || {
        (0..a.sessions)
            .map(|i| connect::username(&a.target.user_prefix, i))
            .collect::<Vec<_>>()
    };
    let t0 = std::time::Instant::now();
    let (tokens, what) = match a.mech {
        Mech::Token => {
            let tokens = crate::admin::mint_access_tokens(
                env.target.admin,
                &env.target.token,
                &a.target.domain,
                users(),
                a.target.provision_concurrency,
            )
            .await?;
            (tokens, "minted access tokens")
        }
        Mech::Fast => {
            if !matches!(a.transport, TransportKind::Tls | TransportKind::Starttls) {
                bail!(
                    "--mech fast needs --transport tls or starttls (FAST is offered over TLS only)"
                );
            }
            let mut spec = env.job(a.transport, a.mech, 0, 1).spec();
            spec.mech = Mech::Plain;
            let tokens = crate::fast::provision(
                spec,
                users(),
                connect::PASSWORD.to_string(),
                a.target.provision_concurrency,
            )
            .await?;
            (tokens, "requested and used FAST tokens")
        }
        _ => (Vec::new(), ""),
    };
    if !tokens.is_empty() {
        out.line(&format!(
            "{what}: {} in {:.1} s",
            tokens.len(),
            t0.elapsed().as_secs_f64()
        ));
    }
    let mut job = env.job(a.transport, a.mech, a.sessions, a.concurrency);
    job.rate = a.rate;
    job.segment = a.segment;
    job.jwt_secret = a.jwt_secret.clone();
    job.jwt_kid = a.jwt_kid.clone();
    job.passwords = tokens;
    let rss0 = procfs::sample(env.target.pid)?.rss_kib;
    let db0 = a.target.db_pid.map(procfs::tree_cpu);
    let (mut s, held) = connect_and_hold(&job, a.procs, env.target.pid).await?;
    let mut v = connect_json("connect", &job, &mut s);
    if let (Some(pid), Some(db0)) = (a.target.db_pid, db0) {
        let db = procfs::tree_cpu(pid).saturating_sub(db0);
        v["db_cpu_ms_per_login"] = json!(round3(db.as_secs_f64() * 1e3 / s.ok.max(1) as f64));
    }
    print_connect(out, &v);
    out.measurement(v);
    if a.hold > 0.0 {
        out.line(&format!(
            "holding {} sessions for {} s (server pid {}, RSS {} KiB before login)",
            s.ok, a.hold, env.target.pid, rss0
        ));
        tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    }
    held.release().await;
    if s.failed > 0 {
        bail!("{} logins failed", s.failed);
    }
    Ok(())
}

/// Memory per idle session for one transport on the current server.
async fn memory_one(
    out: &Output,
    env: &Env,
    transport: TransportKind,
    sessions: usize,
    concurrency: usize,
    procs: usize,
    settle: f64,
) -> anyhow::Result<(Value, Value)> {
    memory_one_sm(
        out,
        env,
        transport,
        sessions,
        concurrency,
        procs,
        settle,
        false,
    )
    .await
}

/// [`memory_one`], with stream management enabled on every session when `sm`.
#[allow(clippy::too_many_arguments)]
async fn memory_one_sm(
    out: &Output,
    env: &Env,
    transport: TransportKind,
    sessions: usize,
    concurrency: usize,
    procs: usize,
    settle: f64,
    sm: bool,
) -> anyhow::Result<(Value, Value)> {
    let pid = env.target.pid;
    tokio::time::sleep(Duration::from_secs_f64(settle.min(1.0))).await;
    let before = procfs::sample(pid)?;
    let mut job = env.job(transport, Mech::Plain, sessions, concurrency);
    job.sm = sm;
    let (mut s, held) = connect_and_hold(&job, procs, pid).await?;
    let cv = connect_json("connect", &job, &mut s);
    print_connect(out, &cv);
    out.measurement(cv.clone());
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    let after = procfs::sample(pid)?;
    let per = (after.rss_kib as f64 - before.rss_kib as f64) / s.ok.max(1) as f64;
    let v = json!({
        "measurement": "memory",
        "transport": transport.name(),
        "sm": sm,
        "sessions": s.ok,
        "rss_before_kib": before.rss_kib,
        "rss_after_kib": after.rss_kib,
        "kib_per_session": round3(per),
    });
    out.line(&format!(
        "memory {}{}: RSS {} KiB -> {} KiB with {} idle sessions = {:.2} KiB/session",
        transport.name(),
        if sm { " with SM" } else { "" },
        before.rss_kib,
        after.rss_kib,
        s.ok,
        per
    ));
    out.measurement(v.clone());
    held.release().await;
    if s.failed > 0 {
        bail!("{} logins failed: {:?}", s.failed, s.first_error);
    }
    Ok((v, cv))
}

async fn cmd_memory(out: &Output, a: MemoryArgs) -> anyhow::Result<Vec<(Value, Value)>> {
    let mut env = Env::open(&a.target)?;
    env.provision(out, a.sessions).await?;
    let mut results = Vec::new();
    for (k, t) in a.transports.iter().enumerate() {
        if k > 0 {
            env.restart()?;
        }
        results.push(
            memory_one_sm(
                out,
                &env,
                *t,
                a.sessions,
                a.concurrency,
                a.procs,
                a.settle,
                a.sm,
            )
            .await?,
        );
    }
    Ok(results)
}

async fn cmd_resume(out: &Output, a: ResumeArgs) -> anyhow::Result<Value> {
    let env = Env::open(&a.target)?;
    env.provision(out, a.sessions).await?;
    let mut job = env.job(a.transport, Mech::Plain, a.sessions, a.concurrency);
    job.sm = true;
    let mut r =
        crate::resume::run(&job, env.target.admin, &env.target.token, env.target.pid).await?;
    let v = json!({
        "measurement": "resume_storm",
        "transport": a.transport.name(),
        "sessions": r.sessions,
        "noticed_s": round3(r.noticed.as_secs_f64()),
        "resumed": r.resumed,
        "failed": r.failed,
        "first_error": r.first_error,
        "seconds": round3(r.elapsed.as_secs_f64()),
        "resumes_per_s": round3(r.per_s()),
        "p50_ms": round3(r.latencies.percentile_ms(50.0)),
        "p99_ms": round3(r.latencies.percentile_ms(99.0)),
        "cpu_ms_per_resume": round3(r.cpu_ms_per_resume()),
    });
    out.line(&format!(
        "resume storm ({} sessions, {}): all detached after {:.2} s; {} resumed in {:.2} s = {} /s, p50 {} ms p99 {} ms, {} failed, {} ms CPU/resume",
        r.sessions,
        a.transport.name(),
        r.noticed.as_secs_f64(),
        r.resumed,
        r.elapsed.as_secs_f64(),
        v["resumes_per_s"],
        v["p50_ms"],
        v["p99_ms"],
        r.failed,
        v["cpu_ms_per_resume"],
    ));
    out.measurement(v.clone());
    if r.failed > 0 {
        bail!("{} resumptions failed: {:?}", r.failed, r.first_error);
    }
    Ok(v)
}

/// Chat figures as JSON.
fn chat_json(
    label: &str,
    against: &str,
    pace: Pace,
    pairs: usize,
    o: &mut chat::ChatOutcome,
) -> Value {
    let (rate, window) = match pace {
        Pace::Rate(r) => (Some(r), None),
        Pace::Window(w) => (None, Some(w)),
    };
    json!({
        "measurement": label,
        "against": against,
        "pairs": pairs,
        "target_rate": rate,
        "window": window,
        "seconds": round3(o.window.as_secs_f64()),
        "delivered": o.delivered_in_window,
        "delivered_per_s": round3(o.rate()),
        "p50_ms": round3(o.latencies.percentile_ms(50.0)),
        "p99_ms": round3(o.latencies.percentile_ms(99.0)),
        "p999_ms": round3(o.latencies.percentile_ms(99.9)),
        "sent": o.sent,
        "received": o.received,
        "lost": o.lost,
        "out_of_order": o.out_of_order,
        "errors": o.errors,
        "first_error": o.first_error,
        "cpu_us_per_msg": round3(o.cpu_us_per_msg()),
    })
}

fn print_chat(out: &Output, v: &Value) {
    out.line(&format!(
        "chat vs {} ({} pairs, {}): {} msg/s, latency p50 {} ms p99 {} ms p99.9 {} ms, lost {}, {} µs CPU/msg ({})",
        v["against"].as_str().unwrap_or(""),
        v["pairs"],
        match (v["target_rate"].as_f64(), v["window"].as_u64()) {
            (Some(r), _) => format!("rate {r}/s"),
            (_, Some(w)) => format!("window {w}"),
            _ => String::new(),
        },
        v["delivered_per_s"], v["p50_ms"], v["p99_ms"], v["p999_ms"], v["lost"], v["cpu_us_per_msg"],
        if v["against"] == "relay" { "relay process" } else { "server process" },
    ));
}

/// Logs in 2P sessions and runs the chat against the server.
async fn chat_server(
    out: &Output,
    env: &Env,
    pairs: usize,
    transport: TransportKind,
    pace: Pace,
    warmup: f64,
    duration: f64,
) -> anyhow::Result<Value> {
    chat_server_sm(out, env, pairs, transport, pace, warmup, duration, None).await
}

/// [`chat_server`], with stream management on every session when `sm` is given.
#[allow(clippy::too_many_arguments)]
async fn chat_server_sm(
    out: &Output,
    env: &Env,
    pairs: usize,
    transport: TransportKind,
    pace: Pace,
    warmup: f64,
    duration: f64,
    sm: Option<chat::SmChat>,
) -> anyhow::Result<Value> {
    let mut job = env.job(transport, Mech::Plain, pairs * 2, 32);
    job.sm = sm.is_some();
    let mut o = connect::run(&job, None).await;
    if o.failed > 0 {
        bail!("{} chat logins failed: {:?}", o.failed, o.first_error);
    }
    o.sessions.sort_by_key(|(i, _)| *i);
    let jids: Vec<String> = o.sessions.iter().map(|(_, s)| s.full_jid.clone()).collect();
    let conns: Vec<_> = o
        .sessions
        .into_iter()
        .map(|(i, s)| (s.io, jids[i ^ 1].clone(), s.sm.map_or(0, |sm| sm.h)))
        .collect();
    // Let initial presence settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut r, ios) = chat::drive(
        conns,
        pace,
        Duration::from_secs_f64(warmup),
        Duration::from_secs_f64(duration),
        env.target.pid,
        sm,
    )
    .await;
    chat::close_all(ios, Duration::from_secs(10)).await;
    let mut v = chat_json("chat", "server", pace, pairs, &mut r);
    v["sm"] = json!(sm.is_some());
    print_chat(out, &v);
    out.measurement(v.clone());
    Ok(v)
}

/// The same chat against the minimal relay.
async fn chat_relay(
    out: &Output,
    relay_bin: Option<&PathBuf>,
    jids: Vec<String>,
    pace: Pace,
    warmup: f64,
    duration: f64,
    sources: usize,
) -> anyhow::Result<Value> {
    let bin = match relay_bin {
        Some(b) => b.clone(),
        None => sibling("relay")?,
    };
    let mut child = Command::new(&bin)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("piped")).read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("LISTENING ")
        .context("relay did not report its address")?
        .parse()?;
    let pairs = jids.len() / 2;
    let mut conns = Vec::with_capacity(jids.len());
    for (i, jid) in jids.iter().enumerate() {
        let mut s =
            crate::xmpp::connect_tcp(addr, Some(crate::xmpp::source_ip(i, sources))).await?;
        tokio::io::AsyncWriteExt::write_all(&mut s, format!("HELLO {i}\n").as_bytes()).await?;
        conns.push((s, jids[i ^ 1].clone(), 0));
        let _ = jid;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut r, ios) = chat::drive(
        conns,
        pace,
        Duration::from_secs_f64(warmup),
        Duration::from_secs_f64(duration),
        child.id(),
        None,
    )
    .await;
    drop(ios);
    let _ = child.kill();
    let _ = child.wait();
    let v = chat_json("chat", "relay", pace, pairs, &mut r);
    print_chat(out, &v);
    out.measurement(v.clone());
    Ok(v)
}

fn relay_ratio(out: &Output, server: &Value, relay: &Value) -> Value {
    let s = server["delivered_per_s"].as_f64().unwrap_or(0.0);
    let r = relay["delivered_per_s"].as_f64().unwrap_or(0.0);
    let sc = server["cpu_us_per_msg"].as_f64().unwrap_or(0.0);
    let rc = relay["cpu_us_per_msg"].as_f64().unwrap_or(0.0);
    let v = json!({
        "measurement": "relay_ratio",
        "server_per_s": s,
        "relay_per_s": r,
        "rate_ratio": round3(s / r.max(1e-9)),
        "cpu_per_msg_ratio": round3(sc / rc.max(1e-9)),
    });
    out.line(&format!(
        "server/relay: {:.1}% of the relay's message rate; {:.1}x the relay's CPU per message",
        100.0 * s / r.max(1e-9),
        sc / rc.max(1e-9)
    ));
    out.measurement(v.clone());
    v
}

fn jids_for(env: &Env, pairs: usize) -> Vec<String> {
    (0..pairs * 2)
        .map(|i| {
            format!(
                "{}@{}/load",
                connect::username(&env.args.user_prefix, i),
                env.args.domain
            )
        })
        .collect()
}

/// MUC figures as JSON.
fn muc_json(a: &MucArgs, o: &mut crate::muc::MucOutcome) -> Value {
    json!({
        "measurement": "muc",
        "rooms": a.rooms,
        "occupants": a.occupants,
        "senders_per_room": a.senders.clamp(1, a.occupants.max(1)),
        "target_rate": a.rate,
        "joins": o.joins,
        "joins_per_s": round3(o.joins_per_s()),
        "join_p50_ms": round3(o.join_latencies.percentile_ms(50.0)),
        "join_p99_ms": round3(o.join_latencies.percentile_ms(99.0)),
        "cpu_ms_per_join": round3(o.cpu_ms_per_join()),
        "seconds": round3(o.window.as_secs_f64()),
        "messages_sent": o.sent,
        "delivered": o.delivered,
        "delivered_in_window": o.delivered_in_window,
        "deliveries_per_s": round3(o.deliveries_per_s()),
        "p50_ms": round3(o.latencies.percentile_ms(50.0)),
        "p99_ms": round3(o.latencies.percentile_ms(99.0)),
        "lost": o.lost,
        "out_of_order": o.out_of_order,
        "errors": o.errors,
        "first_error": o.first_error,
        "cpu_us_per_delivery": round3(o.cpu_us_per_delivery()),
    })
}

async fn cmd_offline(out: &Output, a: OfflineArgs) -> anyhow::Result<Value> {
    let env = Env::open(&a.target)?;
    anyhow::ensure!(
        a.pairs > 0 && a.messages > 0,
        "--pairs and --messages must be at least 1"
    );
    env.provision(out, crate::offline::accounts(a.pairs))
        .await?;
    let job = crate::offline::OfflineJob {
        pairs: a.pairs,
        messages: a.messages,
        window: a.window,
        domain: env.args.domain.clone(),
        user_prefix: env.args.user_prefix.clone(),
    };
    let login = env.job(TransportKind::Plain, Mech::Plain, 2 * a.pairs, 32);
    let mut r = crate::offline::run(&job, &login, env.target.pid, a.target.db_pid).await?;
    let storage = if a.target.storage_url.is_some() {
        "postgres"
    } else {
        "sled"
    };
    let mut v = json!({
        "measurement": "offline",
        "storage": storage,
        "pairs": a.pairs,
        "messages": a.messages,
        "window": a.window,
        "sent": r.sent,
        "errors": r.errors,
        "send_seconds": round3(r.send_seconds),
        "msgs_per_s": round3(r.sent as f64 / r.send_seconds),
        "cpu_us_per_msg": round3(r.send_cpu.as_secs_f64() * 1e6 / r.sent as f64),
        "popped": r.popped,
        "pop_seconds": round3(r.pop_seconds),
        "pop_logins_per_s": round3(a.pairs as f64 / r.pop_seconds),
        "popped_msgs_per_s": round3(r.popped as f64 / r.pop_seconds),
        "cpu_ms_per_pop_login": round3(r.pop_cpu.as_secs_f64() * 1e3 / a.pairs as f64),
        "pop_p50_ms": r.pop_latency.percentile_ms(50.0),
        "pop_p99_ms": r.pop_latency.percentile_ms(99.0),
    });
    if a.target.db_pid.is_some() {
        v["db_cpu_us_per_msg"] = json!(round3(r.send_db_cpu.as_secs_f64() * 1e6 / r.sent as f64));
        v["db_cpu_ms_per_pop_login"] =
            json!(round3(r.pop_db_cpu.as_secs_f64() * 1e3 / a.pairs as f64));
    }
    out.line(&format!(
        "offline ({storage}, {} senders, {} messages to each of 2 recipients, half offline): \
         {} msg/s, {} µs CPU/msg, {} errors; pop on login: {} logins with {} messages each in {} s \
         ({} msg/s, login to last message p50 {} ms p99 {} ms, {} ms CPU/login)",
        a.pairs,
        a.messages,
        v["msgs_per_s"],
        v["cpu_us_per_msg"],
        r.errors,
        a.pairs,
        a.messages,
        v["pop_seconds"],
        v["popped_msgs_per_s"],
        v["pop_p50_ms"],
        v["pop_p99_ms"],
        v["cpu_ms_per_pop_login"],
    ));
    out.measurement(v.clone());
    if r.errors > 0 {
        bail!("{} messages refused", r.errors);
    }
    Ok(v)
}

async fn cmd_muc(out: &Output, a: MucArgs) -> anyhow::Result<Value> {
    let env = Env::open(&a.target)?;
    let count = a.rooms * a.occupants;
    anyhow::ensure!(count > 0, "--rooms and --occupants must be at least 1");
    env.provision(out, count).await?;
    muc_on(out, &env, &a).await
}

/// Joins and groupchat fan-out on `env`'s server, whose accounts exist already.
async fn muc_on(out: &Output, env: &Env, a: &MucArgs) -> anyhow::Result<Value> {
    let count = a.rooms * a.occupants;
    let job = env.job(a.transport, Mech::Plain, count, 32);
    let mut o = connect::run(&job, None).await;
    if o.failed > 0 {
        bail!("{} muc logins failed: {:?}", o.failed, o.first_error);
    }
    o.sessions.sort_by_key(|(i, _)| *i);
    let sessions = o.sessions.into_iter().map(|(_, s)| s).collect();
    let muc_job = crate::muc::MucJob {
        rooms: a.rooms,
        occupants: a.occupants,
        senders: a.senders,
        rate: a.rate,
        warmup: Duration::from_secs_f64(a.warmup),
        duration: Duration::from_secs_f64(a.duration),
        join_concurrency: a.join_concurrency,
        service: format!("{}.{}", a.subdomain, env.args.domain),
    };
    let mut r = crate::muc::run(&muc_job, sessions, env.target.pid).await?;
    let v = muc_json(a, &mut r);
    out.line(&format!(
        "muc ({} rooms × {} occupants, {} msg/s): {} joins in {:.2} s = {} joins/s (p50 {} ms, p99 {} ms, {} ms CPU/join); \
         {} deliveries/s, latency p50 {} ms p99 {} ms, lost {}, {} µs CPU/delivery (server process)",
        a.rooms,
        a.occupants,
        a.rate,
        r.joins,
        r.join_seconds,
        v["joins_per_s"],
        v["join_p50_ms"],
        v["join_p99_ms"],
        v["cpu_ms_per_join"],
        v["deliveries_per_s"],
        v["p50_ms"],
        v["p99_ms"],
        v["lost"],
        v["cpu_us_per_delivery"],
    ));
    out.measurement(v.clone());
    if r.lost > 0 || r.errors > 0 || r.out_of_order > 0 {
        bail!("groupchat messages lost, reordered or sessions failed: {v}");
    }
    Ok(v)
}

async fn cmd_chat(out: &Output, a: ChatArgs) -> anyhow::Result<Value> {
    let env = Env::open(&a.target)?;
    env.provision(out, a.pairs * 2).await?;
    let pace = match (a.rate, a.window) {
        (Some(r), _) => Pace::Rate(r),
        (None, w) => Pace::Window(w.unwrap_or(8)),
    };
    let sm = a.sm.then_some(chat::SmChat {
        ask_every: a.ack_every,
    });
    let v = chat_server_sm(
        out,
        &env,
        a.pairs,
        a.transport,
        pace,
        a.warmup,
        a.duration,
        sm,
    )
    .await?;
    let lost = v["lost"].as_u64().unwrap_or(1) + v["errors"].as_u64().unwrap_or(1);
    if a.against_relay {
        let r = chat_relay(
            out,
            a.relay_bin.as_ref(),
            jids_for(&env, a.pairs),
            pace,
            a.warmup,
            a.duration,
            env.args.sources,
        )
        .await?;
        relay_ratio(out, &v, &r);
    }
    if lost > 0 {
        bail!("messages lost or sessions failed: {v}");
    }
    Ok(v)
}

async fn cmd_report(out: &Output, a: ReportArgs) -> anyhow::Result<()> {
    let mut env = Env::open(&a.target)?;
    let n = a
        .sessions
        .max(a.scram_logins)
        .max(a.token_logins)
        .max(a.pairs * 2)
        .max(a.muc_rooms * a.muc_occupants);
    env.provision(out, n).await?;
    env.restart()?;
    out.line(&format!(
        "== memory and PLAIN logins over plain TCP, {} sessions",
        a.sessions
    ));
    let (mem_plain, login_plain) = memory_one(
        out,
        &env,
        TransportKind::Plain,
        a.sessions,
        a.concurrency,
        a.procs,
        3.0,
    )
    .await?;
    env.restart()?;
    out.line(&format!(
        "== memory over direct TLS (PLAIN), {} sessions",
        a.sessions
    ));
    let (mem_tls, _) = memory_one(
        out,
        &env,
        TransportKind::Tls,
        a.sessions,
        a.concurrency,
        a.procs,
        3.0,
    )
    .await?;
    env.restart()?;
    out.line(&format!(
        "== SCRAM-SHA-256 over direct TLS, {} logins",
        a.scram_logins
    ));
    let job = env.job(
        TransportKind::Tls,
        Mech::ScramSha256,
        a.scram_logins,
        a.concurrency,
    );
    let (mut s, held) = connect_and_hold(&job, a.procs, env.target.pid).await?;
    let scram = connect_json("connect", &job, &mut s);
    print_connect(out, &scram);
    out.measurement(scram.clone());
    held.release().await;
    let jwt = if env.data_dir.is_some() {
        env.restart()?;
        out.line(&format!(
            "== JWT (PLAIN with a token) over direct TLS, {} logins",
            a.token_logins
        ));
        let mut job = env.job(TransportKind::Tls, Mech::Jwt, a.token_logins, a.concurrency);
        job.jwt_secret = Some(crate::target::SPAWN_JWT_SECRET.into());
        job.jwt_kid = Some(crate::target::SPAWN_JWT_KID.into());
        let (mut s, held) = connect_and_hold(&job, a.procs, env.target.pid).await?;
        let v = connect_json("connect", &job, &mut s);
        print_connect(out, &v);
        out.measurement(v.clone());
        held.release().await;
        Some(v)
    } else {
        out.line("== JWT logins skipped: the running server's JWT key is unknown here");
        None
    };
    env.restart()?;
    out.line(&format!(
        "== MUC: {} rooms × {} occupants, {} msg/s",
        a.muc_rooms, a.muc_occupants, a.muc_rate
    ));
    let muc = muc_on(
        out,
        &env,
        &MucArgs {
            target: a.target.clone(),
            rooms: a.muc_rooms,
            occupants: a.muc_occupants,
            senders: 1,
            rate: a.muc_rate,
            duration: a.duration,
            warmup: 2.0,
            join_concurrency: 32,
            subdomain: "conference".into(),
            transport: TransportKind::Plain,
        },
    )
    .await?;
    env.restart()?;
    out.line(&format!("== chat, {} pairs over plain TCP", a.pairs));
    let max = chat_server(
        out,
        &env,
        a.pairs,
        TransportKind::Plain,
        Pace::Window(a.window),
        2.0,
        a.duration,
    )
    .await?;
    let relay = chat_relay(
        out,
        a.relay_bin.as_ref(),
        jids_for(&env, a.pairs),
        Pace::Window(a.window),
        2.0,
        a.duration,
        env.args.sources,
    )
    .await?;
    let ratio = relay_ratio(out, &max, &relay);
    out.line("== highest sustained paced rate (one write per message, as real clients do)");
    let sustained = max_sustained_rate(out, &mut env, a.pairs).await?;
    let half = sustained / 2.0;
    env.restart()?;
    out.line(&format!("== chat at half the sustained rate ({half:.0}/s)"));
    let at_half = chat_server(
        out,
        &env,
        a.pairs,
        TransportKind::Plain,
        Pace::Rate(half),
        2.0,
        a.duration,
    )
    .await?;
    let relay_half = chat_relay(
        out,
        a.relay_bin.as_ref(),
        jids_for(&env, a.pairs),
        Pace::Rate(half),
        2.0,
        a.duration,
        env.args.sources,
    )
    .await?;
    let paced_ratio = relay_ratio(out, &at_half, &relay_half);

    let seg = |v: &Value, which: &str| -> String {
        let segs = v["segments"].as_array().cloned().unwrap_or_default();
        let g = if which == "first" {
            segs.first()
        } else {
            segs.last()
        };
        g.map(|g| {
            format!(
                "{} logins/s, {} ms CPU/login (at {} online)",
                g["logins_per_s"], g["server_cpu_ms_per_login"], g["online"]
            )
        })
        .unwrap_or_else(|| "n/a".into())
    };
    out.line("");
    out.line("== summary (target in brackets)");
    out.line(&format!(
        "idle session, plain TCP: {} KiB [<= 6 KiB at 15,000]",
        mem_plain["kib_per_session"]
    ));
    out.line(&format!(
        "idle session, TLS:       {} KiB [<= 10 KiB at 15,000]",
        mem_tls["kib_per_session"]
    ));
    out.line(&format!(
        "chat server CPU:         {} µs/msg at max rate, {} µs/msg at half [<= 2.5 µs]",
        max["cpu_us_per_msg"], at_half["cpu_us_per_msg"]
    ));
    out.line(&format!(
        "MUC fan-out:             {} µs/delivery, {} deliveries/s [<= 2.5 µs]",
        muc["cpu_us_per_delivery"], muc["deliveries_per_s"]
    ));
    if let Some(jwt) = &jwt {
        out.line(&format!(
            "JWT login, TLS:          {} ms CPU/login, {} logins/s, p99 {} ms [<= 0.15 ms]",
            jwt["server_cpu_ms_per_login"], jwt["logins_per_s"], jwt["login_p99_ms"]
        ));
    }
    out.line(&format!(
        "chat vs relay:           {:.1}% of relay rate [>= 50%]",
        100.0 * ratio["rate_ratio"].as_f64().unwrap_or(0.0)
    ));
    out.line(&format!(
        "p99 at half max rate:    {} ms ({} msg/s) [< 5 ms]",
        at_half["p99_ms"], at_half["delivered_per_s"]
    ));
    out.line(&format!(
        "paced, same rate:        server {} µs/msg vs relay {} µs/msg = {}x",
        at_half["cpu_us_per_msg"], relay_half["cpu_us_per_msg"], paced_ratio["cpu_per_msg_ratio"]
    ));
    out.line(&format!(
        "losses:                  {} + {} + {} + {} [0]",
        max["lost"], relay["lost"], at_half["lost"], relay_half["lost"]
    ));
    out.line(&format!(
        "PLAIN login, plain TCP:  {} ms CPU/login [<= 0.15 ms]",
        login_plain["server_cpu_ms_per_login"]
    ));
    out.line(&format!(
        "SCRAM-SHA-256, TLS:      {} ms CPU/login",
        scram["server_cpu_ms_per_login"]
    ));
    out.line(&format!(
        "login rate first 1k:     {}",
        seg(&login_plain, "first")
    ));
    out.line(&format!(
        "login rate last 1k:      {} [not lower]",
        seg(&login_plain, "last")
    ));
    if let Some(path) = &a.out {
        let figures = crate::report::Figures {
            mem_plain: &mem_plain,
            mem_tls: &mem_tls,
            login_plain: &login_plain,
            scram: &scram,
            jwt: jwt.as_ref(),
            chat_max: &max,
            relay_max: &relay,
            relay_ratio: &ratio,
            sustained_rate: sustained,
            chat_half: &at_half,
            relay_half: &relay_half,
            muc: &muc,
        };
        let taken = out.taken.lock().map(|t| t.clone()).unwrap_or_default();
        let doc = crate::report::document(&figures, taken);
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        out.line(&format!("report written to {}", path.display()));
    }
    Ok(())
}

/// Lines of a server log that report a panic.
fn panics_in(log: &str) -> usize {
    log.lines().filter(|l| l.contains("panicked")).count()
}

async fn cmd_soak(out: &Output, a: SoakArgs) -> anyhow::Result<()> {
    let env = Env::open(&a.target)?;
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let job = crate::soak::SoakJob {
        starttls: env.target.starttls,
        direct: env.target.direct,
        http: env.target.http,
        domain: a.target.domain.clone(),
        plugin_domain: a.plugin_domain.clone(),
        plugin_users: a.plugin_users,
        muc_service: format!("{}.{}", a.subdomain, a.target.domain),
        prefix: a.prefix.clone(),
        duration: secs(a.duration),
        pairs: a.pairs,
        rooms: a.rooms,
        occupants: a.occupants,
        bosh_pairs: a.bosh_pairs,
        login_loops: a.login_loops,
        cut_min: secs(a.cut_min),
        cut_max: secs(a.cut_max),
        resume_timeout: Duration::from_secs(a.target.resume_timeout.unwrap_or(300)),
        fresh_share: a.fresh_share,
        message_interval: secs(a.message_interval),
        drain: secs(a.drain),
        rss_interval: secs(a.rss_interval).max(Duration::from_millis(100)),
        seed: a.seed,
        pid: env.target.pid,
    };
    let t0 = std::time::Instant::now();
    let (created, skipped) = crate::admin::provision(
        env.target.admin,
        &env.target.token,
        &a.target.domain,
        job.accounts(),
        a.target.provision_concurrency,
    )
    .await
    .context("provisioning the soak accounts")?;
    out.line(&format!(
        "provisioned {created} accounts ({skipped} existed) in {:.1} s; soak for {:.0} s \
         (server pid {}, resume timeout {} s)",
        t0.elapsed().as_secs_f64(),
        a.duration,
        env.target.pid,
        job.resume_timeout.as_secs(),
    ));
    let r = crate::soak::run(job, |line| println!("soak: {line}")).await;
    // A server this tool started: its log is read for panics too.
    let panics = env
        .target
        .log
        .as_ref()
        .map(|p| panics_in(&std::fs::read_to_string(p).unwrap_or_default()));
    let c = &r.chat;
    out.line(&format!(
        "soak {:.0} s (+{:.1} s drain): logins {} (+{} through the plugin), {} failed; \
         disconnects {} abrupt, {} clean; resumes {} ({} failed), fresh logins {}",
        r.duration_s,
        r.drain_s,
        r.logins,
        r.plugin_logins,
        r.login_failures,
        r.cuts,
        r.clean_closes,
        r.resumes,
        r.resume_failures,
        r.fresh_logins,
    ));
    out.line(&format!(
        "  chat (SM): sent {} acked {} received {} lost {} duplicated {} (unacked and \
         missing {}); BOSH: sent {} acked {} received {} lost {} duplicated {}",
        c.sent,
        c.acked,
        c.received,
        c.lost,
        c.duplicates,
        c.unacked_missing,
        r.bosh.sent,
        r.bosh.acked,
        r.bosh.received,
        r.bosh.lost,
        r.bosh.duplicates,
    ));
    out.line(&format!(
        "  MUC: joins {} ({} retried), leaves {}, sent {} delivered {} own echoes missing {}; \
         stream errors {}, bounces {}, unknown bodies {}",
        r.muc_joins,
        r.muc_join_failures,
        r.muc_leaves,
        r.muc_sent,
        r.muc_received,
        r.muc_echo_missing,
        r.stream_errors,
        r.bounces,
        r.unknown_received,
    ));
    out.line(&format!(
        "  RSS: {} KiB at {} s, {} KiB at the end (ratio {:.3}), max {} KiB, {} KiB after \
         the drain; server {}",
        r.rss_baseline_kib,
        r.rss_baseline_at_s,
        r.rss_end_kib,
        r.rss_ratio,
        r.rss_max_kib,
        r.rss_after_drain_kib,
        if r.server_died { "DIED" } else { "alive" },
    ));
    for (e, n) in &r.errors {
        out.line(&format!("  error ({n}×): {e}"));
    }
    let mut v = serde_json::to_value(&r)?;
    v["measurement"] = json!("soak");
    v["lost"] = json!(r.lost());
    v["server_panics"] = json!(panics);
    let mut failures: Vec<String> = r.failures().iter().map(|f| f.to_string()).collect();
    if let Some(n) = panics.filter(|&n| n > 0) {
        failures.push(format!("{n} panics in the server log"));
    }
    v["passed"] = json!(failures.is_empty());
    out.measurement(v);
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    out.line("soak passed");
    Ok(())
}

/// True if a paced probe kept up: at least 95% of the target delivered, nothing lost, no
/// session closed.
pub fn kept_up(v: &Value, target: f64) -> bool {
    v["delivered_per_s"].as_f64().unwrap_or(0.0) >= 0.95 * target
        && v["lost"].as_u64() == Some(0)
        && v["errors"].as_u64() == Some(0)
}

/// The highest paced rate the server sustains: doubles from 10,000/s until a 3 s probe
/// falls behind, then bisects twice. Each probe logs in afresh; the server is restarted
/// after a failed probe (overload closes slow sessions).
async fn max_sustained_rate(out: &Output, env: &mut Env, pairs: usize) -> anyhow::Result<f64> {
    let (mut ok, mut bad) = (0.0f64, None::<f64>);
    let mut rate = 10_000.0;
    while bad.is_none() && rate <= 5_000_000.0 {
        let v = chat_server(
            out,
            env,
            pairs,
            TransportKind::Plain,
            Pace::Rate(rate),
            1.0,
            3.0,
        )
        .await?;
        if kept_up(&v, rate) {
            ok = rate;
            rate *= 2.0;
        } else {
            bad = Some(rate);
            env.restart()?;
        }
    }
    if let Some(mut hi) = bad {
        for _ in 0..2 {
            let mid = (ok + hi) / 2.0;
            let v = chat_server(
                out,
                env,
                pairs,
                TransportKind::Plain,
                Pace::Rate(mid),
                1.0,
                3.0,
            )
            .await?;
            if kept_up(&v, mid) {
                ok = mid;
            } else {
                hi = mid;
                env.restart()?;
            }
        }
    }
    out.measurement(json!({"measurement": "chat_max_paced_rate", "pairs": pairs, "msg_per_s": ok}));
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn probe_verdicts() {
        let v = json!({"delivered_per_s": 960.0, "lost": 0, "errors": 0});
        assert!(kept_up(&v, 1000.0));
        assert!(!kept_up(&v, 2000.0));
        let v = json!({"delivered_per_s": 1000.0, "lost": 3, "errors": 0});
        assert!(!kept_up(&v, 1000.0));
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_scenarios() {
        let c = Cli::try_parse_from([
            "heliograph-load",
            "connect",
            "-n",
            "15000",
            "--transport",
            "tls",
            "--mech",
            "scram-sha-256",
            "--procs",
            "2",
            "--server-bin",
            "/x/heliograph",
        ])
        .unwrap();
        let Cmd::Connect(a) = c.command else { panic!() };
        assert_eq!(a.sessions, 15000);
        assert_eq!(a.transport, TransportKind::Tls);
        assert_eq!(a.mech, Mech::ScramSha256);
        assert_eq!(a.procs, 2);
        let c = Cli::try_parse_from([
            "heliograph-load",
            "chat",
            "-p",
            "10",
            "--rate",
            "5000",
            "--against-relay",
        ])
        .unwrap();
        let Cmd::Chat(a) = c.command else { panic!() };
        assert_eq!(a.rate, Some(5000.0));
        assert!(a.against_relay);
        assert!(
            Cli::try_parse_from(["heliograph-load", "chat", "--rate", "1", "--window", "2"])
                .is_err()
        );
        let c = Cli::try_parse_from(["heliograph-load", "memory", "--transports", "tls"]).unwrap();
        let Cmd::Memory(a) = c.command else { panic!() };
        assert_eq!(a.transports, vec![TransportKind::Tls]);
        assert!(Cli::try_parse_from(["heliograph-load", "connect", "--server-pid", "1"]).is_err());
    }

    #[test]
    fn a_foreign_server_needs_a_pid_and_its_c2s_address_only() {
        let c = Cli::try_parse_from([
            "heliograph-load",
            "connect",
            "--server-pid",
            "7",
            "--foreign",
            "--c2s",
            "127.0.0.1:5222",
        ])
        .unwrap();
        let Cmd::Connect(a) = c.command else { panic!() };
        assert!(a.target.foreign);
        let env = Env::open(&a.target).unwrap();
        assert_eq!(env.target.pid, 7);
        assert_eq!(env.target.starttls, env.target.direct);
        assert!(Cli::try_parse_from(["heliograph-load", "connect", "--foreign"]).is_err());
        // Without --foreign, a running server still needs its admin API and token.
        let c = Cli::try_parse_from([
            "heliograph-load",
            "connect",
            "--server-pid",
            "7",
            "--c2s",
            "127.0.0.1:5222",
        ])
        .unwrap();
        let Cmd::Connect(a) = c.command else { panic!() };
        assert!(Env::open(&a.target).is_err());
    }
}
