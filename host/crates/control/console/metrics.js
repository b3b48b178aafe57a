// Live charts of the main figures, read from the server's own /metrics (Prometheus text,
// served by this same admin listener) every few seconds: connections, logins, stanzas
// in/out, plugin latency, queue depths, and the process's CPU (rate of
// process_cpu_seconds_total, Linux) and memory. Operator only: the figures are server-wide.
import { text } from './api.js';
import { h, section } from './dom.js';
import { parse, sum, buckets, bucketDelta, bucketQuantile, value } from './prometheus.js';
import { Series, Rate, lineChart } from './charts.js';

const S = {
  connections: new Series('open'), sessions: new Series('sessions'),
  logins: new Series('logins/s'), failures: new Series('failed/s'),
  stanzasIn: new Series('in/s'), stanzasOut: new Series('out/s'),
  p50: new Series('p50'), p99: new Series('p99'),
  queued: new Series('queued'), deepest: new Series('deepest'),
  cpu: new Series('CPU'), memory: new Series('resident'),
};
const R = { logins: new Rate(), failures: new Rate(), in: new Rate(), out: new Rate(), cpu: new Rate() };
// The plugin call histogram's buckets at the previous scrape: the chart shows the
// quantiles of the calls made since then (no point when there were none).
let pluginBuckets = null;

async function sampleOnce() {
  const [status, body] = await text('/metrics');
  if (status !== 200) throw new Error(`/metrics answered ${status}: ${body.trim()}`);
  const m = parse(body);
  const now = Date.now();
  S.connections.push(now, sum(m, 'heliograph_connections'));
  S.sessions.push(now, sum(m, 'heliograph_sessions'));
  S.logins.push(now, R.logins.next(now, sum(m, 'heliograph_logins_total')));
  S.failures.push(now, R.failures.next(now, sum(m, 'heliograph_login_failures_total')));
  S.stanzasIn.push(now, R.in.next(now, sum(m, 'heliograph_stanzas_in_total')));
  S.stanzasOut.push(now, R.out.next(now, sum(m, 'heliograph_stanzas_out_total')));
  const calls = buckets(m, 'heliograph_plugin_call_seconds');
  if (pluginBuckets !== null) {
    const recent = bucketDelta(calls, pluginBuckets);
    const p50 = bucketQuantile(recent, 0.5);
    const p99 = bucketQuantile(recent, 0.99);
    if (p50 !== null) S.p50.push(now, p50 * 1000);
    if (p99 !== null) S.p99.push(now, p99 * 1000);
  }
  pluginBuckets = calls;
  S.queued.push(now, sum(m, 'heliograph_session_queue_stanzas'));
  S.deepest.push(now, sum(m, 'heliograph_session_queue_max_stanzas'));
  const cpu = value(m, 'process_cpu_seconds_total');
  if (cpu !== null) {
    const busy = R.cpu.next(now, cpu);
    if (busy !== null) S.cpu.push(now, busy * 100);
  }
  const rss = value(m, 'process_resident_memory_bytes');
  if (rss !== null) S.memory.push(now, rss / 1048576);
}

function charts() {
  return h('div', { class: 'charts', id: 'metric-charts' },
    lineChart('Connections and sessions', [S.connections, S.sessions]),
    lineChart('Logins', [S.logins, S.failures], '/s'),
    lineChart('Stanzas', [S.stanzasIn, S.stanzasOut], '/s'),
    lineChart('Plugin call latency (calls since the last sample)', [S.p50, S.p99], ' ms'),
    lineChart('Session queues (stanzas)', [S.queued, S.deepest]),
    lineChart('CPU (% of one core)', [S.cpu], '%'),
    lineChart('Memory (MiB)', [S.memory], ' MiB'));
}

export async function render(ctx) {
  await sampleOnce();
  const box = h('div', {}, charts());
  ctx.every(3000, async () => {
    await sampleOnce();
    box.replaceChildren(charts());
  });
  return section('Metrics (from /metrics, every 3 s)', box);
}
