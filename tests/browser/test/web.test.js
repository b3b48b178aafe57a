// Real-browser tests: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) loads a page from one origin and talks to Heliograph on another:
// Strophe.js over BOSH, @xmpp/client over WebSocket, and a TCP user over direct TLS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startPageServer, tcpLogin, openTestPage } from './harness.js';

const WAIT = 2; // BOSH long-poll wait in seconds (short, to see several cycles)

let server, pages, browser, page, tcp;
const boshRequests = [];

before(async () => {
  pages = await startPageServer();
  server = await startServer({
    http: `allowed_origins = ["${pages.origin}"]\nbosh_max_wait = 10\n`,
  });
  for (const [u, p] of [['alice', 'alice-pw'], ['bob', 'bob-pw'], ['carol', 'carol-pw']]) {
    await server.addUser(u, p);
  }
  ({ browser, page } = await openTestPage(pages.origin, (p) => {
    p.on('request', (r) => { if (r.url().includes('/http-bind')) boshRequests.push({ at: Date.now(), method: r.method() }); });
  }));
  tcp = await tcpLogin(server.direct, 'carol', 'carol-pw');
});

after(async () => {
  tcp?.close();
  await browser?.close();
  await pages?.close();
  const exit = await server?.stop();
  if (exit && exit.code !== 0) console.log(server.log());
});

let aliceJid, bobJid;

test('the page origin differs from the server origin', () => {
  assert.notEqual(new URL(pages.origin).origin, `http://${server.http}`);
});

test('Strophe.js logs in over BOSH from another origin', async () => {
  aliceJid = await page.evaluate(([svc, w]) => window.bosh.connect(svc, 'alice@localhost', 'alice-pw', w),
    [`http://${server.http}/http-bind`, WAIT]);
  assert.match(aliceJid, /^alice@localhost\/.+/);
  const s = await server.api('GET', '/api/v1/sessions');
  const me = s.json.sessions.find((x) => x.jid === aliceJid);
  assert.equal(me.transport, 'bosh');
});

test('@xmpp/client logs in over WebSocket', async () => {
  bobJid = await page.evaluate((svc) => window.ws.connect(svc, 'bob', 'bob-pw'), `ws://${server.http}/xmpp-websocket`);
  // @xmpp/client 0.14 logs in with SASL2 + Bind 2 (XEP-0388/0386): its resource 'web' is the
  // Bind 2 tag, and the server makes the resource `tag.` + a hash of the client's id.
  assert.match(bobJid, /^bob@localhost\/web\.[0-9a-f]{8}$/);
  const s = await server.api('GET', '/api/v1/sessions');
  assert.equal(s.json.sessions.find((x) => x.jid === bobJid).transport, 'websocket');
});

test('BOSH and WebSocket users exchange messages both ways', async () => {
  await page.evaluate((to) => window.bosh.send(to, 'bosh to ws'), bobJid);
  const a = await page.evaluate(() => window.ws.waitFor('bosh to ws', 10000));
  assert.equal(a.from, aliceJid);
  await page.evaluate((to) => window.ws.send(to, 'ws to bosh'), aliceJid);
  const b = await page.evaluate(() => window.bosh.waitFor('ws to bosh', 10000));
  assert.equal(b.from, bobJid);
});

test('both exchange messages with a TCP user', async () => {
  await page.evaluate((to) => window.bosh.send(to, 'bosh to tcp'), tcp.jid);
  assert.equal((await tcp.waitFor('bosh to tcp')).from, aliceJid);
  await page.evaluate((to) => window.ws.send(to, 'ws to tcp'), tcp.jid);
  assert.equal((await tcp.waitFor('ws to tcp')).from, bobJid);
  tcp.send(aliceJid, 'tcp to bosh');
  tcp.send(bobJid, 'tcp to ws');
  assert.equal((await page.evaluate(() => window.bosh.waitFor('tcp to bosh', 10000))).from, tcp.jid);
  assert.equal((await page.evaluate(() => window.ws.waitFor('tcp to ws', 10000))).from, tcp.jid);
});

test('a BOSH session holds through several long-poll cycles', async () => {
  // Waits for three long-poll cycles to go by (a generous deadline: a busy machine is slow),
  // not for a fixed time after which it counts them.
  const start = Date.now();
  const limit = WAIT * 30 * 1000;
  const polls = () => boshRequests.filter((r) => r.at >= start && r.method === 'POST').length;
  while (polls() < 3 && Date.now() - start < limit) await new Promise((r) => setTimeout(r, 100));
  // The session granted the short wait we asked for.
  assert.equal(await page.evaluate(() => window.bosh.conn._proto.wait), WAIT);
  assert.ok(polls() >= 3, `expected at least 3 long polls within ${limit / 1000}s, saw ${polls()}`);
  assert.equal(await page.evaluate(() => window.bosh.connected()), true);
  tcp.send(aliceJid, 'after the idle cycles');
  assert.equal((await page.evaluate(() => window.bosh.waitFor('after the idle cycles', 10000))).from, tcp.jid);
});

test('terminate ends the BOSH session and WebSocket close ends the other', async () => {
  const disconnected = await page.evaluate(() => window.bosh.disconnect());
  assert.equal(disconnected, true);
  await page.evaluate(() => window.ws.stop());
  const deadline = Date.now() + 30000;
  let left;
  do {
    const s = await server.api('GET', '/api/v1/sessions');
    left = s.json.sessions.filter((x) => x.jid === aliceJid || x.jid === bobJid);
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < deadline);
  assert.deepEqual(left, []);
});
