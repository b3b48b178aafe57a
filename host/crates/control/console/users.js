// Users and sessions of one domain: search, create, delete, change password; the online
// sessions with transport and client address, and ending one. The domain is typed (with
// the reachable ones offered): the API says when a token may not reach it.
import { api, seg } from './api.js';
import { h, table, form, button, confirmThen, section, showInfo } from './dom.js';

let current = null; // the domain shown, kept across visits of the page
let shown = null; // the element the domain is drawn in (the page may not be attached yet)

export async function render(ctx) {
  const domains = await ctx.domains();
  if (!current || !domains.includes(current)) current = domains[0] || '';
  const body = h('div', { id: 'domain-view' });
  shown = body;
  const picker = form('domain-pick', [
    ['domain', 'Domain', 'text', { value: current, list: 'domain-list', required: true }],
  ], 'Show', async (v) => {
    const d = v.domain.trim();
    await draw(ctx, d, body); // throws the API's error, shown under the form
    current = d;
  });
  picker.append(h('datalist', { id: 'domain-list' }, domains.map((d) => h('option', { value: d }))));
  if (current) await draw(ctx, current, body);
  ctx.every(5000, () => (current && shown === body ? drawSessions(ctx, current) : Promise.resolve()));
  return h('div', {}, section('Domain', picker), body);
}

async function draw(ctx, domain, body) {
  const r = await api('GET', '/api/v1/users/' + seg(domain));
  const search = h('input', { type: 'search', id: 'user-search', placeholder: 'search users', 'aria-label': 'search users' });
  const list = h('div', { id: 'user-list' });
  const pw = h('div', { id: 'password-box' });
  const fill = () => {
    const q = search.value.trim().toLowerCase();
    const users = r.users.filter((u) => u.toLowerCase().includes(q));
    list.replaceChildren(table([
      ['User', (u) => `${u}@${domain}`],
      ['Actions', (u) => h('span', { class: 'actions' },
        button('Password', async () => {
          pw.replaceChildren(section(`New password for ${u}@${domain}`, form('password-form', [['password', 'Password', 'password', { required: true }]], 'Change password', async (v) => {
            await api('PUT', `/api/v1/users/${seg(domain)}/${seg(u)}/password`, { json: { password: v.password } });
            pw.replaceChildren();
            showInfo(`password of ${u}@${domain} changed; its sessions ended`);
          })));
        }),
        button('Delete', () => confirmThen(`Delete ${u}@${domain} with all its data?`, async () => {
          await api('DELETE', `/api/v1/users/${seg(domain)}/${seg(u)}`);
          showInfo(`${u}@${domain} deleted`);
          await draw(ctx, domain, body);
        }), 'danger'))],
    ], users, (u) => u));
  };
  search.addEventListener('input', fill);
  fill();
  const create = form('user-create', [
    ['username', 'Username', 'text', { required: true }],
    ['password', 'Password', 'password', { required: true }],
  ], 'Create user', async (v) => {
    const c = await api('POST', '/api/v1/users/' + seg(domain), { json: { username: v.username.trim(), password: v.password } });
    showInfo(`${c.jid} created`);
    await draw(ctx, domain, body);
  });
  body.replaceChildren(
    section(`Users of ${domain}`, search, list, pw),
    section('Create a user', create),
    section(`Online sessions of ${domain}`, h('div', { id: 'session-list' })));
  await drawSessions(ctx, domain);
}

async function drawSessions(ctx, domain) {
  const box = shown?.querySelector('#session-list');
  if (!box) return;
  const r = await api('GET', '/api/v1/sessions/' + seg(domain));
  box.replaceChildren(table([
    ['Session', (s) => s.jid],
    ['Transport', (s) => s.transport],
    ['Client address', (s) => s.address],
    ['Since', (s) => new Date(s.since * 1000).toLocaleTimeString()],
    ['State', (s) => (s.detached ? 'detached' : s.available ? 'available' : 'connected')],
    ['', (s) => button('End', () => confirmThen(`End the session ${s.jid}?`, async () => {
      const [local, rest] = s.jid.split('@');
      const resource = rest.slice(rest.indexOf('/') + 1);
      await api('DELETE', `/api/v1/sessions/${seg(domain)}/${seg(local)}/${seg(resource)}`);
      showInfo(`session ${s.jid} ended`);
      await drawSessions(ctx, domain);
    }), 'danger')],
  ], r.sessions, (s) => s.jid));
}
