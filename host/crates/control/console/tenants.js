// Tenants: the list with domains, state, sessions, logins/s and failed logins; add,
// enable, disable, remove (operator), and edit settings: limits (operator), auth, MUC,
// JWT keys (secrets write-only: shown redacted, sent back redacted, kept by the server).
import { api, seg } from './api.js';
import { h, table, form, button, confirmThen, section, fmt, showInfo } from './dom.js';
import { Rate } from './charts.js';

const rates = new Map(); // tenant → {logins: Rate, failures: Rate, last: {...}}

function rateOf(t, now) {
  let r = rates.get(t.name);
  if (!r) { r = { logins: new Rate(), failures: new Rate(), last: {} }; rates.set(t.name, r); }
  const l = r.logins.next(now, t.logins_total);
  const f = r.failures.next(now, t.login_failures_total);
  if (l !== null) r.last.logins = l;
  if (f !== null) r.last.failures = f;
  return r.last;
}

async function load(ctx) {
  if (ctx.operator) return (await api('GET', '/api/v1/tenants')).tenants;
  return [await api('GET', '/api/v1/tenants/' + seg(ctx.me.tenant))];
}

export async function render(ctx) {
  const list = h('div', { id: 'tenant-list' });
  const editor = h('div', { id: 'tenant-editor' });
  const draw = async () => {
    const ts = await load(ctx);
    const now = Date.now();
    list.replaceChildren(table([
      ['Name', (t) => h('button', { type: 'button', class: 'link', onclick: () => edit(ctx, t.name, editor, draw) }, t.name)],
      ['Domains', (t) => t.domains.join(', ')],
      ['State', (t) => h('span', { class: t.enabled ? 'ok' : 'bad' }, t.enabled ? 'enabled' : 'disabled')],
      ['Sessions', (t) => String(t.sessions)],
      ['Logins/s', (t) => fmt(rateOf(t, now).logins, 2)],
      ['Logins', (t) => String(t.logins_total)],
      ['Failed logins', (t) => `${t.login_failures_total} (${fmt(rateOf(t, now).failures, 2)}/s)`],
      ['Auth', (t) => t.auth?.method === 'plugin' ? `plugin ${t.auth.plugin}` : (t.auth?.method || 'internal')],
      ...(ctx.operator ? [['Actions', (t) => h('span', { class: 'actions' },
        t.enabled
          ? button('Disable', () => confirmThen(`Disable tenant ${t.name}? Its sessions end.`, async () => { await api('POST', `/api/v1/tenants/${seg(t.name)}/disable`); await draw(); }))
          : button('Enable', async () => { await api('POST', `/api/v1/tenants/${seg(t.name)}/enable`); await draw(); }),
        button('Remove', () => confirmThen(`Remove tenant ${t.name}? Its accounts and data stay unless purged.`, async () => {
          await api('DELETE', `/api/v1/tenants/${seg(t.name)}`);
          showInfo(`tenant ${t.name} removed`);
          await draw();
        }), 'danger'))]] : []),
    ], ts, (t) => t.name));
  };
  await draw();
  ctx.every(3000, draw);
  const add = ctx.operator ? section('Add a tenant', form('tenant-add', [
    ['name', 'Name', 'text', { required: true }],
    ['domains', 'Domains (comma-separated)', 'text', { required: true }],
  ], 'Add tenant', async (v, el) => {
    const domains = v.domains.split(',').map((d) => d.trim()).filter(Boolean);
    await api('POST', '/api/v1/tenants', { json: { name: v.name.trim(), domains } });
    el.reset();
    showInfo(`tenant ${v.name} added`);
    await draw();
  })) : null;
  const token = ctx.operator ? section('Tenant token', h('p', { class: 'muted' }, 'Issues (or replaces) a tenant\'s admin token; it is shown once.'),
    form('tenant-token', [['name', 'Tenant', 'text', { required: true }]], 'Issue token', async (v) => {
      const r = await api('POST', `/api/v1/tenants/${seg(v.name.trim())}/token`);
      document.getElementById('issued-token').textContent = r.token;
    }), h('code', { id: 'issued-token', class: 'secret' })) : null;
  if (!ctx.operator) await edit(ctx, ctx.me.tenant, editor, draw);
  return h('div', {}, section('Tenants', list), editor, add, token);
}

/** The settings editor of one tenant. */
async function edit(ctx, name, editor, redraw) {
  const t = await api('GET', '/api/v1/tenants/' + seg(name));
  const patch = async (body) => {
    await api('PATCH', '/api/v1/tenants/' + seg(name), { json: body });
    showInfo(`tenant ${name} changed`);
    await edit(ctx, name, editor, redraw);
    await redraw();
  };
  const num = (v) => (v === '' || v === undefined ? undefined : Number(v));
  const limits = t.limits || {};
  const limitFields = ['max_sessions', 'max_accounts', 'stanza_rate', 'stanza_burst', 'max_stanza_size'];
  const keys = t.jwt?.keys || [];
  const muc = t.muc || {};
  editor.replaceChildren(section(`Settings of ${name}`,
    ctx.operator ? h('div', {}, h('h3', {}, 'Limits (0 = none)'),
      form('tenant-limits', limitFields.map((f) => [f, f.replace(/_/g, ' '), 'number', { value: limits[f] ?? '', min: 0 }]),
        'Save limits', (v) => patch({ limits: Object.fromEntries(limitFields.map((f) => [f, num(v[f])]).filter(([, x]) => x !== undefined)) })))
      : h('p', { class: 'muted' }, `Limits (set by the operator): ${limitFields.map((f) => `${f.replace(/_/g, ' ')} ${limits[f] ?? '–'}`).join(', ')}`),
    h('h3', {}, 'Authentication'),
    form('tenant-auth', [
      ['method', 'Method (internal or plugin)', 'text', { value: t.auth?.method || 'internal', list: 'auth-methods' }],
      ['plugin', 'Plugin slot (for plugin)', 'text', { value: t.auth?.plugin || '' }],
    ], 'Save authentication', (v) => patch({ auth: v.method === 'plugin' ? { method: 'plugin', plugin: v.plugin } : { method: 'internal' } })),
    h('datalist', { id: 'auth-methods' }, h('option', { value: 'internal' }), h('option', { value: 'plugin' })),
    h('h3', {}, 'Meetings (MUC)'),
    form('tenant-muc', [
      ['enabled', 'Enabled (true/false)', 'text', { value: String(muc.enabled ?? true) }],
      ['max_occupants', 'Max occupants per room', 'number', { value: muc.max_occupants ?? '', min: 0 }],
      ['history_length', 'History length', 'number', { value: muc.history_length ?? '', min: 0 }],
      ['room_creation', 'Room creation (anyone/admins)', 'text', { value: muc.room_creation ?? 'anyone' }],
    ], 'Save MUC settings', (v) => patch({ muc: { enabled: v.enabled.trim() === 'true', max_occupants: num(v.max_occupants), history_length: num(v.history_length), room_creation: v.room_creation.trim() } })),
    h('h3', {}, 'JWT keys'),
    h('p', { class: 'muted' }, 'Secrets are write-only: the server never shows them again.'),
    table([
      ['kid', (k) => k.kid || '–'],
      ['alg', (k) => k.alg],
      ['key', (k) => k.secret ? 'secret (hidden)' : k.public_key ? 'public key' : (k.secret_file || k.public_key_file || '–')],
      ['', (k) => button('Remove', () => patch({ jwt: keys.length === 1 && !t.jwt.jwks_files?.length ? null : { ...t.jwt, keys: keys.filter((x) => x !== k) } }), 'danger')],
    ], keys, (k) => k.kid || k.alg),
    form('tenant-jwt', [
      ['kid', 'Key id (kid)', 'text'],
      ['alg', 'Algorithm', 'text', { value: 'HS256', required: true }],
      ['secret', 'HMAC secret (write-only)', 'password'],
      ['public_key', 'or public key (PEM)', 'textarea'],
    ], 'Add key', (v) => {
      const key = { alg: v.alg.trim() };
      if (v.kid.trim()) key.kid = v.kid.trim();
      if (v.secret) key.secret = v.secret;
      if (v.public_key.trim()) key.public_key = v.public_key.trim();
      return patch({ jwt: { ...(t.jwt || {}), keys: [...keys, key] } });
    }),
    h('h3', {}, 'Any other setting'),
    h('p', { class: 'muted' }, 'A JSON object sent as the PATCH body (see the admin API documentation).'),
    form('tenant-patch', [['body', 'PATCH body', 'textarea', { placeholder: '{"federate_with": []}' }]], 'Apply', (v) => {
      let body;
      try { body = JSON.parse(v.body); } catch (x) { throw new Error('not JSON: ' + x.message); }
      return patch(body);
    })));
}
