//! `heliograph tenant …` and `heliograph reload`: turning options into admin API requests
//! and answers into text.

use std::io::Write;

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::args::{TenantCommand, TenantSettings};
use super::client::{ApiClient, encode_segment};

/// The JSON body for the options given. `current` is the tenant as the API shows it
/// (for `set`): options that change part of an object (`--tokens-access-ttl-secs`,
/// `--jwt-audience`, …) keep the rest of the current one; see [`needs_current`].
pub fn settings_body(
    s: &TenantSettings,
    current: Option<&Value>,
) -> anyhow::Result<Map<String, Value>> {
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
        body.insert(
            "tls".into(),
            json!({ "cert": absolute(cert)?, "key": absolute(key)? }),
        );
    }
    let current_object = |key: &str| -> Map<String, Value> {
        current
            .and_then(|c| c.get(key))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    if s.no_tokens {
        body.insert("tokens".into(), Value::Null);
    } else if s.tokens || s.tokens_access_ttl_secs.is_some() || s.tokens_refresh_ttl_secs.is_some()
    {
        let mut tokens = current_object("tokens");
        if let Some(v) = s.tokens_access_ttl_secs {
            tokens.insert("access_ttl_secs".into(), v.into());
        }
        if let Some(v) = s.tokens_refresh_ttl_secs {
            tokens.insert("refresh_ttl_secs".into(), v.into());
        }
        body.insert("tokens".into(), Value::Object(tokens));
    }
    if s.no_jwt {
        body.insert("jwt".into(), Value::Null);
    } else if jwt_given(s) {
        // Keys kept from the current settings come back redacted; the API keeps their
        // secrets (same kid and alg).
        let mut jwt = current_object("jwt");
        if !s.jwt_keys.is_empty() {
            let keys = s
                .jwt_keys
                .iter()
                .map(|k| jwt_key(k))
                .collect::<Result<Vec<_>, _>>()?;
            jwt.insert("keys".into(), Value::Array(keys));
        }
        if !s.jwt_jwks_files.is_empty() {
            let files = s
                .jwt_jwks_files
                .iter()
                .map(|p| absolute(p))
                .collect::<Result<Vec<_>, _>>()?;
            jwt.insert("jwks_files".into(), json!(files));
        }
        if let Some(c) = &s.jwt_username_claim {
            jwt.insert("username_claim".into(), json!(c));
        }
        if !s.jwt_audience.is_empty() {
            jwt.insert("audience".into(), json!(s.jwt_audience));
        }
        if !s.jwt_issuer.is_empty() {
            jwt.insert("issuer".into(), json!(s.jwt_issuer));
        }
        if let Some(l) = s.jwt_leeway_secs {
            jwt.insert("leeway_secs".into(), l.into());
        }
        if let Some(r) = s.jwt_require_exp {
            jwt.insert("require_exp".into(), r.into());
        }
        body.insert("jwt".into(), Value::Object(jwt));
    }
    if s.no_components {
        body.insert("components".into(), json!([]));
    } else if !s.components.is_empty() {
        let list = s
            .components
            .iter()
            .map(|c| component(c))
            .collect::<Result<Vec<_>, _>>()?;
        body.insert("components".into(), Value::Array(list));
    }
    Ok(body)
}

/// Whether `settings_body` needs the tenant's current settings (options that change part
/// of its `tokens` or `jwt` object).
pub fn needs_current(s: &TenantSettings) -> bool {
    (!s.no_tokens
        && (s.tokens || s.tokens_access_ttl_secs.is_some() || s.tokens_refresh_ttl_secs.is_some()))
        || (!s.no_jwt && jwt_given(s))
}

fn jwt_given(s: &TenantSettings) -> bool {
    !s.jwt_keys.is_empty()
        || !s.jwt_jwks_files.is_empty()
        || s.jwt_username_claim.is_some()
        || !s.jwt_audience.is_empty()
        || !s.jwt_issuer.is_empty()
        || s.jwt_leeway_secs.is_some()
        || s.jwt_require_exp.is_some()
}

/// A path the server reads, made absolute (the server's working directory is not ours).
fn absolute(p: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))
}

/// `KEY=VALUE,KEY=VALUE` pairs, in order.
fn pairs<'a>(spec: &'a str, what: &str) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    spec.split(',')
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim(), v))
                .with_context(|| format!("{what} {spec:?}: expected KEY=VALUE[,KEY=VALUE...]"))
        })
        .collect()
}

/// `--jwt-key alg=HS256,kid=k1,secret_file=PATH` → a key of the API's `jwt.keys`.
pub fn jwt_key(spec: &str) -> anyhow::Result<Value> {
    let mut key = Map::new();
    for (k, v) in pairs(spec, "--jwt-key")? {
        let value = match k {
            "alg" | "kid" | "secret" | "public_key" => json!(v),
            "secret_file" | "public_key_file" => json!(absolute(std::path::Path::new(v))?),
            _ => bail!(
                "--jwt-key {spec:?}: unknown key {k:?} (alg, kid, secret, secret_file, \
                 public_key, public_key_file)"
            ),
        };
        if key.insert(k.to_string(), value).is_some() {
            bail!("--jwt-key {spec:?}: {k} given twice");
        }
    }
    if !key.contains_key("alg") {
        bail!("--jwt-key {spec:?}: alg=... is required");
    }
    Ok(Value::Object(key))
}

/// `--component domain=D,secret=S,name=N` → an entry of the API's `components`.
pub fn component(spec: &str) -> anyhow::Result<Value> {
    let mut c = Map::new();
    let mut domains = Vec::new();
    for (k, v) in pairs(spec, "--component")? {
        let value = match k {
            "domain" => {
                domains.push(v.to_string());
                continue;
            }
            "secret" | "plugin" | "name" | "on_conflict" => json!(v),
            "hidden" => json!(v.parse::<bool>().with_context(|| {
                format!("--component {spec:?}: hidden must be true or false")
            })?),
            _ => bail!(
                "--component {spec:?}: unknown key {k:?} (domain, secret, plugin, name, \
                 on_conflict, hidden)"
            ),
        };
        if c.insert(k.to_string(), value).is_some() {
            bail!("--component {spec:?}: {k} given twice");
        }
    }
    if domains.is_empty() {
        bail!("--component {spec:?}: domain=... is required");
    }
    c.insert("domains".into(), json!(domains));
    Ok(Value::Object(c))
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
            let mut body = settings_body(&settings, None)?;
            body.insert("name".into(), json!(name));
            let t = client
                .request(Method::POST, "/tenants", Some(Value::Object(body)))
                .await?;
            writeln!(out, "created tenant {name} ({})", domains(&t))?;
        }
        TenantCommand::Set { name, settings } => {
            let current = if needs_current(&settings) {
                Some(
                    client
                        .request(Method::GET, &tenant_path(&name, ""), None)
                        .await?,
                )
            } else {
                None
            };
            let body = settings_body(&settings, current.as_ref())?;
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
