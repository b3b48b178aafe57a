// End to end: examples/video-call, served by Heliograph itself ([[listen.http]] static_dir),
// in headless Chromium with fake camera and microphone. Two users call each other
// (XEP-0353 + Jingle), three meet in a room (mesh), and two call with
// iceTransportPolicy "relay" through coturn with the TURN credentials Heliograph issues
// (XEP-0215); media must flow: every RTCPeerConnection reaches `connected` and decodes
// video frames.
//
// Runs inside a network namespace with only loopback (tests/run.sh: `unshare -n`), so ICE
// has loopback candidates only; not matched by `test/*.test.js` for that reason. By hand:
//   unshare -n sh -c 'ip link set lo up && node --test test/video-call.e2e.js'
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startServer } from './harness.js';
import { createHmac } from 'node:crypto';
import { CHROMIUM_ARGS, appDir, until, openApp, befriend, mediaFlows, stats, events } from './video-call-helpers.js';
import { startTurn, addUser } from './turn.js';

let server;
let browser;
let origin;

before(async () => {
  server = await startServer({ http: `static_dir = "${appDir}"` });
  origin = `http://${server.http}`;
  for (const u of ['alice', 'bob', 'carol', 'dan']) await server.addUser(u, `${u}-pw`);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  const exit = await server?.stop();
  if (exit && exit.code !== 0) console.log(server.log());
});

test('the server serves the app with the right content types', async () => {
  for (const [path, type] of [['/', 'text/html'], ['/app.js', 'text/javascript'], ['/jingle-sdp.js', 'text/javascript'],
    ['/style.css', 'text/css'], ['/vendor/xmpp.min.js', 'text/javascript']]) {
    const r = await fetch(origin + path);
    assert.equal(r.status, 200, path);
    assert.ok(r.headers.get('content-type').startsWith(type), `${path}: ${r.headers.get('content-type')}`);
  }
  assert.equal((await fetch(origin + '/../heliograph.toml')).status, 404);
  assert.equal((await fetch(origin + '/%2e%2e/%2e%2e/README.md')).status, 404);
});

test('logging in with a server-issued access token instead of a password', async () => {
  const r = await server.api('POST', '/api/v1/tenants', { name: 'tok', domains: ['tok.test'], tokens: {} });
  assert.equal(r.status, 201, JSON.stringify(r));
  await addUser(server, 'tok.test', 'frank', 'frank-pw');
  const minted = await server.api('POST', '/api/v1/users/tok.test/frank/tokens', { kind: 'access' });
  assert.equal(minted.status, 201, JSON.stringify(minted));
  const page = await openApp(browser, origin, 'frank@tok.test', minted.json.access.token, { token: true });
  const bad = await browser.newPage();
  try {
    assert.match(await page.evaluate(() => window.app.jid), /^frank@tok\.test\//);
    // A token that is not one is refused.
    await bad.goto(`${origin}/`);
    await bad.fill('#user', 'frank@tok.test');
    await bad.fill('#password', minted.json.access.token.slice(0, -4) + 'AAAA');
    await bad.check('#token-login');
    await bad.click('#login-button');
    await until('the tampered token refused', async () => /login failed/.test(await bad.textContent('#status')), 30000);
    assert.equal(await bad.evaluate(() => window.app.jid), null);
  } finally {
    await page.close();
    await bad.close();
  }
});

test('two users: call, answer, video both ways, hang up; reject and retract', async () => {
  const alice = await openApp(browser, origin, 'alice@localhost', 'alice-pw');
  const bob = await openApp(browser, origin, 'bob@localhost', 'bob-pw');
  alice.jid = 'alice@localhost';
  bob.jid = 'bob@localhost';
  try {
    await befriend(alice, bob, 'bob@localhost');

    // A call answered: media both ways.
    await alice.click('#roster li[data-jid="bob@localhost"] button.call');
    await bob.click('#accept', { timeout: 30000 });
    const [a, b] = await Promise.all([mediaFlows(alice, 1), mediaFlows(bob, 1)]);
    assert.equal(a[0].sid, b[0].sid, 'one Jingle session on both sides');
    assert.deepEqual((await events(alice)).filter((e) => ['propose', 'ringing', 'proceed'].includes(e)), ['propose', 'ringing', 'proceed']);
    // Hang up on one side ends it on both.
    await alice.click('#hangup');
    await until('both sides ended', async () => (await stats(alice)).length === 0 && (await stats(bob)).length === 0, 30000);

    // A call rejected.
    await alice.click('#roster li[data-jid="bob@localhost"] button.call');
    await bob.click('#reject', { timeout: 30000 });
    await until('alice sees the rejection', async () => (await events(alice)).includes('rejected'), 30000);

    // A call retracted before it is answered: bob stops ringing.
    await alice.click('#roster li[data-jid="bob@localhost"] button.call');
    await bob.waitForSelector('#incoming:not([hidden])', { timeout: 30000 });
    await alice.click('#hangup');
    await until('bob sees the retraction', async () => (await events(bob)).includes('retracted'), 30000);
    assert.equal(await bob.isHidden('#incoming'), true);
  } finally {
    await alice.close();
    await bob.close();
  }
});

test('three people in a meeting room: connected between every pair; a fourth joins the mesh', async () => {
  const pages = [];
  const join = async (u) => {
    const page = await openApp(browser, origin, `${u}@localhost`, `${u}-pw`);
    await page.fill('#room', 'standup');
    await page.click('#join');
    await until(`${u} in the room`, async () => (await events(page)).includes('room-joined'), 30000);
    pages.push(page);
  };
  // Every pair: each page is connected, with video, to every other one.
  const everyPair = async () => {
    const all = await Promise.all(pages.map((p) => mediaFlows(p, pages.length - 1)));
    const jids = await Promise.all(pages.map((p) => p.evaluate(() => window.app.jid)));
    all.forEach((sessions, i) => {
      const peers = sessions.map((s) => s.peer).sort();
      assert.deepEqual(peers, jids.filter((_, j) => j !== i).sort());
    });
  };
  try {
    for (const u of ['alice', 'bob', 'carol']) await join(u);
    await everyPair();
    await join('dan');
    await everyPair();
  } finally {
    for (const p of pages) await p.close();
  }
});

test('relay only: media through coturn with the TURN credentials from XEP-0215', async () => {
  const turn = await startTurn();
  const pages = [];
  try {
    await turn.createTenant(server, 'acme', 'acme.test');
    for (const u of ['dave', 'erin']) await addUser(server, 'acme.test', u, `${u}-pw`);
    const dave = await openApp(browser, origin, 'dave@acme.test', 'dave-pw', { relay: true });
    pages.push(dave);
    const erin = await openApp(browser, origin, 'erin@acme.test', 'erin-pw', { relay: true });
    pages.push(erin);
    dave.jid = 'dave@acme.test';
    erin.jid = 'erin@acme.test';
    // The app's ICE servers are the tenant's, with credentials signed by the server.
    const [ice] = await dave.evaluate(() => window.app.iceServers);
    assert.equal(ice.urls, `turn:127.0.0.1:${turn.port}?transport=udp`);
    assert.equal(ice.username.split(':')[1], 'dave@acme.test');
    assert.ok(Number(ice.username.split(':')[0]) > Date.now() / 1000);
    assert.equal(ice.credential, createHmac('sha1', turn.secret).update(ice.username).digest('base64'));

    await befriend(dave, erin, 'erin@acme.test');
    await dave.click('#roster li[data-jid="erin@acme.test"] button.call');
    await erin.click('#accept', { timeout: 30000 });
    const [d, e] = await Promise.all([mediaFlows(dave, 1), mediaFlows(erin, 1)]);
    assert.equal(d[0].relayed, true, 'dave\'s selected candidate pair is a TURN relay');
    assert.equal(e[0].relayed, true, 'erin\'s selected candidate pair is a TURN relay');
    await dave.click('#hangup');
    await until('both sides ended', async () => (await stats(dave)).length === 0 && (await stats(erin)).length === 0, 30000);
  } catch (err) {
    console.log('coturn log:', turn.log());
    throw err;
  } finally {
    for (const p of pages) await p.close();
    await turn.stop();
  }
});
