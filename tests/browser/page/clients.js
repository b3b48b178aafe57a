// Browser side of the tests: thin wrappers the Node test calls through page.evaluate().
// window.bosh: Strophe.js over BOSH; window.ws: @xmpp/client over WebSocket. Both record
// what they receive so the test can wait for it.
/* global Strophe, XMPP */
(function () {
  // The UMD bundle exposes the module as `Strophe`; Strophe 5 also puts its namespace
  // object and the builders on `window` itself.
  const mod = window.Strophe;
  const S = mod.Strophe || mod;
  const $msg = mod.$msg || window.$msg;
  const $pres = mod.$pres || window.$pres;

  function waitFor(pred, ms, what) {
    return new Promise((resolve, reject) => {
      const start = Date.now();
      const tick = () => {
        const v = pred();
        if (v) return resolve(v);
        if (Date.now() - start > ms) return reject(new Error('timed out waiting for ' + what));
        setTimeout(tick, 50);
      };
      tick();
    });
  }

  window.bosh = {
    conn: null,
    inbox: [],
    statuses: [],
    connect(service, jid, password, wait) {
      const conn = new S.Connection(service);
      this.conn = conn;
      conn.addHandler((m) => {
        const body = m.getElementsByTagName('body')[0];
        this.inbox.push({ from: m.getAttribute('from'), body: body ? body.textContent : null });
        return true;
      }, null, 'message');
      return new Promise((resolve, reject) => {
        conn.connect(jid, password, (status, condition) => {
          this.statuses.push(status);
          if (status === S.Status.CONNECTED) {
            conn.send($pres());
            resolve(conn.jid);
          } else if (status === S.Status.AUTHFAIL || status === S.Status.CONNFAIL) {
            reject(new Error('BOSH login failed: ' + status + ' ' + condition));
          }
        }, wait, 1);
      });
    },
    send(to, text) {
      this.conn.send($msg({ to, type: 'chat' }).c('body').t(text));
    },
    connected() {
      return this.conn.connected && !this.conn.disconnecting;
    },
    waitFor(text, ms) {
      return waitFor(() => this.inbox.find((m) => m.body === text), ms, text);
    },
    disconnect() {
      return new Promise((resolve) => {
        const S_ = S;
        this.conn.addHandler(() => true, null, 'presence');
        const done = () => resolve(this.statuses.includes(S_.Status.DISCONNECTED));
        const orig = this.conn.connect_callback;
        this.conn.connect_callback = (status, cond) => {
          this.statuses.push(status);
          if (orig) orig(status, cond);
          if (status === S_.Status.DISCONNECTED) done();
        };
        this.conn.disconnect('bye');
      });
    },
  };

  window.ws = {
    xmpp: null,
    inbox: [],
    async connect(service, username, password) {
      const xmpp = XMPP.client({ service, domain: 'localhost', username, password, resource: 'web' });
      this.xmpp = xmpp;
      xmpp.on('error', (e) => console.log('xmpp error', e && e.message));
      xmpp.on('stanza', (s) => {
        if (s.is('message')) {
          this.inbox.push({ from: s.attrs.from, body: s.getChildText('body') });
        }
      });
      const address = await xmpp.start();
      await xmpp.send(XMPP.xml('presence'));
      return address.toString();
    },
    async send(to, text) {
      await this.xmpp.send(XMPP.xml('message', { to, type: 'chat' }, XMPP.xml('body', {}, text)));
    },
    waitFor(text, ms) {
      return waitFor(() => this.inbox.find((m) => m.body === text), ms, text);
    },
    async stop() {
      await this.xmpp.stop();
    },
    // Stream management (XEP-0198), enabled by @xmpp/client inline with Bind 2.
    smId() {
      return this.xmpp.streamManagement.id;
    },
    // A network loss: the WebSocket goes without the stream's <close/>, and the client
    // does not reconnect until resume().
    drop() {
      this.xmpp.reconnect.stop();
      return new Promise((resolve) => {
        this.xmpp.once('disconnect', () => resolve(true));
        this.xmpp.socket.end();
      });
    },
    // Reconnects; @xmpp/client resumes the session inline in SASL2.
    resume(ms) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('not resumed within ' + ms + ' ms')), ms);
        this.xmpp.streamManagement.once('resumed', () => { clearTimeout(timer); resolve(true); });
        this.xmpp.reconnect.start();
        this.xmpp.reconnect.reconnect().catch((e) => { clearTimeout(timer); reject(e); });
      });
    },
    bodies() {
      return this.inbox.map((m) => m.body);
    },
    // XEP-0363: asks `service` for a slot, PUTs `bytes` (an array of numbers) with
    // fetch() from this page's origin (CORS), GETs it back; returns what happened.
    async slot(service, filename, size, contentType) {
      const NS = 'urn:xmpp:http:upload:0';
      const res = await this.xmpp.iqCaller.request(XMPP.xml('iq', { type: 'get', to: service },
        XMPP.xml('request', { xmlns: NS, filename, size: String(size), 'content-type': contentType })));
      const slot = res.getChild('slot', NS);
      return { putUrl: slot.getChild('put').attrs.url, getUrl: slot.getChild('get').attrs.url };
    },
    async upload(service, filename, bytes, contentType) {
      const { putUrl, getUrl } = await this.slot(service, filename, bytes.length, contentType);
      const body = new Uint8Array(bytes);
      const put = await fetch(putUrl, { method: 'PUT', body, headers: { 'Content-Type': contentType } });
      const got = await fetch(getUrl);
      const back = new Uint8Array(await got.arrayBuffer());
      const same = back.length === body.length && back.every((b, i) => b === body[i]);
      return { putUrl, getUrl, putStatus: put.status, getStatus: got.status,
        getType: got.headers.get('content-type'), same, length: back.length };
    },
  };
  document.getElementById('status').textContent = 'ready';
})();
