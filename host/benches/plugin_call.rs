//! Per-call cost of an authenticator plugin, instantiation included: a fresh store and
//! instance from the pre-instantiated component, the call, the result check.
//!
//!     cargo bench -p heliograph --bench plugin_call
//!
//! Builds plugins/ for wasm32-wasip2 first (into `<target>/plugins`). Prints p50/p99/max
//! of single calls on the calling thread (`authenticate_blocking`) and through the async
//! API (`authenticate`: semaphore + spawn_blocking), plus throughput with 2 callers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heliograph::plugins::{
    AuthRequest, Mechanism, PluginConfig, PluginHost, PluginSettings, Transport, World,
};
use heliograph::storage::Storage;
use sha2::{Digest, Sha256};

const CALLS: usize = 20_000;

fn build_plugins() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().join("plugins");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/Cargo.toml");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo");
    assert!(status.success(), "building plugins failed");
    target.join("wasm32-wasip2/release")
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{what:<44} n={:<6} p50={:>7.1}µs p99={:>7.1}µs max={:>8.1}µs",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6
    );
}

fn main() {
    let dir = build_plugins();
    let wasm = std::fs::read(dir.join("allowlist.wasm")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let storage = Storage::open_sled(&tmp.path().join("db")).unwrap();
    let host = PluginHost::new(
        PluginSettings::default(),
        storage.plugins.clone(),
        tmp.path().join("cache"),
    )
    .unwrap();
    println!("pooling allocator: {}", host.uses_pooling_allocator());
    let hex: String = Sha256::new()
        .chain_update(b"salt")
        .chain_update(b"wonderland")
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = PluginConfig::from_json(&format!(
        r#"{{"users": {{"alice": "sha256$salt${hex}"}}, "roles": {{"alice": "member"}}}}"#
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(host.install("bench", "auth", World::Authenticator, wasm, config))
        .unwrap();
    let request = AuthRequest {
        domain: "example.com".into(),
        mechanism: Mechanism::Password,
        username: "alice".into(),
        credential: "wonderland".into(),
        client_address: Some("192.0.2.1".into()),
        transport: Transport::Tcp,
        tls: true,
    };
    let call = |host: &PluginHost| {
        let out = host
            .authenticate_blocking("bench", "auth", &request)
            .unwrap();
        assert!(out.result.is_ok());
    };
    for _ in 0..1000 {
        call(&host);
    }

    let samples: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let t = Instant::now();
            call(&host);
            t.elapsed()
        })
        .collect();
    report("authenticate_blocking (instantiate + call)", samples);

    let samples: Vec<Duration> = rt.block_on(async {
        let mut samples = Vec::with_capacity(CALLS / 4);
        for _ in 0..CALLS / 4 {
            let t = Instant::now();
            let out = host
                .authenticate("bench", "auth", request.clone())
                .await
                .unwrap();
            assert!(out.result.is_ok());
            samples.push(t.elapsed());
        }
        samples
    });
    report("authenticate (async: permit + spawn_blocking)", samples);

    let host = Arc::new(host);
    let start = Instant::now();
    let per_thread = CALLS / 2;
    std::thread::scope(|s| {
        for _ in 0..2 {
            let host = host.clone();
            let call = &call;
            s.spawn(move || (0..per_thread).for_each(|_| call(&host)));
        }
    });
    let elapsed = start.elapsed();
    println!(
        "throughput, 2 threads: {:.0} calls/s",
        (per_thread * 2) as f64 / elapsed.as_secs_f64()
    );
    let stats = host.stats("bench", "auth").unwrap();
    println!(
        "host stats: calls={} p50={:.0}µs p99={:.0}µs (histogram upper bounds)",
        stats.calls, stats.p50_us, stats.p99_us
    );
}
