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

/// A message stored offline while its recipient is online on another node.
mod offline_race;
mod partition;
/// Two regions joined by a NATS gateway with added latency.
mod regions;
mod rolling_upgrade;
mod room_history;
mod zero_loss;

const DEADLINE: Duration = Duration::from_secs(60);

/// The admin API's room endpoints covering the cluster.
mod admin_rooms;
/// BOSH requests relayed to the session's node.
mod bosh;
/// Message carbons between devices on different nodes.
mod carbons;
/// Stream management resumption on another node.
mod handoff;

/// A node of the cluster named `name`.
fn node(db: &TestDb, nats: &NatsServer, name: &str) -> TestServer {
    TestServer::start(&[], &node_config(db, nats, name))
}

/// The `[general]` extra of a node named `name`.
fn node_config(db: &TestDb, nats: &NatsServer, name: &str) -> String {
    format!(
        "\n[storage]\nbackend = \"postgres\"\nurl = \"{}\"\n\
         [cluster]\nnats = [\"{}\"]\nnode = \"{name}\"\nheartbeat_ms = 250\ndead_after_ms = 1500\n",
        db.url, nats.url
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

/// Waits until `server`'s registry has `jid` available (its presence replicated).
async fn wait_available(server: &TestServer, jid: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, text) = api(server, "GET", "/api/v1/sessions", "").await;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let list = v
            .get("sessions")
            .and_then(|s| s.as_array())
            .cloned()
            .unwrap_or_else(|| v.as_array().cloned().unwrap_or_default());
        if list
            .iter()
            .any(|s| s["jid"] == jid && s["available"] == true)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{jid} never available on {}: {text}",
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
    cluster_as(None).await
}

/// [`cluster`], its nodes running `binary` (another version) if given.
async fn cluster_as(binary: Option<&std::path::Path>) -> Option<Cluster> {
    let nats = NatsServer::start()?;
    let db = TestDb::create()?;
    let nodes: Vec<TestServer> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| match binary {
            Some(b) => TestServer::start_as(b, &[], &node_config(&db, &nats, n)),
            None => node(&db, &nats, n),
        })
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
    // Messages to the bare JID go to available sessions: n1 must have bob's presence
    // too, or the first would go to offline storage.
    wait_available(&c.nodes[0], &bob_jid).await;

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

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

/// Waits until every node places rooms over exactly `names`.
async fn wait_room_nodes(nodes: &[&TestServer], names: &[&str]) {
    let deadline = Instant::now() + DEADLINE;
    for n in nodes {
        loop {
            let (_, text) = api(n, "GET", "/api/v1/cluster", "").await;
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let got: Vec<&str> = v["status"]["room_nodes"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            if got == names {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never placed rooms over {names:?}: {text}",
                n.admin
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The names of the rooms of the `default` tenant the node `name` holds in memory (the
/// list covers the cluster; each room says its node).
async fn rooms_on(server: &TestServer, name: &str) -> Vec<String> {
    let (status, text) = api(server, "GET", "/api/v1/tenants/default/rooms", "").await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == name)
        .map(|r| r["jid"].as_str().unwrap().to_string())
        .collect()
}

/// Creates alice, bob and carol (through the first node) and logs them in, available,
/// on the first, second and third node: each client with its full JID.
async fn alice_bob_carol_online(nodes: [&TestServer; 3]) -> [(RawClient, String); 3] {
    let users = [
        ("alice", "pw-a", "a"),
        ("bob", "pw-b", "b"),
        ("carol", "pw-c", "c"),
    ];
    for (user, password, _) in users {
        add_user(nodes[0], "localhost", user, password).await;
    }
    let mut online = Vec::new();
    for (node, (user, password, resource)) in nodes.into_iter().zip(users) {
        let (mut client, jid) =
            RawClient::login(&node.starttls, user, password, Some(resource)).await;
        client.send_raw("<presence/>").await;
        online.push((client, jid));
    }
    online
        .try_into()
        .unwrap_or_else(|_| unreachable!("three nodes, three users"))
}

/// The room's owner `owner` makes it persistent (muc#owner configuration form).
async fn make_persistent(owner: &mut RawClient, room: &str) {
    owner
        .send_raw(&format!(
            "<iq type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
             </x></query></iq>"
        ))
        .await;
    let r = owner.next_matching(|e| e.attr("id") == Some("cfg")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
}

/// The status codes of a MUC presence.
fn statuses(el: &Element) -> Vec<String> {
    el.child("x", MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Joins `room` as `nick` and waits for the self-presence (110); returns it.
async fn join_room(c: &mut RawClient, room: &str, nick: &str) -> Element {
    c.send_raw(&format!(
        "<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let from = format!("{room}/{nick}");
    c.next_matching(move |e| {
        e.name() == "presence"
            && e.attr("from") == Some(from.as_str())
            && e.attr("type").is_none()
            && statuses(e).iter().any(|s| s == "110")
    })
    .await
}

fn groupchat(room: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", room)
        .with_attr("type", "groupchat")
        .with_attr("id", body)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

/// A room name that rendezvous hashing places on `want` among `nodes`.
fn room_hosted_on(nodes: &[&str], want: &str) -> String {
    (0..)
        .map(|i| format!("standup{i}@conference.localhost"))
        .find(|r| heliograph_cluster::placement::owner_of(nodes.iter().copied(), r) == Some(want))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_on_one_node_serves_occupants_on_all_and_moves_when_its_node_dies() {
    let Some(mut c) = cluster().await else {
        return;
    };
    add_user(&c.nodes[0], "localhost", "carol", "pw-c").await;
    wait_room_nodes(&c.nodes.iter().collect::<Vec<_>>(), &["n1", "n2", "n3"]).await;
    let room = room_hosted_on(&["n1", "n2", "n3"], "n3");
    let (mut alice, _) = RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("a")).await;
    let (mut bob, bob_jid) = RawClient::login(&c.nodes[1].starttls, "bob", "pw-b", Some("b")).await;
    let (mut carol, _) = RawClient::login(&c.nodes[2].starttls, "carol", "pw-c", Some("c")).await;
    for cl in [&mut alice, &mut bob, &mut carol] {
        cl.send_raw("<presence/>").await;
    }
    // Alice (on n1) creates the room, which n3 hosts, and makes it persistent.
    let created = join_room(&mut alice, &room, "alice").await;
    assert!(statuses(&created).contains(&"201".to_string()), "{created}");
    make_persistent(&mut alice, &room).await;
    alice.send(&groupchat(&room, "before bob")).await;
    expect_body(&mut alice, "before bob").await;

    // Bob (n2) joins and gets the history kept on n3; carol (n3) joins.
    join_room(&mut bob, &room, "bob").await;
    let history = expect_body(&mut bob, "before bob").await;
    assert!(
        history.child("delay", "urn:xmpp:delay").is_some(),
        "{history}"
    );
    join_room(&mut carol, &room, "carol").await;
    assert_eq!(rooms_on(&c.nodes[2], "n3").await, vec![room.clone()]);
    assert!(rooms_on(&c.nodes[0], "n1").await.is_empty());
    assert!(rooms_on(&c.nodes[1], "n2").await.is_empty());

    // Everyone hears everyone, whichever node they are on.
    for (i, body) in ["from n1", "from n2", "from n3"].into_iter().enumerate() {
        let sender = [&mut alice, &mut bob, &mut carol]
            .into_iter()
            .nth(i)
            .unwrap();
        sender.send(&groupchat(&room, body)).await;
        for cl in [&mut alice, &mut bob, &mut carol] {
            let m = expect_body(cl, body).await;
            assert_eq!(m.attr("type"), Some("groupchat"), "{m}");
        }
    }

    // n3 dies: alice and bob are told the room shut down (332)...
    c.nodes[2].kill();
    let killed = Instant::now();
    drop(carol);
    for (cl, nick) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let from = format!("{room}/{nick}");
        let gone = cl
            .next_matching(move |e| {
                e.name() == "presence"
                    && e.attr("type") == Some("unavailable")
                    && e.attr("from") == Some(from.as_str())
            })
            .await;
        assert!(statuses(&gone).contains(&"332".to_string()), "{gone}");
    }
    // ...and rejoin: the persistent room comes back from PostgreSQL on a live node,
    // with alice still its owner (not created anew).
    let told = killed.elapsed();
    wait_room_nodes(&[&c.nodes[0], &c.nodes[1]], &["n1", "n2"]).await;
    let new_host = heliograph_cluster::placement::owner_of(["n1", "n2"], &room).unwrap();
    let rejoined = join_room(&mut alice, &room, "alice").await;
    assert!(
        !statuses(&rejoined).contains(&"201".to_string()),
        "{rejoined}"
    );
    let item = rejoined
        .child("x", MUC_USER)
        .and_then(|x| x.child("item", MUC_USER))
        .unwrap();
    assert_eq!(item.attr("affiliation"), Some("owner"), "{rejoined}");
    join_room(&mut bob, &room, "bob").await;
    let host = if new_host == "n1" { 0 } else { 1 };
    assert_eq!(rooms_on(&c.nodes[host], new_host).await, vec![room.clone()]);
    bob.send(&groupchat(&room, "after the failover")).await;
    expect_body(&mut alice, "after the failover").await;
    expect_body(&mut bob, "after the failover").await;
    eprintln!(
        "room failover (dead_after_ms = 1500): 332 to both occupants {} ms after kill -9, \
         chatting again on {new_host} after {} ms",
        told.as_millis(),
        killed.elapsed().as_millis()
    );
    let _ = bob_jid;
}

/// An XEP-0114 component for `bot.acme.test` connected to `server`.
async fn component(server: &TestServer) -> RawClient {
    use sha1::{Digest, Sha1};
    let mut c = RawClient::connect(&server.component).await;
    c.send_raw(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='bot.acme.test'>",
    )
    .await;
    let id = match c.next_event().await {
        Some(heliograph::xml::StreamEvent::Open(h)) => h.attr("id").unwrap().to_string(),
        other => panic!("expected a stream header, got {other:?}"),
    };
    let digest: String = Sha1::digest(format!("{id}s3cret").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    c.send_raw(&format!("<handshake>{digest}</handshake>"))
        .await;
    let ok = c.next().await;
    assert_eq!(ok.name(), "handshake", "{ok}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_on_one_node_serves_users_on_every_node() {
    let Some(c) = cluster().await else {
        return;
    };
    wait_room_nodes(&c.nodes.iter().collect::<Vec<_>>(), &["n1", "n2", "n3"]).await;
    let (status, text) = api(
        &c.nodes[0],
        "POST",
        "/api/v1/tenants",
        r#"{"name":"acme","domains":["acme.test"],
            "components":[{"domains":["bot.acme.test"],"secret":"s3cret"}]}"#,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    add_user(&c.nodes[0], "acme.test", "dave", "pw-d").await;
    add_user(&c.nodes[0], "acme.test", "erin", "pw-e").await;
    for n in &c.nodes {
        wait_tenant(n, "acme").await;
    }
    // The component connects to n2; dave is on n1, erin on n3.
    let mut bot = component(&c.nodes[1]).await;
    let mut dave = RawClient::login_on(&c.nodes[0], "acme.test", "dave", "pw-d", "d").await;
    let mut erin = RawClient::login_on(&c.nodes[2], "acme.test", "erin", "pw-e", "e").await;
    for (user, client, jid) in [
        ("dave", &mut dave, "dave@acme.test/d"),
        ("erin", &mut erin, "erin@acme.test/e"),
    ] {
        // Until the component's node has announced the domain, a stanza may bounce: ask
        // again until the component gets one.
        let deadline = Instant::now() + DEADLINE;
        let got = loop {
            let id = format!("{user}-{}", rand_suffix());
            client
                .send_raw(&format!(
                    "<message to='bot.acme.test' id='{id}'><body>ping from {user}</body></message>"
                ))
                .await;
            let seen = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    let m = bot.next().await;
                    if m.name() == "message" && m.attr("id") == Some(id.as_str()) {
                        return m;
                    }
                }
            })
            .await;
            if let Ok(m) = seen {
                break m;
            }
            assert!(
                Instant::now() < deadline,
                "the component never got {user}'s message"
            );
        };
        assert_eq!(got.attr("from"), Some(jid), "{got}");
        bot.send_raw(&format!(
            "<message from='bot.acme.test' to='{jid}' id='pong'><body>pong to {user}</body></message>"
        ))
        .await;
        let want = format!("pong to {user}");
        let reply = client
            .next_matching(move |e| body_of(e).as_deref() == Some(want.as_str()))
            .await;
        assert_eq!(reply.attr("from"), Some("bot.acme.test"), "{reply}");
    }
}

/// A short random suffix for stanza ids.
fn rand_suffix() -> u32 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// Whether `user`@`domain` logs in on `server` with `password` (PLAIN after STARTTLS).
async fn logs_in(server: &TestServer, domain: &str, user: &str, password: &str) -> bool {
    let mut c = RawClient::connect(&server.starttls).await;
    c.open_to(domain).await;
    c.starttls().await;
    c.open_to(domain).await;
    c.auth_plain(user, password).await.is("success", ns::SASL)
}

/// Waits until `server` serves tenant `name` (created through another node).
async fn wait_tenant(server: &TestServer, name: &str) {
    let deadline = Instant::now() + DEADLINE;
    while api(server, "GET", &format!("/api/v1/tenants/{name}"), "")
        .await
        .0
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "{name} never reached {}",
            server.admin
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until a login on `server` succeeds or fails as `want` says.
async fn wait_login(server: &TestServer, user: &str, password: &str, want: bool) {
    let deadline = Instant::now() + DEADLINE;
    while logs_in(server, "acme.test", user, password).await != want {
        assert!(
            Instant::now() < deadline,
            "{user} with {password} never {} on {}",
            if want {
                "logged in"
            } else {
                "stopped logging in"
            },
            server.admin
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Uploads `wasm` into acme's `auth` slot through `server`'s admin API, with a
/// configuration naming dave's password.
async fn install_auth_plugin(server: &TestServer, wasm: &[u8], dave_password: &str) -> u64 {
    let config = format!(
        r#"{{"users": {{"dave": "{}"}}}}"#,
        crate::plugins_support::hash_password("salt", dave_password)
    );
    let auth = format!("Bearer {}", server.token);
    let r = http(
        "PUT",
        &format!("http://{}/api/v1/tenants/acme/plugins/auth", server.admin),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/wasm"),
            ("heliograph-plugin-config", config.as_str()),
        ],
        Bytes::from(wasm.to_vec()),
    )
    .await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status.as_u16(), 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_installed_or_rolled_back_on_node_1_holds_on_node_3() {
    let Some(dir) = crate::plugins_support::wasm_dir() else {
        return;
    };
    let wasm = crate::plugins_support::wasm(&dir, "allowlist");
    let Some(c) = cluster().await else {
        return;
    };
    wait_room_nodes(&c.nodes.iter().collect::<Vec<_>>(), &["n1", "n2", "n3"]).await;
    let (status, text) = api(
        &c.nodes[0],
        "POST",
        "/api/v1/tenants",
        r#"{"name":"acme","domains":["acme.test"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let v1 = install_auth_plugin(&c.nodes[0], &wasm, "first").await;
    let (status, text) = api(
        &c.nodes[0],
        "PATCH",
        "/api/v1/tenants/acme",
        r#"{"auth":{"method":"plugin","plugin":"auth"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    wait_tenant(&c.nodes[2], "acme").await;
    // n3 never saw the upload: it loads the plugin from PostgreSQL on the notice.
    wait_login(&c.nodes[2], "dave", "first", true).await;

    // A new version (dave's password changed) on n1 is switched on n3...
    let started = Instant::now();
    let v2 = install_auth_plugin(&c.nodes[0], &wasm, "second").await;
    assert_eq!(v2, v1 + 1);
    wait_login(&c.nodes[2], "dave", "second", true).await;
    let switched = started.elapsed();
    assert!(!logs_in(&c.nodes[2], "acme.test", "dave", "first").await);

    // ...and so is a rollback.
    let (status, text) = api(
        &c.nodes[0],
        "POST",
        &format!("/api/v1/tenants/acme/plugins/auth/rollback?version={v1}"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    wait_login(&c.nodes[2], "dave", "first", true).await;
    assert!(!logs_in(&c.nodes[2], "acme.test", "dave", "second").await);
    eprintln!(
        "plugin version installed on n1: in force on n3 after {} ms",
        switched.as_millis()
    );
}

/// Waits until `server` knows where clients reach every other node.
async fn wait_addresses(server: &TestServer, others: &[&TestServer]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, text) = api(server, "GET", "/api/v1/cluster", "").await;
        if others
            .iter()
            .all(|o| text.contains(&format!("\"{}\"", o.starttls)))
        {
            return;
        }
        assert!(Instant::now() < deadline, "addresses never known: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_sends_its_clients_to_a_live_node_and_loses_no_message() {
    let Some(c) = cluster().await else {
        return;
    };
    wait_addresses(&c.nodes[1], &[&c.nodes[0], &c.nodes[2]]).await;
    let (mut alice, alice_jid) =
        RawClient::login(&c.nodes[1].starttls, "alice", "pw-a", Some("a1")).await;
    alice.send_raw("<presence/>").await;
    let (mut bob, _) = RawClient::login(&c.nodes[0].starttls, "bob", "pw-b", Some("b1")).await;
    bob.send_raw("<presence/>").await;
    wait_registry(&c.nodes[0], &alice_jid, Held::On("n2")).await;

    const SENT: usize = 60;
    for i in 0..SENT / 2 {
        bob.send(&chat("alice@localhost", &format!("m{i}"))).await;
    }
    crate::common::ping_barrier(&mut bob).await;
    let (status, text) = api(&c.nodes[1], "POST", "/api/v1/drain", "").await;
    assert_eq!(status, 202, "{text}");

    // Alice reads what reaches her until n2 names another node (RFC 6120 §4.9.3.19).
    let mut got: Vec<String> = Vec::new();
    let target = loop {
        let el = alice.next().await;
        if el.is("error", ns::STREAM) {
            let host = el
                .child("see-other-host", ns::STREAMS_ERRORS)
                .unwrap_or_else(|| panic!("not see-other-host: {el}"));
            break host.text();
        }
        if el.name() == "message"
            && let Some(b) = body_of(&el)
        {
            got.push(b);
        }
    };
    assert!(
        target == c.nodes[0].starttls || target == c.nodes[2].starttls,
        "sent to {target}, not a live node"
    );
    drop(alice);
    // Bob goes on writing while she moves.
    for i in SENT / 2..SENT {
        bob.send(&chat("alice@localhost", &format!("m{i}"))).await;
    }
    crate::common::ping_barrier(&mut bob).await;
    wait_registry(&c.nodes[0], &alice_jid, Held::Nowhere).await;

    let (mut alice, _) = RawClient::login(&target, "alice", "pw-a", Some("a2")).await;
    alice.send_raw("<presence/>").await;
    let want: std::collections::BTreeSet<String> = (0..SENT).map(|i| format!("m{i}")).collect();
    // What n2 held for her goes back to bob's node when her session ends there, and on
    // to offline storage, possibly after her new session read its offline messages:
    // bob's node announces what it stores and her new node delivers it then
    // (docs/CLUSTER.md, "Routing"). She gets every message on this session.
    let deadline = Instant::now() + DEADLINE;
    while !want.iter().all(|w| got.contains(w)) {
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        assert!(Instant::now() < deadline, "alice never got {missing:?}");
        let Ok(el) = tokio::time::timeout(Duration::from_secs(1), alice.next()).await else {
            continue;
        };
        if el.name() == "message"
            && let Some(b) = body_of(&el)
        {
            got.push(b);
        }
    }
    eprintln!(
        "drain: {SENT} messages, all delivered to her new session, {} duplicates",
        got.len() - want.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_or_token_revocation_on_node_1_holds_on_node_3_at_once() {
    let Some(c) = cluster().await else {
        return;
    };
    // Every node hears the others before the tenant's notice is sent.
    wait_room_nodes(&c.nodes.iter().collect::<Vec<_>>(), &["n1", "n2", "n3"]).await;
    let (status, text) = api(
        &c.nodes[0],
        "POST",
        "/api/v1/tenants",
        r#"{"name":"acme","domains":["acme.test"],
            "tokens":{"access_ttl_secs":3600,"refresh_ttl_secs":86400}}"#,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    add_user(&c.nodes[0], "acme.test", "dave", "old-password").await;
    wait_tenant(&c.nodes[2], "acme").await;
    wait_login(&c.nodes[2], "dave", "old-password", true).await;
    // n3 has verified the password (its cache holds it), and dave has a session there.
    assert!(logs_in(&c.nodes[2], "acme.test", "dave", "old-password").await);
    let mut session =
        RawClient::login_on(&c.nodes[2], "acme.test", "dave", "old-password", "d").await;

    // The password changes through n1: n3 refuses the old one on the very next login,
    // and ends dave's session there.
    let (status, text) = api(
        &c.nodes[0],
        "PUT",
        "/api/v1/users/acme.test/dave/password",
        r#"{"password":"new-password"}"#,
    )
    .await;
    assert_eq!(status, 204, "{text}");
    assert!(!logs_in(&c.nodes[2], "acme.test", "dave", "old-password").await);
    assert!(logs_in(&c.nodes[2], "acme.test", "dave", "new-password").await);
    assert_eq!(session.expect_stream_error().await, "not-authorized");

    // A token minted through n1 logs in on n3 until n1 revokes it: then at once no more.
    let (status, text) = api(
        &c.nodes[0],
        "POST",
        "/api/v1/users/acme.test/dave/tokens",
        r#"{"kind":"access"}"#,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let token = v["access"]["token"].as_str().unwrap().to_string();
    assert!(logs_in(&c.nodes[2], "acme.test", "dave", &token).await);
    let (status, text) = api(
        &c.nodes[0],
        "DELETE",
        "/api/v1/users/acme.test/dave/tokens",
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(!logs_in(&c.nodes[2], "acme.test", "dave", &token).await);
}
