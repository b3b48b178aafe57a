//! Shared by the plugin tests: builds the first-party plugins for wasm32-wasip2 (once per
//! test binary, in `<target>/plugins`, the directory tests/run.sh uses too) and makes
//! hosts on temporary storage.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use heliograph::plugins::{
    AuthRequest, Mechanism, PluginConfig, PluginHost, PluginSettings, Transport,
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

/// The bytes of a built plugin (`allowlist`, `hostile`, `wrong_version`, `wrong_world`).
pub fn wasm(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
    let host = PluginHost::new(settings, store.clone(), dir.path().join("cache")).unwrap();
    TestHost { host, store, dir }
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
