// BOSH across cluster nodes with a real browser and a real load balancer: two Heliograph
// nodes (one private nats-server, one PostgreSQL database) behind HAProxy balancing each
// HTTP request round-robin, no stickiness. Strophe.js in headless Chromium logs in
// through HAProxy, chats with a TCP user on the other node, survives long-poll cycles and
// terminates: the node that did not create the session relays each request it gets for
// it to the node that did (docs/CLUSTER.md, "BOSH across nodes").
//
// Needs nats-server ($HELIOGRAPH_NATS_SERVER or on PATH), PostgreSQL
// ($HELIOGRAPH_TEST_POSTGRES_URL) and haproxy: skipped without them unless tests/run.sh's
// HELIOGRAPH_REQUIRE_* make that a failure.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, startPageServer, sharedPostgres, tcpLogin, openTestPage } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const natsScript = join(here, '..', '..', 'nats.sh');
const WAIT = 2; // BOSH long-poll wait in seconds: several cycles go through both nodes

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = [
  !(process.env.HELIOGRAPH_NATS_SERVER || has('nats-server')) && ['nats-server', 'HELIOGRAPH_REQUIRE_NATS'],
  !process.env.HELIOGRAPH_TEST_POSTGRES_URL && ['PostgreSQL', 'HELIOGRAPH_REQUIRE_POSTGRES'],
  !has('haproxy') && ['haproxy', 'HELIOGRAPH_REQUIRE_HAPROXY'],
].filter(Boolean);
for (const [what, env] of missing) {
  if (process.env[env] === '1') throw new Error(`${what} is required (${env}=1) but not available`);
}
const skip = missing.length ? `needs ${missing.map(([w]) => w).join(', ')}` : false;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A loopback port free now (HAProxy cannot be told to pick one and say which). */
async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** HAProxy in HTTP mode, each request balanced round-robin over `servers`. */
async function startHaproxy(servers) {
  const dir = mkdtempSync(join(tmpdir(), 'heliograph-haproxy-'));
  const port = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, `defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-server-close

frontend bosh
  bind 127.0.0.1:${port}
  default_backend nodes

backend nodes
  balance roundrobin
${servers.map((s, i) => `  server n${i + 1} ${s}`).join('\n')}
`);
  const proc = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log = [];
  proc.stderr.on('data', (d) => log.push(d.toString()));
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  const deadline = Date.now() + 30000;
  for (;;) {
    if (exited !== null) throw new Error('haproxy exited: ' + log.join(''));
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error('haproxy not listening: ' + log.join(''));
      await sleep(50);
    }
  }
  return {
    address: `127.0.0.1:${port}`,
    async stop() {
      if (exited === null) proc.kill('SIGTERM');
      const end = Date.now() + 10000;
      while (exited === null && Date.now() < end) await sleep(50);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A counter of a node's /metrics (summed over its labels matching `labels`). */
async function metric(node, name, labels) {
  const r = await fetch(`http://${node.admin}/metrics`, { headers: { authorization: `Bearer ${node.token}` } });
  const text = await r.text();
  return text.split('\n')
    .filter((l) => l.startsWith(name) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

let natsDir, db, nodes = [], lb, pages, browser, page, tcp;

before(async () => {
  if (skip) return;
  natsDir = mkdtempSync(join(tmpdir(), 'heliograph-nats-'));
  const natsUrl = execFileSync(natsScript, ['start', natsDir], { encoding: 'utf8' }).trim();
  db = sharedPostgres();
  pages = await startPageServer();
  for (const name of ['n1', 'n2']) {
    nodes.push(await startServer({
      http: `allowed_origins = ["${pages.origin}"]\nbosh_max_wait = 10\n`,
      extra: `[cluster]\nnats = ["${natsUrl}"]\nnode = "${name}"\nheartbeat_ms = 250\ndead_after_ms = 1500\n`,
      storage: db,
    }));
  }
  for (const [u, p] of [['alice', 'alice-pw'], ['bob', 'bob-pw']]) await nodes[0].addUser(u, p);
  // The cluster is formed once each node lists the other.
  const deadline = Date.now() + 60000;
  for (const n of nodes) {
    for (;;) {
      const s = await n.api('GET', '/api/v1/cluster');
      if (s.json?.status?.nodes?.length === 2) break;
      if (Date.now() > deadline) throw new Error('cluster not formed: ' + JSON.stringify(s.json));
      await sleep(100);
    }
  }
  lb = await startHaproxy(nodes.map((n) => n.http));
  ({ browser, page } = await openTestPage(pages.origin));
  tcp = await tcpLogin(nodes[1].direct, 'bob', 'bob-pw');
});

after(async () => {
  tcp?.close();
  await browser?.close();
  await pages?.close();
  await lb?.stop();
  for (const n of nodes) {
    const exit = await n.stop();
    if (exit && exit.code !== 0) console.log(n.log());
  }
  db?.drop();
  if (natsDir) {
    execFileSync(natsScript, ['stop', natsDir]);
    rmSync(natsDir, { recursive: true, force: true });
  }
});

let aliceJid;

test('Strophe.js logs in over BOSH through a round-robin load balancer', { skip }, async () => {
  aliceJid = await page.evaluate(([svc, w]) => window.bosh.connect(svc, 'alice@localhost', 'alice-pw', w),
    [`http://${lb.address}/http-bind`, WAIT]);
  assert.match(aliceJid, /^alice@localhost\/.+/);
  const sid = await page.evaluate(() => window.bosh.conn._proto.sid);
  const owner = sid.split('~')[0];
  assert.ok(['n1', 'n2'].includes(owner), `the sid names a node: ${sid}`);
  // The session lives on the node that created it; the other relayed requests to it.
  const other = nodes[owner === 'n1' ? 1 : 0];
  assert.ok(await metric(other, 'heliograph_cluster_bosh_relayed_total', 'way="out"') > 0,
    'the other node relayed requests of the login');
});

test('messages go both ways between the BOSH user and a TCP user on the other node', { skip }, async () => {
  await page.evaluate((to) => window.bosh.send(to, 'bosh to tcp'), tcp.jid);
  assert.equal((await tcp.waitFor('bosh to tcp')).from, aliceJid);
  for (let i = 1; i <= 5; i++) tcp.send(aliceJid, `tcp to bosh ${i}`);
  for (let i = 1; i <= 5; i++) {
    const m = await page.evaluate((t) => window.bosh.waitFor(t, 20000), `tcp to bosh ${i}`);
    assert.equal(m.from, tcp.jid);
  }
});

test('the session holds through long-poll cycles on both nodes', { skip }, async () => {
  const before = await Promise.all(nodes.map((n) => metric(n, 'heliograph_cluster_bosh_relayed_total', 'way="in"')));
  const start = Date.now();
  const limit = WAIT * 30 * 1000;
  // Waits for relayed long polls to be answered on the owner (a condition, not a time).
  let relayed = 0;
  while (relayed < 3 && Date.now() - start < limit) {
    await sleep(100);
    const now = await Promise.all(nodes.map((n) => metric(n, 'heliograph_cluster_bosh_relayed_total', 'way="in"')));
    relayed = now.reduce((s, v, i) => s + v - before[i], 0);
  }
  assert.ok(relayed >= 3, `expected relayed long polls within ${limit / 1000}s, saw ${relayed}`);
  assert.equal(await page.evaluate(() => window.bosh.connected()), true);
  tcp.send(aliceJid, 'after the idle cycles');
  assert.equal((await page.evaluate(() => window.bosh.waitFor('after the idle cycles', 20000))).from, tcp.jid);
});

test('terminate through the load balancer ends the session on every node', { skip }, async () => {
  assert.equal(await page.evaluate(() => window.bosh.disconnect()), true);
  const deadline = Date.now() + 30000;
  let left;
  do {
    left = [];
    for (const n of nodes) {
      const s = await n.api('GET', '/api/v1/sessions');
      left.push(...s.json.sessions.filter((x) => x.jid === aliceJid));
    }
    if (left.length === 0) break;
    await sleep(100);
  } while (Date.now() < deadline);
  assert.deepEqual(left, []);
});
