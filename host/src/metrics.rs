//! Prometheus metrics: the `metrics` facade with the `metrics-exporter-prometheus`
//! recorder, rendered as text by the admin listener's `/metrics` (no extra HTTP server).
//!
//! Names (all prefixed `heliograph_`):
//! - `connections_total{transport}`, `connections_refused_total{transport,reason}`,
//!   `connections{transport}` (gauge, open now), `unauthenticated_connections` (gauge);
//! - `sessions{transport[,tenant]}` (gauge, bound now);
//! - `logins_total{transport[,tenant]}`, `login_failures_total{transport,cause}`;
//! - `stanzas_in_total{transport,kind}`, `stanzas_out_total{transport,kind}`;
//! - `plugin_calls_total{world,outcome[,tenant,plugin]}`, `plugin_call_seconds{world[,...]}`
//!   (recorded by `crate::plugins`);
//! - `token_logins_total{source,outcome}`: token logins by source (`jwt`,
//!   `access-token`, `refresh-token`, or `-` when refused before one was known) and
//!   outcome (`ok` or the refusal reason: `expired`, `bad-signature`, `unknown-kid`, ...);
//! - `process_resident_memory_bytes` (read from `/proc/self/statm` at scrape time).
//!
//! The `tenant` label is only added with `[metrics] per_tenant_labels = true`, so label
//! cardinality stays bounded with thousands of tenants when it is off. Every other label
//! takes values from a fixed set.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static PER_TENANT: OnceLock<bool> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls do nothing).
pub fn install(per_tenant_labels: bool) {
    let _ = PER_TENANT.set(per_tenant_labels);
    if HANDLE.get().is_some() {
        return;
    }
    match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => {
            let _ = HANDLE.set(handle);
        }
        Err(e) => tracing::warn!(error = %e, "metrics recorder not installed"),
    }
}

/// Whether metrics carry a `tenant` label.
pub fn per_tenant() -> bool {
    PER_TENANT.get().copied().unwrap_or(false)
}

/// The current metrics in Prometheus text format, if the recorder is installed.
pub fn render() -> Option<String> {
    let handle = HANDLE.get()?;
    if let Some(rss) = resident_memory() {
        metrics::gauge!("heliograph_process_resident_memory_bytes").set(rss as f64);
    }
    Some(handle.render())
}

/// Resident set size in bytes (Linux), from `/proc/self/statm`.
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Counts one token login: `Ok(source)` or `Err(reason)` (both from fixed sets).
pub fn token_login(result: Result<&'static str, &'static str>) {
    let (source, outcome) = match result {
        Ok(source) => (source, "ok"),
        Err(reason) => ("-", reason),
    };
    metrics::counter!("heliograph_token_logins_total", "source" => source, "outcome" => outcome)
        .increment(1);
}

/// The stanza kind label: one of a fixed set.
pub fn stanza_kind(name: &str) -> &'static str {
    match name {
        "message" => "message",
        "presence" => "presence",
        "iq" => "iq",
        _ => "other",
    }
}
