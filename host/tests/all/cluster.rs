//! Three nodes on loopback behind one real nats-server and one PostgreSQL database:
//! users on different nodes chat and subscribe to each other; a tenant added through
//! node 1 serves a login on node 3; `kill -9` of a node removes its sessions from the
//! others' registries and messages to them go to offline storage; NATS killed and
//! restarted, routing between nodes recovers by itself.
//!
//! Needs nats-server and PostgreSQL (see `common::nats` and `postgres.rs`): skipped
//! without them unless tests/run.sh's `HELIOGRAPH_REQUIRE_*` make that a failure.

use std::time::{Duration, Instant};

use bytes::Bytes;
use heliograph::xml::{Element, ns};
use heliograph_storage_postgres::testing::TestDb;

use crate::common::nats::NatsServer;
use crate::common::web::http;
use crate::common::{RawClient, TestServer};

const DEADLINE: Duration = Duration::from_secs(60);

/// A node of the cluster named `name`.
fn node(db: &TestDb, nats: &NatsServer, name: &str) -> TestServer {
    TestServer::start(
        &[],
        &format!(
            "\n[storage]\nbackend = \"postgres\"\nurl = \"{}\"\n\
             [cluster]\nnats = [\"{}\"]\nnode = \"{name}\"\nheartbeat_ms = 250\ndead_after_ms = 1500\n",
            db.url, nats.url
        ),
    )
}

async fn api(server: &TestServer, method: &str, path: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {}", server.token);
    let r = http(
        method,
        &format!("http://{}{path}", server.admin),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        Bytes::from(body.to_string()),
    )
    .await;
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

async fn add_user(server: &TestServer, domain: &str, user: &str, password: &str) {
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    let (status, text) = api(server, "POST", &format!("/api/v1/users/{domain}"), &body).await;
    assert_eq!(status, 201, "{text}");
}

/// The JIDs of the sessions `server` knows (its own and the replicated ones) with the
/// node holding each (`None`: itself).
async fn sessions(server: &TestServer) -> Vec<(String, Option<String>)> {
    let (status, text) = api(server, "GET", "/api/v1/sessions", "").await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = v
        .get("sessions")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_else(|| v.as_array().cloned().unwrap_or_default());
    list.iter()
        .map(|s| {
            (
                s["jid"].as_str().unwrap_or_default().to_string(),
                s.get("node").and_then(|n| n.as_str()).map(str::to_string),
            )
        })
        .collect()
}

/// Where a server's registry should have a session.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    /// Not at all.
    Nowhere,
    /// On the server itself.
    Here,
    /// On this other node.
    On(&'static str),
}

/// Waits until `server`'s registry has `jid` as `want` says.
async fn wait_registry(server: &TestServer, jid: &str, want: Held) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let list = sessions(server).await;
        let found = match list.iter().find(|(j, _)| j == jid) {
            None => Held::Nowhere,
            Some((_, None)) => Held::Here,
            Some((_, Some(n))) => match ["n1", "n2", "n3"].into_iter().find(|x| x == n) {
                Some(n) => Held::On(n),
                None => panic!("unknown node {n}"),
            },
        };
        if found == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{jid} never became {want:?} in the registry of {}: {list:?}",
            server.admin
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn chat(to: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_attr("id", body)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

fn body_of(el: &Element) -> Option<String> {
    el.child_text("body", ns::CLIENT)
}

async fn expect_body(c: &mut RawClient, body: &str) -> Element {
    let want = body.to_string();
    c.next_matching(move |el| el.name() == "message" && body_of(el).as_deref() == Some(&want))
        .await
}

/// The three nodes, with alice and bob (on `localhost`) in the shared database.
struct Cluster {
    nats: NatsServer,
    _db: TestDb,
    nodes: Vec<TestServer>,
}

async fn cluster() -> Option<Cluster> {
    let nats = NatsServer::start()?;
    let db = TestDb::create()?;
    let nodes: Vec<TestServer> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(&db, &nats, n))
        .collect();
    add_user(&nodes[0], "localhost", "alice", "pw-a").await;
    add_user(&nodes[0], "localhost", "bob", "pw-b").await;
    Some(Cluster {
        nats,
        _db: db,
        nodes,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_chat_and_subscribe() {
    let Some(c) = cluster().await else {
        return;
    };
    let (mut alice, alice_jid) =
        RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("a1")).await;
    let (mut bob, bob_jid) =
        RawClient::login(&c.nodes[1].starttls, "bob", "pw-b", Some("b1")).await;
    bob.send_raw("<presence/>").await;
    alice.send_raw("<presence/>").await;
    wait_registry(&c.nodes[0], &bob_jid, Held::On("n2")).await;
    wait_registry(&c.nodes[1], &alice_jid, Held::On("n1")).await;
    wait_registry(&c.nodes[2], &bob_jid, Held::On("n2")).await;

    // `heliograph cluster status` on n3 lists the three nodes, each in sync.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_heliograph"))
            .args(["cluster", "status", "--api"])
            .arg(format!("http://{}", c.nodes[2].admin))
            .args(["--token", &c.nodes[2].token])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let synced = |n: &str| {
            text.lines()
                .any(|l| l.starts_with(n) && l.split_whitespace().nth(3) == Some("yes"))
        };
        if out.status.success()
            && text.contains("NATS connected")
            && ["n1", "n2", "n3"].iter().all(|n| synced(n))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cluster status never showed three nodes in sync: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // To the bare JID: n1 picks bob's session on n2 from its replica.
    for i in 0..50 {
        alice
            .send(&chat("bob@localhost", &format!("hello {i}")))
            .await;
    }
    // In order, each once.
    for i in 0..50 {
        let m = bob.next_matching(|el| el.name() == "message").await;
        assert_eq!(body_of(&m).as_deref(), Some(format!("hello {i}").as_str()));
        assert_eq!(m.attr("from"), Some(alice_jid.as_str()));
    }
    bob.send(&chat(&alice_jid, "hi alice")).await;
    expect_body(&mut alice, "hi alice").await;

    // Subscription across nodes: the request, the approval, and bob's presence.
    alice
        .send_raw("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    bob.next_matching(|el| el.name() == "presence" && el.attr("type") == Some("subscribe"))
        .await;
    bob.send_raw("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    alice
        .next_matching(|el| el.name() == "presence" && el.attr("type") == Some("subscribed"))
        .await;
    let from = bob_jid.clone();
    alice
        .next_matching(move |el| {
            el.name() == "presence" && el.attr("type").is_none() && el.attr("from") == Some(&from)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_added_through_node_1_serves_a_login_on_node_3() {
    let Some(c) = cluster().await else {
        return;
    };
    // Every node knows the others first (a node that is still starting reads the tenants
    // at its start anyway).
    let deadline = Instant::now() + DEADLINE;
    while !api(&c.nodes[2], "GET", "/api/v1/cluster", "")
        .await
        .1
        .contains("\"n1\"")
    {
        assert!(Instant::now() < deadline, "n3 never saw n1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, text) = api(
        &c.nodes[0],
        "POST",
        "/api/v1/tenants",
        r#"{"name":"acme","domains":["acme.test"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let added = Instant::now();
    add_user(&c.nodes[0], "acme.test", "carol", "pw-c").await;
    // Poll n3's registry of tenants until it has acme, then log in there.
    let deadline = Instant::now() + DEADLINE;
    while api(&c.nodes[2], "GET", "/api/v1/tenants/acme", "").await.0 != 200 {
        assert!(Instant::now() < deadline, "acme never reached n3");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = added.elapsed();
    let _carol = RawClient::login_on(&c.nodes[2], "acme.test", "carol", "pw-c", "r").await;
    eprintln!(
        "tenant added on n1: in n3's registry after {} ms, a login done on n3 after {} ms",
        seen.as_millis(),
        added.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_the_registries_and_its_users_get_offline_messages() {
    let Some(mut c) = cluster().await else {
        return;
    };
    let (mut alice, _) = RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("a1")).await;
    alice.send_raw("<presence/>").await;
    let (mut bob, bob_jid) =
        RawClient::login(&c.nodes[1].starttls, "bob", "pw-b", Some("b1")).await;
    bob.send_raw("<presence/>").await;
    wait_registry(&c.nodes[0], &bob_jid, Held::On("n2")).await;
    wait_registry(&c.nodes[2], &bob_jid, Held::On("n2")).await;

    c.nodes[1].kill();
    drop(bob);
    wait_registry(&c.nodes[0], &bob_jid, Held::Nowhere).await;
    wait_registry(&c.nodes[2], &bob_jid, Held::Nowhere).await;

    // Bob is offline everywhere now: the message is stored, and he gets it on n3.
    alice
        .send(&chat("bob@localhost", "while you were away"))
        .await;
    crate::common::ping_barrier(&mut alice).await;
    let (mut bob, _) = RawClient::login(&c.nodes[2].starttls, "bob", "pw-b", Some("b2")).await;
    bob.send_raw("<presence/>").await;
    expect_body(&mut bob, "while you were away").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_between_nodes_recovers_after_nats_restarts() {
    let Some(c) = cluster().await else {
        return;
    };
    let (mut alice, alice_jid) =
        RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("a1")).await;
    alice.send_raw("<presence/>").await;
    let (mut bob, bob_jid) =
        RawClient::login(&c.nodes[1].starttls, "bob", "pw-b", Some("b1")).await;
    bob.send_raw("<presence/>").await;
    wait_registry(&c.nodes[0], &bob_jid, Held::On("n2")).await;

    c.nats.kill();
    // Without NATS, every node soon counts the others dead and drops their sessions.
    wait_registry(&c.nodes[0], &bob_jid, Held::Nowhere).await;
    wait_registry(&c.nodes[1], &alice_jid, Held::Nowhere).await;
    c.nats.restart();
    // Back: the replicas are rebuilt from full lists, and routing works again.
    wait_registry(&c.nodes[0], &bob_jid, Held::On("n2")).await;
    wait_registry(&c.nodes[1], &alice_jid, Held::On("n1")).await;
    alice.send(&chat(&bob_jid, "after the outage")).await;
    expect_body(&mut bob, "after the outage").await;
    bob.send(&chat(&alice_jid, "got it")).await;
    expect_body(&mut alice, "got it").await;
    // No ghost and no duplicate: once each node's replicas are rebuilt, it knows each
    // session once.
    let names = ["n1", "n2", "n3"];
    for (i, n) in c.nodes.iter().enumerate() {
        let holder = |on: &'static str| {
            if names[i] == on {
                Held::Here
            } else {
                Held::On(on)
            }
        };
        wait_registry(n, &alice_jid, holder("n1")).await;
        wait_registry(n, &bob_jid, holder("n2")).await;
    }
    for n in &c.nodes {
        let list = sessions(n).await;
        let mut jids: Vec<&String> = list.iter().map(|(j, _)| j).collect();
        jids.sort();
        assert_eq!(jids, [&alice_jid, &bob_jid], "{}: {list:?}", n.admin);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_bound_again_on_another_node_replaces_the_older_session() {
    let Some(c) = cluster().await else {
        return;
    };
    let (mut old, jid) = RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("r")).await;
    old.send_raw("<presence/>").await;
    wait_registry(&c.nodes[1], &jid, Held::On("n1")).await;
    let (mut new, _) = RawClient::login(&c.nodes[1].starttls, "alice", "pw-a", Some("r")).await;
    assert_eq!(old.expect_stream_error().await, "conflict");
    // The newer session is the one every node routes to.
    for n in &c.nodes[..] {
        let holder = if std::ptr::eq(n, &c.nodes[1]) {
            Held::Here
        } else {
            Held::On("n2")
        };
        wait_registry(n, &jid, holder).await;
    }
    new.send_raw("<presence/>").await;
    let (mut bob, _) = RawClient::login(&c.nodes[2].starttls, "bob", "pw-b", Some("b")).await;
    wait_registry(&c.nodes[2], &jid, Held::On("n2")).await;
    bob.send(&chat(&jid, "to the new one")).await;
    expect_body(&mut new, "to the new one").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_on_one_node_ends_the_users_sessions_on_the_others() {
    let Some(c) = cluster().await else {
        return;
    };
    let (mut on_n2, jid2) = RawClient::login(&c.nodes[1].starttls, "bob", "pw-b", Some("x")).await;
    let (mut on_n3, jid3) = RawClient::login(&c.nodes[2].starttls, "bob", "pw-b", Some("y")).await;
    wait_registry(&c.nodes[0], &jid2, Held::On("n2")).await;
    wait_registry(&c.nodes[0], &jid3, Held::On("n3")).await;
    let (status, text) = api(
        &c.nodes[0],
        "PUT",
        "/api/v1/users/localhost/bob/password",
        r#"{"password":"new-pw"}"#,
    )
    .await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(on_n2.expect_stream_error().await, "not-authorized");
    assert_eq!(on_n3.expect_stream_error().await, "not-authorized");
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at `) `.
    let rest = &stat[stat.rfind(") ").unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// One run of `count` chat messages from alice to bob: (messages per second, server CPU
/// microseconds per message, summed over every node).
async fn chat_run(
    c: &Cluster,
    alice: &mut RawClient,
    bob: &mut RawClient,
    to: &str,
    count: usize,
    tag: &str,
) -> (f64, f64) {
    let pids: Vec<u32> = c.nodes.iter().map(|n| n.pid()).collect();
    let cpu0: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let started = Instant::now();
    let sender = async {
        for i in 0..count {
            alice.send(&chat(to, &format!("{tag}{i}"))).await;
        }
    };
    let receiver = async {
        for _ in 0..count {
            bob.next_matching(|el| el.name() == "message").await;
        }
    };
    tokio::join!(sender, receiver);
    let took = started.elapsed().as_secs_f64();
    let cpu1: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    // Linux clock ticks are 1/100 s.
    let cpu_us = (cpu1 - cpu0) as f64 * 10_000.0;
    (count as f64 / took, cpu_us / count as f64)
}

/// Benchmark, not run by default (`-- --ignored --nocapture`): the same chat with both
/// users on one node and across two nodes, alternating, CPU summed over the three nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored"]
async fn cross_node_chat_costs_against_same_node_chat() {
    let Some(c) = cluster().await else {
        return;
    };
    let (mut alice, _) = RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("a")).await;
    let (mut bob_here, here) =
        RawClient::login(&c.nodes[0].starttls, "bob", "pw-b", Some("here")).await;
    let (mut bob_there, there) =
        RawClient::login(&c.nodes[1].starttls, "bob", "pw-b", Some("there")).await;
    wait_registry(&c.nodes[0], &there, Held::On("n2")).await;
    let count = 5_000;
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for round in 0..3 {
        local.push(
            chat_run(
                &c,
                &mut alice,
                &mut bob_here,
                &here,
                count,
                &format!("l{round}-"),
            )
            .await,
        );
        remote.push(
            chat_run(
                &c,
                &mut alice,
                &mut bob_there,
                &there,
                count,
                &format!("r{round}-"),
            )
            .await,
        );
    }
    let avg = |v: &[(f64, f64)]| {
        (
            v.iter().map(|x| x.0).sum::<f64>() / v.len() as f64,
            v.iter().map(|x| x.1).sum::<f64>() / v.len() as f64,
        )
    };
    let (l, r) = (avg(&local), avg(&remote));
    println!(
        "same node: {:.0} msg/s, {:.1} us CPU/msg; cross node: {:.0} msg/s, {:.1} us CPU/msg; CPU ratio {:.2}",
        l.0,
        l.1,
        r.0,
        r.1,
        r.1 / l.1
    );
}
