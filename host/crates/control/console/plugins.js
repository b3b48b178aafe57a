// Plugins of a tenant: versions kept, the active one, calls, failures by cause and the
// p50/p99 latency over time (sampled while the page is open); install a .wasm,
// reconfigure, roll back, remove.
import { api, seg, token, ApiError } from './api.js';
import { h, table, form, button, confirmThen, section, fmt, showInfo } from './dom.js';
import { Series, lineChart } from './charts.js';

let current = null;
const history = new Map(); // "tenant/slot" → {p50: Series, p99: Series, calls: Series}

export async function render(ctx) {
  const names = await ctx.tenantNames();
  if (!current || !names.includes(current)) current = names[0] || '';
  const body = h('div', { id: 'plugin-view' });
  const picker = form('plugin-tenant', [['tenant', 'Tenant', 'text', { value: current, list: 'plugin-tenants', required: true }]], 'Show', async (v) => {
    await draw(v.tenant.trim(), body);
    current = v.tenant.trim();
  });
  picker.append(h('datalist', { id: 'plugin-tenants' }, names.map((n) => h('option', { value: n }))));
  if (current) await draw(current, body);
  ctx.every(3000, () => (current ? draw(current, body) : Promise.resolve()));
  return h('div', {}, section('Tenant', picker), body, section('Install a plugin', installForm(() => current, body)));
}

function sample(tenant, p) {
  const key = `${tenant}/${p.slot}`;
  let s = history.get(key);
  if (!s) { s = { p50: new Series('p50'), p99: new Series('p99') }; history.set(key, s); }
  if (p.stats && p.stats.calls > 0) {
    const now = Date.now();
    s.p50.push(now, p.stats.p50_us / 1000);
    s.p99.push(now, p.stats.p99_us / 1000);
  }
  return s;
}

async function draw(tenant, body) {
  const r = await api('GET', `/api/v1/tenants/${seg(tenant)}/plugins`);
  // While nothing but the figures changed, only they are redrawn: the forms keep what
  // the user is typing.
  const shape = JSON.stringify([tenant, r.plugins.map((p) => [p.slot, p.active, p.bound_to_auth, p.bound_to_room_policy, p.versions.map((v) => [v.version, v.health])])]);
  if (body.dataset.shape === shape) {
    for (const p of r.plugins) {
      const art = body.querySelector(`article[data-slot="${CSS.escape(p.slot)}"]`);
      art.querySelector('.figures').replaceWith(figures(p));
      art.querySelector('.chart-box').replaceWith(chart(tenant, p));
    }
    return;
  }
  body.dataset.shape = shape;
  const open = [...body.querySelectorAll('details[open]')].map((d) => d.dataset.slot);
  body.replaceChildren(section(`Plugins of ${tenant}`, r.plugins.length === 0 ? h('p', { class: 'muted' }, 'No plugin installed.') : null,
    ...r.plugins.map((p) => slotView(tenant, p, body))));
  for (const d of body.querySelectorAll('details')) d.open = open.includes(d.dataset.slot);
}

function figures(p) {
  const st = p.stats || { calls: 0, succeeded: 0, denied: 0, failed: {}, p50_us: 0, p99_us: 0 };
  const failures = Object.entries(st.failed || {});
  return h('dl', { class: 'figures' },
    h('dt', {}, 'calls'), h('dd', { class: 'calls' }, String(st.calls)),
    h('dt', {}, 'succeeded'), h('dd', { class: 'succeeded' }, String(st.succeeded)),
    h('dt', {}, 'denied'), h('dd', { class: 'denied' }, String(st.denied)),
    h('dt', {}, 'failures'), h('dd', { class: 'failures' }, failures.length ? failures.map(([c, n]) => `${c} ${n}`).join(', ') : 'none'),
    h('dt', {}, 'p50 / p99'), h('dd', {}, `${fmt(st.p50_us / 1000, 2)} / ${fmt(st.p99_us / 1000, 2)} ms`));
}

function chart(tenant, p) {
  const s = sample(tenant, p);
  return lineChart(`${p.slot} latency`, [s.p50, s.p99], ' ms');
}

function slotView(tenant, p, body) {
  const path = `/api/v1/tenants/${seg(tenant)}/plugins/${seg(p.slot)}`;
  return h('article', { class: 'plugin', dataset: { slot: p.slot } },
    h('h3', {}, `${p.slot} `, h('span', { class: 'muted' }, `${p.world} · active v${p.active}`),
      p.bound_to_auth ? h('span', { class: 'tag' }, 'authenticates') : null,
      p.bound_to_room_policy ? h('span', { class: 'tag' }, 'room policy') : null),
    figures(p),
    chart(tenant, p),
    h('details', { dataset: { slot: p.slot } },
      h('summary', {}, `Versions kept (${p.versions.length}) and actions`),
      table([
        ['Version', (v) => `v${v.version}${v.active ? ' (active)' : ''}`],
        ['Health', (v) => v.health],
        ['Installed', (v) => new Date(v.installed_at_ms).toLocaleString()],
        ['Size', (v) => `${Math.round(v.size / 1024)} KiB`],
        ['SHA-256', (v) => v.sha256.slice(0, 12)],
        ['', (v) => v.active ? '' : button('Roll back to this', async () => {
          await api('POST', `${path}/rollback?version=${v.version}`);
          showInfo(`${p.slot}: v${v.version} active`);
          await draw(tenant, body);
        })],
      ], p.versions, (v) => String(v.version)),
      h('div', { class: 'actions' },
        button('Roll back to last good', async () => {
          const v = await api('POST', `${path}/rollback`);
          showInfo(`${p.slot}: v${v.version} active`);
          await draw(tenant, body);
        }),
        button('Remove plugin', () => confirmThen(`Remove ${p.slot} with every version and its data?`, async () => {
          await api('DELETE', path);
          showInfo(`${p.slot} removed`);
          await draw(tenant, body);
        }), 'danger')),
      form(`reconfigure-${p.slot}`, [['config', 'New configuration (JSON object)', 'textarea', { placeholder: '{}' }]], 'Reconfigure', async (v) => {
        let config;
        try { config = JSON.parse(v.config); } catch (x) { throw new Error('not JSON: ' + x.message); }
        const r = await api('PUT', `${path}/config`, { json: config });
        showInfo(`${p.slot}: v${r.version} with the new configuration`);
        await draw(tenant, body);
      })));
}

function installForm(tenantNow, body) {
  return form('plugin-install', [
    ['slot', 'Slot name', 'text', { required: true }],
    ['wasm', 'Component (.wasm)', 'file', { accept: '.wasm,application/wasm', required: true }],
    ['config', 'Configuration (JSON object, optional)', 'textarea', { placeholder: '{}' }],
  ], 'Install', async (v, el) => {
    const tenant = tenantNow();
    const file = v.wasm;
    if (!(file instanceof File) || file.size === 0) throw new Error('choose a .wasm file');
    const headers = { 'content-type': 'application/wasm' };
    if (v.config.trim()) {
      try { JSON.parse(v.config); } catch (x) { throw new Error('configuration is not JSON: ' + x.message); }
      headers['heliograph-plugin-config'] = JSON.stringify(JSON.parse(v.config));
    }
    const r = await fetch(`/api/v1/tenants/${seg(tenant)}/plugins/${seg(v.slot.trim())}`, {
      method: 'PUT', body: file, headers: { ...headers, authorization: 'Bearer ' + token() }, credentials: 'omit', cache: 'no-store',
    });
    const doc = await r.json().catch(() => null);
    if (!r.ok) throw new ApiError(r.status, doc?.error, doc?.message || r.statusText);
    showInfo(`${v.slot} v${doc.version} installed for ${tenant}`);
    el.reset();
    await draw(tenant, body);
  });
}
