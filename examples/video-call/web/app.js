// The video-call example: log in over WebSocket, list contacts with their online state,
// call one with XEP-0353 (Jingle Message Initiation) and a Jingle RTP session (peer.js),
// or join a meeting room (XEP-0045) and call every occupant (a mesh of up to 4 people).
// TURN/STUN servers come from the server by XEP-0215 (external service discovery).
//
// window.app exposes the state for scripts (the end-to-end test and the benchmark).
/* global XMPP */
import { Peer } from './peer.js';
import { NS } from './jingle-sdp.js';
import { iceServersOf, NS_EXTDISCO } from './ice-servers.js';

const { client, xml } = XMPP;
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_MUC = 'http://jabber.org/protocol/muc';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
const MAX_MESH = 4;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const app = {
  xmpp: null,
  jid: null,
  domain: null,
  roster: new Map(),        // bare JID -> { name, online: Set of full JIDs }
  iceServers: [],
  relayOnly: params.get('relay') === '1',
  stream: null,
  peers: new Map(),         // sid -> Peer
  outgoing: null,           // { id, to, state } while a proposal of ours is open
  incoming: null,           // { id, from } while one rings here
  room: null,               // { jid, nick, occupants: Map nick -> real full JID, ready }
  log: [],
  events: [],               // call events in order, for tests
};
window.app = app;

function status(text) {
  $('status').textContent = text;
  app.log.push(text);
}

function event(name, detail = {}) {
  app.events.push({ name, ...detail, at: performance.now() });
}

/** An ltx element (what @xmpp/client sends) from a jingle-sdp.js plain element. */
function ltx(node) {
  if (typeof node === 'string') return node;
  return xml(node.name, node.attrs, ...node.children.map(ltx));
}

const uid = () => Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
const bare = (j) => j.split('/')[0];

// --- login ---------------------------------------------------------------------

async function login(e) {
  e?.preventDefault();
  const service = $('service').value.trim();
  const [username, domain] = $('user').value.trim().split('@');
  app.domain = domain || location.hostname;
  app.relayOnly = $('relay').checked;
  status('connecting…');
  const password = $('password').value;
  // A token (a tenant's JWT, or an access token the server issued) goes as the PLAIN
  // password, which the server checks as a token; a password takes the strongest SASL
  // mechanism offered (SCRAM).
  const credentials = $('token-login').checked
    ? (authenticate, mechanisms) => {
      if (!mechanisms.includes('PLAIN')) throw new Error('the server offers no PLAIN here (TLS needed?)');
      return authenticate({ username, password }, 'PLAIN');
    }
    : undefined;
  const xmpp = client({ service, domain: app.domain, username, password, credentials, resource: 'web-' + uid().slice(0, 6) });
  app.xmpp = xmpp;
  xmpp.on('error', (err) => console.warn('xmpp error', err?.message));
  xmpp.on('offline', () => status('offline'));
  xmpp.on('stanza', (s) => onStanza(s).catch((err) => console.error('stanza handler', err)));
  xmpp.iqCallee.set(NS.jingle, 'jingle', (ctx) => onJingle(ctx.stanza));
  xmpp.iqCallee.set('jabber:iq:roster', 'query', (ctx) => onRosterPush(ctx.stanza));
  // XEP-0215 pushes: the tenant's services changed; ask again (fresh credentials too).
  xmpp.iqCallee.set(NS_EXTDISCO, 'services', (ctx) => {
    if (ctx.stanza.attrs.from && ctx.stanza.attrs.from !== app.domain) return false;
    queueMicrotask(discoverServices);
    return true;
  });
  const address = await xmpp.start().catch((err) => { status('login failed: ' + (err?.condition || err?.message)); throw err; });
  app.jid = address.toString();
  await xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_CARBONS }))).catch(() => {});
  await loadRoster();
  await xmpp.send(xml('presence'));
  await discoverServices();
  $('login').hidden = true;
  $('main').hidden = false;
  $('me').textContent = app.jid;
  status('online as ' + app.jid);
  event('online', { jid: app.jid });
}

async function loadRoster() {
  const res = await app.xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
  for (const item of res.getChild('query').getChildren('item')) rosterItem(item);
  renderRoster();
}

function rosterItem(item) {
  const { jid, name, subscription, ask } = item.attrs;
  if (subscription === 'remove') { app.roster.delete(jid); return; }
  const entry = app.roster.get(jid) || { online: new Set() };
  app.roster.set(jid, { ...entry, name: name || jid, subscription, ask });
}

/** Roster pushes (RFC 6121 2.1.6): only from our own account. */
function onRosterPush(iq) {
  if (iq.attrs.from && iq.attrs.from !== bare(app.jid)) return xml('error', { type: 'cancel' }, xml('service-unavailable', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }));
  for (const item of iq.getChild('query').getChildren('item')) rosterItem(item);
  renderRoster();
  return true;
}

/** Adds a contact: asks to see their presence (they are asked to allow it). */
async function addContact(e) {
  e?.preventDefault();
  const jid = $('contact').value.trim().toLowerCase();
  if (!jid.includes('@')) return;
  await app.xmpp.send(xml('presence', { to: jid, type: 'subscribe' }));
  $('contact').value = '';
  status('asked ' + jid + ' to share presence');
}

/** A contact asks to see our presence: allowed at once when we asked them too, else on a click. */
function onSubscribe(from) {
  const entry = app.roster.get(from);
  if (entry && (entry.ask === 'subscribe' || entry.subscription === 'to' || entry.subscription === 'both')) {
    return allow(from);
  }
  const li = document.createElement('li');
  li.dataset.jid = from;
  li.textContent = from + ' wants to be your contact ';
  const btn = document.createElement('button');
  btn.textContent = 'Allow';
  btn.className = 'allow';
  btn.onclick = () => { li.remove(); allow(from); };
  li.append(btn);
  $('requests').append(li);
}

async function allow(jid) {
  await app.xmpp.send(xml('presence', { to: jid, type: 'subscribed' }));
  const entry = app.roster.get(jid);
  if (!entry || !['to', 'both'].includes(entry.subscription)) await app.xmpp.send(xml('presence', { to: jid, type: 'subscribe' }));
}

/** XEP-0215: the STUN/TURN servers (with TURN credentials) for RTCPeerConnection. Without
 * any (or a server that does not offer the service) calls use host candidates only. */
async function discoverServices() {
  try {
    const res = await app.xmpp.iqCaller.request(
      xml('iq', { type: 'get', to: app.domain }, xml('services', { xmlns: NS_EXTDISCO })), 10000);
    app.iceServers = iceServersOf(res.getChild('services', NS_EXTDISCO));
  } catch (err) {
    app.iceServers = [];
    console.info('no external services (XEP-0215):', err?.condition || err?.message);
  }
  $('services').textContent = app.iceServers.length
    ? app.iceServers.map((s) => s.urls).join(', ')
    : 'none (host candidates only)';
}

function rtcConfig() {
  return { iceServers: app.iceServers, iceTransportPolicy: app.relayOnly ? 'relay' : 'all' };
}

async function media() {
  if (!app.stream) {
    app.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    $('local').srcObject = app.stream;
  }
  return app.stream;
}

// --- stanzas ---------------------------------------------------------------------

async function onStanza(s) {
  if (s.is('presence')) return onPresence(s);
  if (!s.is('message')) return;
  const carbon = s.getChild('sent', NS_CARBONS) || s.getChild('received', NS_CARBONS);
  if (carbon) {
    // Only carbons from our own account are genuine (XEP-0280 security).
    if (s.attrs.from && s.attrs.from !== bare(app.jid)) return;
    const inner = carbon.getChild('forwarded', NS_FORWARD)?.getChild('message');
    if (inner && carbon.name === 'sent') return onOwnDeviceMessage(inner);
    if (inner) return onJmi(inner);
    return;
  }
  return onJmi(s);
}

function onPresence(p) {
  const from = p.attrs.from;
  if (!from) return;
  const x = p.getChild('x', NS_MUC_USER);
  if (x && app.room && bare(from) === app.room.jid) return onRoomPresence(p, x);
  if (p.attrs.type === 'subscribe') return onSubscribe(bare(from));
  const entry = app.roster.get(bare(from));
  if (!entry || !from.includes('/')) return;
  if (p.attrs.type === 'unavailable') entry.online.delete(from);
  else if (!p.attrs.type) entry.online.add(from);
  renderRoster();
}

/** XEP-0353 messages: propose, ringing, proceed, reject, retract, finish. */
async function onJmi(m) {
  const jmi = m.children.find((c) => typeof c === 'object' && c.attrs.xmlns === NS.jmi);
  if (!jmi) return;
  const id = jmi.attrs.id;
  const from = m.attrs.from;
  // Answers to our proposal count only from the callee's account.
  const ours = app.outgoing?.id === id && bare(from) === app.outgoing.to;
  switch (jmi.name) {
    case 'propose':
      if (app.incoming || app.outgoing || app.peers.size) {
        await sendJmi(from, 'reject', id, 'busy');
        return;
      }
      app.incoming = { id, from };
      await sendJmi(from, 'ringing', id);
      event('ringing-here', { id, from });
      showIncoming(from);
      if ($('autoanswer').checked && app.roster.has(bare(from))) await answer();
      return;
    case 'ringing':
      if (ours) { app.outgoing.state = 'ringing'; status('ringing ' + bare(from) + '…'); event('ringing', { id }); }
      return;
    case 'proceed':
      if (ours && app.outgoing.state !== 'proceeding') {
        app.outgoing.state = 'proceeding';
        event('proceed', { id, from });
        await startPeer({ sid: id, peer: from, clicked: app.outgoing.clicked });
      }
      return;
    case 'reject':
      if (ours) { event('rejected', { id }); status('call rejected by ' + bare(from)); endOutgoing(); }
      return;
    case 'retract':
      if (app.incoming?.id === id && bare(app.incoming.from) === bare(from)) { event('retracted', { id }); status('missed call from ' + bare(from)); hideIncoming(); }
      return;
    case 'finish':
      if (app.peers.get(id) && bare(app.peers.get(id).peer) === bare(from)) app.peers.get(id).hangup('success', false);
      return;
    default:
  }
}

/** A message another device of ours sent (carbon): it answered or refused the call here. */
function onOwnDeviceMessage(m) {
  const jmi = m.children.find((c) => typeof c === 'object' && c.attrs.xmlns === NS.jmi);
  if (jmi && app.incoming?.id === jmi.attrs.id && (jmi.name === 'proceed' || jmi.name === 'reject')) {
    status(jmi.name === 'proceed' ? 'answered on another device' : 'declined on another device');
    hideIncoming();
  }
}

function sendJmi(to, name, id, reason) {
  const children = [];
  if (name === 'propose') {
    children.push(xml('description', { xmlns: NS.rtp, media: 'audio' }), xml('description', { xmlns: NS.rtp, media: 'video' }));
  }
  if (reason) children.push(xml('reason', { xmlns: NS.jingle }, xml(reason)));
  return app.xmpp.send(xml('message', { to, type: 'chat', id: uid() },
    xml(name, { xmlns: NS.jmi, id }, ...children),
    xml('store', { xmlns: 'urn:xmpp:hints' })));
}

/** Jingle IQs (XEP-0166): answered at once, handled after. */
function onJingle(iq) {
  const jingle = iq.getChild('jingle', NS.jingle);
  const { action, sid } = jingle.attrs;
  const from = iq.attrs.from;
  const peer = app.peers.get(sid);
  if (action === 'session-initiate') {
    const expected = app.incoming?.accepted && app.incoming.id === sid && bare(app.incoming.from) === bare(from);
    const roomPeer = app.room?.ready && [...app.room.occupants.values()].some((j) => j === from);
    if (peer || (!expected && !roomPeer)) {
      return xml('error', { type: 'cancel' }, xml('not-acceptable', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }));
    }
    if (!app.stream) {
      return xml('error', { type: 'wait' }, xml('resource-constraint', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }));
    }
    if (expected) app.incoming = null;
    const p = createPeer({ sid, peer: from, initiator: false });
    queueMicrotask(() => p.accept(jingle).catch((e) => console.error('session-initiate', e)));
    return true;
  }
  if (!peer || bare(peer.peer) !== bare(from)) {
    return xml('error', { type: 'cancel' },
      xml('item-not-found', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }),
      xml('unknown-session', { xmlns: 'urn:xmpp:jingle:errors:1' }));
  }
  queueMicrotask(() => {
    const done = {
      'session-accept': () => peer.accepted(jingle).then(() => peer.remoteCandidates(jingle)),
      'transport-info': () => peer.remoteCandidates(jingle),
      'session-terminate': () => peer.hangup('success', false),
    }[action];
    done?.().catch((e) => console.error(action, e));
  });
  return true;
}

// --- calls -----------------------------------------------------------------------

/** Places a call to a contact: XEP-0353 propose to the bare JID (every device rings). */
async function call(to) {
  if (app.outgoing || app.peers.size) return;
  const clicked = performance.now();
  await media();
  const id = uid();
  app.outgoing = { id, to, state: 'proposed', clicked };
  event('propose', { id, to });
  status('calling ' + to + '…');
  $('hangup').hidden = false;
  await sendJmi(to, 'propose', id);
}

async function answer() {
  const { id, from } = app.incoming;
  await media();
  app.incoming.accepted = true;
  hideIncoming(true);
  event('accept', { id });
  status('connecting…');
  $('hangup').hidden = false;
  await sendJmi(from, 'proceed', id);
}

async function reject() {
  const { id, from } = app.incoming;
  app.incoming = null;
  hideIncoming();
  await sendJmi(from, 'reject', id, 'decline');
}

/** Hangs up everything: retracts an open proposal, terminates every session. */
async function hangup() {
  if (app.outgoing && app.outgoing.state !== 'proceeding') {
    await sendJmi(app.outgoing.to, 'retract', app.outgoing.id, 'cancel');
  }
  for (const peer of app.peers.values()) {
    if (!app.room) await sendJmi(peer.peer, 'finish', peer.sid, 'success');
    await peer.hangup();
  }
  endOutgoing();
  if (app.room) await leaveRoom();
}

function endOutgoing() {
  app.outgoing = null;
  if (!app.peers.size) $('hangup').hidden = true;
}

/** A session registered at once (synchronously), so the peer's next Jingle iqs find it;
 * our camera and microphone are open by then (call, answer and joinRoom open them). */
function createPeer({ sid, peer, initiator, clicked }) {
  const p = new Peer({
    sid, peer, initiator, me: app.jid, stream: app.stream, rtc: rtcConfig(),
    send: (jingle, to) => app.xmpp.iqCaller.request(xml('iq', { type: 'set', to }, ltx(jingle)), 30000),
    onChange: renderPeer,
  });
  if (clicked !== undefined) p.timings.clicked = clicked;
  app.peers.set(sid, p);
  renderPeer(p);
  return p;
}

async function startPeer(opts) {
  await media();
  await createPeer({ ...opts, initiator: true }).start();
}

// --- meeting rooms (mesh) --------------------------------------------------------------

/** Joins room@conference.DOMAIN; whoever joins calls everyone already there. */
async function joinRoom(e) {
  e?.preventDefault();
  const name = $('room').value.trim().toLowerCase();
  const jid = name.includes('@') ? name : `${name}@conference.${app.domain}`;
  const nick = app.jid.split('@')[0] + '-' + uid().slice(0, 4);
  await media();
  app.room = { jid, nick, occupants: new Map(), ready: false, waiting: [] };
  status('joining ' + jid + '…');
  $('hangup').hidden = false;
  await app.xmpp.send(xml('presence', { to: `${jid}/${nick}` }, xml('x', { xmlns: NS_MUC }, xml('history', { maxstanzas: '0' }))));
}

async function onRoomPresence(p, x) {
  const room = app.room;
  const nick = p.attrs.from.split('/')[1];
  const codes = x.getChildren('status').map((s) => s.attrs.code);
  const item = x.getChild('item');
  if (codes.includes('110')) {
    if (p.attrs.type === 'unavailable') return;
    if (codes.includes('201')) await configureNewRoom(room.jid);
    room.ready = true;
    event('room-joined', { room: room.jid, occupants: room.occupants.size });
    const others = [...room.occupants.entries()];
    if (others.some(([, j]) => !j)) status('this room hides real JIDs; cannot call its occupants');
    else status(`in ${room.jid} with ${others.length} other(s)`);
    for (const [, real] of others.slice(0, MAX_MESH - 1)) {
      if (real) await startPeer({ sid: uid(), peer: real, clicked: performance.now() });
    }
    return;
  }
  if (p.attrs.type === 'unavailable') {
    const real = room.occupants.get(nick);
    room.occupants.delete(nick);
    for (const peer of app.peers.values()) if (peer.peer === real) await peer.hangup('success', false);
    return;
  }
  room.occupants.set(nick, item?.attrs.jid || null);
}

/** A room we created: XEP-0045 owner form making real JIDs visible (the mesh needs them). */
async function configureNewRoom(jid) {
  const field = (v, value) => xml('field', { var: v }, xml('value', {}, value));
  await app.xmpp.iqCaller.request(xml('iq', { type: 'set', to: jid },
    xml('query', { xmlns: NS_MUC_OWNER },
      xml('x', { xmlns: 'jabber:x:data', type: 'submit' },
        field('FORM_TYPE', 'http://jabber.org/protocol/muc#roomconfig'),
        field('muc#roomconfig_whois', 'anyone')))));
}

async function leaveRoom() {
  const room = app.room;
  app.room = null;
  await app.xmpp.send(xml('presence', { to: `${room.jid}/${room.nick}`, type: 'unavailable' }));
  $('hangup').hidden = true;
}

// --- UI ----------------------------------------------------------------------------------

function renderRoster() {
  const list = $('roster');
  list.replaceChildren();
  for (const [jid, entry] of [...app.roster.entries()].sort()) {
    const li = document.createElement('li');
    li.dataset.jid = jid;
    li.className = entry.online.size ? 'online' : 'offline';
    const name = document.createElement('span');
    name.textContent = `${entry.name} (${entry.online.size ? 'online' : 'offline'})`;
    const btn = document.createElement('button');
    btn.textContent = 'Call';
    btn.className = 'call';
    btn.disabled = !entry.online.size;
    btn.onclick = () => call(jid);
    li.append(name, btn);
    list.append(li);
  }
}

function showIncoming(from) {
  $('incoming-from').textContent = bare(from);
  $('incoming').hidden = false;
}

function hideIncoming(keep = false) {
  $('incoming').hidden = true;
  if (!keep) app.incoming = null;
}

function renderPeer(peer) {
  let box = document.querySelector(`[data-sid="${peer.sid}"]`);
  if (!box) {
    box = document.createElement('figure');
    box.dataset.sid = peer.sid;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.srcObject = peer.remoteStream;
    const caption = document.createElement('figcaption');
    box.append(video, caption);
    $('remotes').append(box);
  }
  box.querySelector('figcaption').textContent = `${bare(peer.peer)}: ${peer.state}`;
  const changed = box.dataset.state !== peer.state;
  box.dataset.state = peer.state;
  if (changed && peer.state === 'connected') { status('in call with ' + [...app.peers.values()].filter((p) => !p.ended).map((p) => bare(p.peer)).join(', ')); event('connected', { sid: peer.sid }); }
  if (peer.ended) {
    box.remove();
    app.peers.delete(peer.sid);
    if (app.outgoing?.id === peer.sid) app.outgoing = null;
    if (!app.peers.size && !app.room) { $('hangup').hidden = true; status('call ended'); event('ended', { sid: peer.sid }); }
  }
}

/** For scripts: every session's state and decoded frames. */
app.stats = async () => Promise.all([...app.peers.values()].map((p) => p.stats()));
app.call = call;
app.answer = answer;
app.hangup = hangup;
app.joinRoom = (name) => { $('room').value = name; return joinRoom(); };

function init() {
  const wsScheme = location.protocol === 'https:' ? 'wss' : 'ws';
  $('service').value = params.get('service') || `${wsScheme}://${location.host}/xmpp-websocket`;
  $('user').value = params.get('user') || '';
  $('password').value = params.get('password') || '';
  $('relay').checked = app.relayOnly;
  $('autoanswer').checked = params.get('autoanswer') === '1';
  $('login').onsubmit = login;
  $('room-form').onsubmit = joinRoom;
  $('contact-form').onsubmit = addContact;
  $('hangup').onclick = hangup;
  $('accept').onclick = answer;
  $('reject').onclick = reject;
  status('ready');
}

init();
