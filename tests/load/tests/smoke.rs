//! Short end-to-end runs: a tiny connect and chat (with the relay, and over BOSH and
//! WebSocket) against a server
//! started from the `heliograph` binary, checking that every login succeeds and no message
//! is lost; a chat whose every message the stopped server's archive holds; and a tiny `cluster` run (two nodes, nats-server and PostgreSQL, skipped
//! without the last two unless `HELIOGRAPH_REQUIRE_*` says they must be there). Full
//! benchmarks are run by hand (see tests/load/README.md), never here.

use std::path::PathBuf;
use std::process::Command;

/// The server binary: `HELIOGRAPH_BIN`, else the one cargo built next to this package's
/// binaries (`cargo test --workspace` builds it for the host crate's integration tests).
fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HELIOGRAPH_BIN") {
        return p.into();
    }
    let load = PathBuf::from(env!("CARGO_BIN_EXE_heliograph-load"));
    let p = load.with_file_name("heliograph");
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p heliograph` or set HELIOGRAPH_BIN",
        p.display()
    );
    p
}

/// Runs the load generator against a server it starts itself.
fn run(args: &[&str]) -> String {
    let server = server_bin();
    let mut all = args.to_vec();
    all.extend(["--server-bin", server.to_str().unwrap()]);
    run_load(&all)
}

/// Runs the load generator with `args`, checking that it succeeds; its output.
fn run_load(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_heliograph-load"))
        .args(args)
        // Correctness only: cheap key derivation keeps the debug build quick.
        .args(["--scram-iterations", "256"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn measurements(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn tiny_connect_and_chat_lose_nothing() {
    let out = run(&[
        "connect",
        "-n",
        "10",
        "--transport",
        "starttls",
        "--mech",
        "scram-sha-256",
    ]);
    let m = measurements(&out);
    assert_eq!(m[0]["ok"], 10, "{out}");
    assert_eq!(m[0]["failed"], 0, "{out}");

    // FAST: tokens requested with SASL2 PLAIN, then one-round-trip logins with them.
    let out = run(&[
        "connect",
        "-n",
        "10",
        "--transport",
        "tls",
        "--mech",
        "fast",
    ]);
    let m = measurements(&out);
    assert_eq!(m[0]["mech"], "FAST", "{out}");
    assert_eq!(m[0]["ok"], 10, "{out}");
    assert_eq!(m[0]["failed"], 0, "{out}");

    let out = run(&[
        "chat",
        "-p",
        "2",
        "-t",
        "1",
        "--warmup",
        "0.2",
        "--against-relay",
    ]);
    let m = measurements(&out);
    let server = m.iter().find(|v| v["against"] == "server").unwrap();
    let relay = m.iter().find(|v| v["against"] == "relay").unwrap();
    for v in [server, relay] {
        assert_eq!(v["lost"], 0, "{out}");
        assert_eq!(v["out_of_order"], 0, "{out}");
        assert!(v["delivered"].as_u64().unwrap() > 0, "{out}");
    }
    assert!(m.iter().any(|v| v["measurement"] == "relay_ratio"), "{out}");
}

#[test]
fn bosh_and_websocket_log_in_and_chat_without_loss() {
    for (transport, mech) in [("bosh", "plain"), ("websocket", "scram-sha-256")] {
        let out = run(&[
            "connect",
            "-n",
            "4",
            "--transport",
            transport,
            "--mech",
            mech,
        ]);
        let m = measurements(&out);
        assert_eq!(m[0]["ok"], 4, "{out}");
        assert_eq!(m[0]["failed"], 0, "{out}");
        assert_eq!(m[0]["transport"], transport, "{out}");

        let out = run(&[
            "chat",
            "-p",
            "2",
            "-t",
            "1",
            "--warmup",
            "0.2",
            "--transport",
            transport,
        ]);
        let m = measurements(&out);
        let v = m.iter().find(|v| v["against"] == "server").unwrap();
        assert_eq!(v["lost"], 0, "{out}");
        assert_eq!(v["out_of_order"], 0, "{out}");
        assert_eq!(v["errors"], 0, "{out}");
        assert!(v["delivered"].as_u64().unwrap() > 0, "{out}");
    }
}

/// MUC mode: rooms are created (instant rooms), every occupant joins, and every groupchat
/// message reaches every occupant of its room, in order per sender.
#[test]
fn tiny_muc_broadcast_loses_nothing() {
    let out = run(&[
        "muc",
        "--rooms",
        "3",
        "--occupants",
        "4",
        "--senders",
        "2",
        "--rate",
        "60",
        "-t",
        "1",
        "--warmup",
        "0.3",
    ]);
    let m = measurements(&out);
    let v = m.iter().find(|v| v["measurement"] == "muc").unwrap();
    assert_eq!(v["joins"], 12, "{out}");
    assert!(v["joins_per_s"].as_f64().unwrap() > 0.0, "{out}");
    assert_eq!(v["lost"], 0, "{out}");
    assert_eq!(v["out_of_order"], 0, "{out}");
    assert_eq!(v["errors"], 0, "{out}");
    let sent = v["messages_sent"].as_u64().unwrap();
    assert!(sent > 0, "{out}");
    // Fan-out: each message reaches all 4 occupants (the sender's reflection included).
    assert_eq!(v["delivered"].as_u64().unwrap(), sent * 4, "{out}");
    assert!(v["deliveries_per_s"].as_f64().unwrap() > 0.0, "{out}");
}

#[test]
fn tiny_offline_scenario_stores_and_pops_every_message() {
    let out = run(&["offline", "-p", "3", "-m", "5", "--window", "2"]);
    let m = measurements(&out);
    let v = m.iter().find(|v| v["measurement"] == "offline").unwrap();
    assert_eq!(v["sent"], 30, "{out}");
    assert_eq!(v["errors"], 0, "{out}");
    assert_eq!(v["popped"], 15, "{out}");
    assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{out}");
    assert!(v["pop_p99_ms"].as_f64().unwrap() > 0.0, "{out}");
}

/// A short soak: chat with stream management, cuts every few seconds (resumed, or a fresh
/// login after the server's 3 s resume timeout), MUC, BOSH and login loops for 15 s, then
/// the drain, which waits until every acknowledged message arrived (or its deadline).
#[test]
fn short_soak_loses_no_acknowledged_message() {
    let out = run(&[
        "soak",
        "-t",
        "15",
        "--resume-timeout",
        "3",
        "--cut-min",
        "2",
        "--cut-max",
        "5",
        "--fresh-share",
        "0.3",
        "--pairs",
        "3",
        "--rooms",
        "1",
        "--occupants",
        "3",
        "--bosh-pairs",
        "1",
        "--login-loops",
        "1",
        "--message-interval",
        "0.3",
        "--rss-interval",
        "1",
        "--drain",
        "60",
    ]);
    let m = measurements(&out);
    let v = m.iter().find(|v| v["measurement"] == "soak").unwrap();
    assert_eq!(v["passed"], true, "{out}");
    assert_eq!(v["lost"], 0, "{out}");
    assert_eq!(v["server_panics"], 0, "{out}");
    assert_eq!(v["server_died"], false, "{out}");
    assert_eq!(v["unknown_received"], 0, "{out}");
    let chat = &v["chat"];
    assert!(chat["acked"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(chat["lost"], 0, "{out}");
    assert!(v["cuts"].as_u64().unwrap() > 0, "{out}");
    assert!(v["resumes"].as_u64().unwrap() > 0, "{out}");
    assert!(v["logins"].as_u64().unwrap() > 0, "{out}");
    assert!(v["muc_sent"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(v["muc_echo_missing"], 0, "{out}");
    assert!(v["bosh"]["acked"].as_u64().unwrap() > 0, "{out}");
    assert!(!v["rss"]["samples"].as_array().unwrap().is_empty(), "{out}");
}

/// A server of its own for a test, with one tenant (`t.test`) and the archive on, every
/// listener on an ephemeral loopback port; stopped with SIGTERM when dropped if the test
/// did not stop it.
struct OwnServer {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl OwnServer {
    fn start() -> OwnServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(
            dir.path().join("heliograph.toml"),
            format!(
                r#"[general]
hosts = ["localhost"]
data_dir = "{}"
log_level = "warn"

[[listen.c2s]]
address = "127.0.0.1:0"
require_tls = false
allow_plain_without_tls = true

[[listen.c2s]]
address = "127.0.0.1:0"
tls = "direct"

[[listen.http]]
address = "127.0.0.1:0"

[[listen.component]]
address = "127.0.0.1:0"

[listen.admin]
address = "127.0.0.1:0"

[tenants.t]
domains = ["t.test"]
"#,
                data.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(server_bin())
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("heliograph.toml"))
            .arg("--ready-file")
            .arg(dir.path().join("ready.json"))
            .stderr(log)
            .spawn()
            .unwrap();
        let server = OwnServer { dir, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !server.ready_file().exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not start: {}",
                server.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }

    fn ready_file(&self) -> PathBuf {
        self.dir.path().join("ready.json")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGTERM, then waits for the server to exit; returns whether it exited cleanly.
    fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A chat as fast as its clients go, with the archive on: once the server has stopped,
/// its archive holds both copies (the sender's and the recipient's) of every message
/// sent. (Against this debug build the archive's writer keeps up with the chat, so the
/// bound on its queue and the shutdown's wait for it are not reached here: the core's and
/// the archive's unit tests check those, and `tests/load/mam_bench.sh` makes the same
/// count after each run against a release build, whose chat outruns the writer.)
#[test]
fn a_chat_is_archived_whole_across_a_stop() {
    let mut server = OwnServer::start();
    let ready = server.ready_file();
    let out = run_load(&[
        "chat",
        "--ready-file",
        ready.to_str().unwrap(),
        "--domain",
        "t.test",
        "--transport",
        "plain",
        "-p",
        "20",
        "-t",
        "3",
        "--warmup",
        "0.2",
    ]);
    let m = measurements(&out);
    let chat = m.iter().find(|v| v["against"] == "server").unwrap();
    assert_eq!(chat["lost"], 0, "{out}");
    let sent = chat["sent"].as_i64().unwrap();
    assert!(sent > 0, "{out}");
    assert!(
        server.stop(),
        "the server did not exit cleanly: {}",
        server.log()
    );
    let archive = server.dir.path().join("data/db/archive.sqlite3");
    let copies: i64 = rusqlite::Connection::open(archive)
        .unwrap()
        .query_row("SELECT count(*) FROM archive_messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(copies, 2 * sent, "{out}\n{}", server.log());
}

/// What the `cluster` scenario needs from outside, or `None` (skip) when it is missing and
/// the run does not require it: the PostgreSQL server of `HELIOGRAPH_TEST_POSTGRES_URL`
/// and the nats-server of `HELIOGRAPH_NATS_SERVER` (or on the PATH).
fn cluster_needs() -> Option<(String, Option<String>)> {
    let required = |var: &str| std::env::var(var).as_deref() == Ok("1");
    let postgres = std::env::var("HELIOGRAPH_TEST_POSTGRES_URL").ok();
    let nats = std::env::var("HELIOGRAPH_NATS_SERVER").ok();
    let nats_on_path = Command::new("sh")
        .args(["-c", "command -v nats-server"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        postgres.is_some() || !required("HELIOGRAPH_REQUIRE_POSTGRES"),
        "HELIOGRAPH_REQUIRE_POSTGRES=1 but HELIOGRAPH_TEST_POSTGRES_URL is not set"
    );
    assert!(
        nats.is_some() || nats_on_path || !required("HELIOGRAPH_REQUIRE_NATS"),
        "HELIOGRAPH_REQUIRE_NATS=1 but no nats-server (set HELIOGRAPH_NATS_SERVER)"
    );
    if postgres.is_none() || (nats.is_none() && !nats_on_path) {
        eprintln!("skipped: needs HELIOGRAPH_TEST_POSTGRES_URL and a nats-server");
        return None;
    }
    Some((postgres?, nats))
}

/// Two nodes, 2 pairs for 2 s: each kind delivers, nothing is lost or reordered, the
/// second node works for the cross-node chat (more than for the same-node one, whose
/// sessions are all on the first), and the ratio is reported.
#[test]
fn tiny_cluster_run_chats_on_one_node_and_across_without_loss() {
    let Some((postgres, nats)) = cluster_needs() else {
        return;
    };
    let mut args = vec![
        "cluster",
        "--postgres-url",
        &postgres,
        "-p",
        "2",
        "-t",
        "2",
        "--warmup",
        "0.3",
        "-r",
        "1",
    ];
    if let Some(nats) = &nats {
        args.extend(["--nats-server", nats]);
    }
    let out = run(&args);
    let m = measurements(&out);
    let chats: Vec<_> = m
        .iter()
        .filter(|v| v["measurement"] == "cluster_chat")
        .collect();
    assert_eq!(chats.len(), 2, "{out}");
    for v in &chats {
        assert!(v["delivered"].as_u64().unwrap() > 0, "{out}");
        assert_eq!(v["lost"], 0, "{out}");
        assert_eq!(v["out_of_order"], 0, "{out}");
        assert_eq!(v["errors"], 0, "{out}");
        assert!(v["p99_ms"].as_f64().unwrap() > 0.0, "{out}");
    }
    let n2_cpu = |k: &str| {
        let v = chats.iter().find(|v| v["kind"] == k).unwrap();
        v["n2_cpu_us_per_msg"].as_f64().unwrap()
    };
    // n2 holds the partners of the cross-node chat only.
    assert!(n2_cpu("cross-node") > n2_cpu("same-node"), "{out}");
    let summary = m.iter().find(|v| v["measurement"] == "cluster").unwrap();
    assert!(summary["cpu_ratio"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out.contains("cross/same CPU per message"), "{out}");
}
