// Meetings: a tenant's MUC rooms, the occupants of one with their roles, kicking an
// occupant and destroying a room.
import { api, seg } from './api.js';
import { h, table, form, button, confirmThen, section, showInfo } from './dom.js';

let current = null;

export async function render(ctx) {
  const names = await ctx.tenantNames();
  if (!current || !names.includes(current)) current = names[0] || '';
  const body = h('div', { id: 'room-view' });
  const picker = form('meeting-tenant', [['tenant', 'Tenant', 'text', { value: current, list: 'meeting-tenants', required: true }]], 'Show', async (v) => {
    await draw(v.tenant.trim(), body);
    current = v.tenant.trim();
  });
  picker.append(h('datalist', { id: 'meeting-tenants' }, names.map((n) => h('option', { value: n }))));
  if (current) await draw(current, body);
  ctx.every(5000, () => (current ? draw(current, body, true) : Promise.resolve()));
  return h('div', {}, section('Tenant', picker), body);
}

let open = null; // the room whose occupants are shown

async function draw(tenant, body, refresh = false) {
  const r = await api('GET', `/api/v1/tenants/${seg(tenant)}/rooms`);
  const detail = h('div', { id: 'room-detail' });
  const rooms = table([
    ['Room', (x) => h('button', { type: 'button', class: 'link', onclick: async () => { open = x.jid; await occupants(tenant, x.jid, detail, body); } }, x.jid)],
    ['Name', (x) => x.name],
    ['Occupants', (x) => String(x.occupants)],
    ['Kind', (x) => [x.persistent ? 'persistent' : 'temporary', x.members_only ? 'members-only' : null, x.moderated ? 'moderated' : null, x.locked ? 'locked' : null].filter(Boolean).join(', ')],
    ['', (x) => button('Destroy', () => confirmThen(`Destroy ${x.jid}? Its occupants are told.`, async () => {
      await api('DELETE', `/api/v1/tenants/${seg(tenant)}/rooms/${seg(x.jid)}`);
      showInfo(`${x.jid} destroyed`);
      if (open === x.jid) open = null;
      await draw(tenant, body);
    }), 'danger')],
  ], r.rooms, (x) => x.jid);
  body.replaceChildren(section(`Rooms of ${tenant}`, rooms), detail);
  if (open && r.rooms.some((x) => x.jid === open)) await occupants(tenant, open, detail, body);
  else if (!refresh) open = null;
}

async function occupants(tenant, jid, detail, body) {
  const room = await api('GET', `/api/v1/tenants/${seg(tenant)}/rooms/${seg(jid)}`);
  detail.replaceChildren(section(`Occupants of ${jid}`, table([
    ['Nick', (o) => o.nick],
    ['User', (o) => o.jid],
    ['Role', (o) => o.role],
    ['Affiliation', (o) => o.affiliation],
    ['', (o) => button('Kick', () => confirmThen(`Kick ${o.nick} from ${jid}?`, async () => {
      await api('POST', `/api/v1/tenants/${seg(tenant)}/rooms/${seg(jid)}/kick`, { json: { nick: o.nick, reason: 'kicked from the console' } });
      showInfo(`${o.nick} kicked`);
      await draw(tenant, body);
    }), 'danger')],
  ], room.occupants, (o) => o.nick)));
}
