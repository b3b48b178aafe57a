//! Per-call cost of an authenticator plugin, Rust (`plugins/allowlist`) against its
//! Python twin (`plugins/python/allowlist`, componentize-py) and its JavaScript twin
//! (`plugins/js/allowlist`, componentize-js), each with a fresh instance per call
//! (`reuse = "never"`) and with instance reuse (`calls:1000`, what `auto` gives the
//! interpreters): criterion benchmarks of a whole call (an instance from the pooling
//! allocator or the idle set, the call, the result check) and of instantiation alone,
//! then p50/p99 of single calls, the async path, throughput with two callers, memory per
//! instance, compile time and component size.
//!
//!     cargo bench -p heliograph --bench plugin_call
//!     COMPONENTIZE_PY=~/.cache/heliograph/venv-*/bin/componentize-py cargo bench -p heliograph --bench plugin_call
//!
//! Builds plugins/ for wasm32-wasip2 first (into `<target>/plugins`), the Python plugins
//! with `plugins/python/build.sh` when a componentize-py is at hand (the
//! `COMPONENTIZE_PY` variable, or one on the PATH), and the JavaScript ones with
//! `plugins/js/build.sh` when npm is; without them those rows are skipped, saying so.
//! `PLUGIN_BENCH=python,js` keeps only those languages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use heliograph::plugins::{
    AuthRequest, Mechanism, PluginConfig, PluginHost, PluginSettings, ReusePolicy, Transport, World,
};
use heliograph::storage::Storage;
use sha2::{Digest, Sha256};

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn build_rust_plugins() -> PathBuf {
    let target = target_dir().join("plugins");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(repo().join("plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo");
    assert!(status.success(), "building plugins failed");
    target.join("wasm32-wasip2/release")
}

/// The Python plugins' directory, built now if a componentize-py is at hand.
fn build_python_plugins() -> Option<PathBuf> {
    let out = target_dir().join("plugins/python");
    let tool = std::env::var_os("COMPONENTIZE_PY").or_else(|| {
        Command::new("componentize-py")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| "componentize-py".into())
    });
    if let Some(tool) = tool {
        let status = Command::new(repo().join("plugins/python/build.sh"))
            .arg(&out)
            .env("COMPONENTIZE_PY", tool)
            .status()
            .expect("plugins/python/build.sh");
        assert!(status.success(), "building the Python plugins failed");
    }
    out.join("allowlist_py.wasm").is_file().then_some(out)
}

/// The JavaScript plugins' directory, built now if npm is at hand.
fn build_js_plugins() -> Option<PathBuf> {
    let out = target_dir().join("plugins/js");
    let npm = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if npm {
        let status = Command::new(repo().join("plugins/js/build.sh"))
            .arg(&out)
            .status()
            .expect("plugins/js/build.sh");
        assert!(status.success(), "building the JavaScript plugins failed");
    }
    out.join("allowlist_js.wasm").is_file().then_some(out)
}

/// One plugin under test: its host (with the plugin installed as bench/auth), its size and
/// how long compiling it took.
struct Subject {
    name: String,
    /// Instances serve up to 1000 calls (otherwise a fresh one per call).
    reuse: bool,
    host: PluginHost,
    size: usize,
    compile: Duration,
    _dir: tempfile::TempDir,
}

fn subject(lang: &str, wasm: Vec<u8>, reuse: bool) -> Subject {
    let settings = PluginSettings {
        reuse: if reuse {
            ReusePolicy::Calls(1000)
        } else {
            ReusePolicy::Never
        },
        ..PluginSettings::default()
    };
    let name = if reuse {
        format!("{lang}+reuse")
    } else {
        lang.to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open_sled(&dir.path().join("db")).unwrap();
    // A fresh cache: the install below compiles, and that is measured.
    let host =
        PluginHost::new(settings, storage.plugins.clone(), dir.path().join("cache")).unwrap();
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
    let size = wasm.len();
    let rt = runtime();
    let start = Instant::now();
    rt.block_on(host.install("bench", "auth", World::Authenticator, wasm, config))
        .unwrap();
    let compile = start.elapsed();
    Subject {
        name,
        reuse,
        host,
        size,
        compile,
        _dir: dir,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn request() -> AuthRequest {
    AuthRequest {
        domain: "example.com".into(),
        mechanism: Mechanism::Password,
        username: "alice".into(),
        credential: "wonderland".into(),
        client_address: Some("192.0.2.1".into()),
        transport: Transport::Tcp,
        tls: true,
    }
}

fn call(host: &PluginHost, request: &AuthRequest) {
    let out = host
        .authenticate_blocking("bench", "auth", request)
        .unwrap();
    assert!(out.result.is_ok(), "{out:?}");
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{what:<52} n={:<6} p50={:>8.1}µs p99={:>8.1}µs max={:>9.1}µs",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6
    );
}

/// Criterion: a whole call, and instantiation alone.
fn criterion_benches(c: &mut Criterion, subjects: &[Subject]) {
    let request = request();
    let mut group = c.benchmark_group("authenticate");
    for s in subjects {
        group.bench_function(&s.name, |b| b.iter(|| call(&s.host, &request)));
    }
    group.finish();
    let mut group = c.benchmark_group("instantiate");
    for s in subjects.iter().filter(|s| !s.reuse) {
        group.bench_function(&s.name, |b| {
            b.iter(|| s.host.probe_instance("bench", "auth").unwrap())
        });
    }
    group.finish();
}

/// Percentiles, the async path, throughput, memory, compile time, size.
fn figures(s: &Subject, calls: usize) {
    let request = request();
    let host = &s.host;
    for _ in 0..calls / 20 {
        call(host, &request);
    }
    let samples: Vec<Duration> = (0..calls)
        .map(|_| {
            let t = Instant::now();
            call(host, &request);
            t.elapsed()
        })
        .collect();
    report(
        &format!("{}: authenticate_blocking (instance + call)", s.name),
        samples,
    );
    if !s.reuse {
        let samples: Vec<Duration> = (0..calls)
            .map(|_| host.probe_instance("bench", "auth").unwrap().instantiation)
            .collect();
        report(&format!("{}: instantiation alone", s.name), samples);
    }

    let rt = runtime();
    let samples: Vec<Duration> = rt.block_on(async {
        let mut samples = Vec::with_capacity(calls / 4);
        for _ in 0..calls / 4 {
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
    report(
        &format!("{}: authenticate (async: permit + spawn_blocking)", s.name),
        samples,
    );

    let shared = Arc::new(host.clone());
    let start = Instant::now();
    let per_thread = calls / 2;
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let host = shared.clone();
            let request = &request;
            scope.spawn(move || (0..per_thread).for_each(|_| call(&host, request)));
        }
    });
    let elapsed = start.elapsed();
    let probe = host.probe_instance("bench", "auth").unwrap();
    let stats = host.stats("bench", "auth").unwrap();
    println!(
        "{}: throughput with 2 threads {:.0} calls/s; component {:.1} MiB, compiled in {:.2} s; \
         an instance has {:.1} MiB of linear memory ({:.1} MiB at most after a call); \
         {} of {} calls on a reused instance",
        s.name,
        (per_thread * 2) as f64 / elapsed.as_secs_f64(),
        s.size as f64 / (1 << 20) as f64,
        s.compile.as_secs_f64(),
        probe.memory_bytes as f64 / (1 << 20) as f64,
        stats.memory_max_bytes as f64 / (1 << 20) as f64,
        stats.reused_instance_calls,
        stats.calls,
    );
}

fn main() {
    let only = std::env::var("PLUGIN_BENCH").ok();
    let wanted = |lang: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|l| l == lang))
    };
    let mut subjects = Vec::new();
    if wanted("rust") {
        let wasm = std::fs::read(build_rust_plugins().join("allowlist.wasm")).unwrap();
        subjects.push(subject("rust", wasm.clone(), false));
        subjects.push(subject("rust", wasm, true));
    }
    if wanted("python") {
        match build_python_plugins() {
            Some(dir) => {
                let wasm = std::fs::read(dir.join("allowlist_py.wasm")).unwrap();
                subjects.push(subject("python", wasm.clone(), false));
                subjects.push(subject("python", wasm, true));
            }
            None => println!(
                "SKIPPING the Python rows: no componentize-py (set COMPONENTIZE_PY, or run tests/run.sh once)"
            ),
        }
    }
    if wanted("js") {
        match build_js_plugins() {
            Some(dir) => {
                let wasm = std::fs::read(dir.join("allowlist_js.wasm")).unwrap();
                subjects.push(subject("js", wasm.clone(), false));
                subjects.push(subject("js", wasm, true));
            }
            None => println!("SKIPPING the JavaScript rows: no npm to build them with"),
        }
    }
    let Some(first) = subjects.first() else {
        println!("nothing to measure");
        return;
    };
    println!("pooling allocator: {}", first.host.uses_pooling_allocator());

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_benches(&mut c, &subjects);
    c.final_summary();

    for s in &subjects {
        figures(
            s,
            if s.name.starts_with("rust") {
                20_000
            } else {
                2_000
            },
        );
    }
}
