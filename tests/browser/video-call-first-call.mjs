// The browser half of "from clone to a call": against a server started as the example's
// README says (http://localhost:5280 by default), does what a person does in two tabs —
// log in as alice and as bob, add each other, call, answer — and prints the seconds from
// opening the first tab to both RTCPeerConnections connected with video decoded.
//   node video-call-first-call.mjs [ORIGIN]
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, openApp, befriend, mediaFlows } from './test/video-call-helpers.js';

const origin = process.argv[2] || 'http://localhost:5280';
const started = Date.now();
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
try {
  const alice = await openApp(browser, origin, 'alice@localhost', 'alice');
  const bob = await openApp(browser, origin, 'bob@localhost', 'bob');
  alice.jid = 'alice@localhost';
  bob.jid = 'bob@localhost';
  await befriend(alice, bob, 'bob@localhost');
  await alice.click('#roster li[data-jid="bob@localhost"] button.call');
  await bob.click('#accept', { timeout: 30000 });
  await Promise.all([mediaFlows(alice, 1, 1), mediaFlows(bob, 1, 1)]);
  console.log(JSON.stringify({ browser_seconds: (Date.now() - started) / 1000 }));
} finally {
  await browser.close();
}
