// Quick BOSH figures (not a test): login time and message rate from BOSH to a TCP user,
// against a debug or release server started like the browser tests do.
//   HELIOGRAPH_BIN=... node bench.mjs [logins] [messages]
import { startServer, tcpLogin } from './test/harness.js';

const NS = "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'";
const logins = Number(process.argv[2] || 50);
const messages = Number(process.argv[3] || 2000);

const server = await startServer({ http: 'bosh_polling = 0\nmax_sessions_per_address = 0\n' });
await server.addUser('alice', 'pw');
await server.addUser('bob', 'pw');
const url = `http://${server.http}/http-bind`;
const post = async (body) => (await fetch(url, { method: 'POST', body })).text();

async function login() {
  let rid = 1000;
  const created = await post(`<body rid='${rid}' to='localhost' wait='5' hold='1' xmpp:version='1.0' ${NS}/>`);
  const sid = created.match(/sid="([^"]+)"/)[1];
  const b64 = Buffer.from('\0alice\0pw').toString('base64');
  await post(`<body rid='${++rid}' sid='${sid}' ${NS}><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64}</auth></body>`);
  await post(`<body rid='${++rid}' sid='${sid}' xmpp:restart='true' ${NS}/>`);
  const bound = await post(`<body rid='${++rid}' sid='${sid}' ${NS}><iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq></body>`);
  if (!bound.includes('<jid>')) throw new Error(bound);
  return { sid, rid };
}

const times = [];
for (let i = 0; i < logins; i++) {
  const t = performance.now();
  await login();
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
const tcp = await tcpLogin(server.direct, 'bob', 'pw');
const s = await login();
let rid = s.rid;
const batch = 20;
const t0 = performance.now();
// Like a real client with hold=1: up to `requests` (2) in flight; each new request
// releases the held one.
let inflight = null;
for (let i = 0; i < messages; i += batch) {
  let payload = '';
  for (let j = i; j < Math.min(i + batch, messages); j++) payload += `<message xmlns='jabber:client' to='${tcp.jid}'><body>m${j}</body></message>`;
  const next = post(`<body rid='${++rid}' sid='${s.sid}' ${NS}>${payload}</body>`);
  if (inflight) await inflight;
  inflight = next;
}
await tcp.waitFor(`m${messages - 1}`, 60000);
post(`<body rid='${++rid}' sid='${s.sid}' ${NS}/>`);
await inflight;
const secs = (performance.now() - t0) / 1000;
console.log(`BOSH login (create, PLAIN, restart, bind), ${logins} sequential: median ${times[logins >> 1].toFixed(1)} ms, p90 ${times[Math.floor(logins * 0.9)].toFixed(1)} ms`);
console.log(`BOSH -> TCP messages: ${messages} in ${secs.toFixed(2)} s = ${(messages / secs).toFixed(0)} msg/s (${batch} stanzas per request, one session)`);
tcp.close();
await server.stop();
