//! `heliograph token …`: mint, list and revoke a user's server-issued tokens through the
//! admin API. The user is a bare JID, or a localpart of the first domain of `--tenant`.

use std::io::Write;

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Value, json};

use super::args::TokenCommand;
use super::client::{ApiClient, ClientError, encode_segment};

/// Resolves USER (and --tenant) to (localpart, domain).
async fn resolve_user(
    client: &ApiClient,
    tenant: Option<&str>,
    user: &str,
) -> anyhow::Result<(String, String)> {
    let domains = match tenant {
        Some(t) => {
            let v = client
                .request(
                    Method::GET,
                    &format!("/tenants/{}", encode_segment(t)),
                    None,
                )
                .await?;
            v["domains"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    match user.split_once('@') {
        Some((local, domain)) => {
            let domain = domain.to_ascii_lowercase();
            if let Some(t) = tenant
                && !domains.contains(&domain)
            {
                bail!("{domain} is not a domain of tenant {t}");
            }
            Ok((local.to_string(), domain))
        }
        None => match domains.first() {
            Some(d) => Ok((user.to_string(), d.clone())),
            None if tenant.is_some() => bail!("the tenant has no domains"),
            None => bail!("give USER as a bare JID (user@domain), or --tenant"),
        },
    }
}

fn tokens_path(local: &str, domain: &str) -> String {
    format!(
        "/users/{}/{}/tokens",
        encode_segment(domain),
        encode_segment(local)
    )
}

fn when(v: &Value) -> String {
    v.as_u64()
        .map(|s| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
            )
            .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// A tenant that issues no tokens: say how to turn them on.
fn with_tokens_hint(e: ClientError, tenant: Option<&str>) -> anyhow::Error {
    match &e {
        ClientError::Api { status, .. } if *status == hyper::StatusCode::CONFLICT => {
            let name = tenant.unwrap_or("NAME");
            anyhow::anyhow!(
                "{e}; turn tokens on with `heliograph tenant set {name} --tokens` (a tenant \
                 added through the API) or a [tenants.{name}.tokens] section in the config \
                 file (the tenant `default`, made of general.hosts, issues none: give those \
                 users a tenant of their own)"
            )
        }
        _ => e.into(),
    }
}

/// Runs a token command.
pub async fn run(client: &ApiClient, cmd: TokenCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Mint { tenant, user, kind } => {
            let (local, domain) = resolve_user(client, tenant.as_deref(), &user).await?;
            let v = client
                .request(
                    Method::POST,
                    &tokens_path(&local, &domain),
                    Some(json!({ "kind": kind })),
                )
                .await
                .map_err(|e| with_tokens_hint(e, tenant.as_deref()))?;
            for key in ["access", "refresh"] {
                if let Some(t) = v.get(key) {
                    let token = t["token"].as_str().context("no token in the answer")?;
                    writeln!(out, "{key}_token {token}")?;
                    writeln!(out, "{key}_expires {}", when(&t["expires_at"]))?;
                }
            }
        }
        TokenCommand::List { tenant, user } => {
            let (local, domain) = resolve_user(client, tenant.as_deref(), &user).await?;
            let v = client
                .request(Method::GET, &tokens_path(&local, &domain), None)
                .await?;
            let list = v["refresh_tokens"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                writeln!(out, "no live refresh tokens for {local}@{domain}")?;
            }
            for r in list {
                writeln!(
                    out,
                    "{}  issued {}  expires {}",
                    r["id"].as_str().unwrap_or("?"),
                    when(&r["issued_at"]),
                    when(&r["expires_at"])
                )?;
            }
        }
        TokenCommand::Revoke { tenant, user, id } => {
            let (local, domain) = resolve_user(client, tenant.as_deref(), &user).await?;
            let mut path = tokens_path(&local, &domain);
            if let Some(id) = &id {
                path.push('/');
                path.push_str(&encode_segment(id));
            }
            let v = client.request(Method::DELETE, &path, None).await?;
            match id {
                Some(id) => writeln!(out, "revoked refresh token {id} of {local}@{domain}")?,
                None => writeln!(
                    out,
                    "revoked every token of {local}@{domain} ({} refresh tokens)",
                    v["revoked"]
                )?,
            }
        }
    }
    Ok(())
}
