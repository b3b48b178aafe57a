//! The registry at scale, over a real nats-server: a node holding 1,000,000 sessions
//! (synthetic records: no million sockets) and a node joining; how long until the
//! joining node's router holds all of them. A benchmark, not run by default:
//!
//! ```sh
//! HELIOGRAPH_NATS_SERVER=... cargo test -p heliograph-cluster --release --test registry_sync -- --ignored --nocapture
//! ```
//!
//! `HELIOGRAPH_SYNC_SESSIONS` changes the count.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heliograph_cluster::Cluster;
use heliograph_cluster::wire::SessionRecord;
use heliograph_config::{ClusterSettings, Config};
use heliograph_core::Core;
use heliograph_core::hooks::HooksBuilder;

fn nats(dir: &Path, cmd: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/nats.sh");
    let out = Command::new(script)
        .args([cmd, &dir.to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Stops the test's nats-server however the test ends.
struct StopNats<'a>(&'a Path);

impl Drop for StopNats<'_> {
    fn drop(&mut self) {
        nats(self.0, "stop");
    }
}

fn core(dir: &Path) -> Arc<Core> {
    let storage = heliograph_storage::Storage::open_sled(&dir.join("db")).unwrap();
    let tenants = heliograph_tenants::Registry::default();
    Arc::new(Core::new(
        Config::default(),
        storage,
        tenants,
        HooksBuilder::new().build(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored"]
async fn a_joining_node_syncs_a_million_sessions() {
    let count: u64 = std::env::var("HELIOGRAPH_SYNC_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let url = nats(dir.path(), "start");
    let _stop = StopNats(dir.path());
    let settings = |node: &str| ClusterSettings {
        nats: vec![url.clone()],
        node: node.into(),
        heartbeat_ms: 250,
        dead_after_ms: 3000,
        public_address: String::new(),
        handoff_timeout_ms: 5000,
    };
    let a_dir = tempfile::tempdir().unwrap();
    let a = Cluster::start(core(a_dir.path()), &settings("big"))
        .await
        .unwrap();
    a.local().preload((0..count).map(|i| SessionRecord {
        jid: format!("user{i}@example.com/phone"),
        id: i + 1,
        since_us: 1_700_000_000_000_000 + i,
        priority: 0,
        presence: None,
        flags: Vec::new(),
    }));

    let b_dir = tempfile::tempdir().unwrap();
    let b_core = core(b_dir.path());
    let rss_before = rss_kib();
    let started = Instant::now();
    let b = Cluster::start(b_core.clone(), &settings("joining"))
        .await
        .unwrap();
    // Polled through the status (per node counts), not by walking the router: a walk of a
    // million entries every few milliseconds would slow the sync it measures.
    let deadline = started + Duration::from_secs(300);
    loop {
        let status = b.status();
        let big = status.nodes.iter().find(|n| n.node == "big");
        if big.is_some_and(|n| n.synced && n.replicated == count) {
            break;
        }
        assert!(Instant::now() < deadline, "never synced: {big:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    assert_eq!(b_core.router.remote_session_count(), count as usize);
    let rss_after = rss_kib();
    println!(
        "joining node synced {count} sessions in {:.2} s; process RSS grew by {} MiB ({} bytes per entry, both nodes' copies in one process)",
        took.as_secs_f64(),
        (rss_after - rss_before) / 1024,
        (rss_after - rss_before) * 1024 / count as i64
    );
}

/// Resident set size of this process in KiB.
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
