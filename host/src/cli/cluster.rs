//! `heliograph cluster status`: the nodes the server's node knows, one line each, from
//! `GET /api/v1/cluster`.

use std::io::Write;

use super::client::ApiClient;

pub async fn status(client: &ApiClient, out: &mut dyn Write) -> anyhow::Result<()> {
    let r = client.request(hyper::Method::GET, "/cluster", None).await?;
    if r["clustered"] != true {
        writeln!(
            out,
            "not clustered: {} sessions on this server",
            r["sessions"]
        )?;
        return Ok(());
    }
    let s = &r["status"];
    writeln!(
        out,
        "node {}, NATS {}",
        s["node"].as_str().unwrap_or_default(),
        if s["nats_connected"] == true {
            "connected"
        } else {
            "disconnected"
        }
    )?;
    writeln!(
        out,
        "{:<16} {:>9} {:>10} {:>6} {:>10}  version",
        "NODE", "SESSIONS", "REPLICATED", "SYNCED", "HEARD (ms)"
    )?;
    for n in s["nodes"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:<16} {:>9} {:>10} {:>6} {:>10}  {}",
            n["node"].as_str().unwrap_or_default(),
            n["sessions"],
            n["replicated"],
            if n["synced"] == true { "yes" } else { "no" },
            n["last_heard_ms"],
            n["version"].as_str().unwrap_or_default()
        )?;
    }
    Ok(())
}
