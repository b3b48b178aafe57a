//! `heliograph plugin …`: install, list, rollback and remove tenants' plugins through the
//! admin API.

use std::io::Write;

use anyhow::Context;
use hyper::Method;
use serde_json::Value;

use super::args::PluginCommand;
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

/// Runs a plugin command.
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
            writeln!(out, "{tenant}/{slot} now runs version {}", v["version"])?;
        }
        PluginCommand::Remove { tenant, slot } => {
            let path = plugins_path(&tenant, &format!("/{}", encode_segment(&slot)));
            client.request(Method::DELETE, &path, None).await?;
            writeln!(out, "removed {tenant}/{slot}")?;
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
                "  {mark} v{}  {} bytes  sha256 {}",
                ver["version"],
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
