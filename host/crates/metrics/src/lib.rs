//! Prometheus metrics: the `metrics` facade with the `metrics-exporter-prometheus`
//! recorder, rendered as text by the admin listener's `/metrics` (no extra HTTP server).
//!
//! Names (all prefixed `heliograph_`):
//! - `connections_total{transport}`, `connections_refused_total{transport,reason}`,
//!   `connections{transport}` (gauge, open now), `unauthenticated_connections` (gauge);
//! - `sessions{transport[,tenant]}` (gauge, bound now);
//! - `logins_total{transport[,tenant]}`, `login_failures_total{transport,cause}`;
//! - `stanzas_in_total{transport,kind}`, `stanzas_out_total{transport,kind}`;
//! - `stanza_errors_total{condition}` (stanza errors the server generated: undeliverable,
//!   unknown recipient or domain, unsupported request, ...);
//! - `session_queue_stanzas` and `session_queue_max_stanzas` (gauges computed at scrape
//!   time: stanzas waiting in all sessions' outgoing queues, and the deepest queue);
//! - `storage_seconds{backend,op}` (histogram: time of each storage operation, by backend
//!   — `sled`, `postgres` — and operation, `store.method` such as `offline.peek`);
//!
//! Every `_seconds` metric is a Prometheus histogram with the fixed buckets of
//! [`LATENCY_BUCKETS`] (`_bucket{le}`, `_sum`, `_count`): its memory is fixed per series
//! however long the server runs (summaries' sketches grew with the spread of the values
//! they saw), and buckets add up across nodes, so `histogram_quantile` over
//! `sum by (le)` gives a cluster-wide quantile.
//! - `plugin_calls_total{world,outcome[,tenant,plugin]}`, `plugin_call_seconds{world[,...]}`
//!   (recorded by `crate::plugins`);
//! - components (`crate::component`; `transport="component"` in the connection and stanza
//!   metrics above): `component_handshakes_total{outcome}` (`ok`, `not_authorized`,
//!   `conflict`), `components_connected` (gauge),
//!   `component_stanzas_dropped_total{reason}` (`queue_full`, `invalid_output`, `loop`);
//! - `token_logins_total{source,outcome}`: token logins by source (`jwt`,
//!   `access-token`, `refresh-token`, or `-` when refused before one was known) and
//!   outcome (`ok` or the refusal reason: `expired`, `bad-signature`, `unknown-kid`, ...);
//! - `stream_management_total{event}`: XEP-0198 events (`enabled`, `detached`,
//!   `resumed`, `resume_failed`, `expired`: a detached session nobody resumed in time);
//! - `ready` and `draining` (gauges, 0 or 1, set by the admin listener at scrape time:
//!   `ready` is 1 exactly when `/health/ready` answers 200, `draining` while a drain runs).
//!
//! Outside the `heliograph_` prefix, the standard process metrics of every Prometheus
//! client (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`) are read from
//! `/proc/self` at scrape time on Linux ([`process`]).
//!
//! Transports are `tcp` (STARTTLS and direct TLS), `bosh` and `websocket`; connection,
//! session, login and stanza counts are recorded by the session core and the listeners
//! through the helpers below, the same way for every transport.
//!
//! The `tenant` label is only added with `[metrics] per_tenant_labels = true`, so label
//! cardinality stays bounded with thousands of tenants when it is off. Every other label
//! takes values from a fixed set.

pub mod process;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds (seconds) of the buckets of every `_seconds` histogram: 100 µs to 10 s,
/// about three per decade, with 40 ms (the plugin alert's threshold, near the default
/// plugin call deadline) among them so that quantile is read at a bucket edge.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.04, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static PER_TENANT: OnceLock<bool> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls do nothing).
pub fn install(per_tenant_labels: bool) {
    let _ = PER_TENANT.set(per_tenant_labels);
    if HANDLE.get().is_some() {
        return;
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .expect("LATENCY_BUCKETS is a non-empty constant");
    match builder.install_recorder() {
        Ok(handle) => {
            spawn_upkeep(handle.clone());
            let _ = HANDLE.set(handle);
            metrics::describe_gauge!(
                "heliograph_ready",
                "1 when /health/ready answers 200, else 0 (draining, or the database does not answer)."
            );
            metrics::describe_gauge!("heliograph_draining", "1 while a drain runs, else 0.");
            metrics::describe_gauge!(
                "heliograph_archive_backlog",
                "Message copies queued for the archive and not yet written; past 32,768 the senders of archiving tenants wait."
            );
        }
        Err(e) => tracing::warn!(error = %e, "metrics recorder not installed"),
    }
}

/// How often the recorder's pending histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds pending histogram samples into their buckets every [`UPKEEP_INTERVAL`]. The
/// recorder keeps every sample recorded since the last render or upkeep, so a server
/// whose `/metrics` nobody scrapes would otherwise grow by each sample for as long as it
/// runs (seen in the soak as anonymous memory growing with the traffic).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started");
    }
}

/// A counter handle looked up once. Looking one up (hashing its labels, searching the
/// registry) costs more than the increment, so counters bumped for every stanza keep
/// theirs. Only once the recorder is installed: a handle taken before would count
/// nowhere for good.
fn cached(
    slot: &'static OnceLock<metrics::Counter>,
    make: impl FnOnce() -> metrics::Counter,
) -> std::borrow::Cow<'static, metrics::Counter> {
    if let Some(counter) = slot.get() {
        return std::borrow::Cow::Borrowed(counter);
    }
    if HANDLE.get().is_none() {
        return std::borrow::Cow::Owned(make());
    }
    std::borrow::Cow::Borrowed(slot.get_or_init(make))
}

/// Cached counters per (transport, stanza kind), for the per-stanza counts.
struct StanzaCounters {
    slots: [[OnceLock<metrics::Counter>; 4]; 4],
}

impl StanzaCounters {
    const fn new() -> Self {
        StanzaCounters {
            slots: [const { [const { OnceLock::new() }; 4] }; 4],
        }
    }

    /// The counter of `transport` and `kind`, made by `make` when not cached (a
    /// transport or kind outside the fixed sets is never cached).
    fn get(
        &'static self,
        transport: &str,
        kind: &str,
        make: impl FnOnce() -> metrics::Counter,
    ) -> std::borrow::Cow<'static, metrics::Counter> {
        let t = match transport {
            "tcp" => 0,
            "tls" => 1,
            "bosh" => 2,
            "websocket" => 3,
            _ => return std::borrow::Cow::Owned(make()),
        };
        let k = match kind {
            "message" => 0,
            "presence" => 1,
            "iq" => 2,
            "other" => 3,
            _ => return std::borrow::Cow::Owned(make()),
        };
        cached(&self.slots[t][k], make)
    }
}

/// Whether metrics carry a `tenant` label.
pub fn per_tenant() -> bool {
    PER_TENANT.get().copied().unwrap_or(false)
}

/// What the admin listener knows at scrape time and the recorder cannot see.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrapeState {
    /// Stanzas queued in all sessions' outgoing queues.
    pub queued_stanzas: usize,
    /// The deepest session queue.
    pub deepest_queue: usize,
    /// Whether `/health/ready` answers 200 now.
    pub ready: bool,
    /// Whether a drain runs.
    pub draining: bool,
    /// Message copies queued for the archive and not yet written.
    pub archive_backlog: usize,
}

/// The current metrics in Prometheus text format, if the recorder is installed, with
/// the process metrics appended (Linux).
pub fn render(state: ScrapeState) -> Option<String> {
    let handle = HANDLE.get()?;
    metrics::gauge!("heliograph_session_queue_stanzas").set(state.queued_stanzas as f64);
    metrics::gauge!("heliograph_session_queue_max_stanzas").set(state.deepest_queue as f64);
    metrics::gauge!("heliograph_ready").set(f64::from(u8::from(state.ready)));
    metrics::gauge!("heliograph_draining").set(f64::from(u8::from(state.draining)));
    metrics::gauge!("heliograph_archive_backlog").set(state.archive_backlog as f64);
    let mut text = handle.render();
    match process::read() {
        Ok(stats) => {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&process::exposition(&stats));
        }
        Err(process::ProcessStatsError::Unsupported) => {}
        Err(e) => {
            // Once: a scrape every few seconds would repeat it forever.
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "process metrics not read");
            }
        }
    }
    Some(text)
}

/// An open client connection; counted in `connections{transport}` until dropped.
pub struct OpenConnection(metrics::Gauge);

/// Counts a new connection on `transport` (`tcp`, `bosh`, `websocket`, `component`).
pub fn connection_opened(transport: &'static str) -> OpenConnection {
    metrics::counter!("heliograph_connections_total", "transport" => transport).increment(1);
    let gauge = metrics::gauge!("heliograph_connections", "transport" => transport);
    gauge.increment(1.0);
    OpenConnection(gauge)
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Counts a refused connection; `reason` is one of a fixed set.
pub fn connection_refused(transport: &'static str, reason: &'static str) {
    metrics::counter!(
        "heliograph_connections_refused_total",
        "transport" => transport,
        "reason" => reason
    )
    .increment(1);
}

/// A bound session; counted in `sessions{transport[,tenant]}` until dropped.
pub struct BoundSession(metrics::Gauge);

/// Counts a successful login and a new bound session of `tenant` on `transport`.
pub fn session_bound(transport: &'static str, tenant: &str) -> BoundSession {
    let gauge = if per_tenant() {
        let tenant = tenant.to_string();
        metrics::counter!("heliograph_logins_total", "transport" => transport, "tenant" => tenant.clone())
            .increment(1);
        metrics::gauge!("heliograph_sessions", "transport" => transport, "tenant" => tenant)
    } else {
        metrics::counter!("heliograph_logins_total", "transport" => transport).increment(1);
        metrics::gauge!("heliograph_sessions", "transport" => transport)
    };
    gauge.increment(1.0);
    BoundSession(gauge)
}

impl Drop for BoundSession {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Counts a stanza received from a bound client.
pub fn stanza_in(transport: &'static str, name: &str) {
    stanzas_in(transport, stanza_kind(name), 1);
}

static STANZAS_IN: StanzaCounters = StanzaCounters::new();
static STANZAS_OUT: StanzaCounters = StanzaCounters::new();

fn stanzas_in(transport: &'static str, kind: &'static str, n: u64) {
    STANZAS_IN
        .get(transport, kind, || {
            metrics::counter!(
                "heliograph_stanzas_in_total",
                "transport" => transport,
                "kind" => kind
            )
        })
        .increment(n);
}

fn stanzas_out(transport: &'static str, kind: &'static str, n: u64) {
    STANZAS_OUT
        .get(transport, kind, || {
            metrics::counter!("heliograph_stanzas_out_total", "transport" => transport, "kind" => kind)
        })
        .increment(n);
}

/// Counts an element sent to a client: a stanza, or a SASL failure (a failed login).
pub fn element_out(transport: &'static str, el: &heliograph_xml::Element) {
    if is_sasl_failure(el) {
        let cause = el
            .first_child()
            .map(|c| sasl_failure_cause(c.name()))
            .unwrap_or("other");
        metrics::counter!("heliograph_login_failures_total", "transport" => transport, "cause" => cause)
            .increment(1);
        return;
    }
    let kind = stanza_kind(el.name());
    if kind != "other" {
        stanzas_out(transport, kind, 1);
    }
}

/// True if `el` is a SASL failure (counted as a failed login, not as a stanza).
fn is_sasl_failure(el: &heliograph_xml::Element) -> bool {
    el.is("failure", heliograph_xml::ns::SASL)
}

/// One session's stanza counts, added to the shared counters in batches: the session
/// driver flushes before it waits for more work, and on drop. Every core bumping the
/// same two counters for each chat message made them bounce between the cores' caches
/// (2% of the server's CPU per message). Once a session is idle the shared counters
/// are exact.
#[derive(Debug, Default)]
pub struct StanzaTally {
    transport: &'static str,
    /// Stanzas in, then out, by kind (message, presence, iq, other).
    counts: [[u64; 4]; 2],
}

const KINDS: [&str; 4] = ["message", "presence", "iq", "other"];

impl StanzaTally {
    /// Counts a stanza received from a bound client (as [`stanza_in`]).
    pub fn stanza_in(&mut self, transport: &'static str, name: &str) {
        self.switch(transport);
        self.counts[0][kind_index(name)] += 1;
    }

    /// Counts an element sent to a client (as [`element_out`]; a SASL failure is
    /// counted at once).
    pub fn element_out(&mut self, transport: &'static str, el: &heliograph_xml::Element) {
        if is_sasl_failure(el) {
            element_out(transport, el);
            return;
        }
        self.switch(transport);
        let k = kind_index(el.name());
        if k != 3 {
            self.counts[1][k] += 1;
        }
    }

    /// Adds what was counted to the shared counters.
    pub fn flush(&mut self) {
        for (k, kind) in KINDS.iter().enumerate() {
            let (i, o) = (
                std::mem::take(&mut self.counts[0][k]),
                std::mem::take(&mut self.counts[1][k]),
            );
            if i > 0 {
                stanzas_in(self.transport, kind, i);
            }
            if o > 0 {
                stanzas_out(self.transport, kind, o);
            }
        }
    }

    fn switch(&mut self, transport: &'static str) {
        if self.transport != transport {
            self.flush();
            self.transport = transport;
        }
    }
}

impl Drop for StanzaTally {
    fn drop(&mut self) {
        self.flush();
    }
}

fn kind_index(name: &str) -> usize {
    match name {
        "message" => 0,
        "presence" => 1,
        "iq" => 2,
        _ => 3,
    }
}

/// Counts a stream management event (`enabled`, `detached`, `resumed`, `resume_failed`,
/// `expired`).
pub fn stream_management(event: &'static str) {
    metrics::counter!("heliograph_stream_management_total", "event" => event).increment(1);
}

/// Counts archived messages by what happened to them (`queued`, `written`, `skipped` by
/// preferences, `failed`, `purged` by retention).
pub fn archive(event: &'static str, n: usize) {
    static QUEUED: OnceLock<metrics::Counter> = OnceLock::new();
    let make = || metrics::counter!("heliograph_archive_messages_total", "event" => event);
    match event {
        // Once per archived message, on the message path.
        "queued" => cached(&QUEUED, make).increment(n as u64),
        _ => make().increment(n as u64),
    }
}

/// Counts a push notification event (`published`, `failed`, `disabled`).
pub fn push(event: &'static str) {
    metrics::counter!("heliograph_push_total", "event" => event).increment(1);
}

/// Counts a stanza error generated by the server; `condition` is an RFC 6120 §8.3.3 name.
pub fn stanza_error(condition: &'static str) {
    metrics::counter!("heliograph_stanza_errors_total", "condition" => condition).increment(1);
}

/// Records the duration of one storage operation (`op` is `store.method`).
pub fn storage_call(backend: &'static str, op: &'static str, elapsed: std::time::Duration) {
    metrics::histogram!("heliograph_storage_seconds", "backend" => backend, "op" => op)
        .record(elapsed.as_secs_f64());
}

/// SASL failure conditions (RFC 6120 §6.5), a fixed label set.
fn sasl_failure_cause(name: &str) -> &'static str {
    match name {
        "aborted" => "aborted",
        "account-disabled" => "account-disabled",
        "credentials-expired" => "credentials-expired",
        "encryption-required" => "encryption-required",
        "incorrect-encoding" => "incorrect-encoding",
        "invalid-authzid" => "invalid-authzid",
        "invalid-mechanism" => "invalid-mechanism",
        "malformed-request" => "malformed-request",
        "mechanism-too-weak" => "mechanism-too-weak",
        "not-authorized" => "not-authorized",
        "temporary-auth-failure" => "temporary-auth-failure",
        _ => "other",
    }
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
    KINDS[kind_index(name)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric's line in the rendered text, e.g. `name{labels} 2`.
    fn line(text: &str, prefix: &str) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_string)
    }

    #[test]
    fn cached_counters_count_before_and_after_the_recorder_is_installed() {
        // Before the recorder: counted nowhere, and nothing cached for good.
        stanza_in("tcp", "message");
        install(false);
        for _ in 0..3 {
            stanza_in("tcp", "message");
            stanza_in("websocket", "r");
            archive("queued", 2);
        }
        stanza_in("component", "iq");
        // A session's tally reaches the shared counters when flushed, and when dropped.
        let bosh_messages = "heliograph_stanzas_in_total{transport=\"bosh\",kind=\"message\"}";
        let mut tally = StanzaTally::default();
        tally.stanza_in("bosh", "message");
        tally.stanza_in("bosh", "message");
        tally.element_out("bosh", &heliograph_xml::Element::new("iq", "jabber:client"));
        let unflushed = render(ScrapeState::default()).expect("installed");
        assert_eq!(line(&unflushed, bosh_messages), None, "{unflushed}");
        tally.flush();
        tally.stanza_in("bosh", "message");
        drop(tally);
        storage_call("sled", "test.op", std::time::Duration::from_micros(300));
        storage_call("sled", "test.op", std::time::Duration::from_millis(30));
        let text = render(ScrapeState {
            ready: true,
            archive_backlog: 42,
            ..ScrapeState::default()
        })
        .expect("installed");
        assert!(text.lines().any(|l| l == "heliograph_ready 1"), "{text}");
        assert!(
            text.lines().any(|l| l == "heliograph_archive_backlog 42"),
            "{text}"
        );
        assert!(text.lines().any(|l| l == "heliograph_draining 0"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(
            line(&text, "process_cpu_seconds_total ").is_some()
                && line(&text, "process_start_time_seconds ").is_some(),
            "{text}"
        );
        assert_eq!(
            line(
                &text,
                "heliograph_stanzas_in_total{transport=\"tcp\",kind=\"message\"}"
            )
            .as_deref(),
            Some("heliograph_stanzas_in_total{transport=\"tcp\",kind=\"message\"} 3")
        );
        assert!(
            line(
                &text,
                "heliograph_stanzas_in_total{transport=\"websocket\",kind=\"other\"} 3"
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                "heliograph_stanzas_in_total{transport=\"component\",kind=\"iq\"} 1"
            )
            .is_some(),
            "{text}"
        );
        assert_eq!(
            line(&text, bosh_messages),
            Some(format!("{bosh_messages} 3"))
        );
        assert!(
            line(
                &text,
                "heliograph_stanzas_out_total{transport=\"bosh\",kind=\"iq\"} 1"
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                "heliograph_archive_messages_total{event=\"queued\"} 6"
            )
            .is_some(),
            "{text}"
        );
        // Latencies are histograms with the fixed buckets, cumulative per `le`; no
        // summary quantiles.
        let storage = "heliograph_storage_seconds_bucket{backend=\"sled\",op=\"test.op\",le=";
        let bucket = |le: &str| line(&text, &format!("{storage}\"{le}\"}} "));
        assert_eq!(
            bucket("0.00025").as_deref().map(|l| l.ends_with(" 0")),
            Some(true)
        );
        assert_eq!(
            bucket("0.0005").as_deref().map(|l| l.ends_with(" 1")),
            Some(true)
        );
        assert_eq!(
            bucket("0.04").as_deref().map(|l| l.ends_with(" 2")),
            Some(true)
        );
        assert_eq!(
            bucket("+Inf").as_deref().map(|l| l.ends_with(" 2")),
            Some(true)
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with(storage)).count(),
            LATENCY_BUCKETS.len() + 1,
            "{text}"
        );
        assert!(!text.contains("quantile="), "{text}");
    }
}
