// Benchmark: time from the click on "Call" to the caller's RTCPeerConnection reaching
// `connected`, for examples/video-call served by Heliograph, callee answering at once
// (the app's auto-answer), median of N calls. A measurement, not a test: it prints the
// figures and asserts nothing about them.
//
//   unshare -n sh -c 'ip link set lo up && node video-call-bench.mjs [--calls 10] [--relay]'
//
// --relay forces iceTransportPolicy "relay": media through coturn (started here on
// loopback) with the TURN credentials Heliograph hands out by XEP-0215.
import { chromium } from 'playwright-core';
import { startServer } from './test/harness.js';
import { CHROMIUM_ARGS, appDir, until, openApp, befriend, stats } from './test/video-call-helpers.js';
import { startTurn, addUser } from './test/turn.js';

const args = process.argv.slice(2);
const calls = Number(args[args.indexOf('--calls') + 1]) || 10;
const relay = args.includes('--relay');

const turn = relay ? await startTurn() : null;
const server = await startServer({ http: `static_dir = "${appDir}"` });
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
try {
  // Relay runs use a tenant whose XEP-0215 services are the coturn started above.
  const domain = relay ? 'acme.test' : 'localhost';
  if (turn) await turn.createTenant(server, 'acme', domain);
  for (const u of ['alice', 'bob']) await addUser(server, domain, u, `${u}-pw`);
  const origin = `http://${server.http}`;
  const alice = await openApp(browser, origin, `alice@${domain}`, 'alice-pw', { relay });
  const bob = await openApp(browser, origin, `bob@${domain}`, 'bob-pw', { relay });
  alice.jid = `alice@${domain}`;
  bob.jid = `bob@${domain}`;
  await befriend(alice, bob, bob.jid);
  await bob.check('#autoanswer');
  const times = [];
  let relayed = 0;
  for (let i = 0; i < calls; i++) {
    await alice.click(`#roster li[data-jid="${bob.jid}"] button.call`);
    const [s] = await until('call connected', async () => {
      const x = await stats(alice);
      return x.length === 1 && x[0].state === 'connected' && x;
    }, 60000);
    times.push(s.timings.connected - s.timings.clicked);
    if (s.relayed) relayed += 1;
    await alice.click('#hangup');
    await until('call ended on both sides', async () => (await stats(alice)).length === 0 && (await stats(bob)).length === 0, 30000);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median = sorted.length % 2 ? sorted[Math.floor(mid)] : (sorted[mid - 1] + sorted[mid]) / 2;
  console.log(JSON.stringify({
    mode: relay ? 'relay (TURN)' : 'direct (host candidates)',
    calls, median_ms: Math.round(median), min_ms: Math.round(sorted[0]), max_ms: Math.round(sorted[sorted.length - 1]),
    relayed_calls: relayed, all_ms: times.map(Math.round),
  }));
} finally {
  await browser.close();
  await server.stop();
  await turn?.stop();
}
