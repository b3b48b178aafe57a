// Node health: ready or draining (the same /health/ready a load balancer reads), and
// the drain button, behind a confirmation. Operator only.
import { api, text } from './api.js';
import { h, section, confirmThen, button, showInfo } from './dom.js';

export async function render(ctx) {
  const state = h('p', { id: 'node-state', class: 'state' });
  const live = h('p', { id: 'node-live', class: 'muted' });
  const draw = async () => {
    const [status, body] = await text('/health/ready');
    state.textContent = body.trim() || String(status);
    state.className = 'state ' + (status === 200 ? 'ok' : 'bad');
    const [ls] = await text('/health/live');
    live.textContent = ls === 200 ? 'process live' : `live check answered ${ls}`;
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
  return section('Node health', state, live, drain);
}
