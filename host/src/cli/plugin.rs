//! `heliograph plugin …`: install, list, rollback and remove tenants' plugins through the
//! admin API; `new` (a project from a template, [`super::scaffold`]) and `test` (calls on
//! the real host without a server, [`super::plugin_test`]) run locally.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hyper::Method;
use serde_json::Value;

use super::args::{GlobalArgs, PluginCommand};
use super::client::{ApiClient, encode_segment};
use crate::admin::plugins::CONFIG_HEADER;

fn plugins_path(tenant: &str, rest: &str) -> String {
    format!("/tenants/{}/plugins{rest}", encode_segment(tenant))
}

/// The configuration of `plugin install`, checked to be JSON, on one line (it travels in a
/// header).
fn config_json(inline: Option<String>, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let text = match (inline, file) {
        (Some(t), _) => t,
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the plugin configuration {}", f.display()))?,
        (None, None) => return Ok(String::new()),
    };
    let value: Value = serde_json::from_str(&text).context("--plugin-config is not valid JSON")?;
    anyhow::ensure!(
        value.is_object(),
        "the plugin configuration must be a JSON object"
    );
    // serde_json escapes non-ASCII only when asked; header values must be visible ASCII.
    Ok(ascii_json(&value))
}

/// JSON text with every non-ASCII character escaped (`\uXXXX`).
fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Runs a local plugin command (`new`, `test`), printing to stdout.
pub fn run_local(global: &GlobalArgs, cmd: PluginCommand) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let result = match cmd {
        PluginCommand::New {
            name,
            world,
            lang,
            dir,
            sdk_path,
        } => super::scaffold::new_project(
            &super::scaffold::NewProject {
                name,
                world,
                lang,
                dir: dir.unwrap_or_else(|| PathBuf::from(".")),
                sdk_path,
            },
            &mut out,
        )
        .map(|()| true),
        PluginCommand::Test {
            file,
            script,
            plugin_config,
            plugin_config_file,
            kv,
            cache_dir,
        } => plugin_test(
            global,
            file,
            script,
            plugin_config,
            plugin_config_file,
            kv,
            cache_dir,
            &mut out,
        ),
        _ => Err(anyhow::anyhow!("not a local plugin command")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: a call did not give the expected outcome");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `plugin test`: with the `[plugins]` limits of the server's config (`--config`, or
/// config/heliograph.toml when present), else the defaults.
#[allow(clippy::too_many_arguments)]
fn plugin_test(
    global: &GlobalArgs,
    file: PathBuf,
    script: Option<PathBuf>,
    plugin_config: Option<String>,
    plugin_config_file: Option<PathBuf>,
    kv: Vec<String>,
    cache_dir: Option<PathBuf>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let (config, _) = crate::config::Config::load_or_default(global.config.as_deref())?;
    let plugin_config = match (plugin_config, plugin_config_file) {
        (None, None) => None,
        (inline, file) => Some(config_json(inline, file.as_deref())?),
    };
    let kv = kv
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--kv {pair:?}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache_dir = cache_dir.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache/heliograph/plugin-test")
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(super::plugin_test::run(
        super::plugin_test::TestOptions {
            file,
            script,
            config: plugin_config,
            kv,
            settings: config.plugins.clone(),
            cache_dir,
        },
        out,
    ))
}

/// Runs a plugin command against the admin API.
pub async fn run(
    client: &ApiClient,
    cmd: PluginCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Install {
            tenant,
            slot,
            file,
            plugin_config,
            plugin_config_file,
        } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let config = config_json(plugin_config, plugin_config_file.as_deref())?;
            let headers: Vec<(&str, String)> = if config.is_empty() {
                Vec::new()
            } else {
                vec![(CONFIG_HEADER, config)]
            };
            let v = client
                .upload(
                    Method::PUT,
                    &plugins_path(&tenant, &format!("/{}", encode_segment(&slot))),
                    "application/wasm",
                    &headers,
                    wasm,
                )
                .await?;
            writeln!(
                out,
                "installed {tenant}/{slot} version {} (sha256 {})",
                v["version"],
                v["sha256"].as_str().unwrap_or_default()
            )?;
            if let Some(from) = v["config_from"].as_u64() {
                writeln!(
                    out,
                    "  configuration kept from version {from} (give --plugin-config to change it)"
                )?;
            }
        }
        PluginCommand::List { tenant } => {
            let v = client
                .request(Method::GET, &plugins_path(&tenant, ""), None)
                .await?;
            write_list(out, &v)?;
        }
        PluginCommand::Rollback {
            tenant,
            slot,
            version,
        } => {
            let q = version.map(|n| format!("?version={n}")).unwrap_or_default();
            let path = plugins_path(&tenant, &format!("/{}/rollback{q}", encode_segment(&slot)));
            let v = client.request(Method::POST, &path, None).await?;
            writeln!(
                out,
                "{tenant}/{slot} now runs version {} ({})",
                v["version"],
                v["health"].as_str().unwrap_or("untried")
            )?;
        }
        PluginCommand::Remove { tenant, slot } => {
            let path = plugins_path(&tenant, &format!("/{}", encode_segment(&slot)));
            client.request(Method::DELETE, &path, None).await?;
            writeln!(out, "removed {tenant}/{slot}")?;
        }
        PluginCommand::New { .. } | PluginCommand::Test { .. } => {
            anyhow::bail!("`plugin new` and `plugin test` run locally, not against the server")
        }
    }
    Ok(())
}

fn write_list(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    let plugins = v["plugins"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if plugins.is_empty() {
        return writeln!(out, "(no plugins)");
    }
    for p in plugins {
        let bound = if p["bound_to_auth"].as_bool().unwrap_or(false) {
            " (tenant auth)"
        } else {
            ""
        };
        writeln!(
            out,
            "{} [{}]{bound}: active version {}",
            p["slot"].as_str().unwrap_or_default(),
            p["world"].as_str().unwrap_or_default(),
            p["active"]
        )?;
        for ver in p["versions"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let mark = if ver["active"].as_bool().unwrap_or(false) {
                "*"
            } else {
                " "
            };
            writeln!(
                out,
                "  {mark} v{}  {:<7}  {} bytes  sha256 {}",
                ver["version"],
                ver["health"].as_str().unwrap_or("untried"),
                ver["size"],
                ver["sha256"].as_str().unwrap_or_default()
            )?;
        }
        let s = &p["stats"];
        if s.is_object() {
            let failed: Vec<String> = s["failed"]
                .as_object()
                .map(|m| m.iter().map(|(k, n)| format!("{k} {n}")).collect())
                .unwrap_or_default();
            writeln!(
                out,
                "  calls {}, succeeded {}, denied {}, failed {}; p50 {} us, p99 {} us",
                s["calls"],
                s["succeeded"],
                s["denied"],
                if failed.is_empty() {
                    "0".to_string()
                } else {
                    failed.join(", ")
                },
                s["p50_us"],
                s["p99_us"]
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked_and_ascii() {
        assert_eq!(config_json(None, None).unwrap(), "");
        assert!(config_json(Some("[1]".into()), None).is_err());
        assert!(config_json(Some("{".into()), None).is_err());
        let c = config_json(Some(r#"{"name": "Zoë"}"#.into()), None).unwrap();
        assert!(c.is_ascii(), "{c}");
        let back: Value = serde_json::from_str(&c).unwrap();
        assert_eq!(back["name"], "Zoë");
    }
}
