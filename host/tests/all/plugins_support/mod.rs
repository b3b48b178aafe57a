//! Shared by the plugin tests: builds the first-party plugins for wasm32-wasip2 (once per
//! test binary, in `<target>/plugins`, the directory tests/run.sh uses too) and makes
//! hosts on temporary storage.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use heliograph::plugins::{
    AuthRequest, Mechanism, PluginConfig, PluginHost, PluginSettings, Transport, World,
};
use heliograph::storage::{PluginStore, Storage};

/// The cargo target directory this test binary was built in.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/debug/deps/plugins-HASH
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Directory of the built `.wasm` files, or `None` (with a message) when the wasm32-wasip2
/// target is not installed. In CI (`CI` set) a missing target is a failure, not a skip.
pub fn wasm_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == "wasm32-wasip2")
            })
            .unwrap_or(false);
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "the wasm32-wasip2 target is missing in CI (tests/run.sh installs it)"
            );
            eprintln!(
                "SKIPPING plugin tests: the wasm32-wasip2 target is not installed \
                 (rustup target add wasm32-wasip2, or run tests/run.sh)"
            );
            return None;
        }
        let target = target_dir().join("plugins");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(repo_root().join("plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("running cargo to build the plugins");
        assert!(status.success(), "building the plugins failed");
        Some(target.join("wasm32-wasip2/release"))
    })
    .clone()
}

/// Directory of the Python plugins (`plugins/python`, built with componentize-py into
/// `<target>/plugins/python` by `plugins/python/build.sh`, which tests/run.sh runs with
/// its pinned componentize-py), or `None` (with a message) when they are not built and
/// no componentize-py is at hand. With `COMPONENTIZE_PY` set, or `componentize-py` on
/// the PATH, the script is run first (a no-op when nothing changed). In CI a missing
/// Python plugin is a failure, not a skip.
pub fn python_wasm_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
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
            let status = Command::new(repo_root().join("plugins/python/build.sh"))
                .arg(&out)
                .env("COMPONENTIZE_PY", tool)
                .status()
                .expect("running plugins/python/build.sh");
            assert!(status.success(), "building the Python plugins failed");
        }
        let built = ["allowlist_py", "meeting_policy_py"]
            .iter()
            .all(|n| out.join(format!("{n}.wasm")).is_file());
        if !built {
            assert!(
                std::env::var_os("CI").is_none(),
                "the Python plugins are not built in CI (tests/run.sh builds them with componentize-py)"
            );
            eprintln!(
                "SKIPPING Python plugin tests: {} has no built Python plugins and no \
                 componentize-py was found (run tests/run.sh, or set COMPONENTIZE_PY)",
                out.display()
            );
            return None;
        }
        warm_shared_cache(&out, "py");
        Some(out)
    })
    .clone()
}

/// Directory of the JavaScript plugins (`plugins/js`, built with the pinned
/// componentize-js into `<target>/plugins/js` by `plugins/js/build.sh`, which installs it
/// with npm into a cache outside the clone), or `None` (with a message) when they are not
/// built and npm is not at hand. With npm on the PATH the script is run first (a no-op
/// when nothing changed). In CI a missing JavaScript plugin is a failure, not a skip.
pub fn js_wasm_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = target_dir().join("plugins/js");
        let npm = Command::new("npm")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if npm && std::env::var_os("HELIOGRAPH_SKIP_JS_BUILD").is_none() {
            let status = Command::new(repo_root().join("plugins/js/build.sh"))
                .arg(&out)
                .status()
                .expect("running plugins/js/build.sh");
            assert!(status.success(), "building the JavaScript plugins failed");
        }
        let built = ["allowlist_js", "meeting_policy_js"]
            .iter()
            .all(|n| out.join(format!("{n}.wasm")).is_file());
        if !built {
            assert!(
                std::env::var_os("CI").is_none(),
                "the JavaScript plugins are not built in CI (tests/run.sh builds them with componentize-js)"
            );
            eprintln!(
                "SKIPPING JavaScript plugin tests: {} has no built JavaScript plugins and \
                 npm was not found (run tests/run.sh, or plugins/js/build.sh)",
                out.display()
            );
            return None;
        }
        warm_shared_cache(&out, "js");
        Some(out)
    })
    .clone()
}

/// Returns early from a test when the JavaScript plugins are not built here (see
/// [`js_wasm_dir`]).
#[macro_export]
macro_rules! js_or_skip {
    () => {
        match plugins_support::js_wasm_dir() {
            Some(dir) => dir,
            None => return,
        }
    };
}

/// The bytes of a built plugin (`allowlist`, `hostile`, `wrong_version`, `wrong_world`).
pub fn wasm(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Returns early from a test when the Python plugins are not built here (see
/// [`python_wasm_dir`]).
#[macro_export]
macro_rules! python_or_skip {
    () => {
        match plugins_support::python_wasm_dir() {
            Some(dir) => dir,
            None => return,
        }
    };
}

/// The bytes of a first-party plugin by name: `NAME_py` from the Python plugins, `NAME_js`
/// from the JavaScript ones, any other from the Rust ones (they must be built: see
/// [`wasm_dir`], [`python_wasm_dir`], [`js_wasm_dir`]).
pub fn plugin_wasm(name: &str) -> Vec<u8> {
    let dir = if name.ends_with("_py") {
        python_wasm_dir()
    } else if name.ends_with("_js") {
        js_wasm_dir()
    } else {
        wasm_dir()
    };
    wasm(&dir.expect("the plugin is built"), name)
}

/// Returns early from a test when the plugins cannot be built here.
#[macro_export]
macro_rules! wasm_or_skip {
    () => {
        match plugins_support::wasm_dir() {
            Some(dir) => dir,
            None => return,
        }
    };
}

pub fn settings() -> PluginSettings {
    PluginSettings {
        max_concurrent_calls: 16,
        ..PluginSettings::default()
    }
}

/// A host on a fresh sled database and cache dir (kept alive by the returned TempDir).
pub struct TestHost {
    pub host: PluginHost,
    pub store: Arc<dyn PluginStore>,
    pub dir: tempfile::TempDir,
}

pub fn host() -> TestHost {
    host_with(settings())
}

pub fn host_with(settings: PluginSettings) -> TestHost {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open_sled(&dir.path().join("db")).unwrap();
    let store = storage.plugins.clone();
    let host = PluginHost::new(settings, store.clone(), shared_cache_dir()).unwrap();
    TestHost { host, store, dir }
}

/// The compiled-code cache the test hosts share (`<target>/plugins/test-cache`): a
/// Python component takes seconds to compile in a test build, so it is compiled once
/// (see [`python_wasm_dir`]) and then loaded from here, in this run and the next. Tests
/// that count compilations use a cache of their own.
pub fn shared_cache_dir() -> PathBuf {
    target_dir().join("plugins/test-cache")
}

/// Compiles the Python (`suffix` "py") or JavaScript ("js") plugins into the shared
/// cache, once, before the tests that use them run in parallel (each would compile them
/// otherwise).
fn warm_shared_cache(dir: &Path, suffix: &str) {
    let wasms: Vec<(World, Vec<u8>)> = vec![
        (
            World::Authenticator,
            wasm(dir, &format!("allowlist_{suffix}")),
        ),
        (
            World::RoomPolicy,
            wasm(dir, &format!("meeting_policy_{suffix}")),
        ),
    ];
    std::thread::spawn(move || {
        let t = host();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (world, bytes) in wasms {
            // An install compiles (or finds the cache entry); the configuration is beside
            // the point, and the meeting policy's init accepts `{}`.
            let cfg = if world == World::Authenticator {
                r#"{"users": {}}"#
            } else {
                "{}"
            };
            rt.block_on(t.host.install("warm", "cache", world, bytes, config(cfg)))
                .unwrap();
            rt.block_on(t.host.remove("warm", "cache")).unwrap();
        }
    })
    .join()
    .expect("warming the compiled cache");
}

pub fn config(json: &str) -> PluginConfig {
    PluginConfig::from_json(json).unwrap()
}

pub fn password(username: &str, password: &str) -> AuthRequest {
    AuthRequest {
        domain: "example.com".into(),
        mechanism: Mechanism::Password,
        username: username.into(),
        credential: password.into(),
        client_address: Some("192.0.2.1".into()),
        transport: Transport::Tcp,
        tls: true,
    }
}

pub fn token(username: &str, token: &str) -> AuthRequest {
    AuthRequest {
        mechanism: Mechanism::Token,
        ..password(username, token)
    }
}

/// `sha256$SALT$HEX` as the allowlist plugin stores passwords.
pub fn hash_password(salt: &str, password: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(password.as_bytes())
        .finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256${salt}${hex}")
}
