// Stream management (XEP-0198) over WebSocket with @xmpp/client in headless Chromium:
// the WebSocket drops without the stream closing, messages arrive meanwhile, and the
// client resumes (inline in SASL2) with every message exactly once and in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startPageServer, tcpLogin, openTestPage } from './harness.js';

let server, pages, browser, page, tcp;

before(async () => {
  pages = await startPageServer();
  server = await startServer({ http: `allowed_origins = ["${pages.origin}"]\n` });
  await server.addUser('dave', 'dave-pw');
  await server.addUser('erin', 'erin-pw');
  ({ browser, page } = await openTestPage(pages.origin));
  tcp = await tcpLogin(server.direct, 'erin', 'erin-pw');
});

after(async () => {
  tcp?.close();
  await browser?.close();
  await pages?.close();
  const exit = await server?.stop();
  if (exit && exit.code !== 0) console.log(server.log());
});

/** Polls the sessions API until `jid`'s entry satisfies `pred`. */
async function sessionUntil(jid, pred, what) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const s = await server.api('GET', '/api/v1/sessions');
    const me = s.json.sessions.find((x) => x.jid === jid);
    if (pred(me)) return me;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(me)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a dropped WebSocket resumes with every message once and in order', async () => {
  const jid = await page.evaluate((svc) => window.ws.connect(svc, 'dave', 'dave-pw'), `ws://${server.http}/xmpp-websocket`);
  assert.ok(await page.evaluate(() => window.ws.smId()), 'stream management enabled inline with Bind 2');
  for (const b of ['before-1', 'before-2', 'before-3']) tcp.send(jid, b);
  await page.evaluate(() => window.ws.waitFor('before-3', 15000));

  await page.evaluate(() => window.ws.drop());
  await sessionUntil(jid, (me) => me && me.detached, 'the session to wait for its client');
  for (const b of ['away-1', 'away-2', 'away-3']) tcp.send(jid, b);

  assert.equal(await page.evaluate(() => window.ws.resume(30000)), true);
  await page.evaluate(() => window.ws.waitFor('away-3', 15000));
  await sessionUntil(jid, (me) => me && !me.detached, 'the session to be attached again');
  tcp.send(jid, 'after');
  await page.evaluate(() => window.ws.waitFor('after', 15000));
  assert.deepEqual(await page.evaluate(() => window.ws.bodies()),
    ['before-1', 'before-2', 'before-3', 'away-1', 'away-2', 'away-3', 'after']);
  // The same session (same full JID), and the client's own messages still go out.
  await page.evaluate((to) => window.ws.send(to, 'from the resumed session'), tcp.jid);
  assert.equal((await tcp.waitFor('from the resumed session')).from, jid);
});
