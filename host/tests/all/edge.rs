//! The cloud edge end to end: PROXY protocol behind real HAProxy, health and drain,
//! Prometheus metrics, and connection limits under slowloris and login floods.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::web::{
    Bosh, WsClient, admin_get, assert_session_listed, bosh_post, http, terminate_condition,
    ws_connect_status,
};
use common::{RawClient, TestServer, connect_from};
use heliograph::xml::{Element, ns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn chat(to: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

async fn get(url: &str) -> (u16, String) {
    let r = http("GET", url, &[], Bytes::new()).await;
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

async fn post_admin(server: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {}", server.token);
    let r = http(
        "POST",
        &format!("http://{}{path}", server.admin),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await;
    (
        r.status.as_u16(),
        serde_json::from_slice(&r.body).unwrap_or_default(),
    )
}

/// True if the server closes a new connection without answering a stream header.
async fn refused(addr: &str, source: &str) -> bool {
    let mut s = connect_from(addr, source).await;
    let _ = s
        .write_all(b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        .await;
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn sessions(server: &TestServer) -> Vec<serde_json::Value> {
    admin_get(&server.admin, &server.token, "/api/v1/sessions").await["sessions"]
        .as_array()
        .unwrap()
        .clone()
}

/// Parses Prometheus text exposition format (0.0.4) strictly enough to catch a broken
/// exposition: `# HELP`/`# TYPE` lines with a valid metric name and type, and sample lines
/// `name{label="value",...} value`. Returns samples by `name{labels}`.
/// The metrics text once `ready` holds for it (sessions add their stanza counts to the
/// shared counters when they go idle, a moment after what they sent arrived), or after
/// 30 s for the caller's assertions to fail on.
async fn metrics_once(url: &str, ready: impl Fn(&BTreeMap<String, f64>) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = get(url).await;
        assert_eq!(status, 200, "{text}");
        if ready(&parse_prometheus(&text)) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let parts: Vec<&str> = rest.trim_start().splitn(3, ' ').collect();
            match parts.as_slice() {
                ["TYPE", name, kind] => {
                    assert!(valid_name(name), "line {i}: bad name in {line:?}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(kind),
                        "line {i}: bad type in {line:?}"
                    );
                }
                ["HELP", name, ..] => assert!(valid_name(name), "line {i}: {line:?}"),
                _ => {} // other comments are allowed
            }
            continue;
        }
        let (series, value) = if let Some(open) = line.find('{') {
            let close = line
                .rfind('}')
                .unwrap_or_else(|| panic!("line {i}: {line:?}"));
            let name = &line[..open];
            assert!(valid_name(name), "line {i}: bad name {name:?}");
            // Labels: name="value" pairs with \\, \" and \n escapes.
            let labels = &line[open + 1..close];
            let mut chars = labels.chars().peekable();
            while chars.peek().is_some() {
                let lname: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert!(valid_name(lname.trim()), "line {i}: label {lname:?}");
                assert_eq!(chars.next(), Some('"'), "line {i}: {line:?}");
                loop {
                    match chars.next() {
                        Some('\\') => {
                            assert!(matches!(chars.next(), Some('\\' | '"' | 'n')), "line {i}")
                        }
                        Some('"') => break,
                        Some(_) => {}
                        None => panic!("line {i}: unterminated label value"),
                    }
                }
                match chars.next() {
                    Some(',') | None => {}
                    other => panic!("line {i}: unexpected {other:?} in {line:?}"),
                }
            }
            (&line[..=close], line[close + 1..].trim())
        } else {
            let mut it = line.splitn(2, ' ');
            let name = it.next().unwrap();
            assert!(valid_name(name), "line {i}: bad name {name:?}");
            (name, it.next().unwrap_or("").trim())
        };
        let value = value.split(' ').next().unwrap();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("line {i}: bad value {v:?}")),
        };
        out.insert(series.to_string(), v);
    }
    out
}

fn sum_matching(samples: &BTreeMap<String, f64>, name: &str, needle: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| {
            (k.as_str() == name || k.starts_with(&format!("{name}{{"))) && k.contains(needle)
        })
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test]
async fn health_and_metrics_count_a_login_and_a_message() {
    let server = TestServer::start(&[("alice", "wonderland"), ("bob", "builder")], "");
    let base = format!("http://{}", server.admin);
    assert_eq!(get(&format!("{base}/health/live")).await.0, 200);
    assert_eq!(get(&format!("{base}/health/ready")).await.0, 200);

    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "wonderland", None).await;
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "builder", Some("b")).await;
    let mut c = RawClient::connect(&server.starttls).await;
    c.open_and_features().await;
    c.starttls().await;
    c.open_and_features().await;
    let failure = c.auth_plain("alice", "wrong-password").await;
    assert!(failure.is("failure", ns::SASL), "{failure}");
    alice.send(&chat("bob@localhost/b", "metrics")).await;
    bob.next_matching(|e| e.is("message", ns::CLIENT)).await;

    let text = metrics_once(&format!("{base}/metrics"), |s| {
        sum_matching(s, "heliograph_stanzas_in_total", "kind=\"message\"") >= 1.0
    })
    .await;
    let samples = parse_prometheus(&text);
    assert!(
        sum_matching(&samples, "heliograph_logins_total", "tenant=\"default\"") >= 2.0,
        "{text}"
    );
    assert!(
        sum_matching(&samples, "heliograph_stanzas_in_total", "kind=\"message\"") >= 1.0,
        "{text}"
    );
    assert!(
        sum_matching(
            &samples,
            "heliograph_login_failures_total",
            "cause=\"not-authorized\""
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sum_matching(&samples, "heliograph_sessions", "tenant=\"default\"") >= 2.0,
        "{text}"
    );
    assert!(samples["process_resident_memory_bytes"] > 0.0);
    // The wrong-password connection is still unauthenticated; the two sessions are not.
    assert_eq!(
        samples["heliograph_unauthenticated_connections"], 1.0,
        "{text}"
    );

    // No password ever reaches the logs (the server logs at debug level in tests).
    let log = server.log_text();
    assert!(!log.contains("wonderland") && !log.contains("wrong-password"));
    assert!(!log.contains(&server.token));
}

#[tokio::test]
async fn metrics_without_tenant_labels() {
    let server = TestServer::start(
        &[("alice", "wonderland")],
        "[metrics]\nper_tenant_labels = false\n",
    );
    let (_alice, _) = RawClient::login(&server.starttls, "alice", "wonderland", None).await;
    let (_, text) = get(&format!("http://{}/metrics", server.admin)).await;
    let samples = parse_prometheus(&text);
    assert!(
        sum_matching(&samples, "heliograph_logins_total", "") >= 1.0,
        "{text}"
    );
    assert!(!text.contains("tenant="), "{text}");
}

#[tokio::test]
async fn json_logs_carry_connection_fields() {
    let server = TestServer::start(&[("alice", "wonderland")], "log_format = \"json\"\n");
    let (mut alice, jid) = RawClient::login(&server.starttls, "alice", "wonderland", None).await;
    alice.send_raw("</stream:stream>").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log_text();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(!lines.is_empty(), "{log}");
        if lines.iter().any(|l| {
            l["span"]["jid"] == jid.as_str()
                && l["span"]["tenant"] == "default"
                && l["span"]["conn"].is_u64()
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event with the session fields: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!server.log_text().contains("wonderland"));
}

#[tokio::test]
async fn drain_sends_clients_away_loses_nothing_and_exits() {
    let mut server = TestServer::start(
        &[("alice", "wonderland"), ("bob", "builder")],
        "[drain]\ngrace_period = 2\ndeadline = 20\n",
    );
    let base = format!("http://{}", server.admin);
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "wonderland", None).await;
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "builder", None).await;
    alice.send_raw("<presence/>").await;
    bob.send_raw("<presence/>").await;

    let (status, body) = post_admin(&server, "/api/v1/drain").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["sessions"], 2);
    assert_eq!(get(&format!("{base}/health/ready")).await.0, 503);
    assert_eq!(get(&format!("{base}/health/live")).await.0, 200);
    assert!(refused(&server.starttls, "127.0.0.1").await);

    // Bob leaves within the grace period; a message to him is then stored offline.
    bob.send_raw("<presence type='unavailable'/></stream:stream>")
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while sessions(&server).await.len() != 1 {
        assert!(Instant::now() < deadline, "bob's session did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice
        .send(&chat("bob@localhost", "sent during the drain"))
        .await;
    assert_eq!(alice.expect_stream_error().await, "system-shutdown");
    assert_eq!(
        server.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        server.log_text()
    );

    server.launch();
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "builder", None).await;
    bob.send_raw("<presence/>").await;
    let msg = bob.next_matching(|e| e.is("message", ns::CLIENT)).await;
    assert_eq!(
        msg.child_text("body", ns::CLIENT).as_deref(),
        Some("sent during the drain")
    );
}

/// The node's state and the process itself on /metrics: `heliograph_ready` is 1 while
/// /health/ready answers 200 and `heliograph_draining` 0; once a drain is asked through
/// the admin API they turn to 0 and 1 (with /health/ready at 503); the standard process
/// metrics are there, and `process_cpu_seconds_total` grows while the server works.
#[tokio::test]
async fn metrics_show_readiness_draining_and_the_process() {
    let server = TestServer::start(
        &[("alice", "wonderland")],
        // A session stays for the grace period, so the drain lasts while it is looked at.
        "[drain]\ngrace_period = 30\ndeadline = 40\n",
    );
    let base = format!("http://{}", server.admin);
    let scrape = || async { parse_prometheus(&get(&format!("{base}/metrics")).await.1) };

    let samples = scrape().await;
    assert_eq!(get(&format!("{base}/health/ready")).await.0, 200);
    assert_eq!(samples.get("heliograph_ready"), Some(&1.0), "{samples:?}");
    assert_eq!(
        samples.get("heliograph_draining"),
        Some(&0.0),
        "{samples:?}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            samples.get(name).is_some_and(|v| *v > 0.0),
            "{name}: {samples:?}"
        );
    }
    assert!(samples["process_max_fds"] >= samples["process_open_fds"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = samples["process_start_time_seconds"];
    // The server was started by this test, a moment ago (boot time has 1 s precision).
    assert!(
        started <= now + 2.0 && started > now - 300.0,
        "{started} vs {now}"
    );

    // Busy: logins (SCRAM key derivation on the server) until its CPU time moves.
    let cpu_before = samples["process_cpu_seconds_total"];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut logins = 0;
    let cpu_after = loop {
        let (_client, _) = RawClient::login(&server.starttls, "alice", "wonderland", None).await;
        logins += 1;
        let cpu = scrape().await["process_cpu_seconds_total"];
        if cpu > cpu_before {
            break cpu;
        }
        assert!(
            Instant::now() < deadline,
            "CPU time stayed at {cpu} after {logins} logins"
        );
    };
    println!("process_cpu_seconds_total {cpu_before} -> {cpu_after} over {logins} logins");

    let (_alice, _) = RawClient::login(&server.starttls, "alice", "wonderland", None).await;
    let (status, body) = post_admin(&server, "/api/v1/drain").await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let samples = scrape().await;
        if samples.get("heliograph_draining") == Some(&1.0)
            && samples.get("heliograph_ready") == Some(&0.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no draining 1 / ready 0: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&format!("{base}/health/ready")).await.0, 503);
}

#[tokio::test]
async fn drain_with_see_other_host() {
    let mut server = TestServer::start(
        &[("alice", "wonderland")],
        "[drain]\nsee_other_host = \"other.example:5222\"\ndeadline = 20\n",
    );
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "wonderland", None).await;
    let (status, _) = post_admin(&server, "/api/v1/drain").await;
    assert_eq!(status, 202);
    let err = loop {
        let el = alice.next().await;
        if el.is("error", ns::STREAM) {
            break el;
        }
    };
    let cond = err
        .child("see-other-host", ns::STREAMS_ERRORS)
        .expect("see-other-host");
    assert_eq!(cond.text(), "other.example:5222");
    assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn idle_connection_flood_does_not_lock_out_other_addresses() {
    let server = TestServer::start_with(
        &[("alice", "wonderland")],
        "",
        "max_connections_per_address = 500\n",
    );
    // 2,000 idle, unauthenticated connections from one address (slowloris).
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&server.starttls),
        )
        .await
        {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 1000, "{} connected", idle.len());
    let started = Instant::now();
    let mut c = RawClient::connect_from(&server.starttls, "127.0.0.2").await;
    c.open_and_features().await;
    c.starttls().await;
    c.open_and_features().await;
    let r = c.auth_plain("alice", "wonderland").await;
    assert!(r.is("success", ns::SASL), "{r}");
    c.bind(None).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The flooding address is held to its limit.
    assert!(refused(&server.starttls, "127.0.0.1").await);
    let (_, text) = get(&format!("http://{}/metrics", server.admin)).await;
    let samples = parse_prometheus(&text);
    assert!(
        sum_matching(
            &samples,
            "heliograph_connections_refused_total",
            "address_limit"
        ) >= 1000.0,
        "{text}"
    );
    drop(idle);
}

#[tokio::test]
async fn login_flood_from_one_address_does_not_stop_another() {
    let server = TestServer::start_with(
        &[("alice", "wonderland")],
        // One attempt a second: the flood's first 50 attempts alone owe 49 s, so a gate
        // shared between addresses would hold the other login far past the bound below.
        "[limits]\nlogin_rate_per_address = 1\nlogin_burst_per_address = 1\n",
        "require_tls = false\nallow_plain_without_tls = true\nmax_auth_attempts = 100\n",
    );
    let addr = server.starttls.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for _ in 0..50 {
        let addr = addr.clone();
        let stop = stop.clone();
        flood.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut c = RawClient::connect_from(&addr, "127.0.0.1").await;
                c.open_and_features().await;
                for _ in 0..20 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let Ok(r) = tokio::time::timeout(
                        Duration::from_secs(5),
                        c.auth_plain("alice", "not-the-password"),
                    )
                    .await
                    else {
                        break;
                    };
                    assert!(r.is("failure", ns::SASL), "{r}");
                }
            }
        }));
    }
    // The flood is under way (and its address deep in debt) once 40 attempts were delayed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = get(&format!("http://{}/metrics", server.admin)).await;
        let delayed = sum_matching(
            &parse_prometheus(&text),
            "heliograph_login_attempts_delayed_total",
            "",
        );
        if delayed >= 40.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the flood did not start: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let mut c = RawClient::connect_from(&addr, "127.0.0.2").await;
    c.open_and_features().await;
    let r = c.auth_plain("alice", "wonderland").await;
    assert!(r.is("success", ns::SASL), "{r}");
    c.bind(None).await;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Generous for a busy machine, and far below the flood's 40 s and more of debt.
    assert!(took < Duration::from_secs(20), "normal login took {took:?}");
    let (_, text) = get(&format!("http://{}/metrics", server.admin)).await;
    let samples = parse_prometheus(&text);
    assert!(
        sum_matching(&samples, "heliograph_login_attempts_delayed_total", "") >= 1.0,
        "{text}"
    );
    for t in flood {
        t.abort();
    }
}

/// The PROXY header from an address not in `trusted_proxies` is refused, and so is a
/// connection from a trusted proxy without one; a v1 header from a trusted proxy works.
#[tokio::test]
async fn proxy_protocol_only_from_trusted_addresses() {
    let server = TestServer::start_with(
        &[("alice", "wonderland")],
        "",
        "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let mut s = connect_from(&server.starttls, "127.0.0.2").await;
    s.write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 5222\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "untrusted PROXY header: {read:?}"
    );
    assert!(
        refused(&server.starttls, "127.0.0.1").await,
        "missing header"
    );

    let mut s = connect_from(&server.starttls, "127.0.0.1").await;
    s.write_all(b"PROXY TCP4 192.0.2.44 127.0.0.1 41000 5222\r\n")
        .await
        .unwrap();
    let mut c = RawClient::from_stream(s);
    c.open_and_features().await;
    c.starttls().await;
    c.open_and_features().await;
    assert!(
        c.auth_plain("alice", "wonderland")
            .await
            .is("success", ns::SASL)
    );
    c.bind(None).await;
    let s = sessions(&server).await;
    assert_eq!(s[0]["address"], "192.0.2.44:41000", "{s:?}");
}

/// A real HAProxy in tcp mode with `send-proxy-v2` in front of a server's c2s (STARTTLS)
/// and HTTP listeners. The frontends rewrite the client's source to 192.0.2.5 (`set-src`).
/// Killed on drop.
struct Haproxy {
    child: std::process::Child,
    /// The frontend of the c2s listener.
    c2s: String,
    /// The frontend of the HTTP listener.
    http: String,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The haproxy binary, or `None` (with a notice) when it is not installed, unless
/// `HELIOGRAPH_REQUIRE_HAPROXY=1` (set by tests/run.sh, which installs it).
fn haproxy_binary() -> Option<&'static str> {
    let haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if haproxy.is_none() {
        assert!(
            std::env::var("HELIOGRAPH_REQUIRE_HAPROXY").as_deref() != Ok("1"),
            "haproxy is required but not installed"
        );
        eprintln!("haproxy not installed: skipping the HAProxy test");
    }
    haproxy
}

/// The settings a listener behind the test's HAProxy needs.
const BEHIND_PROXY: &str = "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]\n";
/// The same for the HTTP listener: plain HTTP from a non-loopback client would get
/// encryption-required.
const HTTP_BEHIND_PROXY: &str =
    "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]\nrequire_tls = false\n";

impl Haproxy {
    /// Starts haproxy in front of `server` and waits until it accepts connections.
    async fn start(binary: &str, server: &TestServer, name: &str) -> Haproxy {
        let free_port = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (c2s_port, http_port) = (free_port(), free_port());
        let mut cfg = String::from(
            "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 60s\n  timeout server 60s\n",
        );
        for (name, port, target) in [
            ("c2s", c2s_port, &server.starttls),
            ("http", http_port, &server.http),
        ] {
            cfg.push_str(&format!(
                "frontend fe_{name}\n  bind 127.0.0.1:{port}\n  \
                 tcp-request connection set-src ipv4(192.0.2.5)\n  default_backend be_{name}\n\
                 backend be_{name}\n  server s1 {target} send-proxy-v2\n"
            ));
        }
        let cfg_path = server.dir.path().join(format!("haproxy-{name}.cfg"));
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = std::process::Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut proxy = Haproxy {
            child,
            c2s: format!("127.0.0.1:{c2s_port}"),
            http: format!("127.0.0.1:{http_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(&proxy.c2s).await.is_err() {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("haproxy exited: {status}");
            }
            assert!(Instant::now() < deadline, "haproxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy
    }
}

/// Real HAProxy (tcp mode, `send-proxy-v2`) in front of the c2s and HTTP listeners. The
/// frontend rewrites the client's source to 192.0.2.5 (`set-src`), an address no loopback
/// socket could have, so seeing it in the sessions API proves the server took the address
/// from the PROXY header. Skipped (with a notice) when haproxy is not installed, unless
/// `HELIOGRAPH_REQUIRE_HAPROXY=1` (set by tests/run.sh, which installs it).
#[tokio::test]
async fn behind_real_haproxy_with_send_proxy_v2() {
    let Some(haproxy) = haproxy_binary() else {
        return;
    };
    let server = TestServer::start_full(
        &[("alice", "wonderland"), ("bob", "builder")],
        "",
        BEHIND_PROXY,
        HTTP_BEHIND_PROXY,
    );
    let proxy = Haproxy::start(haproxy, &server, "main").await;

    let (_alice, _) = RawClient::login(&proxy.c2s, "alice", "wonderland", None).await;
    let (_bob, _) = common::web::Bosh::login(&proxy.http, "bob", "builder", "").await;
    let s = sessions(&server).await;
    assert_eq!(s.len(), 2, "{s:?}");
    for session in &s {
        let address = session["address"].as_str().unwrap();
        assert!(address.starts_with("192.0.2.5:"), "{s:?}");
    }
}

/// What a client behind the proxy saw of a drain.
#[derive(Debug, Default)]
struct Drained {
    /// The ids of the messages it read.
    ids: Vec<usize>,
    /// The stream error's condition, if one came.
    error: Option<String>,
    /// Elements that came after the stream error (nothing may follow the close).
    after_error: Vec<String>,
    /// The server closed the connection after our closing tag.
    eof: bool,
    /// When the stream error came.
    error_at: Option<Instant>,
}

/// Reads like a client: everything that comes, sending a ping now and then (so that data
/// also flows towards the server while it closes), until the stream error; then answers
/// the server's close with its own and reads to the end of the connection.
async fn read_until_drained(mut c: RawClient) -> Drained {
    use heliograph::xml::StreamEvent;
    let mut out = Drained::default();
    let mut read = 0usize;
    loop {
        match c.next_event().await {
            Some(StreamEvent::Stanza(el)) if el.is("error", ns::STREAM) => {
                out.error = el
                    .children()
                    .find(|c| c.ns() == ns::STREAMS_ERRORS && c.name() != "text")
                    .map(|c| c.name().to_string());
                out.error_at = Some(Instant::now());
                break;
            }
            Some(StreamEvent::Stanza(el)) => {
                out.ids.extend(message_ids([el]));
                read += 1;
                // A client slower than the sender: what the server writes waits in the
                // proxy's and the kernels' buffers, and more in the queues.
                tokio::time::sleep(Duration::from_millis(6)).await;
                if read.is_multiple_of(25) {
                    let _ = c
                        .try_send_raw("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
                        .await;
                }
            }
            Some(StreamEvent::Open(_)) => {}
            Some(StreamEvent::Close) | None => return out,
        }
    }
    loop {
        match c.next_event().await {
            Some(StreamEvent::Stanza(el)) => out.after_error.push(el.to_string()),
            Some(StreamEvent::Open(_)) => {}
            Some(StreamEvent::Close) => break,
            None => return out,
        }
    }
    let _ = c.try_send_raw("</stream:stream>").await;
    out.eof = c.next_event().await.is_none();
    out
}

/// Issue 22, item 8: a drain behind a proxy loses nothing. Clients behind real HAProxy
/// (send-proxy-v2) have messages queued and in flight to them when the node drains; five
/// drains in a row, every client gets `system-shutdown` (and nothing after it), the
/// connection ends after the closing handshake, and every message the server accepted
/// arrives: read before the drain or stored offline and read at the next login. Before
/// the closing handshake the server shut the socket at once; the kernel reset the
/// connection and the proxy dropped the tail of what had been written.
#[tokio::test(flavor = "multi_thread")]
async fn drain_behind_haproxy_loses_nothing() {
    const CLIENTS: usize = 4;
    /// Messages per client accepted for sure before the drain (the sender syncs).
    const SYNCED: usize = 1000;
    /// Messages sent on while the drain starts, as fast as the server takes them.
    const TAIL: usize = 4000;
    let Some(haproxy) = haproxy_binary() else {
        return;
    };
    let filler = "y".repeat(4096);
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("r{i}")).collect();
    let mut accounts: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), "pw")).collect();
    accounts.push(("sender", "pw"));
    for round in 0..5 {
        // Odd rounds send the clients to another host; even ones shut down, at once.
        let (drain, condition) = if round % 2 == 1 {
            ("see_other_host = \"other.example:5222\"", "see-other-host")
        } else {
            ("grace_period = 0", "system-shutdown")
        };
        let mut server = TestServer::start_full(
            &accounts,
            &format!("[drain]\n{drain}\ndeadline = 20\n[c2s]\nmax_offline_messages = 100000\n"),
            BEHIND_PROXY,
            HTTP_BEHIND_PROXY,
        );
        let proxy = Haproxy::start(haproxy, &server, "drain").await;
        let mut jids = Vec::new();
        let mut clients = Vec::new();
        for u in &users {
            let (mut c, jid) = RawClient::login(&proxy.c2s, u, "pw", None).await;
            c.send_raw("<presence/>").await;
            common::ping_barrier(&mut c).await;
            jids.push(jid);
            clients.push(tokio::spawn(read_until_drained(c)));
        }
        let (mut sender, _) = RawClient::login(&proxy.c2s, "sender", "pw", None).await;
        // Message i goes to client i % CLIENTS.
        let message = |i: usize| {
            format!(
                "<message to='{}' type='chat' id='m{i}'><body>{filler}</body></message>",
                jids[i % CLIENTS]
            )
        };
        let synced = SYNCED * CLIENTS;
        for i in 0..synced {
            sender.send_raw(&message(i)).await;
        }
        common::ping_barrier(&mut sender).await;
        // More messages while the drain starts: whatever of them the server took must
        // arrive too.
        let tail: Vec<String> = (synced..synced + TAIL).map(message).collect();
        let sending = tokio::spawn(async move {
            for m in tail {
                if sender.try_send_raw(&m).await.is_err() {
                    break;
                }
            }
            sender
        });
        let drained_at = Instant::now();
        let (status, body) = post_admin(&server, "/api/v1/drain").await;
        assert_eq!(status, 202, "{body}");
        let mut direct = Vec::new();
        for (i, r) in clients.into_iter().enumerate() {
            let d = tokio::time::timeout(Duration::from_secs(60), r)
                .await
                .unwrap_or_else(|_| panic!("round {round}: client {i} did not finish"))
                .unwrap();
            assert_eq!(
                d.error.as_deref(),
                Some(condition),
                "round {round}: client {i} ({} messages read) got no stream error: {}",
                d.ids.len(),
                server.log_text()
            );
            assert!(
                d.after_error.is_empty(),
                "round {round}: client {i} got stanzas after the stream error: {:?}",
                d.after_error
            );
            assert!(
                d.eof,
                "round {round}: client {i}: the connection did not end"
            );
            if let Some(at) = d.error_at {
                eprintln!(
                    "round {round}: client {i}: the stream error after {:?}",
                    at - drained_at
                );
            }
            direct.push(d.ids);
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), sending).await;
        assert_eq!(
            server.wait_exit(Duration::from_secs(30)),
            Some(0),
            "round {round}: {}",
            server.log_text()
        );
        drop(proxy);

        // What was not read before the drain waits in offline storage.
        server.launch();
        let proxy = Haproxy::start(haproxy, &server, "after").await;
        let mut seen: std::collections::BTreeSet<usize> =
            direct.iter().flatten().copied().collect();
        let read_directly = seen.len();
        let mut again = Vec::new();
        for u in &users {
            let (mut c, _) = RawClient::login(&proxy.c2s, u, "pw", None).await;
            c.send_raw("<presence/>").await;
            again.push(c);
        }
        // Everything synced, and no gap below the highest id seen: the server handles
        // the sender's stanzas in order, so what it accepted is a prefix of them.
        let complete = |seen: &std::collections::BTreeSet<usize>| {
            let top = seen.last().copied().unwrap_or(0).max(synced - 1);
            (0..=top).all(|i| seen.contains(&i))
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !complete(&seen) && Instant::now() < deadline {
            for c in &mut again {
                while let Ok(el) = tokio::time::timeout(Duration::from_millis(100), c.next()).await
                {
                    seen.extend(message_ids([el]));
                }
            }
        }
        let top = seen.last().copied().unwrap_or(0).max(synced - 1);
        let missing: Vec<_> = (0..=top).filter(|i| !seen.contains(i)).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} messages lost ({read_directly} read before the drain): \
             first {:?}",
            missing.len(),
            top + 1,
            &missing[..missing.len().min(10)]
        );
        eprintln!(
            "round {round}: {} messages accepted, {read_directly} read before the drain",
            top + 1
        );
    }
}

/// The ids of the chat messages in `events`.
fn message_ids(events: impl IntoIterator<Item = Element>) -> Vec<usize> {
    events
        .into_iter()
        .filter(|e| e.is("message", ns::CLIENT))
        .filter_map(|e| {
            e.attr("id")
                .and_then(|id| id.strip_prefix("m")?.parse().ok())
        })
        .collect()
}

#[tokio::test]
async fn drain_loses_nothing_queued_for_a_client_that_stopped_reading() {
    const N: usize = 1500;
    let mut server = TestServer::start(
        &[("alice", "wonderland"), ("bob", "builder")],
        "[drain]\ngrace_period = 1\ndeadline = 3\n",
    )
    // A queue that holds every message: alice is never made to wait for bob (a sender
    // waits up to the write timeout for a full queue, and the session is closed after
    // it, which would rescue the messages before the drain instead of by it).
    .with_c2s("max_offline_messages = 10000\nsession_queue = 2048\n");
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "wonderland", None).await;
    let (mut bob, bob_jid) = RawClient::login(&server.starttls, "bob", "builder", None).await;
    bob.send_raw("<presence/>").await;
    // Bob stops reading. 1,500 messages of 8 KiB (12 MiB) fill the socket buffers, the
    // session's write blocks and the rest waits in its queue.
    let filler = "x".repeat(8192);
    for i in 0..N {
        let mut m = chat(&bob_jid, &filler);
        m.set_attr("id", format!("m{i}"));
        alice.send(&m).await;
    }
    // The server handles a stream in order: once the ping is answered, every message
    // before it was accepted.
    alice
        .send_raw("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice
        .next_matching(|e| e.is("iq", ns::CLIENT) && e.attr("id") == Some("sync"))
        .await;
    // Bob's session is still there, its messages queued: the drain is what must save them.
    assert_session_listed(
        &server.admin,
        &server.token,
        &bob_jid,
        "his session ended before the drain",
    )
    .await;

    let (status, body) = post_admin(&server, "/api/v1/drain").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        server.log_text()
    );
    // What reached bob's socket before the server went away...
    let mut got = Vec::new();
    while let Some(ev) = bob.next_event().await {
        if let heliograph::xml::StreamEvent::Stanza(el) = ev {
            got.push(el);
        }
    }
    let mut seen: std::collections::BTreeSet<usize> = message_ids(got).into_iter().collect();
    let direct = seen.len();
    assert!(
        direct < N,
        "bob's buffers took everything; the test proves nothing"
    );
    // ...and what was stored for him instead.
    server.launch();
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "builder", None).await;
    bob.send_raw("<presence/>").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < N && Instant::now() < deadline {
        let el = bob.next().await;
        seen.extend(message_ids([el]));
    }
    let missing: Vec<_> = (0..N).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} messages lost ({direct} read before the drain): first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test]
async fn metrics_cover_bosh_websocket_errors_storage_and_queues() {
    let server = TestServer::start_http(&[("alice", "wonderland"), ("bob", "builder")], "");
    let (mut ws, alice_jid) = WsClient::login(&server.http, "alice", "wonderland").await;
    let (mut bosh, _) = Bosh::login(&server.http, "bob", "builder", "wait='2' hold='1'").await;
    // A message to an account that does not exist: a routing error.
    ws.send("<message xmlns='jabber:client' to='nobody@localhost' type='chat' id='e1'><body>x</body></message>")
        .await;
    let err = ws.next_matching(|e| e.attr("id") == Some("e1")).await;
    assert_eq!(err.attr("type"), Some("error"), "{err}");
    bosh.send(&format!(
        "<message xmlns='jabber:client' to='{alice_jid}' type='chat'><body>hi</body></message>"
    ))
    .await;
    ws.next_matching(|e| e.is("message", ns::CLIENT)).await;

    let text = metrics_once(&format!("http://{}/metrics", server.admin), |s| {
        sum_matching(
            s,
            "heliograph_stanzas_in_total",
            "transport=\"bosh\",kind=\"message\"",
        ) + sum_matching(
            s,
            "heliograph_stanzas_in_total",
            "kind=\"message\",transport=\"bosh\"",
        ) >= 1.0
    })
    .await;
    let samples = parse_prometheus(&text);
    for transport in ["bosh", "websocket"] {
        let t = format!("transport=\"{transport}\"");
        for name in [
            "heliograph_logins_total",
            "heliograph_connections_total",
            "heliograph_connections",
            "heliograph_sessions",
        ] {
            assert!(
                sum_matching(&samples, name, &t) >= 1.0,
                "{name} {t}: {text}"
            );
        }
    }
    assert!(
        sum_matching(
            &samples,
            "heliograph_stanzas_in_total",
            "transport=\"bosh\",kind=\"message\""
        ) + sum_matching(
            &samples,
            "heliograph_stanzas_in_total",
            "kind=\"message\",transport=\"bosh\""
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sum_matching(
            &samples,
            "heliograph_stanza_errors_total",
            "condition=\"service-unavailable\""
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sum_matching(&samples, "heliograph_storage_seconds_count", "") >= 1.0,
        "{text}"
    );
    assert!(
        samples.contains_key("heliograph_session_queue_stanzas"),
        "{text}"
    );
    assert!(
        samples.contains_key("heliograph_session_queue_max_stanzas"),
        "{text}"
    );
    assert!(samples.contains_key("heliograph_archive_backlog"), "{text}");
}

#[tokio::test]
async fn http_listener_limits_unauthenticated_connections_and_addresses() {
    let server = TestServer::start_full(
        &[("alice", "wonderland")],
        "[limits]\nmax_unauthenticated = 2\n",
        "",
        "max_connections_per_address = 3\n",
    );
    // Two WebSockets that never log in take every unauthenticated slot.
    let mut idle = vec![
        WsClient::connect(&server.http).await,
        WsClient::connect(&server.http).await,
    ];
    idle[0].open_and_features().await;
    assert_eq!(
        ws_connect_status(&server.http, Some("xmpp"), None).await,
        503
    );
    let body = bosh_post(
        &server.http,
        "<body rid='1' to='localhost' xml:lang='en' ver='1.6' wait='5' hold='1' \
         xmlns='http://jabber.org/protocol/httpbind'/>",
    )
    .await
    .element();
    assert_eq!(
        terminate_condition(&body).as_deref(),
        Some("policy-violation"),
        "{body}"
    );
    // One of them goes away: a login works again.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if ws_connect_status(&server.http, Some("xmpp"), None).await == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // TCP connections per address: the fourth from 127.0.0.3 is closed at once, another
    // address is unaffected.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(&server.http, "127.0.0.3").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect_from(&server.http, "127.0.0.3").await;
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    let mut other = connect_from(&server.http, "127.0.0.4").await;
    other
        .write_all(b"GET /nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    other.read_to_end(&mut reply).await.unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let (_, text) = get(&format!("http://{}/metrics", server.admin)).await;
    let samples = parse_prometheus(&text);
    assert!(
        sum_matching(
            &samples,
            "heliograph_connections_refused_total",
            "address_limit"
        ) >= 1.0,
        "{text}"
    );
    drop(held);
}

#[tokio::test]
async fn bosh_login_rate_is_per_forwarded_address() {
    let server = TestServer::start_full(
        &[("alice", "wonderland")],
        "[limits]\nlogin_rate_per_address = 1\nlogin_burst_per_address = 1\n",
        "",
        "trusted_proxies = [\"127.0.0.1\"]\nmax_auth_attempts = 10\nrequire_tls = false\n",
    );
    let wrong = base64_plain("alice", "not-the-password");
    let flooder = [("x-forwarded-for", "203.0.113.5")];
    let mut b = Bosh::create_with_headers(&server.http, "wait='5' hold='1'", &flooder).await;
    for _ in 0..3 {
        b.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{wrong}</auth>"
        ))
        .await;
        let r = b.next_matching(|e| e.ns() == ns::SASL).await;
        assert!(r.is("failure", ns::SASL), "{r}");
    }
    // The flooder was slowed down...
    let delayed = || async {
        let (_, text) = get(&format!("http://{}/metrics", server.admin)).await;
        sum_matching(
            &parse_prometheus(&text),
            "heliograph_login_attempts_delayed_total",
            "",
        )
    };
    let before = delayed().await;
    assert!(before >= 1.0, "the flooding address was not slowed down");
    // ...another address logs in at once: none of its attempts waited (counted exactly,
    // not timed, so a busy machine does not matter).
    let mut other = Bosh::create_with_headers(
        &server.http,
        "wait='5' hold='1'",
        &[("x-forwarded-for", "203.0.113.6")],
    )
    .await;
    other.login_plain("alice", "wonderland").await;
    assert_eq!(
        delayed().await,
        before,
        "the other address's login was delayed"
    );
}

fn base64_plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Every listener is bound with the configured backlog (the kernel reports a listening
/// socket's backlog as its send queue in `ss`), not the runtime's default of 128.
#[test]
fn listeners_use_the_configured_listen_backlog() {
    let wanted: u32 = 1000;
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("/proc/sys/net/core/somaxconn")
        .trim()
        .parse()
        .unwrap();
    let server = TestServer::start(&[], &format!("listen_backlog = {wanted}\n"));
    for address in [
        &server.starttls,
        &server.direct,
        &server.http,
        &server.component,
        &server.admin,
    ] {
        let port = address.rsplit(':').next().unwrap();
        let out = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        // State, Recv-Q, Send-Q (the backlog), local address, peer address.
        let backlog: u32 = text
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no listener on {address}: {text:?}"))
            .parse()
            .unwrap();
        assert_eq!(backlog, wanted.min(somaxconn), "{address}: {text}");
    }
}

/// The closing handshake over WebSocket and BOSH behind HAProxy: a drain while a slow
/// WebSocket client has a backlog, and a BOSH client holding a request. The WebSocket
/// client reads everything, then the stream error, `<close/>` and the close frame, and
/// the connection ends after its own close frame; the BOSH client's held request comes
/// back as the terminate with the condition (whether the drain finds it held or on its
/// way: both must carry it). Every message accepted arrives.
#[tokio::test(flavor = "multi_thread")]
async fn drain_behind_haproxy_closes_websocket_and_bosh_with_the_handshake() {
    use common::web::WsEvent;
    const N: usize = 800;
    let Some(haproxy) = haproxy_binary() else {
        return;
    };
    let mut server = TestServer::start_full(
        &[("alice", "pw"), ("bob", "pw"), ("carol", "pw")],
        "[drain]\ngrace_period = 0\ndeadline = 30\n[c2s]\nmax_offline_messages = 100000\n",
        BEHIND_PROXY,
        &format!("{HTTP_BEHIND_PROXY}bosh_max_wait = 20\nbosh_polling = 0\n"),
    );
    let proxy = Haproxy::start(haproxy, &server, "web").await;
    let (mut alice, _) = RawClient::login(&proxy.c2s, "alice", "pw", None).await;
    let (mut bob, bob_jid) = WsClient::login(&proxy.http, "bob", "pw").await;
    bob.send("<presence xmlns='jabber:client'/>").await;
    let (mut carol, _) = Bosh::login(&proxy.http, "carol", "pw", "wait='20' hold='1'").await;
    let filler = "z".repeat(4096);
    for i in 0..N {
        alice
            .send_raw(&format!(
                "<message to='{bob_jid}' type='chat' id='m{i}'><body>{filler}</body></message>"
            ))
            .await;
    }
    common::ping_barrier(&mut alice).await;
    // Carol keeps a request out, each on a new connection through the proxy (the test's
    // HTTP client opens one per request): the one out when the drain comes, or the next,
    // comes back as the terminate.
    let held = tokio::spawn(async move {
        loop {
            let body = carol.send("").await;
            if body.attr("type") == Some("terminate") {
                return body;
            }
        }
    });
    let (status, body) = post_admin(&server, "/api/v1/drain").await;
    assert_eq!(status, 202, "{body}");

    let mut seen = std::collections::BTreeSet::new();
    let error = loop {
        match bob.event().await {
            WsEvent::Element(el) if el.is("error", ns::STREAM) => {
                break el
                    .children()
                    .find(|c| c.ns() == ns::STREAMS_ERRORS && c.name() != "text")
                    .map(|c| c.name().to_string());
            }
            WsEvent::Element(el) => {
                seen.extend(message_ids([el]));
                // Slower than the server writes: the backlog takes longer to read than
                // a fixed wait for the client's close would allow.
                tokio::time::sleep(Duration::from_millis(6)).await;
                if seen.len().is_multiple_of(25) {
                    bob.send("<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
                        .await;
                }
            }
            other => panic!("no stream error after {} messages: {other:?}", seen.len()),
        }
    };
    assert_eq!(error.as_deref(), Some("system-shutdown"));
    let close = bob.next().await;
    assert!(close.is("close", common::web::FRAMING), "{close}");
    assert!(
        matches!(bob.event().await, WsEvent::Close(_)),
        "a close frame after <close/>"
    );
    // Our close frame answers the server's; then the connection ends.
    assert!(matches!(bob.event().await, WsEvent::Eof));

    let terminate = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("carol's request came back")
        .unwrap();
    assert_eq!(terminate.attr("type"), Some("terminate"), "{terminate}");
    assert_eq!(
        terminate_condition(&terminate).as_deref(),
        Some("system-shutdown")
    );

    assert_eq!(
        server.wait_exit(Duration::from_secs(40)),
        Some(0),
        "{}",
        server.log_text()
    );
    drop(proxy);
    let direct = seen.len();
    if direct < N {
        server.launch();
        let proxy = Haproxy::start(haproxy, &server, "web-after").await;
        let (mut bob, _) = RawClient::login(&proxy.c2s, "bob", "pw", None).await;
        bob.send_raw("<presence/>").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < N && Instant::now() < deadline {
            seen.extend(message_ids([bob.next().await]));
        }
    }
    let missing: Vec<_> = (0..N).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} messages lost ({direct} read before the drain): first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// The sessions on the server, or `None` once its admin API is gone (the drain is over
/// and the process is shutting down).
async fn sessions_if_up(server: &TestServer) -> Option<usize> {
    let auth = format!("Bearer {}", server.token);
    let req = hyper::Request::get(format!("http://{}/api/v1/sessions", server.admin))
        .header("authorization", auth)
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .ok()?
        .ok()?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some(v["sessions"].as_array()?.len())
}

/// The stream error carried in a BOSH terminate.
fn carried_stream_error(body: &Element) -> Option<String> {
    body.child("error", ns::STREAM)?
        .children()
        .find(|c| c.ns() == ns::STREAMS_ERRORS && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// A drain tells every BOSH session why it ends, whether a request of it is held when
/// the drain comes (its answer) or not (the next request, even after the session left
/// the routing table): `type='terminate' condition='system-shutdown'` with the stream
/// error, never `item-not-found` or a bare terminate.
#[tokio::test(flavor = "multi_thread")]
async fn drain_terminates_bosh_sessions_with_system_shutdown_held_or_not() {
    let mut server = TestServer::start_full(
        &[("carol", "pw"), ("dave", "pw")],
        "[drain]\ngrace_period = 0\ndeadline = 30\n",
        "",
        "bosh_polling = 0\nbosh_max_wait = 60\n",
    );
    let (mut carol, _) = Bosh::login(&server.http, "carol", "pw", "wait='60' hold='1'").await;
    let (mut dave, _) = Bosh::login(&server.http, "dave", "pw", "wait='60' hold='1'").await;

    // Carol's request rid+2 is held: rid+1 is answered (empty) only once rid+2 is in,
    // as the session holds one request at most and has nothing to send.
    let (first, second) = (carol.next_rid(), carol.next_rid());
    let carol = std::sync::Arc::new(carol);
    let c = carol.clone();
    let first = tokio::spawn(async move { c.raw(first, "", "").await.element() });
    let c = carol.clone();
    let second = tokio::spawn(async move { c.raw(second, "", "").await.element() });
    let answered = first.await.unwrap();
    assert_eq!(terminate_condition(&answered), None, "{answered}");
    assert_eq!(answered.children().count(), 0, "{answered}");

    // Dave has nothing out.
    let (status, body) = post_admin(&server, "/api/v1/drain").await;
    assert_eq!(status, 202, "{body}");

    let held = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("carol's held request came back")
        .unwrap();
    assert_eq!(
        terminate_condition(&held).as_deref(),
        Some("system-shutdown"),
        "{held}"
    );
    assert_eq!(
        carried_stream_error(&held).as_deref(),
        Some("system-shutdown")
    );

    // Dave's session is closed without a request to carry the news: it leaves the
    // routing table (the drain may then finish), and his next request still gets it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sessions_if_up(&server).await.is_some_and(|n| n > 0) {
        assert!(Instant::now() < deadline, "the sessions did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next = dave.send("").await;
    assert_eq!(
        terminate_condition(&next).as_deref(),
        Some("system-shutdown"),
        "{next}"
    );
    assert_eq!(
        carried_stream_error(&next).as_deref(),
        Some("system-shutdown")
    );
    assert_eq!(
        server.wait_exit(Duration::from_secs(40)),
        Some(0),
        "{}",
        server.log_text()
    );
}

/// During a drain an existing BOSH session is served as before, on new HTTP connections
/// too (a proxy or browser opens them at will), until it ends; only new sessions (BOSH
/// session creation, WebSocket upgrades, TCP streams) are refused.
#[tokio::test(flavor = "multi_thread")]
async fn drain_serves_existing_bosh_sessions_on_new_connections() {
    let mut server = TestServer::start_full(
        &[("carol", "pw")],
        "[drain]\ngrace_period = 60\ndeadline = 90\n",
        "",
        "bosh_polling = 0\nbosh_max_wait = 2\n",
    );
    let (mut carol, _) = Bosh::login(&server.http, "carol", "pw", "wait='2' hold='1'").await;
    let (status, body) = post_admin(&server, "/api/v1/drain").await;
    assert_eq!(status, 202, "{body}");

    // Each request of the test's client goes on a new connection.
    carol
        .send("<iq xmlns='jabber:client' type='get' id='during' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let pong = carol
        .next_matching(|e| e.attr("id") == Some("during"))
        .await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong}");

    let created = bosh_post(
        &server.http,
        &format!(
            "<body rid='1000' to='localhost' xml:lang='en' ver='1.6' xmpp:version='1.0' wait='2' \
             hold='1' xmlns='{}' xmlns:xmpp='urn:xmpp:xbosh'/>",
            common::web::HTTPBIND
        ),
    )
    .await;
    let created = created.element();
    assert_eq!(
        terminate_condition(&created).as_deref(),
        Some("system-shutdown"),
        "{created}"
    );
    assert_eq!(
        ws_connect_status(&server.http, Some("xmpp"), None).await,
        503
    );
    assert!(refused(&server.starttls, "127.0.0.1").await);

    // Carol leaves; with no session left the drain ends.
    let bye = carol.send_with("type='terminate'", "").await;
    assert_eq!(bye.attr("type"), Some("terminate"), "{bye}");
    assert_eq!(
        server.wait_exit(Duration::from_secs(40)),
        Some(0),
        "{}",
        server.log_text()
    );
}
