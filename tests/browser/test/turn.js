// coturn (Debian's `coturn`: the `turnserver` binary) for the relay-mode runs of the
// video-call example: started on a free loopback port with the TURN REST API shared
// secret (`--use-auth-secret --static-auth-secret`), ready once it answers a STUN
// Binding request, stopped by its pid. `createTenant` makes a Heliograph tenant whose
// XEP-0215 external services point at it with the same secret.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A port free on 127.0.0.1 for both UDP and TCP (coturn listens on both). */
async function freePort() {
  for (let i = 0; i < 50; i++) {
    const udp = createSocket('udp4');
    await new Promise((r) => udp.bind(0, '127.0.0.1', r));
    const { port } = udp.address();
    const ok = await new Promise((resolve) => {
      const tcp = createServer();
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => tcp.close(() => resolve(true)));
    });
    udp.close();
    if (ok) return port;
  }
  throw new Error('no free port');
}

/** Whether a STUN Binding request (RFC 5389) to the port gets a success response. */
function stunAnswers(port) {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const tx = randomBytes(12);
    const req = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), tx]);
    const timer = setTimeout(() => { s.close(); resolve(false); }, 300);
    s.on('message', (msg) => {
      clearTimeout(timer);
      s.close();
      resolve(msg.length >= 20 && msg.readUInt16BE(0) === 0x0101 && msg.subarray(8, 20).equals(tx));
    });
    s.send(req, port, '127.0.0.1');
  });
}

export async function startTurn() {
  const dir = mkdtempSync(join(tmpdir(), 'coturn-'));
  const port = await freePort();
  const secret = randomBytes(16).toString('hex');
  const proc = spawn('turnserver', [
    '-n', '--listening-ip=127.0.0.1', `--listening-port=${port}`, '--relay-ip=127.0.0.1',
    '--min-port=49152', '--max-port=65535', '--use-auth-secret', `--static-auth-secret=${secret}`,
    '--realm=heliograph.test', '--no-cli', '--no-tls', '--no-dtls', '--allow-loopback-peers',
    `--pidfile=${join(dir, 'turnserver.pid')}`, `--log-file=${join(dir, 'turn.log')}`, '--simple-log',
    `--db=${join(dir, 'turndb')}`,
  ], { stdio: 'ignore' });
  let exited = null;
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  const log = () => (existsSync(join(dir, 'turn.log')) ? readFileSync(join(dir, 'turn.log'), 'utf8').slice(-4000) : '');
  const deadline = Date.now() + 30000;
  while (!(await stunAnswers(port))) {
    if (exited) throw new Error(`turnserver exited ${JSON.stringify(exited)}: ${log()}`);
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error('turnserver never answered STUN: ' + log()); }
    await sleep(100);
  }
  return {
    port,
    secret,
    log,
    /** A tenant `name` on `domain` whose XEP-0215 services are this coturn. */
    async createTenant(server, name, domain) {
      const r = await server.api('POST', '/api/v1/tenants', {
        name, domains: [domain],
        external_services: {
          turn_secret: secret, credential_ttl: 3600,
          services: [{ type: 'turn', host: '127.0.0.1', port, transport: 'udp', restricted: true }],
        },
      });
      if (r.status !== 201) throw new Error('creating the tenant failed: ' + JSON.stringify(r));
    },
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        const end = Date.now() + 10000;
        while (!exited && Date.now() < end) await sleep(50);
        if (!exited) proc.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Adds a user on any domain through the admin API. */
export async function addUser(server, domain, username, password) {
  const r = await server.api('POST', `/api/v1/users/${domain}`, { username, password });
  if (r.status !== 201) throw new Error('adding user failed: ' + JSON.stringify(r));
}
