// Helpers for driving examples/video-call in Chromium: shared by the end-to-end test
// (test/video-call.e2e.js) and the click-to-connected benchmark (video-call-bench.mjs).
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The folder examples/video-call/heliograph.toml serves (static_dir). */
export const appDir = join(here, '..', '..', '..', 'examples', 'video-call', 'web');

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; fails with the last value after `ms`. */
export async function until(what, fn, ms = 60000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
    await sleep(200);
  }
}

/** Opens the app and logs in through its form. */
export async function openApp(browser, origin, user, password, { relay = false, token = false } = {}) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.log(`[${user}] page error:`, e.message));
  await page.goto(`${origin}/`);
  await page.fill('#user', user);
  await page.fill('#password', password);
  if (relay) await page.check('#relay');
  if (token) await page.check('#token-login');
  await page.click('#login-button');
  await until(`${user} online`, () => page.evaluate(() => window.app.jid));
  return page;
}

/** Makes `a` and `b` mutual contacts through the app's UI. */
export async function befriend(a, b, bJid) {
  await a.fill('#contact', bJid);
  await a.click('#add');
  await b.click(`#requests li[data-jid="${a.jid}"] button.allow`, { timeout: 30000 });
  await until(`${bJid} online in the roster`, () => a.$(`#roster li[data-jid="${bJid}"].online`));
  await until(`${a.jid} online in the roster`, () => b.$(`#roster li[data-jid="${a.jid}"].online`));
}

export const stats = (page) => page.evaluate(() => window.app.stats());
export const events = (page) => page.evaluate(() => window.app.events.map((e) => e.name));

/** Every session of the page connected with more than `frames` decoded video frames. */
export async function mediaFlows(page, sessions, frames = 30) {
  return until(`${sessions} session(s) connected with > ${frames} decoded frames`, async () => {
    const s = await stats(page);
    return s.length === sessions && s.every((x) => x.state === 'connected' && x.framesDecoded > frames) && s;
  }, 90000);
}

