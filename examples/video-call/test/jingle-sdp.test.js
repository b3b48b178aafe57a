// The SDP <-> Jingle mapping (jingle-sdp.js) without a browser: a real Chromium offer and
// answer (captured from Chromium 156 with fake devices, test/fixtures/*.sdp) survive
// SDP -> Jingle XML -> SDP with everything a WebRTC peer needs, and the Jingle written
// is the XEPs' (fixtures/xep-session-initiate.xml, written in the form of XEP-0167, 0176,
// 0293, 0294, 0320, 0338 and 0339). Run: node --test examples/video-call/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  NS, parseSdp, sdpToJingle, jingleToSdp, toXml, children, child, candidateToJingle, jingleCandidates, parseCandidate,
} from '../web/jingle-sdp.js';
import { parseXml, canonical } from './xml.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const read = (name) => readFileSync(join(fixtures, name), 'utf8');
const offer = read('chromium-offer.sdp');
const answer = read('chromium-answer.sdp');
const xepXml = read('xep-session-initiate.xml');

/** What a peer needs of each m= section, in a comparable form. */
function essentials(sdp) {
  const s = parseSdp(sdp);
  return {
    groups: s.groups,
    media: s.media.map((m) => ({
      media: m.media, mid: m.mid, direction: m.direction, ice: { ufrag: m.ice.ufrag, pwd: m.ice.pwd },
      fingerprint: m.fingerprint, rtcpMux: m.rtcpMux, msid: m.msid, extmapAllowMixed: m.extmapAllowMixed,
      payloads: m.payloads.map((p) => ({ id: p.id, name: p.name, clockrate: p.clockrate, channels: p.channels, params: p.params, fb: p.fb })),
      fbAll: m.fbAll, extmaps: m.extmaps, ssrcGroups: m.ssrcGroups,
      // msid is compared at the media level: Chromium's answers have it only there, and
      // the mapping carries it on every source (XEP-0339 `msid` parameter).
      sources: m.sources.map((x) => ({ ssrc: x.ssrc, params: x.params.filter((p) => p.name !== 'msid') })),
      candidates: m.candidates.map(({ foundation, component, protocol, priority, ip, port, type, ...rest }) => ({
        foundation, component, protocol, priority, ip, port, type, raddr: rest['rel-addr'], rport: rest['rel-port'],
      })),
    })),
  };
}

/** SDP -> Jingle -> XML text -> parsed XML -> SDP, as between two clients. */
function overTheWire(sdp, opts) {
  const jingle = sdpToJingle(sdp, opts);
  const parsed = parseXml(toXml(jingle));
  return { jingle, parsed, sdp: jingleToSdp(parsed, { authorIsInitiator: opts.action === 'session-initiate' }) };
}

test('a Chromium offer survives SDP -> Jingle -> SDP', () => {
  const { sdp } = overTheWire(offer, { action: 'session-initiate', sid: 's1', initiator: 'alice@localhost/a' });
  const before = essentials(offer);
  const after = essentials(sdp);
  // Not carried, by design (see jingle-sdp.js): RED's keyless fmtp `111/111`.
  for (const m of before.media) for (const p of m.payloads) if (p.name === 'red') p.params = [];
  assert.deepEqual(after, before);
  // The offer had a TCP candidate; ICE-UDP carries only the UDP one.
  assert.match(offer, /tcptype active/);
  assert.doesNotMatch(sdp, / tcp /);
  assert.equal(after.media[0].candidates.length, 1);
});

test('a Chromium answer survives the round trip with its DTLS role', () => {
  const { jingle, sdp } = overTheWire(answer, { action: 'session-accept', sid: 's1', initiator: 'alice@localhost/a', responder: 'bob@localhost/b' });
  assert.deepEqual(essentials(sdp), essentials(answer));
  const fp = child(child(child(jingle, 'content', NS.jingle), 'transport', NS.ice, NS.jingle), 'fingerprint', NS.dtls);
  assert.equal(fp.attrs.setup, 'active');
  assert.equal(jingle.attrs.responder, 'bob@localhost/b');
});

test('the Jingle from a Chromium offer uses the XEPs\' elements and namespaces', () => {
  const { parsed } = overTheWire(offer, { action: 'session-initiate', sid: 's1', initiator: 'alice@localhost/a' });
  assert.equal(parsed.name, 'jingle');
  assert.equal(parsed.attrs.xmlns, 'urn:xmpp:jingle:1');
  assert.equal(parsed.attrs.action, 'session-initiate');
  const contents = children(parsed, 'content', NS.jingle);
  assert.deepEqual(contents.map((c) => [c.attrs.name, c.attrs.creator, c.attrs.senders]), [['0', 'initiator', 'both'], ['1', 'initiator', 'both']]);
  for (const content of contents) {
    const desc = child(content, 'description', 'urn:xmpp:jingle:apps:rtp:1', NS.jingle);
    assert.ok(desc, 'XEP-0167 description');
    assert.ok(child(desc, 'rtcp-mux', 'urn:xmpp:jingle:apps:rtp:1'), 'rtcp-mux');
    const pts = children(desc, 'payload-type', 'urn:xmpp:jingle:apps:rtp:1');
    assert.ok(pts.length > 0 && pts.every((p) => /^\d+$/.test(p.attrs.id) && p.attrs.name && /^\d+$/.test(p.attrs.clockrate)));
    for (const p of pts) {
      for (const x of children(p, 'parameter', NS.rtp, NS.rtp)) assert.ok(x.attrs.name && 'value' in x.attrs);
      for (const fb of children(p, 'rtcp-fb', undefined, NS.rtp).filter((c) => c.name === 'rtcp-fb')) {
        assert.equal(fb.attrs.xmlns, 'urn:xmpp:jingle:apps:rtp:rtcp-fb:0');
      }
    }
    for (const x of children(desc, 'rtp-hdrext')) assert.equal(x.attrs.xmlns, 'urn:xmpp:jingle:apps:rtp:rtp-hdrext:0');
    const sources = children(desc, 'source', 'urn:xmpp:jingle:apps:rtp:ssma:0');
    assert.ok(sources.length >= 1 && sources.every((s) => children(s, 'parameter', NS.ssma, NS.ssma).some((p) => p.attrs.name === 'cname')));
    const transport = child(content, 'transport', 'urn:xmpp:jingle:transports:ice-udp:1', NS.jingle);
    assert.ok(transport.attrs.ufrag && transport.attrs.pwd);
    const fp = child(transport, 'fingerprint', 'urn:xmpp:jingle:apps:dtls:0');
    assert.equal(fp.attrs.hash, 'sha-256');
    assert.equal(fp.attrs.setup, 'actpass');
    assert.match(fp.children[0], /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    for (const c of children(transport, 'candidate', NS.ice)) {
      for (const a of ['component', 'foundation', 'generation', 'id', 'ip', 'network', 'port', 'priority', 'protocol', 'type']) assert.ok(a in c.attrs, a);
      assert.equal(c.attrs.protocol, 'udp');
    }
  }
  const video = child(contents[1], 'description', NS.rtp, NS.jingle);
  const fid = child(video, 'ssrc-group', 'urn:xmpp:jingle:apps:rtp:ssma:0');
  assert.equal(fid.attrs.semantics, 'FID');
  assert.equal(children(fid, 'source', NS.ssma, NS.ssma).length, 2);
  const group = child(parsed, 'group', 'urn:xmpp:jingle:apps:grouping:0');
  assert.equal(group.attrs.semantics, 'BUNDLE');
  assert.deepEqual(children(group, 'content').map((c) => c.attrs.name), ['0', '1']);
});

test('the XEPs\' session-initiate maps to SDP and back to the same Jingle', () => {
  const xep = parseXml(xepXml);
  const sdp = jingleToSdp(xep);
  for (const line of [
    'a=group:BUNDLE voice webcam',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8',
    'a=rtpmap:111 opus/48000/2',
    'a=fmtp:111 minptime=10;useinbandfec=1',
    'a=rtcp-fb:111 transport-cc',
    'a=rtpmap:0 PCMU/8000',
    'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
    'a=ice-ufrag:8hhy',
    'a=ice-pwd:asd88fgpdd777uzjYhagZg',
    'a=fingerprint:sha-256 02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2',
    'a=setup:actpass',
    'a=mid:voice',
    'a=rtcp-mux',
    'a=msid:stream-1 audio-1',
    'a=ssrc:2183573468 cname:Yv3DBn0Gk8uDXmXb',
    'a=candidate:1 1 udp 2130706431 10.0.1.1 8998 typ host generation 0 network-id 1',
    'a=candidate:2 1 udp 1694498815 192.0.2.3 45664 typ srflx raddr 10.0.1.1 rport 8998 generation 0 network-id 1',
    'm=video 9 UDP/TLS/RTP/SAVPF 96 97',
    'a=rtcp-fb:96 nack',
    'a=rtcp-fb:96 nack pli',
    'a=rtcp-fb:96 ccm fir',
    'a=fmtp:97 apt=96',
    'a=rtcp-fb:* goog-remb',
    'a=extmap:4/sendonly urn:3gpp:video-orientation',
    'a=ssrc-group:FID 1 2',
    'a=sendrecv',
  ]) {
    assert.ok(sdp.split('\r\n').includes(line), `missing ${line} in\n${sdp}`);
  }
  const back = sdpToJingle(sdp, { action: 'session-initiate', sid: xep.attrs.sid, initiator: xep.attrs.initiator });
  // Candidate ids are the writer's own (XEP-0176: unique per candidate); everything else
  // matches element for element, namespace for namespace, attribute for attribute.
  const ignore = ['candidate@id'];
  assert.deepEqual(canonical(parseXml(toXml(back)), ignore), canonical(xep, ignore));
});

test('content senders follow the SDP direction from the author\'s side', () => {
  const sendonly = offer.replace(/a=sendrecv/g, 'a=sendonly');
  const j = sdpToJingle(sendonly, { action: 'session-initiate', sid: 's', initiator: 'a@x/y' });
  assert.deepEqual(children(j, 'content', NS.jingle).map((c) => c.attrs.senders), ['initiator', 'initiator']);
  assert.match(jingleToSdp(j, { authorIsInitiator: true }), /a=sendonly/);
  const recvonly = answer.replace(/a=sendrecv/g, 'a=recvonly');
  const a = sdpToJingle(recvonly, { action: 'session-accept', sid: 's' });
  assert.deepEqual(children(a, 'content', NS.jingle).map((c) => c.attrs.senders), ['initiator', 'initiator']);
  assert.match(jingleToSdp(a, { authorIsInitiator: false }), /a=recvonly/);
});

test('trickled candidates: transport-info and back', () => {
  const line = 'candidate:3 1 udp 41885695 198.51.100.7 50001 typ relay raddr 203.0.113.2 rport 61000 generation 0 network-id 2';
  const j = candidateToJingle({ candidate: line, sdpMid: '1' }, { sid: 's9', ufrag: 'uf', pwd: 'pw' });
  const parsed = parseXml(toXml(j));
  assert.equal(parsed.attrs.action, 'transport-info');
  const t = child(child(parsed, 'content', NS.jingle), 'transport', NS.ice, NS.jingle);
  assert.deepEqual([t.attrs.ufrag, t.attrs.pwd], ['uf', 'pw']);
  const c = child(t, 'candidate', NS.ice);
  assert.deepEqual([c.attrs.type, c.attrs['rel-addr'], c.attrs['rel-port'], c.attrs.network], ['relay', '203.0.113.2', '61000', '2']);
  assert.deepEqual(jingleCandidates(parsed), [{ candidate: line, sdpMid: '1', usernameFragment: 'uf' }]);
  assert.equal(candidateToJingle({ candidate: 'candidate:9 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active', sdpMid: '0' }, { sid: 's' }), null);
  assert.equal(parseCandidate('candidate:garbage'), null);
});
