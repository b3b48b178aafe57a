//! Two regions on loopback (docs/CLUSTER.md, "Regions"): two nats-server processes, each
//! its own NATS cluster (`east`, `west`), joined by a NATS gateway whose link passes
//! through a proxy adding latency each way (a WAN). n1 and n2 run in `east`, n3 in `west`,
//! all on one PostgreSQL. A chat within a region leaves the gateway's message counters
//! (read from each server's `/gatewayz`) at their background rate (heartbeats, registry
//! events); a chat across regions (both ways) is delivered in order, crosses the gateway with its
//! stanzas, and its round trip pays the added latency. Registry events and admin queries
//! (NATS request/reply) cross the gateway too.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::*;
use crate::common::tcp_proxy::TcpProxy;
use zero_loss::node_on;

/// The latency the WAN proxy adds in each direction.
const WAN_DELAY: Duration = Duration::from_millis(40);
/// Stanzas sent in each measured chat.
const STANZAS: usize = 200;

/// One region's nats-server: a NATS cluster of one server with a gateway to the other
/// region and its monitoring port; killed when dropped.
struct Region {
    name: &'static str,
    server: Child,
    /// `nats://127.0.0.1:PORT` for the region's Heliograph nodes.
    client_url: String,
    /// `127.0.0.1:PORT` of the monitoring endpoints (`/gatewayz`).
    monitor: String,
    _dir: tempfile::TempDir,
}

impl Drop for Region {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Starts region `name`'s server, every port picked by the server itself: its gateway
/// advertises `own_proxy` (so the other region only ever learns the proxy's address) and
/// reaches region `peer` through `peer_proxy`. Returns once the server told its ports,
/// with `own_proxy` pointed at its gateway port.
async fn start_region(
    binary: &str,
    name: &'static str,
    own_proxy: &TcpProxy,
    peer: &str,
    peer_proxy: &TcpProxy,
) -> Region {
    let dir = tempfile::Builder::new()
        .prefix(&format!("heliograph-region-{name}-"))
        .tempdir()
        .unwrap();
    let config = format!(
        "server_name: {name}-1\n\
         listen: 127.0.0.1:-1\n\
         http: 127.0.0.1:-1\n\
         cluster {{ name: {name}, listen: 127.0.0.1:-1 }}\n\
         gateway {{\n  name: {name}\n  listen: 127.0.0.1:-1\n  \
         advertise: \"{advertise}\"\n  \
         gateways: [ {{ name: {peer}, url: \"nats://{peer_gateway}\" }} ]\n}}\n",
        advertise = own_proxy.addr,
        peer_gateway = peer_proxy.addr,
    );
    let config_path = dir.path().join("nats.conf");
    std::fs::write(&config_path, config).unwrap();
    let ports_dir = dir.path().join("ports");
    std::fs::create_dir(&ports_dir).unwrap();
    let mut server = Command::new(binary)
        .arg("-c")
        .arg(&config_path)
        .arg("-l")
        .arg(dir.path().join("nats.log"))
        .arg("--ports_file_dir")
        .arg(&ports_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ports = wait_ports_file(&mut server, &ports_dir, dir.path()).await;
    let first = |key: &str| -> String {
        let url = ports[key][0].as_str().unwrap_or_default();
        url.rsplit("//").next().unwrap_or_default().to_string()
    };
    let region = Region {
        name,
        client_url: format!("nats://{}", first("nats")),
        monitor: first("monitoring"),
        server,
        _dir: dir,
    };
    // The gateway's own port is in /varz (the ports file does not list it).
    let r = http(
        "GET",
        &format!("http://{}/varz", region.monitor),
        &[],
        Bytes::new(),
    )
    .await;
    let varz: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let gateway_port = varz["gateway"]["port"].as_u64().expect("gateway port");
    own_proxy.retarget(&format!("127.0.0.1:{gateway_port}"));
    region
}

/// Waits until the server wrote its ports file (client and monitoring ports) and returns
/// it; fails with its log if it exits.
async fn wait_ports_file(server: &mut Child, ports_dir: &Path, dir: &Path) -> serde_json::Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let written = std::fs::read_dir(ports_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.path().extension().is_some_and(|x| x == "ports"))
            .and_then(|e| std::fs::read(e.path()).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if let Some(ports) = written
            && ports["nats"].is_array()
            && ports["monitoring"].is_array()
        {
            return ports;
        }
        let log = || std::fs::read_to_string(dir.join("nats.log")).unwrap_or_default();
        if let Some(status) = server.try_wait().unwrap() {
            panic!("nats-server exited ({status}):\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "nats-server never wrote its ports:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/gatewayz` of `region`, once its monitoring port answers.
async fn gatewayz(region: &Region) -> serde_json::Value {
    let deadline = Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(&region.monitor)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the monitoring port of {} never opened (see {})",
            region.name,
            log_path(region).display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = http(
        "GET",
        &format!("http://{}/gatewayz", region.monitor),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
    serde_json::from_slice(&r.body).unwrap()
}

fn log_path(region: &Region) -> std::path::PathBuf {
    Path::new(region._dir.path()).join("nats.log")
}

/// Waits until `region` has both its outbound and an inbound gateway connection to `peer`.
async fn wait_gateway_up(region: &Region, peer: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let v = gatewayz(region).await;
        let outbound = v["outbound_gateways"][peer]["connection"].is_object();
        let inbound = v["inbound_gateways"][peer]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if outbound && inbound {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway {} <-> {peer} never came up: {v}\n{}",
            region.name,
            std::fs::read_to_string(log_path(region)).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What crossed the gateway between two regions, both ways (sent on the outbound
/// connection plus received on the inbound ones). A node sends the stanzas it has queued
/// for one node together in one NATS message, so bytes, not messages, measure stanzas.
#[derive(Debug, Clone, Copy, Default)]
struct Crossed {
    messages: u64,
    bytes: u64,
}

impl std::ops::Sub for Crossed {
    type Output = Crossed;
    fn sub(self, earlier: Crossed) -> Crossed {
        Crossed {
            messages: self.messages - earlier.messages,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

/// The gateway counters of `region` towards `peer` so far.
async fn gateway_traffic(region: &Region, peer: &str) -> Crossed {
    let v = gatewayz(region).await;
    let outbound = &v["outbound_gateways"][peer]["connection"];
    let count = |c: &serde_json::Value, key: &str| c[key].as_u64().unwrap_or(0);
    let mut crossed = Crossed {
        messages: count(outbound, "out_msgs"),
        bytes: count(outbound, "out_bytes"),
    };
    for inbound in v["inbound_gateways"][peer].as_array().into_iter().flatten() {
        crossed.messages += count(&inbound["connection"], "in_msgs");
        crossed.bytes += count(&inbound["connection"], "in_bytes");
    }
    crossed
}

/// Reads the next messages with a body and checks they are `want`, in that order.
async fn receive_in_order(client: &mut RawClient, want: &[String]) {
    for (i, w) in want.iter().enumerate() {
        let el = client
            .next_matching(|el| el.name() == "message" && body_of(el).is_some())
            .await;
        assert_eq!(
            body_of(&el).as_deref(),
            Some(w.as_str()),
            "message {i} out of order"
        );
    }
}

/// `from` sends [`STANZAS`] messages to `to_jid` and `to` reads them in order; returns
/// what crossed the gateway meanwhile, how long it took, and the bytes of the bodies sent
/// (a lower bound of what a stanza crossing adds).
async fn measured_chat(
    east: &Region,
    from: &mut RawClient,
    to: &mut RawClient,
    to_jid: &str,
    label: &str,
) -> (Crossed, Duration, u64) {
    let bodies: Vec<String> = (0..STANZAS)
        .map(|i| format!("{label}-{i}-{}", "x".repeat(100)))
        .collect();
    let body_bytes = bodies.iter().map(|b| b.len() as u64).sum();
    let before = gateway_traffic(east, "west").await;
    let started = Instant::now();
    for b in &bodies {
        from.send(&chat(to_jid, b)).await;
    }
    receive_in_order(to, &bodies).await;
    let took = started.elapsed();
    (
        gateway_traffic(east, "west").await - before,
        took,
        body_bytes,
    )
}

/// What crosses the gateway with no chat going on (heartbeats), measured over `interval`
/// or 2 s if longer (so that the periodic heartbeats average out), scaled to `interval`:
/// (messages, bytes).
async fn background(east: &Region, interval: Duration) -> (f64, f64) {
    let window = interval.max(Duration::from_secs(2));
    let before = gateway_traffic(east, "west").await;
    // A measurement window, not a wait for a condition.
    tokio::time::sleep(window).await;
    let during = gateway_traffic(east, "west").await - before;
    let scale = interval.as_secs_f64() / window.as_secs_f64();
    (during.messages as f64 * scale, during.bytes as f64 * scale)
}

/// The quickest of a few round trips: `a` sends to `b_jid`, `b` answers, `a` reads the
/// answer.
async fn round_trip(a: &mut RawClient, a_jid: &str, b: &mut RawClient, b_jid: &str) -> Duration {
    let mut best = Duration::MAX;
    for i in 0..5 {
        let ping = format!("rtt-ping-{i}");
        let pong = format!("rtt-pong-{i}");
        let started = Instant::now();
        a.send(&chat(b_jid, &ping)).await;
        expect_body(b, &ping).await;
        b.send(&chat(a_jid, &pong)).await;
        expect_body(a, &pong).await;
        best = best.min(started.elapsed());
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_stay_in_their_region_unless_the_recipient_is_elsewhere() {
    let Some(binary) = crate::common::nats::binary() else {
        return;
    };
    let Some(db) = TestDb::create() else {
        return;
    };
    // The proxy each region's gateway is reached through (the WAN link).
    let east_proxy = TcpProxy::start_delayed(None, WAN_DELAY).await;
    let west_proxy = TcpProxy::start_delayed(None, WAN_DELAY).await;
    let east = start_region(&binary, "east", &east_proxy, "west", &west_proxy).await;
    let west = start_region(&binary, "west", &west_proxy, "east", &east_proxy).await;
    wait_gateway_up(&east, "west").await;
    wait_gateway_up(&west, "east").await;

    let n1 = node_on(&db, &east.client_url, "n1", 1500);
    let n2 = node_on(&db, &east.client_url, "n2", 1500);
    let n3 = node_on(&db, &west.client_url, "n3", 1500);
    let [
        (mut alice, alice_jid),
        (mut bob, bob_jid),
        (mut carol, carol_jid),
    ] = alice_bob_carol_online([&n1, &n2, &n3]).await;
    // Every node learns every session, across the gateway too.
    wait_registry(&n1, &bob_jid, Held::On("n2")).await;
    wait_registry(&n1, &carol_jid, Held::On("n3")).await;
    wait_registry(&n2, &carol_jid, Held::On("n3")).await;
    wait_registry(&n3, &alice_jid, Held::On("n1")).await;
    wait_registry(&n3, &bob_jid, Held::On("n2")).await;
    // NATS request/reply across the gateway: n1's admin API lists the rooms of every node,
    // asking n3 (in west) on `heliograph.query.n3`, and n3 asks n1 and n2 (in east).
    super::wait_room_nodes(&[&n1, &n2, &n3], &["n1", "n2", "n3"]).await;
    for server in [&n1, &n3] {
        let (status, text) = api(server, "GET", "/api/v1/tenants/default/rooms", "").await;
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            v.get("unreachable").is_none(),
            "a node in the other region did not answer: {v}"
        );
    }

    // Warm-up both ways on both paths: a gateway starts optimistic (it sends a subject to
    // the other region until that region says it has no interest in it).
    let same_rtt = round_trip(&mut alice, &alice_jid, &mut bob, &bob_jid).await;
    let cross_rtt = round_trip(&mut alice, &alice_jid, &mut carol, &carol_jid).await;

    // Within the region (n1 -> n2).
    let (same, same_took, same_body_bytes) =
        measured_chat(&east, &mut alice, &mut bob, &bob_jid, "same").await;
    let same_background = background(&east, same_took).await;
    // Across regions (n1 -> n3).
    let (cross, cross_took, cross_body_bytes) =
        measured_chat(&east, &mut alice, &mut carol, &carol_jid, "cross").await;
    let cross_background = background(&east, cross_took).await;
    // And back (n3 -> n1): carol answers from west.
    let (back, back_took, back_body_bytes) =
        measured_chat(&east, &mut carol, &mut alice, &alice_jid, "back").await;

    eprintln!(
        "regions east (n1, n2) and west (n3), gateway link +{} ms each way; {STANZAS} \
         stanzas ({same_body_bytes} body bytes) per chat.\n  \
         same region n1->n2: {} gateway messages, {} bytes in {} ms (background over the \
         same time: {:.1} messages, {:.0} bytes)\n  \
         cross region n1->n3: {} gateway messages, {} bytes in {} ms (background: {:.1} \
         messages, {:.0} bytes)\n  \
         cross region n3->n1: {} gateway messages, {} bytes in {} ms\n  \
         round trip (best of 5): same region {:.1} ms, cross region {:.1} ms",
        WAN_DELAY.as_millis(),
        same.messages,
        same.bytes,
        same_took.as_millis(),
        same_background.0,
        same_background.1,
        cross.messages,
        cross.bytes,
        cross_took.as_millis(),
        cross_background.0,
        cross_background.1,
        back.messages,
        back.bytes,
        back_took.as_millis(),
        same_rtt.as_secs_f64() * 1e3,
        cross_rtt.as_secs_f64() * 1e3,
    );
    // Had the stanzas crossed, the bytes would have grown by the background plus at least
    // their bodies.
    assert!(
        (same.bytes as f64) < same_background.1 + same_body_bytes as f64 / 2.0,
        "a chat within east crossed the gateway: {same:?} for a background of \
         {same_background:?}"
    );
    assert!(
        cross.bytes >= cross_body_bytes && cross.messages > 0,
        "a chat from east to west crossed the gateway with {cross:?}, less than its \
         {cross_body_bytes} body bytes"
    );
    assert!(
        back.bytes >= back_body_bytes && back.messages > 0,
        "a chat from west to east crossed the gateway with {back:?}, less than its \
         {back_body_bytes} body bytes"
    );
    // The round trip crosses the link once each way.
    assert!(
        cross_rtt >= 2 * WAN_DELAY,
        "cross-region round trip {cross_rtt:?} shorter than the added delay"
    );
}
