//! The server under test: either started here from a binary with a temporary config (so
//! one command produces a whole report), or an already running one given by its ready
//! file or by pid, addresses and token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Where the server is and how to read its cost.
pub struct Target {
    pub pid: u32,
    pub starttls: SocketAddr,
    pub direct: SocketAddr,
    /// Plain-HTTP listener (BOSH, WebSocket), if the server has one.
    pub http: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub token: String,
    pub domain: String,
    /// Set when this tool started the server (it is stopped on drop).
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
    pub log: Option<PathBuf>,
}

/// Options for starting a server.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub binary: PathBuf,
    /// Kept between runs when given (accounts need not be created again); else a temp dir.
    pub data_dir: Option<PathBuf>,
    pub domain: String,
    pub scram_iterations: u32,
    pub session_queue: usize,
    /// PostgreSQL connection string: the server stores everything there (`[storage]
    /// backend = "postgres"`) instead of in sled under the data dir.
    pub storage_url: Option<String>,
    /// `[c2s] resume_timeout` (seconds) when given; the server's default otherwise.
    pub resume_timeout: Option<u64>,
    /// Appended to the generated config (more tables: federation for `s2s`).
    pub extra_config: String,
}

/// The HS256 key of a spawned server's tenant, for JWT logins (`--mech jwt`): kid and
/// secret. A password that is not shaped like a token is still checked as a password.
pub const SPAWN_JWT_KID: &str = "load";
pub const SPAWN_JWT_SECRET: &str = "heliograph-load-jwt-secret-0123456789";

/// The config written for a spawned server: PLAIN allowed without TLS on the STARTTLS
/// listener (the reference login figure is PLAIN over plain TCP), no keepalive pings and
/// long timeouts so idle sessions stay up while memory is read, a JWT key on the tenant
/// ([`SPAWN_JWT_SECRET`]) and server-issued tokens turned on (`--mech token`).
pub fn spawn_config(opts: &SpawnOptions, data_dir: &Path) -> String {
    format!(
        "[general]\nhosts = [\"{domain}\"]\ndata_dir = \"{data}\"\nlog_level = \"warn\"\n\n\
         [[listen.c2s]]\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\nrequire_tls = false\n\
         allow_plain_without_tls = true\nnegotiation_timeout = 120\nidle_timeout = 86400\n\n\
         [[listen.c2s]]\naddress = \"127.0.0.1:0\"\ntls = \"direct\"\nnegotiation_timeout = 120\n\
         idle_timeout = 86400\n\n\
         [[listen.http]]\naddress = \"127.0.0.1:0\"\nallow_insecure_loopback = true\n\
         max_sessions_per_address = 0\nnegotiation_timeout = 120\nidle_timeout = 86400\n\
         websocket_ping_interval = 0\nrequest_timeout = 120\n\n\
         [[listen.component]]\naddress = \"127.0.0.1:0\"\n\n\
         [listen.admin]\naddress = \"127.0.0.1:0\"\n\n\
         [c2s]\nping_interval = 0\nsession_queue = {queue}\n{resume}\n\
         [auth]\nscram_iterations = {iters}\n\n\
         [tenants.default.jwt]\nkeys = [{{ kid = \"{kid}\", alg = \"HS256\", secret = \"{secret}\" }}]\n\n\
         [tenants.default.tokens]\naccess_ttl_secs = 86400\n",
        kid = SPAWN_JWT_KID,
        secret = SPAWN_JWT_SECRET,
        domain = opts.domain,
        data = data_dir.display(),
        queue = opts.session_queue,
        iters = opts.scram_iterations,
        resume = match opts.resume_timeout {
            Some(t) => format!("resume_timeout = {t}\n"),
            None => String::new(),
        },
    ) + &match &opts.storage_url {
        Some(url) => format!("\n[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\n"),
        None => String::new(),
    } + &opts.extra_config
}

/// What a server's ready file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub pid: u32,
    pub starttls: Option<SocketAddr>,
    pub direct: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub token_file: PathBuf,
}

/// Parses the ready file `heliograph serve --ready-file` writes.
pub fn parse_ready(text: &str) -> anyhow::Result<Ready> {
    let doc: serde_json::Value = serde_json::from_str(text).context("ready file JSON")?;
    let mut ready = Ready {
        pid: doc["pid"].as_u64().context("ready file without pid")? as u32,
        starttls: None,
        direct: None,
        http: None,
        admin: None,
        token_file: doc["admin_token_file"]
            .as_str()
            .context("ready file without admin_token_file")?
            .into(),
    };
    for l in doc["listeners"]
        .as_array()
        .context("ready file without listeners")?
    {
        let addr: SocketAddr = l["address"]
            .as_str()
            .context("listener without address")?
            .parse()?;
        // A wildcard listener is reached on loopback.
        let addr = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        match (l["kind"].as_str(), l["tls"].as_str()) {
            (Some("c2s"), Some("starttls")) if ready.starttls.is_none() => {
                ready.starttls = Some(addr)
            }
            (Some("c2s"), Some("direct")) if ready.direct.is_none() => ready.direct = Some(addr),
            (Some("http"), _) if ready.http.is_none() && l["tls"].as_bool() != Some(true) => {
                ready.http = Some(addr)
            }
            (Some("admin"), _) => ready.admin = Some(addr),
            _ => {}
        }
    }
    Ok(ready)
}

impl Target {
    /// Starts `opts.binary` with a generated config and waits for its ready file.
    pub fn spawn(opts: &SpawnOptions) -> anyhow::Result<Target> {
        let dir = tempfile::tempdir()?;
        let data = match &opts.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                std::fs::canonicalize(d)?
            }
            None => dir.path().join("data"),
        };
        let cfg = dir.path().join("heliograph.toml");
        std::fs::write(&cfg, spawn_config(opts, &data))?;
        let ready_path = dir.path().join("ready.json");
        let log = dir.path().join("server.log");
        let child = Command::new(&opts.binary)
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .arg("--ready-file")
            .arg(&ready_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", opts.binary.display()))?;
        let mut target = Target {
            pid: child.id(),
            starttls: SocketAddr::from(([127, 0, 0, 1], 0)),
            direct: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: None,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: String::new(),
            domain: opts.domain.clone(),
            child: Some(child),
            _dir: Some(dir),
            log: Some(log.clone()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_path)
                && let Ok(r) = parse_ready(&text)
            {
                break r;
            }
            if let Some(status) = target
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "server exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("server not ready after 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        target.apply_ready(&ready)?;
        Ok(target)
    }

    /// Targets a running server through its ready file.
    pub fn from_ready_file(path: &Path, domain: &str) -> anyhow::Result<Target> {
        let ready = parse_ready(&std::fs::read_to_string(path)?)?;
        let mut t = Target {
            pid: ready.pid,
            starttls: SocketAddr::from(([127, 0, 0, 1], 0)),
            direct: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: None,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: String::new(),
            domain: domain.to_string(),
            child: None,
            _dir: None,
            log: None,
        };
        t.apply_ready(&ready)?;
        Ok(t)
    }

    /// Targets a running server given explicitly.
    pub fn explicit(
        pid: u32,
        starttls: SocketAddr,
        direct: SocketAddr,
        admin: SocketAddr,
        token_file: &Path,
        domain: &str,
    ) -> anyhow::Result<Target> {
        Ok(Target {
            pid,
            starttls,
            direct,
            http: None,
            admin,
            token: read_token(token_file)?,
            domain: domain.to_string(),
            child: None,
            _dir: None,
            log: None,
        })
    }

    /// Another XMPP server (ejabberd, Prosody), running as `pid`: c2s listeners only, no
    /// admin API (its address is unspecified, its token empty).
    pub fn foreign(pid: u32, starttls: SocketAddr, direct: SocketAddr, domain: &str) -> Target {
        Target {
            pid,
            starttls,
            direct,
            http: None,
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            token: String::new(),
            domain: domain.to_string(),
            child: None,
            _dir: None,
            log: None,
        }
    }

    fn apply_ready(&mut self, ready: &Ready) -> anyhow::Result<()> {
        self.pid = ready.pid;
        self.starttls = ready.starttls.context("no STARTTLS c2s listener")?;
        self.direct = ready.direct.context("no direct TLS c2s listener")?;
        self.http = ready.http;
        self.admin = ready.admin.context("no admin listener")?;
        self.token = read_token(&ready.token_file)?;
        Ok(())
    }

    /// True if this tool started the server.
    pub fn spawned(&self) -> bool {
        self.child.is_some()
    }

    /// Stops a spawned server (SIGTERM, then SIGKILL after 15 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading admin token {}", path.display()))?
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_file() {
        let text = r#"{"listeners":[{"kind":"c2s","tls":"starttls","address":"0.0.0.0:5222"},
            {"kind":"c2s","tls":"direct","address":"127.0.0.1:5223"},
            {"kind":"http","tls":false,"address":"0.0.0.0:5280"},
            {"kind":"admin","address":"127.0.0.1:5281"}],"admin_token_file":"/d/admin.token","pid":42}"#;
        let r = parse_ready(text).unwrap();
        assert_eq!(r.pid, 42);
        assert_eq!(r.starttls, Some("127.0.0.1:5222".parse().unwrap()));
        assert_eq!(r.direct, Some("127.0.0.1:5223".parse().unwrap()));
        assert_eq!(r.admin, Some("127.0.0.1:5281".parse().unwrap()));
        assert_eq!(r.http, Some("127.0.0.1:5280".parse().unwrap()));
        assert_eq!(r.token_file, PathBuf::from("/d/admin.token"));
        assert!(parse_ready("{}").is_err());
    }

    #[test]
    fn spawn_config_is_complete() {
        let opts = SpawnOptions {
            binary: "heliograph".into(),
            data_dir: None,
            domain: "load.test".into(),
            scram_iterations: 4096,
            session_queue: 1024,
            storage_url: None,
            resume_timeout: None,
            extra_config: String::new(),
        };
        let cfg = spawn_config(&opts, Path::new("/tmp/x"));
        assert!(!cfg.contains("resume_timeout"));
        let short = spawn_config(
            &SpawnOptions {
                resume_timeout: Some(3),
                extra_config: String::new(),
                ..opts.clone()
            },
            Path::new("/tmp/x"),
        );
        assert!(short.contains("ping_interval = 0\nsession_queue = 1024\nresume_timeout = 3\n"));
        assert!(cfg.contains("hosts = [\"load.test\"]"));
        assert!(cfg.contains("allow_plain_without_tls = true"));
        assert!(cfg.contains("ping_interval = 0"));
        assert!(cfg.contains("scram_iterations = 4096"));
        assert!(cfg.contains("[[listen.http]]"));
        assert!(cfg.contains("allow_insecure_loopback = true"));
        assert!(cfg.contains(&format!("secret = \"{SPAWN_JWT_SECRET}\"")));
    }
}
