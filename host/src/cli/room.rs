//! `heliograph room …`: a tenant's MUC rooms through the admin API.

use std::io::Write;

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::args::RoomCommand;
use super::client::{ApiClient, encode_segment};

fn rooms_path(tenant: &str, rest: &str) -> String {
    format!("/tenants/{}/rooms{rest}", encode_segment(tenant))
}

fn room_path(tenant: &str, room: &str, rest: &str) -> String {
    rooms_path(tenant, &format!("/{}{rest}", encode_segment(room)))
}

/// `?k=v&…` with the values percent-encoded; empty if none is given.
fn query(pairs: &[(&str, Option<&String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode_segment(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Prints the log page by page (the API's `next`), up to `limit` lines.
async fn print_log(
    client: &ApiClient,
    tenant: &str,
    room: &str,
    mut after: u64,
    limit: Option<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut left = limit.unwrap_or(u64::MAX);
    let mut printed = 0;
    while left > 0 {
        let page = left.min(1000);
        let q = format!("?after={after}&limit={page}");
        let v = client
            .request(
                Method::GET,
                &room_path(tenant, room, &format!("/log{q}")),
                None,
            )
            .await?;
        if printed == 0 && v["logging"].as_bool() == Some(false) {
            writeln!(out, "(logging is off in {room})")?;
        }
        for e in v["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let text = e["text"].as_str().unwrap_or_default();
            let what = if e["subject"].as_bool() == Some(true) {
                format!("set the subject: {text}")
            } else {
                text.to_string()
            };
            writeln!(
                out,
                "{}\t{}\t{}: {what}",
                e["number"],
                e["at"].as_str().unwrap_or_default(),
                e["nick"].as_str().unwrap_or_default()
            )?;
            printed += 1;
            left -= 1;
        }
        match v["next"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    if printed == 0 {
        writeln!(out, "no log lines")?;
    }
    Ok(())
}

/// Runs a room command.
pub async fn run(client: &ApiClient, cmd: RoomCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        RoomCommand::List { tenant } => {
            let v = client
                .request(Method::GET, &rooms_path(&tenant, ""), None)
                .await?;
            let rooms = v["rooms"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if rooms.is_empty() {
                writeln!(out, "no rooms")?;
            }
            for r in rooms {
                let mut flags = Vec::new();
                for (key, label) in [
                    ("persistent", "persistent"),
                    ("members_only", "members-only"),
                    ("moderated", "moderated"),
                    ("password_protected", "password"),
                    ("locked", "locked"),
                ] {
                    if r[key].as_bool() == Some(true) {
                        flags.push(label);
                    }
                }
                if r["public"].as_bool() == Some(false) {
                    flags.push("hidden");
                }
                writeln!(
                    out,
                    "{}\t{} occupant(s)\t{}",
                    r["jid"].as_str().unwrap_or_default(),
                    r["occupants"],
                    flags.join(",")
                )?;
            }
        }
        RoomCommand::Show { room, tenant } => {
            let r = client
                .request(Method::GET, &room_path(&tenant, &room, ""), None)
                .await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
        }
        RoomCommand::Log {
            room,
            tenant,
            after,
            limit,
        } => print_log(client, &tenant, &room, after, limit, out).await?,
        RoomCommand::Create {
            room,
            tenant,
            name,
            owners,
            settings,
        } => {
            let mut config = Map::new();
            if let Some(n) = name {
                config.insert("roomname".into(), json!(n));
            }
            for s in settings {
                let (k, v) = s
                    .split_once('=')
                    .with_context(|| format!("--set {s:?}: expected FIELD=VALUE"))?;
                if k.is_empty() {
                    bail!("--set {s:?}: empty field name");
                }
                config.insert(k.to_string(), json!(v));
            }
            let body = json!({ "jid": room, "config": config, "owners": owners });
            let r = client
                .request(Method::POST, &rooms_path(&tenant, ""), Some(body))
                .await?;
            writeln!(out, "created room {}", r["jid"].as_str().unwrap_or(&room))?;
        }
        RoomCommand::Destroy {
            room,
            tenant,
            reason,
            alternate,
        } => {
            let q = query(&[
                ("reason", reason.as_ref()),
                ("alternate", alternate.as_ref()),
            ]);
            client
                .request(Method::DELETE, &room_path(&tenant, &room, &q), None)
                .await?;
            writeln!(out, "destroyed room {room}")?;
        }
        RoomCommand::Kick {
            room,
            nick,
            tenant,
            reason,
        } => {
            let mut body = Map::new();
            body.insert("nick".into(), json!(nick));
            if let Some(r) = reason {
                body.insert("reason".into(), json!(r));
            }
            client
                .request(
                    Method::POST,
                    &room_path(&tenant, &room, "/kick"),
                    Some(Value::Object(body)),
                )
                .await?;
            writeln!(out, "kicked {nick} from {room}")?;
        }
    }
    Ok(())
}
