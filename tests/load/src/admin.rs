//! Provisioning through the admin API: a minimal HTTP/1.1 client (keep-alive,
//! `Content-Length` or chunked bodies) and concurrent account creation that skips
//! accounts which already exist.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One keep-alive connection to the admin API.
pub struct AdminClient {
    addr: SocketAddr,
    token: String,
    conn: Option<BufReader<TcpStream>>,
}

impl AdminClient {
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        AdminClient {
            addr,
            token: token.to_string(),
            conn: None,
        }
    }

    /// Sends a request and returns (status, body). Reconnects once if a kept-alive
    /// connection was closed by the server.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        for attempt in 0..2 {
            match self.try_request(method, path, body).await {
                Ok(r) => return Ok(r),
                Err(e) if attempt == 0 => {
                    self.conn = None;
                    let _ = e;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!()
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to the admin API at {}", self.addr))?;
            let _ = s.set_nodelay(true);
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected");
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        conn.get_mut().write_all(req.as_bytes()).await?;
        let (status, body, keep) = read_response(conn).await?;
        if !keep {
            self.conn = None;
        }
        Ok((status, body))
    }
}

/// Reads one HTTP/1.1 response: (status, body, connection reusable).
async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> anyhow::Result<(u16, String, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        bail!("connection closed");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .context("status line")?
        .parse()
        .context("status code")?;
    let mut length = None;
    let mut chunked = false;
    let mut keep = true;
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = Some(v.parse::<usize>().context("content-length")?),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => keep = !v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .context("chunk size")?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).await?;
    } else {
        r.read_to_end(&mut body).await?;
        keep = false;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned(), keep))
}

/// Creates `users` (localpart, password) in `domain` with `concurrency` connections;
/// accounts that already exist are skipped. Returns (created, skipped).
pub async fn provision(
    addr: SocketAddr,
    token: &str,
    domain: &str,
    users: Vec<(String, String)>,
    concurrency: usize,
) -> anyhow::Result<(usize, usize)> {
    let mut lister = AdminClient::new(addr, token);
    let (status, body) = lister
        .request("GET", &format!("/api/v1/users/{domain}"), None)
        .await?;
    if status != 200 {
        bail!("listing users of {domain}: HTTP {status}: {body}");
    }
    let doc: serde_json::Value = serde_json::from_str(&body).context("user list JSON")?;
    let existing: std::collections::HashSet<String> = doc["users"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str())
                // Entries may be localparts or bare JIDs.
                .map(|u| u.split('@').next().unwrap_or(u).to_string())
                .collect()
        })
        .unwrap_or_default();
    let requested = users.len();
    let missing: Vec<(String, String)> = users
        .into_iter()
        .filter(|(u, _)| !existing.contains(u))
        .collect();
    let already = requested - missing.len();
    let queue = Arc::new(missing);
    let next = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(AtomicUsize::new(0));
    let skipped = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (queue, next, created, skipped) = (
            queue.clone(),
            next.clone(),
            created.clone(),
            skipped.clone(),
        );
        let token = token.to_string();
        let domain = domain.to_string();
        tasks.push(tokio::spawn(async move {
            let mut client = AdminClient::new(addr, &token);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((user, password)) = queue.get(i) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let body = serde_json::json!({ "username": user, "password": password });
                let (status, text) = client
                    .request(
                        "POST",
                        &format!("/api/v1/users/{domain}"),
                        Some(&body.to_string()),
                    )
                    .await?;
                match status {
                    201 => created.fetch_add(1, Ordering::Relaxed),
                    409 => skipped.fetch_add(1, Ordering::Relaxed),
                    _ => bail!("creating {user}@{domain}: HTTP {status}: {text}"),
                };
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((
        created.load(Ordering::Relaxed),
        already + skipped.load(Ordering::Relaxed),
    ))
}

/// Mints one server-issued access token for each of `users` (localparts of `domain`)
/// through the admin API, `concurrency` requests at a time; the tokens in `users`' order.
pub async fn mint_access_tokens(
    addr: SocketAddr,
    token: &str,
    domain: &str,
    users: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let users = Arc::new(users);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (users, next) = (users.clone(), next.clone());
        let (token, domain) = (token.to_string(), domain.to_string());
        tasks.push(tokio::spawn(async move {
            let mut client = AdminClient::new(addr, &token);
            let mut minted = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(user) = users.get(i) else {
                    return Ok::<_, anyhow::Error>(minted);
                };
                let (status, text) = client
                    .request(
                        "POST",
                        &format!("/api/v1/users/{domain}/{user}/tokens"),
                        Some(r#"{"kind":"access"}"#),
                    )
                    .await?;
                if status != 201 {
                    bail!("minting a token for {user}@{domain}: HTTP {status}: {text}");
                }
                let doc: serde_json::Value =
                    serde_json::from_str(&text).context("minted token JSON")?;
                let access = doc["access"]["token"]
                    .as_str()
                    .context("no access token in the answer")?;
                minted.push((i, access.to_string()));
            }
        }));
    }
    let mut tokens = vec![String::new(); users.len()];
    for t in tasks {
        for (i, access) in t.await?? {
            tokens[i] = access;
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_length_and_chunked_responses() {
        let raw = b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello";
        let mut r = BufReader::new(&raw[..]);
        assert_eq!(
            read_response(&mut r).await.unwrap(),
            (201, "hello".to_string(), true)
        );
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        assert_eq!(
            read_response(&mut r).await.unwrap(),
            (200, "abcde".to_string(), false)
        );
    }
}
