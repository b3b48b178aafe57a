// Test harness: starts the real heliograph binary in a temp dir with every listener (c2s,
// http, component, admin) on 127.0.0.1:0, as the server's defaults are fixed ports
// (like tests/interop/conftest.py), serves the test page from another origin, and offers
// a tiny raw XMPP client over direct TLS for the "TCP user".
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir, homedir } from 'node:os';
import { join, dirname, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import tls from 'node:tls';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const repo = join(root, '..', '..');

export function serverBinary() {
  const candidates = [
    process.env.HELIOGRAPH_BIN,
    process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, 'debug', 'heliograph'),
    join(homedir(), '.cache', 'heliograph-target', 'debug', 'heliograph'),
    join(repo, 'target', 'debug', 'heliograph'),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error('heliograph binary not found; set HELIOGRAPH_BIN (tried ' + candidates.join(', ') + ')');
  return found;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `[storage]` for HELIOGRAPH_TEST_BACKEND (sled by default; postgres: a fresh database
 * on HELIOGRAPH_TEST_POSTGRES_URL, created with psql), like tests/interop's harness.
 * Returns the TOML and a function that drops the database again. */
function storageConfig() {
  const backend = process.env.HELIOGRAPH_TEST_BACKEND || 'sled';
  if (backend === 'sled') return { toml: '', drop: () => {} };
  if (backend !== 'postgres') throw new Error('unknown HELIOGRAPH_TEST_BACKEND ' + backend);
  const admin = process.env.HELIOGRAPH_TEST_POSTGRES_URL;
  if (!admin) throw new Error('HELIOGRAPH_TEST_BACKEND=postgres needs HELIOGRAPH_TEST_POSTGRES_URL');
  const name = 'hg_web_' + Math.random().toString(16).slice(2, 14);
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', admin, '-c', `CREATE DATABASE ${name}`]);
  const url = admin.split(/\s+/).filter((p) => p && !p.startsWith('dbname=')).concat(['dbname=' + name]).join(' ');
  const drop = () => {
    try {
      execFileSync('psql', ['-X', '-q', '-d', admin, '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]);
    } catch { /* the run's cluster goes away at the end anyway */ }
  };
  return { toml: `\n[storage]\nbackend = "postgres"\nurl = "${url}"\n`, drop };
}

/** A fresh PostgreSQL database on HELIOGRAPH_TEST_POSTGRES_URL for several servers (the
 * nodes of a cluster): `{ toml, drop }` as `storageConfig` returns, for `startServer`. */
export function sharedPostgres() {
  const backend = process.env.HELIOGRAPH_TEST_BACKEND;
  process.env.HELIOGRAPH_TEST_BACKEND = 'postgres';
  try {
    return storageConfig();
  } finally {
    if (backend === undefined) delete process.env.HELIOGRAPH_TEST_BACKEND;
    else process.env.HELIOGRAPH_TEST_BACKEND = backend;
  }
}

/** Starts a server; `http` is extra TOML for the [[listen.http]] table, `extra` for the
 * end of the file (a `[cluster]` table), `storage` a shared database (`sharedPostgres`,
 * which the caller drops) instead of the server's own. */
export async function startServer({ http = '', extra = '', storage: shared = null } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'heliograph-browser-'));
  const storage = shared ? { toml: shared.toml, drop: () => {} } : storageConfig();
  const data = join(dir, 'data');
  const config = `[general]
hosts = ["localhost"]
data_dir = "${data}"
log_level = "info,heliograph=debug"

[[listen.c2s]]
address = "127.0.0.1:0"
tls = "direct"

[[listen.http]]
address = "127.0.0.1:0"
${http}

[[listen.component]]
address = "127.0.0.1:0"

[listen.admin]
address = "127.0.0.1:0"
${storage.toml}
${extra}`;
  writeFileSync(join(dir, 'heliograph.toml'), config);
  const ready = join(dir, 'ready.json');
  const logPath = join(dir, 'server.log');
  const log = [];
  const proc = spawn(serverBinary(), ['serve', '--config', join(dir, 'heliograph.toml'), '--ready-file', ready], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  proc.stderr.on('data', (d) => log.push(d.toString()));
  let exited = null;
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  const deadline = Date.now() + 30000;
  let doc = null;
  while (!doc) {
    if (exited) throw new Error('server exited early: ' + JSON.stringify(exited) + '\n' + log.join(''));
    if (Date.now() > deadline) throw new Error('server not ready\n' + log.join(''));
    try { doc = JSON.parse(readFileSync(ready, 'utf8')); } catch { await sleep(50); }
  }
  // Every listener on an ephemeral port (a kind missing from the config above would bind
  // its fixed default and collide with whatever else runs here).
  const fixed = doc.listeners.filter((l) => [5222, 5223, 5280, 5281, 5347].includes(Number(l.address.split(':').pop())));
  if (fixed.length) { proc.kill('SIGKILL'); throw new Error('test server bound fixed default ports: ' + JSON.stringify(fixed)); }
  const by = (kind) => doc.listeners.find((l) => l.kind === kind).address;
  const server = {
    dir,
    http: by('http'),
    direct: by('c2s'),
    admin: by('admin'),
    token: readFileSync(doc.admin_token_file, 'utf8').trim(),
    log: () => log.join(''),
    async api(method, path, body) {
      const r = await fetch(`http://${server.admin}${path}`, {
        method,
        headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await r.text();
      return { status: r.status, json: text ? JSON.parse(text) : null };
    },
    async addUser(username, password) {
      const r = await server.api('POST', '/api/v1/users/localhost', { username, password });
      if (r.status !== 201) throw new Error('adding user failed: ' + JSON.stringify(r));
    },
    async stop() {
      if (exited) return exited;
      proc.kill('SIGTERM');
      const end = Date.now() + 15000;
      while (!exited && Date.now() < end) await sleep(50);
      if (!exited) proc.kill('SIGKILL');
      writeFileSync(logPath, log.join(''));
      if (exited && exited.code === 0) {
        rmSync(dir, { recursive: true, force: true });
        storage.drop();
      }
      return exited;
    },
  };
  return server;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };
const FILES = {
  '/': join(root, 'page', 'index.html'),
  '/clients.js': join(root, 'page', 'clients.js'),
  '/lib/strophe.umd.min.js': join(root, 'node_modules', 'strophe.js', 'dist', 'strophe.umd.min.js'),
  '/lib/xmpp.min.js': join(root, 'node_modules', '@xmpp', 'client', 'dist', 'xmpp.min.js'),
};

/** Serves the test page on its own 127.0.0.1 port (a different origin than the server). */
export async function startPageServer() {
  const srv = createServer((req, res) => {
    const file = FILES[req.url.split('?')[0]];
    if (!file) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': TYPES[extname(file) || '.html'] || 'text/html' });
    res.end(readFileSync(file));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${srv.address().port}`;
  return { origin, close: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(r); }) };
}

/** A minimal XMPP client over direct TLS (XEP-0368) with PLAIN: the "TCP user". Rejects
 * when the server answers the login with a SASL failure. */
export async function tcpLogin(address, user, password, resource = 'tcp', domain = 'localhost') {
  const [host, port] = address.split(':');
  const sock = tls.connect({ host, port: Number(port), servername: 'localhost', rejectUnauthorized: false });
  await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
  let buf = '';
  const waiters = [];
  sock.on('data', (d) => {
    buf += d.toString();
    for (const w of [...waiters]) w();
  });
  const until = (re, ms = 10000) => new Promise((resolve, reject) => {
    const check = () => {
      const m = buf.match(re);
      if (m) {
        buf = buf.slice(m.index + m[0].length);
        waiters.splice(waiters.indexOf(check), 1);
        clearTimeout(timer);
        resolve(m);
      }
    };
    const timer = setTimeout(() => { waiters.splice(waiters.indexOf(check), 1); reject(new Error('TCP client timed out on ' + re + ' with ' + buf)); }, ms);
    waiters.push(check);
    check();
  });
  const open = () => sock.write(`<?xml version='1.0'?><stream:stream to='${domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`);
  open();
  await until(/<\/stream:features>/);
  sock.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
  const answer = await until(/<success[^>]*\/>|<success[^>]*>[^<]*<\/success>|<failure[^>]*>.*?<\/failure>/s);
  if (answer[0].startsWith('<failure')) {
    sock.destroy();
    throw new Error('login refused: ' + answer[0]);
  }
  open();
  await until(/<\/stream:features>/);
  sock.write(`<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
  const bound = await until(/<jid>([^<]+)<\/jid>/);
  sock.write('<presence/>');
  return {
    jid: bound[1],
    send(to, text) { sock.write(`<message to='${to}' type='chat'><body>${text}</body></message>`); },
    async waitFor(text, ms = 15000) {
      const esc = text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const m = await until(new RegExp(`<message[^>]*from="([^"]+)"[^>]*>(?:(?!</message>).)*<body>${esc}</body>`, 's'), ms);
      return { from: m[1] };
    },
    /** Writes raw XML on the stream. */
    raw(xml) { sock.write(xml); },
    /** Waits for the received text to match `re` (consuming up to the match). */
    waitRaw(re, ms = 15000) { return until(re, ms); },
    /** Resolves once the server has closed the connection. */
    closed: new Promise((resolve) => sock.once('close', resolve)),
    close() { sock.end('</stream:stream>'); sock.destroy(); },
  };
}

/**
 * Launches headless Chromium (Debian's, never one npm downloaded) and opens the test page
 * at `origin`; `onPage(page)` runs before the page loads (to watch its requests).
 */
export async function openTestPage(origin, onPage = () => {}) {
  const browser = await launchBrowser();
  const page = await browser.newPage();
  page.on('console', (m) => { if (process.env.DEBUG) console.log('[page]', m.text()); });
  onPage(page);
  await page.goto(origin + '/');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  return { browser, page };
}

/** Headless Chromium: Debian's (or $CHROMIUM), never one npm downloaded. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}
