// One WebRTC media session with one peer, negotiated over Jingle (XEP-0166):
// session-initiate / session-accept carry the SDP mapped by jingle-sdp.js, transport-info
// carries trickled ICE candidates (XEP-0176), session-terminate ends it. The XMPP side is
// given as `send(jingleElement, to)` (an IQ set) so this module knows nothing of the client.
import { sdpToJingle, jingleToSdp, candidateToJingle, jingleCandidates, parseSdp, el, NS } from './jingle-sdp.js';

export class Peer {
  /**
   * @param {object} o
   * @param {string} o.sid       Jingle session id (the XEP-0353 propose id for 1:1 calls)
   * @param {string} o.me        our full JID
   * @param {string} o.peer      the peer's full JID
   * @param {boolean} o.initiator whether we send session-initiate
   * @param {MediaStream} o.stream our camera and microphone
   * @param {RTCConfiguration} o.rtc iceServers and iceTransportPolicy
   * @param {(jingle: object, to: string) => Promise<void>} o.send  sends an IQ set
   * @param {(peer: Peer) => void} o.onChange  called on every state change
   */
  constructor(o) {
    Object.assign(this, { sid: o.sid, me: o.me, peer: o.peer, initiator: o.initiator, send: o.send, onChange: o.onChange || (() => {}) });
    this.remoteStream = new MediaStream();
    this.state = 'new';
    this.ended = false;
    this.timings = { created: performance.now() };
    this.pendingRemote = [];   // remote candidates before the remote description is set
    this.pendingLocal = [];    // local candidates before our session description went out
    this.described = false;    // our session-initiate/accept has been sent
    this.ice = {};             // mid -> { ufrag, pwd } of our description
    this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', ...o.rtc });
    for (const track of o.stream.getTracks()) this.pc.addTrack(track, o.stream);
    this.pc.ontrack = (e) => {
      if (!this.remoteStream.getTracks().includes(e.track)) this.remoteStream.addTrack(e.track);
      this.onChange(this);
    };
    this.pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      if (this.described) this.sendCandidate(e.candidate);
      else this.pendingLocal.push(e.candidate);
    };
    this.pc.onconnectionstatechange = () => {
      this.state = this.pc.connectionState;
      if (this.state === 'connected' && !this.timings.connected) this.timings.connected = performance.now();
      this.onChange(this);
    };
  }

  /** Initiator: creates the offer and sends session-initiate. */
  async start() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    const jingle = sdpToJingle(this.pc.localDescription.sdp, { action: 'session-initiate', sid: this.sid, initiator: this.me });
    this.rememberIce();
    await this.send(jingle, this.peer);
    this.described = true;
    this.flushLocal();
  }

  /** Responder: takes the session-initiate, answers with session-accept. */
  async accept(jingle) {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: jingleToSdp(jingle, { authorIsInitiator: true }) });
    await this.flushRemote();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    const answer = sdpToJingle(this.pc.localDescription.sdp, {
      action: 'session-accept', sid: this.sid, initiator: this.peer, responder: this.me, authorIsInitiator: false,
    });
    this.rememberIce();
    await this.send(answer, this.peer);
    this.described = true;
    this.flushLocal();
  }

  /** Initiator: the peer's session-accept. */
  async accepted(jingle) {
    await this.pc.setRemoteDescription({ type: 'answer', sdp: jingleToSdp(jingle, { authorIsInitiator: false }) });
    await this.flushRemote();
  }

  /** A transport-info (or candidates in any action). */
  async remoteCandidates(jingle) {
    for (const c of jingleCandidates(jingle)) {
      if (this.pc.remoteDescription) await this.pc.addIceCandidate(c).catch((e) => console.warn('candidate refused', e));
      else this.pendingRemote.push(c);
    }
  }

  /** Ends the session; tells the peer unless it ended it. */
  async hangup(reason = 'success', tell = true) {
    if (this.ended) return;
    this.ended = true;
    this.state = 'ended';
    this.pc.close();
    this.onChange(this);
    if (tell) {
      const jingle = el('jingle', { xmlns: NS.jingle, action: 'session-terminate', sid: this.sid },
        el('reason', {}, el(reason)));
      await this.send(jingle, this.peer).catch(() => {});
    }
  }

  /** Connection state, decoded video frames (getStats inbound-rtp) and whether the
   * selected candidate pair goes through a TURN relay. */
  async stats() {
    let framesDecoded = 0;
    let relayed = false;
    if (!this.ended) {
      const report = await this.pc.getStats();
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') framesDecoded += s.framesDecoded || 0;
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
          const local = report.get(s.localCandidateId);
          if (local && local.candidateType === 'relay') relayed = true;
        }
      });
    }
    return { peer: this.peer, sid: this.sid, state: this.state, framesDecoded, relayed, timings: this.timings };
  }

  rememberIce() {
    for (const m of parseSdp(this.pc.localDescription.sdp).media) this.ice[m.mid] = m.ice;
  }

  sendCandidate(cand) {
    const ice = this.ice[cand.sdpMid] || Object.values(this.ice)[0] || {};
    const jingle = candidateToJingle(cand, { sid: this.sid, ufrag: ice.ufrag, pwd: ice.pwd });
    if (jingle) this.send(jingle, this.peer).catch((e) => console.warn('transport-info failed', e));
  }

  flushLocal() {
    for (const c of this.pendingLocal.splice(0)) this.sendCandidate(c);
  }

  async flushRemote() {
    for (const c of this.pendingRemote.splice(0)) await this.pc.addIceCandidate(c).catch((e) => console.warn('candidate refused', e));
  }
}
