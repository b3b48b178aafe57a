// XEP-0215 external services -> RTCPeerConnection iceServers: each STUN/TURN <service/>
// becomes a URL (RFC 7064/7065: stun:host:port, turn:host:port?transport=udp), with the
// server-issued username and password as the TURN credentials. Reads elements shaped
// { name, attrs, children } (ltx in the browser, plain objects in tests).
import { children } from './jingle-sdp.js';

export const NS_EXTDISCO = 'urn:xmpp:extdisco:2';
const TYPES = ['stun', 'stuns', 'turn', 'turns'];

/** The iceServers for a <services/> (or <credentials/>) element; [] for none. */
export function iceServersOf(services) {
  if (!services) return [];
  const out = [];
  for (const s of children(services, 'service', NS_EXTDISCO)) {
    const { type, host, port, transport, username, password } = s.attrs;
    if (!TYPES.includes(type) || !host) continue;
    const h = host.includes(':') ? `[${host}]` : host;
    const query = type.startsWith('turn') && transport ? `?transport=${transport}` : '';
    const url = `${type}:${h}${port ? ':' + port : ''}${query}`;
    out.push(username ? { urls: url, username, credential: password } : { urls: url });
  }
  return out;
}
