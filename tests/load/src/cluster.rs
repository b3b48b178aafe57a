//! The `cluster` scenario: what a chat message costs when it crosses from one node to
//! another, against the same chat on one node. It starts its own nats-server
//! ([`crate::nats`]) and two nodes `n1` and `n2` from the given binary in cluster mode on
//! a fresh PostgreSQL database ([`crate::scratch_db`]), provisions 2P accounts, then runs
//! R rounds, each a same-node chat (all 2P sessions on n1) and a cross-node chat (P on
//! n1, their partners on n2), in alternating order, with the chat driver of
//! [`crate::chat`]. Every round logs in afresh and waits until both nodes' registries
//! hold exactly its sessions, and after it until they hold none, so no round sees
//! another's replication traffic.
//!
//! Per kind: delivered messages per second, the CPU of both heliograph processes per
//! delivered message (and nats-server's as a figure of its own), p50/p99 latency and
//! losses; then the cross/same ratio of the nodes' CPU per message.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::admin::AdminClient;
use crate::chat::{self, ChatOutcome, Pace, Watched};
use crate::cli::Output;
use crate::connect::{self, ConnectJob};
use crate::nats::NatsServer;
use crate::scratch_db::ScratchDb;
use crate::stats::{Samples, round3};
use crate::target::{SpawnOptions, Target};
use crate::xmpp::{Mech, Session, TransportKind};

/// How long the nodes may take to find each other, replicate sessions or drop them.
const DEADLINE: Duration = Duration::from_secs(60);

/// `cluster` options.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// The heliograph binary for both nodes (default: next to this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// The nats-server binary (default: $HELIOGRAPH_NATS_SERVER, else on the PATH).
    #[arg(long)]
    pub nats_server: Option<PathBuf>,
    /// A PostgreSQL server to make this run's database on: a connection string to a
    /// database there from which databases may be created (e.g. `host=/tmp/pg port=5432
    /// user=postgres dbname=postgres`). The run's database is dropped at the end.
    #[arg(long)]
    pub postgres_url: String,
    /// Pairs of sessions per chat.
    #[arg(long, short = 'p', default_value_t = 50)]
    pub pairs: usize,
    /// Messages in flight per sender.
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// A total rate in messages per second over all senders instead of the window: both
    /// kinds then carry the same load (with a window, the kind with the longer trip
    /// sends fewer messages per second, in smaller batches).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds measured per chat.
    #[arg(long, short = 't', default_value_t = 6.0)]
    pub duration: f64,
    /// Seconds of warm-up before each chat's measurement.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Rounds, each one same-node chat and one cross-node chat.
    #[arg(long, short = 'r', default_value_t = 3)]
    pub rounds: usize,
    /// PBKDF2 iterations configured on the nodes.
    #[arg(long, default_value_t = 4096)]
    pub scram_iterations: u32,
    /// `[c2s] session_queue` of the nodes.
    #[arg(long, default_value_t = 1024)]
    pub session_queue: usize,
    /// Spread client connections over 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 50)]
    pub sources: usize,
    /// Run only this kind of chat (to profile it: `perf record -p PID` on the nodes the
    /// first line names); no ratio is reported then.
    #[arg(long, value_enum)]
    pub only: Option<Kind>,
}

impl ClusterArgs {
    fn pace(&self) -> Pace {
        match self.rate {
            Some(rate) => Pace::Rate(rate),
            None => Pace::Window(self.window),
        }
    }
}

const DOMAIN: &str = "localhost";
const PREFIX: &str = "xn";

/// Where the two sides of each pair are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Both on n1.
    SameNode,
    /// One on n1, its partner on n2.
    CrossNode,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SameNode => "same-node",
            Kind::CrossNode => "cross-node",
        }
    }

    /// The kinds of round `round`, alternating which goes first so that a drift of the
    /// machine's load over the run weighs on both alike.
    pub fn order(round: usize) -> [Kind; 2] {
        if round.is_multiple_of(2) {
            [Kind::SameNode, Kind::CrossNode]
        } else {
            [Kind::CrossNode, Kind::SameNode]
        }
    }
}

/// The two nodes and what they run on.
struct Cluster {
    nodes: [Target; 2],
    nats: NatsServer,
    _db: ScratchDb,
}

impl Cluster {
    fn start(a: &ClusterArgs, out: &Output) -> anyhow::Result<Cluster> {
        let binary = match &a.server_bin {
            Some(b) => b.clone(),
            None => crate::cli::sibling("heliograph")?,
        };
        let db = ScratchDb::create(&a.postgres_url, "hg_load_cluster")?;
        let nats = NatsServer::start(&crate::nats::binary(a.nats_server.as_deref())?)?;
        let node = |name: &str| {
            Target::spawn(&SpawnOptions {
                binary: binary.clone(),
                data_dir: None,
                domain: DOMAIN.to_string(),
                scram_iterations: a.scram_iterations,
                session_queue: a.session_queue,
                storage_url: Some(db.url.clone()),
                resume_timeout: None,
                extra_config: format!(
                    "\n[cluster]\nnats = [\"{}\"]\nnode = \"{name}\"\n",
                    nats.url
                ),
            })
            .with_context(|| format!("starting node {name}"))
        };
        // One after the other: the first applies the database's migrations.
        let n1 = node("n1")?;
        let n2 = node("n2")?;
        out.line(&format!(
            "cluster: nats-server {} (pid {}), n1 pid {}, n2 pid {}, database {}",
            nats.url,
            nats.pid(),
            n1.pid,
            n2.pid,
            db.name
        ));
        Ok(Cluster {
            nodes: [n1, n2],
            nats,
            _db: db,
        })
    }

    fn name(i: usize) -> &'static str {
        ["n1", "n2"][i]
    }

    /// Waits until each node counts the other live and its replica in sync.
    async fn wait_formed(&self) -> anyhow::Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            let other = Cluster::name(1 - i);
            let mut admin = AdminClient::new(node.admin, &node.token);
            let deadline = Deadline::after(format!("{} to see {other}", Cluster::name(i)));
            loop {
                let (status, body) = admin.request("GET", "/api/v1/cluster", None).await?;
                let doc: Value = serde_json::from_str(&body).unwrap_or_default();
                let seen = doc["status"]["nodes"].as_array().is_some_and(|nodes| {
                    nodes
                        .iter()
                        .any(|n| n["node"] == other && n["synced"] == true)
                });
                if status == 200 && seen {
                    break;
                }
                deadline.pause(&body).await?;
            }
        }
        Ok(())
    }

    /// Waits until every node's registry holds exactly `expected` among the scenario's
    /// accounts: full JID -> index of the node holding it, each session available.
    async fn wait_registries(&self, expected: &BTreeMap<String, usize>) -> anyhow::Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            let want: BTreeMap<String, Option<String>> = expected
                .iter()
                .map(|(jid, holder)| {
                    (
                        jid.clone(),
                        (*holder != i).then(|| Cluster::name(*holder).to_string()),
                    )
                })
                .collect();
            let mut admin = AdminClient::new(node.admin, &node.token);
            let deadline = Deadline::after(format!(
                "{}'s registry to hold the {} sessions of the round",
                Cluster::name(i),
                want.len()
            ));
            loop {
                let (status, body) = admin.request("GET", "/api/v1/sessions", None).await?;
                if status == 200 && registry(&body) == want {
                    break;
                }
                deadline.pause(&body).await?;
            }
        }
        Ok(())
    }
}

/// The scenario's available sessions in a `GET /api/v1/sessions` answer: full JID -> the
/// node holding it (`None`: the answering node). An unavailable one shows as held by
/// `"unavailable"`, so it never matches what is waited for.
fn registry(body: &str) -> BTreeMap<String, Option<String>> {
    let doc: Value = serde_json::from_str(body).unwrap_or_default();
    doc["sessions"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| {
                    let jid = s["jid"].as_str()?;
                    if !jid.starts_with(PREFIX) {
                        return None;
                    }
                    let node = if s["available"] == true {
                        s["node"].as_str().map(str::to_string)
                    } else {
                        Some("unavailable".to_string())
                    };
                    Some((jid.to_string(), node))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The end of a wait for a condition that is polled.
struct Deadline {
    at: Instant,
    what: String,
}

impl Deadline {
    /// [`DEADLINE`] from now, for `what`.
    fn after(what: String) -> Deadline {
        Deadline {
            at: Instant::now() + DEADLINE,
            what,
        }
    }

    /// Waits 50 ms before the next look, or fails past the deadline (with the `last`
    /// answer seen).
    async fn pause(&self, last: &str) -> anyhow::Result<()> {
        if Instant::now() > self.at {
            bail!("waited {DEADLINE:?} for {}; last answer: {last}", self.what);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }
}

/// Logs in accounts `first..first + count` on `node`, in index order.
async fn login(
    node: &Target,
    a: &ClusterArgs,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Session>> {
    let job = ConnectJob {
        starttls: node.starttls,
        direct: node.direct,
        http: node.http,
        domain: DOMAIN.to_string(),
        transport: TransportKind::Plain,
        mech: Mech::Plain,
        user_prefix: PREFIX.to_string(),
        first,
        count,
        rate: 0.0,
        concurrency: 32,
        sources: a.sources,
        segment: 0,
        jwt_secret: None,
        jwt_kid: None,
        passwords: Vec::new(),
        sm: false,
    };
    let mut o = connect::run(&job, None).await;
    if o.failed > 0 {
        bail!("{} logins failed: {:?}", o.failed, o.first_error);
    }
    o.sessions.sort_by_key(|(i, _)| *i);
    Ok(o.sessions.into_iter().map(|(_, s)| s).collect())
}

/// What one chat of one kind measured.
pub struct Round {
    pub kind: Kind,
    pub round: usize,
    pub chat: ChatOutcome,
    /// CPU of n1, n2 and nats-server over the measurement window.
    pub cpu: [Duration; 3],
}

impl Round {
    fn per_msg(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.chat.delivered_in_window.max(1) as f64
    }

    fn json(&mut self, a: &ClusterArgs) -> Value {
        let c = &mut self.chat;
        json!({
            "measurement": "cluster_chat",
            "kind": self.kind.name(),
            "round": self.round,
            "pairs": a.pairs,
            "window": a.rate.is_none().then_some(a.window),
            "rate": a.rate,
            "seconds": round3(c.window.as_secs_f64()),
            "delivered": c.delivered_in_window,
            "delivered_per_s": round3(c.rate()),
            "p50_ms": round3(c.latencies.percentile_ms(50.0)),
            "p99_ms": round3(c.latencies.percentile_ms(99.0)),
            "sent": c.sent,
            "received": c.received,
            "lost": c.lost,
            "out_of_order": c.out_of_order,
            "errors": c.errors,
            "first_error": c.first_error,
            "cpu_us_per_msg": round3(c.cpu_us_per_msg()),
            "n1_cpu_us_per_msg": round3(self.per_msg(self.cpu[0])),
            "n2_cpu_us_per_msg": round3(self.per_msg(self.cpu[1])),
            "nats_cpu_us_per_msg": round3(self.per_msg(self.cpu[2])),
        })
    }
}

/// One chat of `kind`: fresh logins, registries in sync, the chat, the streams closed and
/// the registries empty again.
async fn chat_round(
    cluster: &Cluster,
    a: &ClusterArgs,
    kind: Kind,
    round: usize,
) -> anyhow::Result<Round> {
    let [n1, n2] = &cluster.nodes;
    let p = a.pairs;
    // (session, partner's index in `sessions`, node index).
    let (sessions, partners, holders): (Vec<Session>, Vec<usize>, Vec<usize>) = match kind {
        Kind::SameNode => {
            let s = login(n1, a, 0, 2 * p).await?;
            let partners = (0..2 * p).map(|i| i ^ 1).collect();
            (s, partners, vec![0; 2 * p])
        }
        Kind::CrossNode => {
            let (mut s, there) = tokio::try_join!(login(n1, a, 0, p), login(n2, a, p, p))?;
            s.extend(there);
            let partners = (0..2 * p).map(|i| (i + p) % (2 * p)).collect();
            let holders = (0..2 * p).map(|i| usize::from(i >= p)).collect();
            (s, partners, holders)
        }
    };
    let jids: Vec<String> = sessions.iter().map(|s| s.full_jid.clone()).collect();
    let expected = jids.iter().cloned().zip(holders).collect();
    cluster.wait_registries(&expected).await?;
    let conns = sessions
        .into_iter()
        .zip(partners)
        .map(|(s, partner)| (s.io, jids[partner].clone(), 0))
        .collect();
    let watched = Watched {
        servers: vec![n1.pid, n2.pid],
        others: vec![n1.pid, n2.pid, cluster.nats.pid()],
    };
    let (chat, ios) = chat::drive_watching(
        conns,
        a.pace(),
        Duration::from_secs_f64(a.warmup),
        Duration::from_secs_f64(a.duration),
        &watched,
        None,
    )
    .await;
    chat::close_all(ios, Duration::from_secs(10)).await;
    cluster.wait_registries(&BTreeMap::new()).await?;
    let cpu = [chat.other_cpu[0], chat.other_cpu[1], chat.other_cpu[2]];
    Ok(Round {
        kind,
        round,
        chat,
        cpu,
    })
}

/// One kind's rounds taken together.
struct Totals {
    delivered: u64,
    seconds: f64,
    cpu: [Duration; 3],
    latencies: Samples,
    lost: u64,
    out_of_order: u64,
    errors: usize,
}

impl Totals {
    fn of(rounds: &[Round], kind: Kind) -> Totals {
        let mut t = Totals {
            delivered: 0,
            seconds: 0.0,
            cpu: [Duration::ZERO; 3],
            latencies: Samples::new(),
            lost: 0,
            out_of_order: 0,
            errors: 0,
        };
        for r in rounds.iter().filter(|r| r.kind == kind) {
            t.delivered += r.chat.delivered_in_window;
            t.seconds += r.chat.window.as_secs_f64();
            for (sum, cpu) in t.cpu.iter_mut().zip(r.cpu) {
                *sum += cpu;
            }
            t.latencies.extend(&r.chat.latencies);
            t.lost += r.chat.lost;
            t.out_of_order += r.chat.out_of_order;
            t.errors += r.chat.errors;
        }
        t
    }

    fn per_msg(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }

    /// Both nodes' CPU per delivered message, µs.
    fn nodes_per_msg(&self) -> f64 {
        self.per_msg(self.cpu[0] + self.cpu[1])
    }

    fn json(&mut self) -> Value {
        json!({
            "delivered": self.delivered,
            "delivered_per_s": round3(self.delivered as f64 / self.seconds.max(1e-9)),
            "cpu_us_per_msg": round3(self.nodes_per_msg()),
            "n1_cpu_us_per_msg": round3(self.per_msg(self.cpu[0])),
            "n2_cpu_us_per_msg": round3(self.per_msg(self.cpu[1])),
            "nats_cpu_us_per_msg": round3(self.per_msg(self.cpu[2])),
            "p50_ms": round3(self.latencies.percentile_ms(50.0)),
            "p99_ms": round3(self.latencies.percentile_ms(99.0)),
            "lost": self.lost,
            "out_of_order": self.out_of_order,
            "errors": self.errors,
        })
    }
}

/// Cross-node CPU per message over same-node CPU per message, round by round.
fn round_ratios(rounds: &[Round]) -> Vec<f64> {
    let per = |kind: Kind, round: usize| {
        rounds
            .iter()
            .find(|r| r.kind == kind && r.round == round)
            .map(|r| r.chat.cpu_us_per_msg())
    };
    (0..rounds.len())
        .filter_map(|i| Some(per(Kind::CrossNode, i)? / per(Kind::SameNode, i)?))
        .collect()
}

/// Runs the scenario and prints a line per chat, the table and the ratio; fails when a
/// message was lost, reordered or a session failed.
pub async fn command(out: &Output, a: ClusterArgs) -> anyhow::Result<()> {
    if a.pairs == 0 || a.rounds == 0 {
        bail!("--pairs and --rounds must be at least 1");
    }
    let cluster = Cluster::start(&a, out)?;
    cluster.wait_formed().await?;
    let [n1, _] = &cluster.nodes;
    let users = (0..2 * a.pairs)
        .map(|i| (connect::username(PREFIX, i), connect::PASSWORD.to_string()))
        .collect();
    crate::admin::provision(n1.admin, &n1.token, DOMAIN, users, 4).await?;
    let mut rounds = Vec::with_capacity(2 * a.rounds);
    for round in 0..a.rounds {
        for kind in Kind::order(round)
            .into_iter()
            .filter(|k| a.only.is_none_or(|only| only == *k))
        {
            let mut r = chat_round(&cluster, &a, kind, round).await?;
            let v = r.json(&a);
            out.line(&format!(
                "round {round} {:>10}: {} msg/s, p50 {} ms p99 {} ms, lost {}, CPU per message: \
                 nodes {} µs (n1 {}, n2 {}), nats-server {} µs",
                kind.name(),
                v["delivered_per_s"],
                v["p50_ms"],
                v["p99_ms"],
                v["lost"],
                v["cpu_us_per_msg"],
                v["n1_cpu_us_per_msg"],
                v["n2_cpu_us_per_msg"],
                v["nats_cpu_us_per_msg"],
            ));
            out.measurement(v);
            rounds.push(r);
        }
    }
    let mut same = Totals::of(&rounds, Kind::SameNode);
    let mut cross = Totals::of(&rounds, Kind::CrossNode);
    let ratio = (same.delivered > 0 && cross.delivered > 0)
        .then(|| cross.nodes_per_msg() / same.nodes_per_msg().max(1e-9));
    let per_round = round_ratios(&rounds);
    let (same_v, cross_v) = (same.json(), cross.json());
    out.line(&format!(
        "\n{} pairs, {}, {} rounds of {} s per kind\n\
         {:<11} {:>10} {:>14} {:>16} {:>14} {:>8} {:>8} {:>5}",
        a.pairs,
        match a.rate {
            Some(rate) => format!("{rate} msg/s in total"),
            None => format!("window {}", a.window),
        },
        a.rounds,
        a.duration,
        "kind",
        "msg/s",
        "nodes µs/msg",
        "n1 / n2 µs/msg",
        "NATS µs/msg",
        "p50 ms",
        "p99 ms",
        "lost",
    ));
    let num = |v: &Value, key: &str| v[key].to_string();
    for (kind, v) in [(Kind::SameNode, &same_v), (Kind::CrossNode, &cross_v)] {
        if a.only.is_some_and(|only| only != kind) {
            continue;
        }
        out.line(&format!(
            "{:<11} {:>10.0} {:>14} {:>16} {:>14} {:>8} {:>8} {:>5}",
            kind.name(),
            v["delivered_per_s"].as_f64().unwrap_or(0.0),
            num(v, "cpu_us_per_msg"),
            format!(
                "{} / {}",
                num(v, "n1_cpu_us_per_msg"),
                num(v, "n2_cpu_us_per_msg")
            ),
            num(v, "nats_cpu_us_per_msg"),
            num(v, "p50_ms"),
            num(v, "p99_ms"),
            num(v, "lost"),
        ));
    }
    if let Some(ratio) = ratio {
        out.line(&format!(
            "cross/same CPU per message (both nodes): {:.2} (rounds: {})",
            ratio,
            per_round
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let failed = same.lost + cross.lost + same.out_of_order + cross.out_of_order;
    let errors = same.errors + cross.errors;
    out.measurement(json!({
        "measurement": "cluster",
        "pairs": a.pairs,
        "window": a.rate.is_none().then_some(a.window),
        "rate": a.rate,
        "rounds": a.rounds,
        "seconds_per_chat": a.duration,
        "same_node": same_v,
        "cross_node": cross_v,
        "cpu_ratio": ratio.map(round3),
        "cpu_ratio_per_round": per_round.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
    }));
    if failed > 0 || errors > 0 {
        bail!("{failed} messages lost or reordered, {errors} sessions failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_which_kind_goes_first() {
        assert_eq!(Kind::order(0), [Kind::SameNode, Kind::CrossNode]);
        assert_eq!(Kind::order(1), [Kind::CrossNode, Kind::SameNode]);
        assert_eq!(Kind::order(2), Kind::order(0));
    }

    #[test]
    fn the_registry_keeps_the_scenarios_available_sessions_with_their_node() {
        let body = r#"{"sessions":[
            {"jid":"xn0@localhost/load","available":true},
            {"jid":"xn1@localhost/load","available":true,"node":"n2"},
            {"jid":"xn2@localhost/load","available":false,"node":"n2"},
            {"jid":"other@localhost/x","available":true}]}"#;
        let r = registry(body);
        assert_eq!(r.len(), 3);
        assert_eq!(r["xn0@localhost/load"], None);
        assert_eq!(r["xn1@localhost/load"].as_deref(), Some("n2"));
        assert_eq!(r["xn2@localhost/load"].as_deref(), Some("unavailable"));
        assert!(registry("not json").is_empty());
    }
}
