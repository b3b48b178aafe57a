// SDP <-> Jingle: the standard mapping between WebRTC's session descriptions and
// Jingle (XEP-0166) RTP sessions, so this app can call other Jingle clients
// (Conversations, Dino, Movim) and not only itself.
//
//   m= section            <content name=MID creator=... senders=...>
//   a=rtpmap/fmtp         <description xmlns='urn:xmpp:jingle:apps:rtp:1' media=...>
//                           <payload-type id name clockrate channels><parameter/>   XEP-0167
//   a=rtcp-fb             <rtcp-fb type subtype/> (urn:xmpp:jingle:apps:rtp:rtcp-fb:0) XEP-0293
//   a=extmap              <rtp-hdrext id uri [senders]/> (…:rtp-hdrext:0)               XEP-0294
//   a=ssrc, a=ssrc-group  <source ssrc><parameter/>, <ssrc-group semantics> (…:ssma:0)   XEP-0339
//   a=rtcp-mux            <rtcp-mux/>                                                    XEP-0167
//   a=ice-ufrag/pwd, a=candidate
//                         <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'>       XEP-0176
//   a=fingerprint, a=setup <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash setup>  XEP-0320
//   a=group:BUNDLE        <group xmlns='urn:xmpp:jingle:apps:grouping:0'>               XEP-0338
//
// Elements are plain objects { name, attrs, children } (children: elements or strings),
// the shape @xmpp/client's ltx elements have, so received stanzas are read directly and
// built ones are turned into ltx elements by the app. No DOM, no dependency: the same
// module runs in the browser and under `node --test`.
//
// Not carried (no standard Jingle mapping, or not used by WebRTC endpoints): fmtp values
// that are not `key=value` lists (e.g. RED's `111/111`), a=rtcp-rsize, a=rtcp-xr, TCP ICE
// candidates (ICE-UDP only), a=msid-semantic. The media-level a=msid travels as the
// sources' `msid` parameter (XEP-0339), as other Jingle clients carry it, and is rebuilt
// from it.

export const NS = {
  jingle: 'urn:xmpp:jingle:1',
  rtp: 'urn:xmpp:jingle:apps:rtp:1',
  rtcpFb: 'urn:xmpp:jingle:apps:rtp:rtcp-fb:0',
  hdrext: 'urn:xmpp:jingle:apps:rtp:rtp-hdrext:0',
  ssma: 'urn:xmpp:jingle:apps:rtp:ssma:0',
  ice: 'urn:xmpp:jingle:transports:ice-udp:1',
  dtls: 'urn:xmpp:jingle:apps:dtls:0',
  grouping: 'urn:xmpp:jingle:apps:grouping:0',
  jmi: 'urn:xmpp:jingle-message:0',
};

/** Builds an element; `attrs` values that are undefined or null are left out. */
export function el(name, attrs = {}, ...children) {
  const clean = {};
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) clean[k] = String(v);
  return { name, attrs: clean, children: children.flat().filter((c) => c !== undefined && c !== null) };
}

/** Child elements of `node` named `name` (any name when null) in namespace `ns`. Elements
 * without an xmlns attribute are in their parent's namespace, as in XML: `nodeNs` is
 * `node`'s own when it declares none. */
export function children(node, name, ns, nodeNs) {
  const own = node.attrs.xmlns || nodeNs;
  return (node.children || []).filter((c) => typeof c === 'object'
    && (name === null || c.name === name)
    && (ns === undefined || (c.attrs.xmlns || own) === ns));
}

export function child(node, name, ns, nodeNs) {
  return children(node, name, ns, nodeNs)[0];
}

export function text(node) {
  return (node.children || []).filter((c) => typeof c === 'string').join('');
}

// --- SDP parsing ---------------------------------------------------------------

/** Parses an SDP into { groups, media: [...] } with what the mapping carries. */
export function parseSdp(sdp) {
  const lines = sdp.split(/\r?\n/).filter((l) => l.length);
  const session = { groups: [], extmapAllowMixed: false, media: [] };
  let m = null;
  const sessionIce = {};
  for (const line of lines) {
    const type = line[0];
    const value = line.slice(2);
    if (type === 'm') {
      const [media, port, proto, ...fmts] = value.split(' ');
      m = {
        media, port: Number(port), proto, fmts,
        mid: null, direction: 'sendrecv', ice: { ...sessionIce }, fingerprint: null,
        candidates: [], payloads: fmts.map((id) => ({ id, name: '', clockrate: '', channels: '', params: [], fb: [] })),
        fbAll: [], extmaps: [], extmapAllowMixed: false, rtcpMux: false, sources: [], ssrcGroups: [], msid: null,
      };
      session.media.push(m);
      continue;
    }
    if (type !== 'a') continue;
    const colon = value.indexOf(':');
    const key = colon < 0 ? value : value.slice(0, colon);
    const arg = colon < 0 ? '' : value.slice(colon + 1);
    if (!m) {
      if (key === 'group') {
        const [semantics, ...mids] = arg.split(' ');
        session.groups.push({ semantics, mids });
      } else if (key === 'extmap-allow-mixed') session.extmapAllowMixed = true;
      else if (key === 'ice-ufrag') sessionIce.ufrag = arg;
      else if (key === 'ice-pwd') sessionIce.pwd = arg;
      else if (key === 'fingerprint') session.fingerprint = parseFingerprint(arg);
      else if (key === 'setup') session.setup = arg;
      continue;
    }
    const pt = (id) => m.payloads.find((p) => p.id === id);
    switch (key) {
      case 'mid': m.mid = arg; break;
      case 'sendrecv': case 'sendonly': case 'recvonly': case 'inactive': m.direction = key; break;
      case 'ice-ufrag': m.ice.ufrag = arg; break;
      case 'ice-pwd': m.ice.pwd = arg; break;
      case 'fingerprint': m.fingerprint = { ...parseFingerprint(arg), setup: m.fingerprint?.setup }; break;
      case 'setup': m.fingerprint = { ...(m.fingerprint || {}), setup: arg }; break;
      case 'candidate': { const c = parseCandidate(value); if (c) m.candidates.push(c); break; }
      case 'rtcp-mux': m.rtcpMux = true; break;
      case 'extmap-allow-mixed': m.extmapAllowMixed = true; break;
      case 'msid': m.msid = arg; break;
      case 'rtpmap': {
        const [id, enc] = splitOnce(arg, ' ');
        const [name, clockrate, channels] = enc.split('/');
        const p = pt(id);
        if (p) Object.assign(p, { name, clockrate, channels: channels || '' });
        break;
      }
      case 'fmtp': {
        const [id, params] = splitOnce(arg, ' ');
        const p = pt(id);
        if (p) {
          for (const part of params.split(';')) {
            const eq = part.indexOf('=');
            if (eq > 0) p.params.push({ name: part.slice(0, eq).trim(), value: part.slice(eq + 1).trim() });
          }
        }
        break;
      }
      case 'rtcp-fb': {
        const [id, rest] = splitOnce(arg, ' ');
        const [fbType, subtype] = splitOnce(rest, ' ');
        if (fbType === 'trr-int') break;
        const fb = { type: fbType, subtype: subtype || undefined };
        if (id === '*') m.fbAll.push(fb);
        else pt(id)?.fb.push(fb);
        break;
      }
      case 'extmap': {
        const [idDir, uri] = splitOnce(arg, ' ');
        const [id, direction] = idDir.split('/');
        m.extmaps.push({ id, uri: uri.split(' ')[0], direction: direction || undefined });
        break;
      }
      case 'ssrc': {
        const [ssrc, attr] = splitOnce(arg, ' ');
        const [name, val] = splitOnce(attr, ':');
        let s = m.sources.find((x) => x.ssrc === ssrc);
        if (!s) m.sources.push(s = { ssrc, params: [] });
        s.params.push({ name, value: val || undefined });
        break;
      }
      case 'ssrc-group': {
        const [semantics, ...ssrcs] = arg.split(' ');
        m.ssrcGroups.push({ semantics, ssrcs });
        break;
      }
      default: break;
    }
  }
  for (const media of session.media) {
    if (!media.fingerprint && session.fingerprint) media.fingerprint = { ...session.fingerprint, setup: session.setup };
    else if (media.fingerprint && !media.fingerprint.setup && session.setup) media.fingerprint.setup = session.setup;
    media.extmapAllowMixed ||= session.extmapAllowMixed;
  }
  return session;
}

function splitOnce(s, sep) {
  const i = s.indexOf(sep);
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + sep.length)];
}

function parseFingerprint(arg) {
  const [hash, value] = splitOnce(arg, ' ');
  return { hash, value };
}

/** Parses `candidate:...` (with or without the `a=` prefix) into XEP-0176 attributes;
 * null for what ICE-UDP does not carry (TCP candidates). */
export function parseCandidate(line) {
  const body = line.replace(/^a=/, '').replace(/^candidate:/, '');
  const f = body.trim().split(/\s+/);
  if (f.length < 8 || f[6] !== 'typ') return null;
  const c = {
    foundation: f[0], component: f[1], protocol: f[2].toLowerCase(), priority: f[3],
    ip: f[4], port: f[5], type: f[7], generation: '0', network: '0',
  };
  if (c.protocol !== 'udp') return null;
  for (let i = 8; i + 1 < f.length; i += 2) {
    const [k, v] = [f[i], f[i + 1]];
    if (k === 'raddr') c['rel-addr'] = v;
    else if (k === 'rport') c['rel-port'] = v;
    else if (k === 'generation') c.generation = v;
    else if (k === 'network-id') c.network = v;
  }
  return c;
}

/** The SDP `candidate:` attribute value for a XEP-0176 <candidate/>'s attributes. */
export function candidateToSdp(c) {
  let s = `candidate:${c.foundation} ${c.component} ${c.protocol} ${c.priority} ${c.ip} ${c.port} typ ${c.type}`;
  if (c['rel-addr'] !== undefined) s += ` raddr ${c['rel-addr']} rport ${c['rel-port']}`;
  s += ` generation ${c.generation || 0}`;
  if (c.network !== undefined) s += ` network-id ${c.network}`;
  return s;
}

let candidateCounter = 0;
function candidateId() {
  candidateCounter += 1;
  return `c${Date.now().toString(36)}${candidateCounter}`;
}

/** A XEP-0176 <candidate/> element. */
export function candidateElement(c) {
  return el('candidate', {
    component: c.component, foundation: c.foundation, generation: c.generation || '0',
    id: c.id || candidateId(), ip: c.ip, network: c.network || '0', port: c.port,
    priority: c.priority, protocol: c.protocol, type: c.type,
    'rel-addr': c['rel-addr'], 'rel-port': c['rel-port'],
  });
}

// --- directions --------------------------------------------------------------------

// XEP-0166 `senders` is from the session's point of view; SDP directions are from the
// author's. `authorIsInitiator` says who wrote the SDP.
function sendersOf(direction, authorIsInitiator) {
  const me = authorIsInitiator ? 'initiator' : 'responder';
  const peer = authorIsInitiator ? 'responder' : 'initiator';
  return { sendrecv: 'both', sendonly: me, recvonly: peer, inactive: 'none' }[direction] || 'both';
}

function directionOf(senders, authorIsInitiator) {
  const me = authorIsInitiator ? 'initiator' : 'responder';
  if (!senders || senders === 'both') return 'sendrecv';
  if (senders === 'none') return 'inactive';
  return senders === me ? 'sendonly' : 'recvonly';
}

// RFC 8285 extmap directions are the author's too; XEP-0294 `senders` the session's.
function hdrextSenders(direction, authorIsInitiator) {
  if (!direction || direction === 'sendrecv') return undefined;
  return sendersOf(direction, authorIsInitiator);
}

// --- SDP -> Jingle -------------------------------------------------------------------

/**
 * The <jingle/> element for a local description.
 * opts: { action, sid, initiator (full JID, session-initiate), responder (session-accept),
 *         authorIsInitiator (default: action === 'session-initiate') }
 */
export function sdpToJingle(sdp, opts) {
  const authorIsInitiator = opts.authorIsInitiator ?? opts.action === 'session-initiate';
  const session = parseSdp(sdp);
  const jingle = el('jingle', {
    xmlns: NS.jingle, action: opts.action, sid: opts.sid,
    initiator: opts.initiator, responder: opts.responder,
  });
  for (const m of session.media) {
    if (m.port === 0 && !m.mid) continue;
    jingle.children.push(el('content', {
      creator: 'initiator', name: m.mid, senders: sendersOf(m.direction, authorIsInitiator),
    }, mediaDescription(m, authorIsInitiator), mediaTransport(m)));
  }
  for (const g of session.groups) {
    jingle.children.push(el('group', { xmlns: NS.grouping, semantics: g.semantics },
      g.mids.map((mid) => el('content', { name: mid }))));
  }
  return jingle;
}

function mediaDescription(m, authorIsInitiator) {
  const desc = el('description', { xmlns: NS.rtp, media: m.media });
  for (const p of m.payloads) {
    if (!p.name) continue;
    desc.children.push(el('payload-type', {
      id: p.id, name: p.name, clockrate: p.clockrate,
      channels: p.channels && p.channels !== '1' ? p.channels : undefined,
    },
    p.params.map((x) => el('parameter', { name: x.name, value: x.value })),
    p.fb.map((fb) => el('rtcp-fb', { xmlns: NS.rtcpFb, type: fb.type, subtype: fb.subtype }))));
  }
  for (const fb of m.fbAll) desc.children.push(el('rtcp-fb', { xmlns: NS.rtcpFb, type: fb.type, subtype: fb.subtype }));
  for (const x of m.extmaps) {
    desc.children.push(el('rtp-hdrext', {
      xmlns: NS.hdrext, id: x.id, uri: x.uri, senders: hdrextSenders(x.direction, authorIsInitiator),
    }));
  }
  if (m.extmapAllowMixed) desc.children.push(el('extmap-allow-mixed', { xmlns: NS.hdrext }));
  for (const s of m.sources) {
    // The media-level a=msid (all Chromium answers have) travels as the sources' msid.
    const params = m.msid && !s.params.some((x) => x.name === 'msid') ? [...s.params, { name: 'msid', value: m.msid }] : s.params;
    desc.children.push(el('source', { xmlns: NS.ssma, ssrc: s.ssrc },
      params.map((x) => el('parameter', { name: x.name, value: x.value }))));
  }
  for (const g of m.ssrcGroups) {
    desc.children.push(el('ssrc-group', { xmlns: NS.ssma, semantics: g.semantics },
      g.ssrcs.map((ssrc) => el('source', { ssrc }))));
  }
  if (m.rtcpMux) desc.children.push(el('rtcp-mux'));
  return desc;
}

function mediaTransport(m) {
  const t = el('transport', { xmlns: NS.ice, ufrag: m.ice.ufrag, pwd: m.ice.pwd });
  if (m.fingerprint?.value) {
    t.children.push(el('fingerprint', { xmlns: NS.dtls, hash: m.fingerprint.hash, setup: m.fingerprint.setup }, m.fingerprint.value));
  }
  for (const c of m.candidates) t.children.push(candidateElement(c));
  return t;
}

/** A transport-info <jingle/> carrying one local ICE candidate (trickle ICE). `cand` is an
 * RTCIceCandidate (or { candidate, sdpMid }); ufrag/pwd are the content's. Null for a
 * candidate ICE-UDP cannot carry. */
export function candidateToJingle(cand, { sid, ufrag, pwd }) {
  const c = parseCandidate(cand.candidate);
  if (!c) return null;
  return el('jingle', { xmlns: NS.jingle, action: 'transport-info', sid },
    el('content', { creator: 'initiator', name: cand.sdpMid },
      el('transport', { xmlns: NS.ice, ufrag, pwd }, candidateElement(c))));
}

/** The RTCIceCandidateInit objects of a transport-info (or any <jingle/>). */
export function jingleCandidates(jingle) {
  const out = [];
  for (const content of children(jingle, 'content', NS.jingle)) {
    const t = child(content, 'transport', NS.ice, NS.jingle);
    if (!t) continue;
    for (const c of children(t, 'candidate', NS.ice)) {
      out.push({ candidate: candidateToSdp(c.attrs), sdpMid: content.attrs.name, usernameFragment: t.attrs.ufrag });
    }
  }
  return out;
}

// --- Jingle -> SDP -------------------------------------------------------------------

/**
 * The SDP for a remote <jingle/> (session-initiate: an offer; session-accept: an answer).
 * opts: { authorIsInitiator (default: action === 'session-initiate') }
 */
export function jingleToSdp(jingle, opts = {}) {
  const authorIsInitiator = opts.authorIsInitiator ?? jingle.attrs.action === 'session-initiate';
  const out = ['v=0', `o=- ${opts.sessionId || '1923518516'} 2 IN IP4 0.0.0.0`, 's=-', 't=0 0'];
  for (const g of children(jingle, 'group', NS.grouping)) {
    out.push(`a=group:${g.attrs.semantics} ${children(g, 'content').map((c) => c.attrs.name).join(' ')}`.trimEnd());
  }
  const contents = children(jingle, 'content', NS.jingle);
  const anyMixed = contents.some((c) => {
    const d = child(c, 'description', NS.rtp, NS.jingle);
    return d && child(d, 'extmap-allow-mixed', NS.hdrext);
  });
  if (anyMixed) out.push('a=extmap-allow-mixed');
  out.push('a=msid-semantic: WMS *');
  for (const content of contents) {
    const desc = child(content, 'description', NS.rtp, NS.jingle);
    const transport = child(content, 'transport', NS.ice, NS.jingle);
    if (!desc) continue;
    const payloads = children(desc, 'payload-type', NS.rtp);
    out.push(`m=${desc.attrs.media} 9 UDP/TLS/RTP/SAVPF ${payloads.map((p) => p.attrs.id).join(' ')}`);
    out.push('c=IN IP4 0.0.0.0', 'a=rtcp:9 IN IP4 0.0.0.0');
    if (transport) {
      if (transport.attrs.ufrag) out.push(`a=ice-ufrag:${transport.attrs.ufrag}`);
      if (transport.attrs.pwd) out.push(`a=ice-pwd:${transport.attrs.pwd}`);
      out.push('a=ice-options:trickle');
      const fp = child(transport, 'fingerprint', NS.dtls);
      if (fp) {
        out.push(`a=fingerprint:${fp.attrs.hash} ${text(fp).trim()}`);
        out.push(`a=setup:${fp.attrs.setup || (authorIsInitiator ? 'actpass' : 'active')}`);
      }
    }
    out.push(`a=mid:${content.attrs.name}`);
    for (const x of children(desc, 'rtp-hdrext', NS.hdrext)) {
      const dir = x.attrs.senders && x.attrs.senders !== 'both' ? `/${directionOf(x.attrs.senders, authorIsInitiator)}` : '';
      out.push(`a=extmap:${x.attrs.id}${dir} ${x.attrs.uri}`);
    }
    out.push(`a=${directionOf(content.attrs.senders, authorIsInitiator)}`);
    const sources = children(desc, 'source', NS.ssma);
    const msid = sources.flatMap((s) => children(s, 'parameter', NS.ssma, NS.ssma)).find((p) => p.attrs.name === 'msid');
    if (msid?.attrs.value) out.push(`a=msid:${msid.attrs.value}`);
    if (child(desc, 'rtcp-mux', NS.rtp)) out.push('a=rtcp-mux');
    for (const p of payloads) {
      const a = p.attrs;
      out.push(`a=rtpmap:${a.id} ${a.name}/${a.clockrate}${a.channels && a.channels !== '1' ? '/' + a.channels : ''}`);
      for (const fb of children(p, 'rtcp-fb', NS.rtcpFb, NS.rtp)) out.push(`a=rtcp-fb:${a.id} ${fb.attrs.type}${fb.attrs.subtype ? ' ' + fb.attrs.subtype : ''}`);
      const params = children(p, 'parameter', NS.rtp, NS.rtp).filter((x) => x.attrs.name);
      if (params.length) out.push(`a=fmtp:${a.id} ${params.map((x) => `${x.attrs.name}=${x.attrs.value ?? ''}`).join(';')}`);
    }
    for (const fb of children(desc, 'rtcp-fb', NS.rtcpFb)) out.push(`a=rtcp-fb:* ${fb.attrs.type}${fb.attrs.subtype ? ' ' + fb.attrs.subtype : ''}`);
    for (const g of children(desc, 'ssrc-group', NS.ssma)) {
      out.push(`a=ssrc-group:${g.attrs.semantics} ${children(g, 'source', NS.ssma, NS.ssma).map((s) => s.attrs.ssrc).join(' ')}`);
    }
    for (const s of sources) {
      for (const p of children(s, 'parameter', NS.ssma, NS.ssma)) {
        out.push(`a=ssrc:${s.attrs.ssrc} ${p.attrs.name}${p.attrs.value !== undefined ? ':' + p.attrs.value : ''}`);
      }
    }
    if (transport) for (const c of children(transport, 'candidate', NS.ice)) out.push(`a=${candidateToSdp(c.attrs)}`);
  }
  return out.join('\r\n') + '\r\n';
}

// --- XML text (for logs, tests and the server-free parts of the app) ------------------

/** Serializes an element to XML text. */
export function toXml(node) {
  if (typeof node === 'string') return escapeXml(node);
  const attrs = Object.entries(node.attrs || {}).map(([k, v]) => ` ${k}="${escapeXml(v)}"`).join('');
  const kids = node.children || [];
  if (!kids.length) return `<${node.name}${attrs}/>`;
  return `<${node.name}${attrs}>${kids.map(toXml).join('')}</${node.name}>`;
}

function escapeXml(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}
