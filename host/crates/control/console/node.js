// Node health: ready or draining (the same /health/ready a load balancer reads), the
// node's own figures from /metrics (heliograph_ready and heliograph_draining, and the
// process: CPU, memory, file descriptors, uptime; the process figures exist on Linux
// only), and the drain button, behind a confirmation. Operator only.
import { api, text } from './api.js';
import { h, section, confirmThen, button, showInfo } from './dom.js';
import { parse, value } from './prometheus.js';
import { Rate } from './charts.js';

export async function render(ctx) {
  const state = h('p', { id: 'node-state', class: 'state' });
  const live = h('p', { id: 'node-live', class: 'muted' });
  const box = h('div', {});
  const cpu = new Rate();
  const draw = async () => {
    const [status, body] = await text('/health/ready');
    state.textContent = body.trim() || String(status);
    state.className = 'state ' + (status === 200 ? 'ok' : 'bad');
    const [ls] = await text('/health/live');
    live.textContent = ls === 200 ? 'process live' : `live check answered ${ls}`;
    const [ms, metrics] = await text('/metrics');
    box.replaceChildren(ms === 200 ? figures(parse(metrics), cpu) : h('p', { class: 'muted' }, `/metrics answered ${ms}`));
  };
  await draw();
  ctx.every(2000, draw);
  const drain = button('Drain this node', () => confirmThen(
    'Drain this node? It stops being ready, refuses new sessions, sends its sessions elsewhere and then exits.',
    async () => {
      const r = await api('POST', '/api/v1/drain');
      showInfo('draining: ' + JSON.stringify(r));
      await draw();
    }), 'danger');
  drain.id = 'drain';
  return section('Node health', state, live, box, drain);
}

/** The node's figures; `cpu` turns CPU seconds into a share of one core between draws. */
function figures(m, cpu) {
  const yesNo = (v) => (v === null ? '–' : v === 1 ? 'yes' : 'no');
  const busy = cpu.next(Date.now(), value(m, 'process_cpu_seconds_total'));
  const rss = value(m, 'process_resident_memory_bytes');
  const open = value(m, 'process_open_fds');
  const max = value(m, 'process_max_fds');
  const start = value(m, 'process_start_time_seconds');
  const row = (label, id, v) => [h('dt', {}, label), h('dd', { id }, v)];
  return h('dl', { class: 'figures', id: 'node-figures' },
    ...row('ready (heliograph_ready)', 'node-ready', yesNo(value(m, 'heliograph_ready'))),
    ...row('draining (heliograph_draining)', 'node-draining', yesNo(value(m, 'heliograph_draining'))),
    ...row('CPU', 'node-cpu', busy === null ? '–' : `${(busy * 100).toFixed(1)}% of a core`),
    ...row('memory', 'node-memory', rss === null ? '–' : `${(rss / 1048576).toFixed(1)} MiB`),
    ...row('file descriptors', 'node-fds', open === null ? '–' : `${open} of ${max}`),
    ...row('up for', 'node-uptime', start === null ? '–' : duration(Date.now() / 1000 - start)));
}

function duration(s) {
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), mm = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hh} h`;
  if (hh) return `${hh} h ${mm} min`;
  return mm ? `${mm} min ${Math.floor(s % 60)} s` : `${Math.max(0, Math.floor(s))} s`;
}
