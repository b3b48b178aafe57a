// XEP-0363 from a browser: @xmpp/client over WebSocket asks the tenant's upload service
// for a slot, and the page PUTs the file with fetch() to Heliograph's HTTP listener from
// another origin (a CORS preflight for the Content-Type header), then GETs it back byte
// for byte. A page from an origin the listener does not allow cannot read the answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startPageServer, openTestPage } from './harness.js';

let server, pages, browser, page;

before(async () => {
  pages = await startPageServer();
  server = await startServer({ http: `allowed_origins = ["${pages.origin}"]\n` });
  await server.addUser('alice', 'alice-pw');
  ({ browser, page } = await openTestPage(pages.origin));
  await page.evaluate((svc) => window.ws.connect(svc, 'alice', 'alice-pw'), `ws://${server.http}/xmpp-websocket`);
});

after(async () => {
  await browser?.close();
  await pages?.close();
  const exit = await server?.stop();
  if (exit && exit.code !== 0) console.log(server.log());
});

test('a browser uploads a file through a slot and fetches it back byte for byte', async () => {
  const bytes = Array.from({ length: 300000 }, (_, i) => (i * 7 + 3) % 256);
  const r = await page.evaluate(([b]) => window.ws.upload('upload.localhost', 'drawing.png', b, 'image/png'), [bytes]);
  assert.equal(r.putStatus, 201);
  assert.equal(r.getStatus, 200);
  assert.equal(r.getType, 'image/png');
  assert.equal(r.length, bytes.length);
  assert.ok(r.same, 'the file came back unchanged');
  assert.ok(r.putUrl.startsWith(`http://${server.http}/upload/`), r.putUrl);
});

test('a page from an origin that is not allowed cannot PUT, and nothing is stored', async () => {
  const slot = await page.evaluate(() => window.ws.slot('upload.localhost', 'x.bin', 3, 'application/octet-stream'));
  const other = await startPageServer();
  const { browser: b2, page: p2 } = await openTestPage(other.origin);
  try {
    const outcome = await p2.evaluate(([url]) => fetch(url, {
      method: 'PUT', body: new Uint8Array([1, 2, 3]), headers: { 'Content-Type': 'application/octet-stream' },
    }).then((r) => `status ${r.status}`, (e) => String(e)), [slot.putUrl]);
    assert.match(outcome, /Failed to fetch/);
  } finally {
    await b2.close();
    await other.close();
  }
  // Node's fetch is no browser: it sees the server's answer, 404, nothing stored.
  assert.equal((await fetch(slot.getUrl)).status, 404);
});
