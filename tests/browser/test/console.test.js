// The web console (served by the admin listener at /console/) in headless Chromium,
// against a real server: an operator adds a tenant, creates a user, installs a plugin
// and watches its figures move with real XMPP logins, ends a session, kicks a meeting
// occupant, reads the live metrics; a tenant token sees its own tenant only and gets the
// API's refusal when it types another one; every page fits a phone screen; the operator
// drains the node. Screenshots of every page go to tests/browser/artifacts/console/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, tcpLogin, launchBrowser } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(here, '..', 'artifacts', 'console');
const LONG = 60000; // generous deadline for anything that polls

/** The allowlist authenticator built from plugins/ by tests/run.sh (step_plugins). */
function pluginPath() {
  const target = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'heliograph-target');
  return join(target, 'plugins', 'wasm32-wasip2', 'release', 'allowlist.wasm');
}

const hashPassword = (salt, pw) => `sha256$${salt}$${createHash('sha256').update(salt + pw).digest('hex')}`;

let server, browser, page;
const cspViolations = [];
const clients = [];

async function shot(name, p = page) {
  await p.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Opens the console in a fresh tab (optionally phone-sized) and logs in with `token`. */
async function openConsole(token, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const p = await context.newPage();
  p.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    if (process.env.DEBUG) console.log('[console]', m.text());
  });
  p.on('pageerror', (e) => cspViolations.push('page error: ' + e.message));
  const resp = await p.goto(`http://${server.admin}/console/`);
  assert.equal(resp.status(), 200);
  await p.waitForSelector('#login:not([hidden])');
  if (token) await logIn(p, token);
  return p;
}

async function logIn(p, token) {
  await p.fill('#token', token);
  await p.click('#login button[type=submit]');
  await p.waitForSelector('#nav:not([hidden])');
}

/** Goes to a page of the console and waits for it to be drawn. */
async function goTo(p, id) {
  await p.click(`#nav a[data-page=${id}]`);
  await p.waitForFunction((x) => document.getElementById('main').dataset.page === x, id, { timeout: LONG });
}

/** Types `value` into the picker form `formSel` and submits it, waiting for the API
 * response whose path ends with `path` (the last request the page draws from). */
async function pick(p, formSel, field, value, path) {
  const drawn = p.waitForResponse((r) => new URL(r.url()).pathname.endsWith(path), { timeout: LONG });
  await p.fill(`${formSel} input[name=${field}]`, value);
  await p.click(`${formSel} button[type=submit]`);
  await drawn;
}

/** Clicks the button in the row `key` of a table, then "Confirm" in the dialog. */
async function confirmRowAction(p, rowSelector, label) {
  await p.locator(rowSelector).getByRole('button', { name: label }).click();
  await p.click('#confirm-yes');
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  for (const c of clients) c.close();
  await browser?.close();
  const exit = await server?.stop();
  if (exit && exit.code !== 0) console.log(server.log());
});

test('the console is served with its security headers and logs in with the operator token', async () => {
  const r = await fetch(`http://${server.admin}/console/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'/);
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  assert.equal(r.headers.get('access-control-allow-origin'), null);

  page = await openConsole(null);
  await shot('01-login');
  await logIn(page, server.token);
  assert.equal(await page.textContent('#who'), 'operator');
  // The token is in this tab's session storage only, never in the URL.
  assert.ok(!page.url().includes(server.token));
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('heliograph-console-token')), server.token);
  const pages = await page.$$eval('#nav a', (as) => as.map((a) => a.dataset.page));
  assert.deepEqual(pages, ['tenants', 'users', 'plugins', 'meetings', 'metrics', 'node']);
});

test('the operator adds a tenant', async () => {
  await goTo(page, 'tenants');
  await page.fill('#tenant-add input[name=name]', 'acme');
  await page.fill('#tenant-add input[name=domains]', 'acme.test');
  await page.click('#tenant-add button[type=submit]');
  const row = page.locator('#tenant-list tr[data-key=acme]');
  await row.waitFor({ timeout: LONG });
  assert.match(await row.textContent(), /acme\.test/);
  assert.match(await row.textContent(), /enabled/);
  const api = await server.api('GET', '/api/v1/tenants/acme');
  assert.deepEqual(api.json.domains, ['acme.test']);
  // A second tenant of the same name: the API's words are shown.
  await page.fill('#tenant-add input[name=name]', 'acme');
  await page.fill('#tenant-add input[name=domains]', 'acme2.test');
  await page.click('#tenant-add button[type=submit]');
  await page.waitForFunction(() => /acme/.test(document.querySelector('#tenant-add .error').textContent), null, { timeout: LONG });
  const apiWords = (await server.api('POST', '/api/v1/tenants', { name: 'acme', domains: ['acme2.test'] })).json.message;
  assert.equal(await page.textContent('#tenant-add .error'), apiWords);

  // Settings: limits (operator), and a JWT key whose secret is write-only.
  await page.click('#tenant-list tr[data-key=acme] button.link');
  await page.fill('#tenant-limits input[name=max_sessions]', '50');
  await page.click('#tenant-limits button[type=submit]');
  await page.waitForFunction(() => /changed/.test(document.getElementById('status').textContent), null, { timeout: LONG });
  assert.equal((await server.api('GET', '/api/v1/tenants/acme')).json.limits.max_sessions, 50);
  const secret = 'jwt-secret-of-acme-0123456789abcdef';
  await page.fill('#tenant-jwt input[name=kid]', 'k1');
  await page.fill('#tenant-jwt input[name=secret]', secret);
  await page.click('#tenant-jwt button[type=submit]');
  const keyRow = page.locator('#tenant-editor tr[data-key=k1]');
  await keyRow.waitFor({ timeout: LONG });
  assert.match(await keyRow.textContent(), /HS256.*secret \(hidden\)/s);
  const view = (await server.api('GET', '/api/v1/tenants/acme')).json;
  assert.equal(view.jwt.keys[0].secret, '<redacted>');
  // A second key keeps the first one's secret (sent back redacted, restored by the API).
  await page.fill('#tenant-jwt input[name=kid]', 'k2');
  await page.fill('#tenant-jwt input[name=secret]', secret + '-2');
  await page.click('#tenant-jwt button[type=submit]');
  await page.locator('#tenant-editor tr[data-key=k2]').waitFor({ timeout: LONG });
  assert.deepEqual((await server.api('GET', '/api/v1/tenants/acme')).json.jwt.keys.map((k) => k.kid), ['k1', 'k2']);
  assert.ok(!(await page.content()).includes(secret), 'the secret is never shown');
  await shot('02-tenants');
});

test('the operator creates a user', async () => {
  await goTo(page, 'users');
  await pick(page, '#domain-pick', 'domain', 'localhost', '/api/v1/sessions/localhost');
  await page.fill('#user-create input[name=username]', 'dave');
  await page.fill('#user-create input[name=password]', 'dave-pw');
  await page.click('#user-create button[type=submit]');
  await page.locator('#user-list tr[data-key=dave]').waitFor({ timeout: LONG });
  const users = await server.api('GET', '/api/v1/users/localhost');
  assert.ok(users.json.users.includes('dave'));
  // The user logs in for real with that password.
  const dave = await tcpLogin(server.direct, 'dave', 'dave-pw', 'desk');
  clients.push(dave);
  await page.locator('#session-list tr[data-key="dave@localhost/desk"]').waitFor({ timeout: LONG });
  const row = await page.textContent('#session-list tr[data-key="dave@localhost/desk"]');
  assert.match(row, /tls/, 'direct TLS');
  assert.match(row, /127\.0\.0\.1/);
  // Another user: its password changed, then deleted, found with the search box.
  await page.fill('#user-create input[name=username]', 'frank');
  await page.fill('#user-create input[name=password]', 'frank-pw');
  await page.click('#user-create button[type=submit]');
  await page.locator('#user-list tr[data-key=frank]').waitFor({ timeout: LONG });
  await page.fill('#user-search', 'fra');
  assert.deepEqual(await page.$$eval('#user-list tr[data-key]', (rs) => rs.map((r) => r.dataset.key)), ['frank']);
  await page.locator('#user-list tr[data-key=frank]').getByRole('button', { name: 'Password' }).click();
  await page.fill('#password-form input[name=password]', 'frank-new');
  await page.click('#password-form button[type=submit]');
  await page.waitForFunction(() => /password of frank@localhost changed/.test(document.getElementById('status').textContent), null, { timeout: LONG });
  const frank = await tcpLogin(server.direct, 'frank', 'frank-new', 'x');
  frank.close();
  await confirmRowAction(page, '#user-list tr[data-key=frank]', 'Delete');
  await page.locator('#user-list tr[data-key=frank]').waitFor({ state: 'detached', timeout: LONG });
  assert.ok(!(await server.api('GET', '/api/v1/users/localhost')).json.users.includes('frank'));
  await page.fill('#user-search', 'dav');
  await shot('03-users');
});

test('the operator installs a plugin and sees its figures change after logins', async (t) => {
  const wasm = pluginPath();
  if (!existsSync(wasm)) {
    if (process.env.CI) assert.fail(`${wasm} is missing: tests/run.sh builds the plugins first`);
    t.skip(`${wasm} not built`);
    return;
  }
  await goTo(page, 'plugins');
  await pick(page, '#plugin-tenant', 'tenant', 'acme', '/api/v1/tenants/acme/plugins');
  await page.fill('#plugin-install input[name=slot]', 'auth');
  await page.setInputFiles('#plugin-install input[name=wasm]', wasm);
  const config = { users: { erin: hashPassword('s1', 'erin-pw') } };
  await page.fill('#plugin-install textarea[name=config]', JSON.stringify(config));
  await page.click('#plugin-install button[type=submit]');
  const slot = page.locator('article[data-slot=auth]');
  await slot.waitFor({ timeout: LONG });
  assert.equal(await slot.locator('.calls').textContent(), '0');

  // The tenant authenticates with it (set from the tenant's settings editor).
  await goTo(page, 'tenants');
  await page.click('#tenant-list tr[data-key=acme] button.link');
  await page.fill('#tenant-auth input[name=method]', 'plugin');
  await page.fill('#tenant-auth input[name=plugin]', 'auth');
  await page.click('#tenant-auth button[type=submit]');
  await page.waitForFunction(() => /plugin auth/.test(document.querySelector('#tenant-list tr[data-key=acme]')?.textContent), null, { timeout: LONG });

  // Real logins through the plugin: three good, one refused.
  for (const r of ['r1', 'r2', 'r3']) clients.push(await tcpLogin(server.direct, 'erin', 'erin-pw', r, 'acme.test'));
  await assert.rejects(tcpLogin(server.direct, 'erin', 'wrong', 'r4', 'acme.test'), /login refused/);

  await goTo(page, 'plugins');
  await pick(page, '#plugin-tenant', 'tenant', 'acme', '/api/v1/tenants/acme/plugins');
  await page.waitForFunction(() => Number(document.querySelector('article[data-slot=auth] .calls')?.textContent) >= 4, null, { timeout: LONG });
  assert.ok(Number(await slot.locator('.succeeded').textContent()) >= 3);
  // p50/p99 over time: the chart gets a line once sampled.
  // (one sample draws a flat line of two points; three points are two samples or more)
  await page.waitForFunction(() => document.querySelector('article[data-slot=auth] svg polyline')?.getAttribute('points').split(' ').length >= 3, null, { timeout: LONG });
  await shot('04-plugins');

  // Reconfigure makes version 2; roll back returns to version 1.
  await page.click('article[data-slot=auth] summary');
  await page.fill('#reconfigure-auth textarea[name=config]', JSON.stringify({ ...config, policy: 'v2' }));
  await page.click('#reconfigure-auth button[type=submit]');
  await page.waitForFunction(() => /active v2/.test(document.querySelector('article[data-slot=auth] h3')?.textContent), null, { timeout: LONG });
  await page.locator('article[data-slot=auth] tr[data-key="1"]').getByRole('button', { name: 'Roll back to this' }).click();
  await page.waitForFunction(() => /active v1/.test(document.querySelector('article[data-slot=auth] h3')?.textContent), null, { timeout: LONG });
  const slots = (await server.api('GET', '/api/v1/tenants/acme/plugins')).json.plugins;
  assert.equal(slots[0].active, 1);
  assert.equal(slots[0].versions.length, 2);

  // A version that traps: its failures show by cause; "roll back to last good" recovers.
  const hostile = join(dirname(wasm), 'hostile.wasm');
  await page.fill('#plugin-install input[name=slot]', 'auth');
  await page.setInputFiles('#plugin-install input[name=wasm]', hostile);
  await page.fill('#plugin-install textarea[name=config]', JSON.stringify({ mode: 'trap' }));
  await page.click('#plugin-install button[type=submit]');
  await page.waitForFunction(() => /active v3/.test(document.querySelector('article[data-slot=auth] h3')?.textContent), null, { timeout: LONG });
  await assert.rejects(tcpLogin(server.direct, 'erin', 'erin-pw', 'r5', 'acme.test'), /login refused/);
  await page.waitForFunction(() => /trap 1/.test(document.querySelector('article[data-slot=auth] .failures')?.textContent), null, { timeout: LONG });
  await shot('04b-plugin-failures');
  if (!(await page.$eval('article[data-slot=auth] details', (d) => d.open))) await page.click('article[data-slot=auth] summary');
  await page.locator('article[data-slot=auth]').getByRole('button', { name: 'Roll back to last good' }).click();
  await page.waitForFunction(() => /active v1/.test(document.querySelector('article[data-slot=auth] h3')?.textContent), null, { timeout: LONG });
  clients.push(await tcpLogin(server.direct, 'erin', 'erin-pw', 'r5', 'acme.test'));

  // The tenant list shows the logins and the refused one.
  await goTo(page, 'tenants');
  await page.waitForFunction(() => {
    const row = document.querySelector('#tenant-list tr[data-key=acme]');
    return row && row.children[5].textContent === '4' && /^2 /.test(row.children[6].textContent);
  }, null, { timeout: LONG });
  await shot('05-tenants-after-logins');
});

test('the operator ends a session and sees its transport and address', async () => {
  await goTo(page, 'users');
  await pick(page, '#domain-pick', 'domain', 'acme.test', '/api/v1/sessions/acme.test');
  const key = '#session-list tr[data-key="erin@acme.test/r1"]';
  await page.locator(key).waitFor({ timeout: LONG });
  assert.match(await page.textContent(key), /tls.*127\.0\.0\.1/s);
  const erin = clients.find((c) => c.jid === 'erin@acme.test/r1');
  await confirmRowAction(page, key, 'End');
  await erin.closed;
  await page.locator(key).waitFor({ state: 'detached', timeout: LONG });
  await shot('06-sessions');
});

test('the operator kicks a meeting occupant', async () => {
  const room = 'standup@conference.localhost';
  const created = await server.api('POST', '/api/v1/tenants/default/rooms', { jid: room, config: { roomname: 'Stand-up' } });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const dave = clients.find((c) => c.jid === 'dave@localhost/desk');
  dave.raw(`<presence to='${room}/dave'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
  await dave.waitRaw(/<presence[^>]*from=["']standup@conference\.localhost\/dave["']/);

  await goTo(page, 'meetings');
  await pick(page, '#meeting-tenant', 'tenant', 'default', '/api/v1/tenants/default/rooms');
  await page.locator(`#room-view tr[data-key="${room}"] button.link`).click();
  const row = '#room-detail tr[data-key=dave]';
  await page.locator(row).waitFor({ timeout: LONG });
  assert.match(await page.textContent(row), /participant/);
  await shot('07-meetings');
  await confirmRowAction(page, row, 'Kick');
  // XEP-0045: the kicked occupant gets unavailable presence with status 307.
  await dave.waitRaw(/<presence[^>]*type=["']unavailable["'][\s\S]*?code=["']307["']/);
  await page.locator(row).waitFor({ state: 'detached', timeout: LONG });
  const after = await server.api('GET', `/api/v1/tenants/default/rooms/${encodeURIComponent(room)}`);
  assert.equal(after.json.occupants.length, 0);
  // Destroying the room.
  await confirmRowAction(page, `#room-view tr[data-key="${room}"]`, 'Destroy');
  await page.locator(`#room-view tr[data-key="${room}"]`).waitFor({ state: 'detached', timeout: LONG });
  assert.equal((await server.api('GET', `/api/v1/tenants/default/rooms/${encodeURIComponent(room)}`)).status, 404);
});

test('the metrics page charts the server\'s own /metrics', async () => {
  await goTo(page, 'metrics');
  await page.waitForFunction(() => document.querySelectorAll('#metric-charts figure').length === 7, null, { timeout: LONG });
  // Two samples make lines (the page samples every 3 s).
  await page.waitForFunction(() => document.querySelectorAll('#metric-charts polyline').length >= 4, null, { timeout: LONG });
  const caption = await page.textContent('#metric-charts figure:first-child figcaption');
  assert.match(caption, /open \d+/);
  // The process's CPU (a rate: two samples of process_cpu_seconds_total) and memory.
  await page.waitForFunction(() => [...document.querySelectorAll('#metric-charts figcaption')]
    .some((c) => /^CPU \(% of one core\) CPU \d+(\.\d+)?%$/.test(c.textContent)), null, { timeout: LONG });
  const memory = [...await page.$$eval('#metric-charts figcaption', (cs) => cs.map((c) => c.textContent))]
    .find((c) => c.startsWith('Memory'));
  assert.match(memory, /resident \d+(\.\d+)? MiB/);
  await shot('08-metrics');
});

test('a tenant token sees only its tenant and gets the API\'s refusal elsewhere', async () => {
  // The operator issues acme's token from the console.
  await goTo(page, 'tenants');
  await page.fill('#tenant-token input[name=name]', 'acme');
  await page.click('#tenant-token button[type=submit]');
  await page.waitForFunction(() => document.getElementById('issued-token').textContent.startsWith('acme.'), null, { timeout: LONG });
  const token = await page.textContent('#issued-token');

  const tp = await openConsole(token);
  assert.equal(await tp.textContent('#who'), 'tenant acme');
  const pages = await tp.$$eval('#nav a', (as) => as.map((a) => a.dataset.page));
  assert.deepEqual(pages, ['tenants', 'users', 'plugins', 'meetings'], 'operator-only pages are hidden');
  const nowhere = async (name) => {
    const text = await tp.textContent('#main');
    assert.ok(!/\bdefault\b/.test(text) && !text.includes('localhost'), `${name} shows another tenant: ${text}`);
    const options = await tp.$$eval('datalist option', (os) => os.map((o) => o.value));
    assert.ok(options.every((o) => o === 'acme' || o === 'acme.test' || o === 'internal' || o === 'plugin'), `${name} offers ${options}`);
  };

  await goTo(tp, 'tenants');
  assert.deepEqual(await tp.$$eval('#tenant-list tr[data-key]', (rs) => rs.map((r) => r.dataset.key)), ['acme']);
  assert.equal(await tp.$('#tenant-add'), null, 'no add form for a tenant');
  assert.equal(await tp.$('#tenant-limits'), null, 'limits are the operator\'s');
  await nowhere('tenants');
  await shot('09-tenant-tenants', tp);

  await goTo(tp, 'users');
  await nowhere('users');
  await shot('10-tenant-users', tp);
  await tp.fill('#domain-pick input[name=domain]', 'localhost');
  await tp.click('#domain-pick button[type=submit]');
  await tp.waitForFunction(() => document.querySelector('#domain-pick .error').textContent !== '', null, { timeout: LONG });
  const refusedDomain = await tp.textContent('#domain-pick .error');
  const apiDomain = await fetch(`http://${server.admin}/api/v1/users/localhost`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(apiDomain.status, 403);
  assert.equal(refusedDomain, (await apiDomain.json()).message);
  assert.ok(!(await tp.textContent('#main')).includes('dave'), 'no user of another tenant shown');

  for (const [id, form] of [['plugins', '#plugin-tenant'], ['meetings', '#meeting-tenant']]) {
    await goTo(tp, id);
    await nowhere(id);
    await shot(`${id === 'plugins' ? '11' : '12'}-tenant-${id}`, tp);
    await tp.fill(`${form} input[name=tenant]`, 'default');
    await tp.click(`${form} button[type=submit]`);
    await tp.waitForFunction((f) => document.querySelector(`${f} .error`).textContent !== '', form, { timeout: LONG });
    assert.equal(await tp.textContent(`${form} .error`), 'this token does not grant access to tenant default');
  }
  // Operator-only pages cannot be reached by their address either.
  await tp.evaluate(() => { location.hash = '#node'; });
  await tp.waitForFunction(() => document.getElementById('main').dataset.page === 'tenants', null, { timeout: LONG });
  await tp.context().close();
});

test('every page fits a phone-sized screen (390x844)', async () => {
  const phone = await openConsole(server.token, { width: 390, height: 844 });
  for (const id of ['tenants', 'users', 'plugins', 'meetings', 'metrics', 'node']) {
    await goTo(phone, id);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${id} is ${overflow}px wider than the screen`);
    await shot(`13-phone-${id}`, phone);
  }
  await phone.context().close();
});

test('the operator drains the node after confirming', async () => {
  await goTo(page, 'node');
  await page.waitForFunction(() => document.getElementById('node-state').textContent === 'ready', null, { timeout: LONG });
  // The node's own figures from /metrics; CPU is a rate, known from the second draw on.
  await page.waitForFunction(() => /^\d+(\.\d+)?% of a core$/.test(document.getElementById('node-cpu')?.textContent), null, { timeout: LONG });
  const figure = (id) => page.textContent(`#${id}`);
  assert.equal(await figure('node-ready'), 'yes');
  assert.equal(await figure('node-draining'), 'no');
  assert.match(await figure('node-memory'), /^\d+(\.\d+)? MiB$/);
  assert.match(await figure('node-fds'), /^\d+ of \d+$/);
  assert.match(await figure('node-uptime'), /^\d+ (s|min)/);
  await shot('14-node');
  await page.click('#drain');
  await page.click('#confirm-no');
  assert.equal((await fetch(`http://${server.admin}/health/ready`)).status, 200, 'cancel does not drain');
  await page.click('#drain');
  await shot('15-drain-confirm');
  await page.click('#confirm-yes');
  await page.waitForFunction(() => /draining/.test(document.getElementById('status').textContent), null, { timeout: LONG });
  // Sessions are still open (dave, erin), so the node stays draining for its grace period.
  await page.waitForFunction(() => document.getElementById('node-state').textContent === 'draining', null, { timeout: LONG });
  // /metrics agrees: heliograph_draining 1, heliograph_ready 0.
  await page.waitForFunction(() => document.getElementById('node-draining').textContent === 'yes'
    && document.getElementById('node-ready').textContent === 'no', null, { timeout: LONG });
  await shot('16-draining');
  assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violation nor page error');
});
