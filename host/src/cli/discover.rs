//! Finding the admin API and token of a running server when the command line and the
//! environment do not say, so that `heliograph user list …` works from any directory.
//!
//! A server started without a config keeps its data (and `admin.token`) in `./data` of
//! the directory it was started in, and reads `config/heliograph.toml` from there: paths
//! that mean nothing to a client started elsewhere. So, when no `--config` is given and
//! the current directory has no `config/heliograph.toml`, the client looks for running
//! `heliograph serve` processes (Linux: `/proc`), and reads the admin address and token
//! of the one it finds from that server's own point of view: its `--ready-file` if it
//! wrote one, else its config file and data dir, relative paths resolved against its
//! working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::{Config, DEFAULT_CONFIG_PATH};

/// A `heliograph serve` process found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningServer {
    pub pid: u32,
    /// Its working directory.
    pub cwd: PathBuf,
    /// `--config` as given on its command line, resolved against `cwd`.
    pub config: Option<PathBuf>,
    /// `--ready-file` as given on its command line, resolved against `cwd`.
    pub ready_file: Option<PathBuf>,
}

/// Where a client command sends its requests, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub api: String,
    pub token_file: PathBuf,
    /// For messages: "the running server (pid 42, started in /srv/h)".
    pub source: String,
}

/// Options of `heliograph` that take a value (as `--opt VALUE` or `--opt=VALUE`).
const VALUE_OPTIONS: [&str; 5] = [
    "--config",
    "--ready-file",
    "--api",
    "--token-file",
    "--token",
];

/// The `--config` and `--ready-file` of a server command line (without argv\[0\]), or
/// `None` when it is a client command (`user …`, `tenant …`) rather than `serve`.
pub fn parse_server_args(args: &[String]) -> Option<(Option<String>, Option<String>)> {
    let (mut config, mut ready) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if VALUE_OPTIONS.contains(&name) {
            let value = match inline {
                Some(v) => Some(v),
                None => it.next().cloned(),
            };
            match name {
                "--config" => config = value,
                "--ready-file" => ready = value,
                _ => {}
            }
        } else if !arg.starts_with('-') && arg != "serve" {
            return None;
        }
    }
    Some((config, ready))
}

/// The `heliograph serve` processes running on this machine that this user may inspect
/// (empty where there is no `/proc`).
pub fn running_servers() -> Vec<RunningServer> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let proc_dir = entry.path();
        let comm = std::fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != "heliograph" {
            continue;
        }
        let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .skip(1)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some((config, ready)) = parse_server_args(&args) else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(proc_dir.join("cwd")) else {
            continue;
        };
        found.push(RunningServer {
            pid,
            config: config.map(|c| cwd.join(c)),
            ready_file: ready.map(|r| cwd.join(r)),
            cwd,
        });
    }
    found.sort_by_key(|s| s.pid);
    found
}

/// The admin API and token file of `server`, as it sees them.
pub fn target_of(server: &RunningServer) -> anyhow::Result<Found> {
    let source = format!(
        "the running server (pid {}, started in {})",
        server.pid,
        server.cwd.display()
    );
    // The ready file has the bound address (also for port 0) and the token file.
    if let Some(ready) = &server.ready_file
        && let Ok(text) = std::fs::read_to_string(ready)
        && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
    {
        let admin = doc["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["kind"] == "admin")
            .and_then(|l| l["address"].as_str())
            .and_then(|a| a.parse::<SocketAddr>().ok());
        if let (Some(admin), Some(token)) = (admin, doc["admin_token_file"].as_str()) {
            return Ok(Found {
                api: super::admin_url(admin),
                token_file: server.cwd.join(token),
                source,
            });
        }
    }
    let config_path = match &server.config {
        Some(p) => Some(p.clone()),
        None => Some(server.cwd.join(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
    };
    let config = match &config_path {
        Some(p) => Config::load(p)
            .with_context(|| format!("reading the config of {source}: {}", p.display()))?,
        None => Config::default(),
    };
    Ok(Found {
        api: super::admin_url(config.listen.admin.address),
        token_file: server.cwd.join(config.admin_token_path()),
        source,
    })
}

/// The one running server to talk to: none found is `Ok(None)`; several is an error that
/// lists them.
pub fn the_running_server(servers: &[RunningServer]) -> anyhow::Result<Option<Found>> {
    match servers {
        [] => Ok(None),
        [one] => target_of(one).map(Some),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|s| format!("pid {} in {}", s.pid, s.cwd.display()))
                .collect();
            bail!(
                "{} heliograph servers are running ({}); say which with --config, or with \
                 --api and --token-file (HELIOGRAPH_API, HELIOGRAPH_TOKEN_FILE)",
                many.len(),
                list.join(", ")
            )
        }
    }
}

/// Whether `path` would be found relative to the current directory.
pub fn default_config_here() -> Option<PathBuf> {
    let p = Path::new(DEFAULT_CONFIG_PATH);
    p.exists().then(|| p.to_path_buf())
}
