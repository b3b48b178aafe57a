// XEP-0215 services to RTCPeerConnection iceServers (web/ice-servers.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iceServersOf } from '../web/ice-servers.js';
import { parseXml } from './xml.js';

test('STUN and TURN services become iceServers with the server-issued credentials', () => {
  const services = parseXml(`<services xmlns='urn:xmpp:extdisco:2'>
    <service type='stun' host='stun.example.org' port='3478' transport='udp'/>
    <service type='turn' host='turn.example.org' port='3478' transport='udp' restricted='true'
             username='1796656518:alice@example.org' password='+3RXJ3Vw4fPBL1+RbjGZswZIqek='
             expires='2026-12-07T15:00:00Z'/>
    <service type='turns' host='2001:db8::1' port='5349' transport='tcp' restricted='true' username='u' password='p'/>
    <service type='ftp' host='files.example.org' port='21'/>
  </services>`);
  assert.deepEqual(iceServersOf(services), [
    { urls: 'stun:stun.example.org:3478' },
    { urls: 'turn:turn.example.org:3478?transport=udp', username: '1796656518:alice@example.org', credential: '+3RXJ3Vw4fPBL1+RbjGZswZIqek=' },
    { urls: 'turns:[2001:db8::1]:5349?transport=tcp', username: 'u', credential: 'p' },
  ]);
  assert.deepEqual(iceServersOf(undefined), []);
  assert.deepEqual(iceServersOf(parseXml("<services xmlns='urn:xmpp:extdisco:2'/>")), []);
});
