//! `heliograph tenant …` and `heliograph reload`: turning options into admin API requests
//! and answers into text.

use std::io::Write;

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::args::{TenantCommand, TenantSettings};
use super::client::{ApiClient, encode_segment};

/// The JSON body for the options given.
pub fn settings_body(s: &TenantSettings) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    if !s.domains.is_empty() {
        body.insert("domains".into(), json!(s.domains));
    }
    if let Some(auth) = &s.auth {
        let v = match auth.split_once(':') {
            None if auth == "internal" => json!({ "method": "internal" }),
            Some(("plugin", slot)) if !slot.is_empty() => {
                json!({ "method": "plugin", "plugin": slot })
            }
            _ => bail!("--auth must be `internal` or `plugin:SLOT`, not {auth:?}"),
        };
        body.insert("auth".into(), v);
    }
    if let Some(policy) = &s.room_policy {
        let v = match policy.split(':').collect::<Vec<_>>()[..] {
            ["none"] => Value::Null,
            ["plugin", slot] if !slot.is_empty() => json!({ "plugin": slot, "fail_open": false }),
            ["plugin", slot, "fail-open"] if !slot.is_empty() => {
                json!({ "plugin": slot, "fail_open": true })
            }
            _ => bail!(
                "--room-policy must be `plugin:SLOT`, `plugin:SLOT:fail-open` or `none`, not {policy:?}"
            ),
        };
        body.insert("room_policy".into(), v);
    }
    let mut limits = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            limits.insert(k.into(), v);
        }
    };
    put("max_sessions", s.max_sessions.map(Value::from));
    put("max_accounts", s.max_accounts.map(Value::from));
    put("stanza_rate", s.stanza_rate.map(Value::from));
    put("stanza_burst", s.stanza_burst.map(Value::from));
    put("max_stanza_size", s.max_stanza_size.map(Value::from));
    if !limits.is_empty() {
        body.insert("limits".into(), Value::Object(limits));
    }
    if !s.federate_with.is_empty() {
        body.insert("federate_with".into(), json!(s.federate_with));
    }
    if !s.muc.is_empty() {
        let mut muc = Map::new();
        for kv in &s.muc {
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .with_context(|| format!("--muc {kv:?}: expected KEY=VALUE"))?;
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
            muc.insert(k.to_string(), value);
        }
        body.insert("muc".into(), Value::Object(muc));
    }
    if let (Some(cert), Some(key)) = (&s.cert, &s.key) {
        let abs = |p: &std::path::Path| {
            std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))
        };
        body.insert(
            "tls".into(),
            json!({ "cert": abs(cert)?, "key": abs(key)? }),
        );
    }
    Ok(body)
}

fn tenant_path(name: &str, rest: &str) -> String {
    format!("/tenants/{}{rest}", encode_segment(name))
}

/// Runs a tenant command.
pub async fn run(
    client: &ApiClient,
    cmd: TenantCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Add { name, settings } => {
            if settings.domains.is_empty() {
                bail!("a new tenant needs at least one --domain");
            }
            let mut body = settings_body(&settings)?;
            body.insert("name".into(), json!(name));
            let t = client
                .request(Method::POST, "/tenants", Some(Value::Object(body)))
                .await?;
            writeln!(out, "created tenant {name} ({})", domains(&t))?;
        }
        TenantCommand::Set { name, settings } => {
            let body = settings_body(&settings)?;
            if body.is_empty() {
                bail!("nothing to change: give at least one setting");
            }
            let t = client
                .request(
                    Method::PATCH,
                    &tenant_path(&name, ""),
                    Some(Value::Object(body)),
                )
                .await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&t)?)?;
        }
        TenantCommand::Remove { name, purge } => {
            let q = if purge { "?purge=true" } else { "" };
            client
                .request(Method::DELETE, &tenant_path(&name, q), None)
                .await?;
            let what = if purge {
                "removed tenant {} and deleted its data"
            } else {
                "removed tenant {} (its data is kept)"
            };
            writeln!(out, "{}", what.replace("{}", &name))?;
        }
        TenantCommand::List => {
            let v = client.request(Method::GET, "/tenants", None).await?;
            write_table(
                out,
                v["tenants"].as_array().map(Vec::as_slice).unwrap_or(&[]),
            )?;
        }
        TenantCommand::Show { name } => {
            let t = client
                .request(Method::GET, &tenant_path(&name, ""), None)
                .await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&t)?)?;
        }
        TenantCommand::Enable { name } => {
            client
                .request(Method::POST, &tenant_path(&name, "/enable"), None)
                .await?;
            writeln!(out, "enabled tenant {name}")?;
        }
        TenantCommand::Disable { name } => {
            client
                .request(Method::POST, &tenant_path(&name, "/disable"), None)
                .await?;
            writeln!(out, "disabled tenant {name}")?;
        }
        TenantCommand::Token { name } => {
            let v = client
                .request(Method::POST, &tenant_path(&name, "/token"), None)
                .await?;
            writeln!(out, "{}", v["token"].as_str().unwrap_or_default())?;
        }
    }
    Ok(())
}

/// `heliograph reload`.
pub async fn reload(client: &ApiClient, out: &mut dyn Write) -> anyhow::Result<()> {
    let r = client.request(Method::POST, "/reload", None).await?;
    let list = |k: &str| {
        let v: Vec<&str> = r[k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    writeln!(
        out,
        "reloaded: added {}; removed {}; changed {}",
        list("added"),
        list("removed"),
        list("changed")
    )?;
    if r["sessions_ended"].as_u64().unwrap_or(0) > 0 {
        writeln!(out, "sessions ended: {}", r["sessions_ended"])?;
    }
    for (key, what) in [
        ("installed", "plugin installed"),
        ("failed", "plugin refused"),
    ] {
        for item in r["plugins"][key]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            writeln!(out, "{what}: {}", item.as_str().unwrap_or_default())?;
        }
    }
    if r["needs_restart"].as_array().is_some_and(|a| !a.is_empty()) {
        writeln!(
            out,
            "needs a restart to take effect: {}",
            list("needs_restart")
        )?;
    }
    Ok(())
}

fn domains(t: &Value) -> String {
    t["domains"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn write_table(out: &mut dyn Write, tenants: &[Value]) -> std::io::Result<()> {
    if tenants.is_empty() {
        return writeln!(out, "(no tenants)");
    }
    let rows: Vec<[String; 5]> = tenants
        .iter()
        .map(|t| {
            [
                t["name"].as_str().unwrap_or_default().to_string(),
                t["source"].as_str().unwrap_or_default().to_string(),
                if t["enabled"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                }
                .to_string(),
                t["sessions"].to_string(),
                domains(t),
            ]
        })
        .collect();
    let header = ["NAME", "SOURCE", "ENABLED", "SESSIONS", "DOMAINS"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]))?;
    }
    Ok(())
}
