//! The `heliograph` command line: `serve` (the default) runs the server; `user …`,
//! `session …`, `tenant …`, `plugin …`, `room …`, `token …`, `reload` and `drain` are
//! clients of the running server's admin API ([`crate::admin`]); `plugin new` and `plugin
//! test` are local ([`scaffold`], [`plugin_test`]); `storage …` works on the configured
//! storage itself ([`storage`]).
//!
//! Client commands find the API and the operator token from, in order:
//! 1. `--api` / `HELIOGRAPH_API`, and `--token` / `HELIOGRAPH_TOKEN` or the file
//!    `--token-file` / `HELIOGRAPH_TOKEN_FILE`;
//! 2. for what is still missing, the config file `--config`, else
//!    `config/heliograph.toml` of the current directory: its `listen.admin.address` (a
//!    wildcard address means loopback) and admin token file (default
//!    `<data_dir>/admin.token`);
//! 3. with neither, the running `heliograph serve` process ([`discover`]): its ready file,
//!    or its config and data dir as seen from its own working directory;
//! 4. with no running server either, the built-in defaults (`http://127.0.0.1:5281`,
//!    `./data/admin.token`).
//!
//! Exit codes: 0 success, 1 failure (printed as `error: <message>`), 2 usage error.

pub mod args;
pub mod client;
pub mod cluster;
pub mod discover;
pub mod output;
pub mod plugin;
pub mod plugin_test;
pub mod room;
pub mod runtime;
pub mod scaffold;
pub mod storage;
pub mod tenant;
pub mod token;

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;

use self::args::{Cli, Command, GlobalArgs, SessionCommand, UserCommand};
use self::client::ApiClient;
use crate::config::Config;
use crate::serve::ServeOptions;

/// Entry point of the `heliograph` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        None => serve(cli.global.config, cli.ready_file),
        Some(Command::Serve(s)) => serve(cli.global.config, s.ready_file.or(cli.ready_file)),
        Some(Command::Plugin(p)) if p.is_local() => plugin::run_local(&cli.global, p),
        Some(Command::Storage(s)) => report(storage::run(cli.global.config.as_deref(), s)),
        Some(cmd) => report(run_client_command(&cli.global, cmd)),
    }
}

/// Prints an error as `error: …` and maps it to the exit code.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `heliograph serve`: runs the server on a multi-thread runtime until it stops.
fn serve(config: Option<PathBuf>, ready_file: Option<PathBuf>) -> ExitCode {
    // Read here only to size the blocking pool; `serve` loads it again and reports errors.
    let database_connections = match Config::load_or_default(config.as_deref()) {
        Ok((c, _)) if c.storage.backend == crate::config::StorageBackend::Postgres => {
            c.storage.pool_size
        }
        _ => 0,
    };
    let runtime = match runtime::build(database_connections) {
        Ok(rt) => rt,
        Err(e) => {
            return report(Err(
                anyhow::Error::new(e).context("cannot start the async runtime")
            ));
        }
    };
    report(runtime.block_on(crate::serve::serve(ServeOptions { config, ready_file })))
}

/// Runs a client command against the admin API, printing to stdout.
fn run_client_command(global: &GlobalArgs, cmd: Command) -> anyhow::Result<()> {
    let (api, token) = resolve_target(global)?;
    // Read any password before connecting, so a prompt is not interleaved with errors.
    let password = match &cmd {
        Command::User(UserCommand::Add { password, .. } | UserCommand::Passwd { password, .. }) => {
            Some(match password {
                Some(p) => p.clone(),
                None => read_password()?,
            })
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = ApiClient::new(&api, token)?;
        run(&client, cmd, password.as_deref(), &mut io::stdout().lock()).await
    })
}

/// Executes one client command with `client`, writing human-readable output to `out`.
/// `password` is the one to set for `user add` / `user passwd`.
pub async fn run(
    client: &ApiClient,
    cmd: Command,
    password: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let need_password = || password.context("no password given");
    match cmd {
        Command::Serve(_) => bail!("serve is not a client command"),
        Command::Storage(_) => bail!("storage commands work on the storage, not the API"),
        Command::User(UserCommand::Add { jid, .. }) => {
            let created = client
                .add_user(&jid.domain, &jid.local, need_password()?)
                .await?;
            writeln!(out, "created {created}")?;
        }
        Command::User(UserCommand::Remove { jid }) => {
            client.remove_user(&jid.domain, &jid.local).await?;
            writeln!(out, "removed {}@{}", jid.local, jid.domain)?;
        }
        Command::User(UserCommand::Passwd { jid, .. }) => {
            client
                .set_password(&jid.domain, &jid.local, need_password()?)
                .await?;
            writeln!(out, "changed the password of {}@{}", jid.local, jid.domain)?;
        }
        Command::User(UserCommand::List { domain }) => {
            output::write_lines(out, &client.list_users(&domain).await?)?;
        }
        Command::Session(SessionCommand::List { domain }) => {
            output::write_sessions(out, &client.sessions(domain.as_deref()).await?)?;
        }
        Command::Tenant(t) => tenant::run(client, t, out).await?,
        Command::Plugin(p) => plugin::run(client, p, out).await?,
        Command::Room(r) => room::run(client, r, out).await?,
        Command::Token(t) => token::run(client, t, out).await?,
        Command::Reload => tenant::reload(client, out).await?,
        Command::Cluster(args::ClusterCommand::Status) => cluster::status(client, out).await?,
        Command::Drain => {
            let r = client.request(hyper::Method::POST, "/drain", None).await?;
            writeln!(
                out,
                "draining: {} sessions; grace {} s, deadline {} s",
                r["sessions"], r["grace_period"], r["deadline"]
            )?;
        }
    }
    Ok(())
}

/// The admin API URL and token for client commands (see the module docs for the order).
pub fn resolve_target(global: &GlobalArgs) -> anyhow::Result<(String, String)> {
    resolve_target_with(global, discover::running_servers)
}

/// [`resolve_target`] with the search for running servers given (tests pass a fake one).
pub fn resolve_target_with(
    global: &GlobalArgs,
    running_servers: impl FnOnce() -> Vec<discover::RunningServer>,
) -> anyhow::Result<(String, String)> {
    let need_more = global.api.is_none() || (global.token.is_none() && global.token_file.is_none());
    let found = if !need_more {
        None
    } else if global.config.is_some() || discover::default_config_here().is_some() {
        let (config, path) = Config::load_or_default(global.config.as_deref())?;
        let path = path.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_PATH));
        Some(discover::Found {
            api: admin_url(config.listen.admin.address),
            token_file: config.admin_token_path(),
            source: format!("the config file {}", path.display()),
        })
    } else {
        match discover::the_running_server(&running_servers())? {
            Some(found) => Some(found),
            None => {
                let config = Config::default();
                Some(discover::Found {
                    api: admin_url(config.listen.admin.address),
                    token_file: config.admin_token_path(),
                    source: "the built-in defaults (no config/heliograph.toml here and no \
                             running heliograph server found)"
                        .into(),
                })
            }
        }
    };
    let api = match (&global.api, &found) {
        (Some(api), _) => api.clone(),
        (None, Some(f)) => f.api.clone(),
        (None, None) => unreachable!("looked up when --api is absent"),
    };
    let token = match (&global.token, &global.token_file, &found) {
        (Some(t), _, _) => t.clone(),
        (None, Some(path), _) => read_token_file(path, "--token-file / HELIOGRAPH_TOKEN_FILE")?,
        (None, None, Some(f)) => read_token_file(&f.token_file, &f.source)?,
        (None, None, None) => unreachable!("looked up when no token is given"),
    };
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    Ok((api, token))
}

/// `http://host:port` for an admin listener address; wildcard addresses mean loopback.
pub fn admin_url(mut addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => {}
    }
    format!("http://{addr}")
}

fn read_token_file(path: &std::path::Path, found_through: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the admin token file {} (from {found_through}; say where the \
             server is with --config, --token-file or HELIOGRAPH_TOKEN_FILE, and --api or \
             HELIOGRAPH_API)",
            path.display()
        )
    })?;
    Ok(text.trim().to_string())
}

/// Reads a password: one line of standard input, prompting without echo on a terminal.
fn read_password() -> anyhow::Result<String> {
    let stdin = io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("Password: ");
        let _ = io::stderr().flush();
    }
    let echo_off = tty && set_echo(false);
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if echo_off {
        set_echo(true);
        eprintln!();
    }
    if read.context("cannot read the password from standard input")? == 0 {
        bail!("no password given (use --password or write it to standard input)");
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(password.to_string())
}

/// Turns terminal echo on or off with `stty`; false if that is not possible.
fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests;
