"""deploy/haproxy/haproxy.cfg: valid for `haproxy -c`, and working end to end. The file
is run by a real HAProxy with only what a test must change rewritten (listen ports to
free loopback ports, node addresses to the test server's ephemeral listeners, the
certificate to a generated one, the daemon/chroot/user lines dropped, the log to
stdout, maxconn to what a test machine's descriptor limit allows, a stats socket
added), and real clients log in through it:

- c2s STARTTLS (slixmpp) and direct TLS through `send-proxy-v2`: the server's c2s
  listeners require a PROXY header (`proxy_protocol = true`), so a login proves HAProxy
  sent one;
- BOSH over HTTPS (TLS ends at HAProxy): the HTTP listener has `require_tls = true` and
  `allow_insecure_loopback = false`, so authentication succeeding proves the server
  trusted HAProxy's `X-Forwarded-Proto: https`; WebSocket upgrades pass the tunnel;
- health checks on /health/ready: the second node of the file (pointed at an address
  where nothing answers) is marked down and gets no client; draining the real node makes
  its check fail with HTTP 503 and HAProxy marks it down, while its /metrics shows
  `heliograph_ready 0` and `heliograph_draining 1`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from deploy_files import HAPROXY_CFG, free_port, metrics_text, tool, unlabelled_values
from harness.server import default_config
from harness.xmpp import ClientPool
from test_plugins import plain_login

TRUSTED = {"proxy_protocol": True, "trusted_proxies": ["127.0.0.1"]}
SERVER_CONFIG = {
    "listen": {
        "c2s": [dict(l, **TRUSTED) for l in default_config(Path("."))["listen"]["c2s"]],
        "http": [{"address": "127.0.0.1:0", "trusted_proxies": ["127.0.0.1"],
                  "require_tls": True, "allow_insecure_loopback": False}],
    },
    # Long enough for HAProxy to see the draining node's 503 before the node exits.
    "drain": {"grace_period": 20, "deadline": 30},
}
# Where the second node of the file goes: another loopback address nothing listens on.
DEAD_NODE = "127.0.0.2"


@pytest.fixture
def certificate(tmp_path) -> Path:
    """A self-signed certificate and its key in one PEM file, as HAProxy's `crt` takes."""
    openssl = tool("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost"], check=True, capture_output=True)
    pem = tmp_path / "xmpp.pem"
    pem.write_text(cert.read_text() + key.read_text())
    return pem


def with_certificate(text: str, pem: Path) -> str:
    out = re.sub(r"crt /etc/haproxy/certs/xmpp\.pem", f"crt {pem}", text)
    assert out != text, "the file's certificate path changed: update the test"
    return out


def test_haproxy_config_is_valid(tmp_path, certificate):
    haproxy = tool("haproxy", "/usr/sbin/haproxy")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(with_certificate(HAPROXY_CFG.read_text(), certificate))
    proc = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALERT" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr


def rewrite_for_test(text: str, server, pem: Path, ports: dict[str, int], stats: Path) -> str:
    """The file with only what the test must change (see the module doc)."""
    admin_port = server.admin_address[1]
    replacements = [
        (r"^\s*(daemon|chroot .*|user .*|group .*)\n", ""),
        (r"log /dev/log local0", "log stdout format raw local0"),
        # HAProxy raises its descriptor limit to about 2 x maxconn at start, beyond a
        # test machine's hard limit.
        (r"maxconn \d+", "maxconn 1000"),
        (r"^global\n", f"global\n    stats socket {stats} level admin\n"),
        (r"bind :5222\b", f"bind 127.0.0.1:{ports['c2s']}"),
        (r"bind :5223\b", f"bind 127.0.0.1:{ports['direct']}"),
        (r"bind :443\b", f"bind 127.0.0.1:{ports['https']}"),
        (r"10\.0\.0\.11:5222\b", "%s:%d" % server.c2s_starttls),
        (r"10\.0\.0\.11:5223\b", "%s:%d" % server.c2s_direct_tls),
        (r"10\.0\.0\.11:5280\b", "%s:%d" % server._listener("http")),
        (r"10\.0\.0\.12:(\d+)\b", lambda m: f"{DEAD_NODE}:{free_port()}"),
        (r"check port 5281\b", f"check port {admin_port}"),
    ]
    for pattern, repl in replacements:
        text, n = re.subn(pattern, repl, text, flags=re.M)
        assert n, f"{pattern!r} no longer matches deploy/haproxy/haproxy.cfg: update the test"
    return with_certificate(text, pem)


class Haproxy:
    def __init__(self, binary: str, cfg: Path, stats: Path, log: Path):
        self.stats = stats
        self.log = log
        with open(log, "wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)

    def stat(self) -> list[dict[str, str]]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.stats))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().strip().splitlines()
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, line.split(","))) for line in lines[1:]]

    def server_state(self, backend: str, server: str) -> dict[str, str]:
        for row in self.stat():
            if row["pxname"] == backend and row["svname"] == server:
                return row
        raise AssertionError(f"no server {backend}/{server} in HAProxy's stats")

    def wait_until(self, what: str, predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"haproxy exited\n{self.log.read_text()}"
            try:
                if predicate():
                    return
            except (OSError, AssertionError):
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.stat()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def insecure_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def bosh_login(url: str, username: str, password: str, domain: str = "localhost") -> str:
    """A BOSH (XEP-0124/0206) login with PLAIN; returns the bound JID."""
    ctx = insecure_tls()
    rid = [1000]

    def post(attrs: str, payload: str = "") -> str:
        rid[0] += 1
        body = (f"<body rid='{rid[0]}' xmlns='http://jabber.org/protocol/httpbind' {attrs}>"
                f"{payload}</body>").encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"})
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.read().decode()

    first = post(f"to='{domain}' wait='10' hold='1' ver='1.6' xml:lang='en' "
                 "xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'")
    sid = re.search(r"sid=['\"]([^'\"]+)", first).group(1)
    features = first
    while "<mechanisms" not in features:
        features = post(f"sid='{sid}'")
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    auth = post(f"sid='{sid}'", f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    while "<success" not in auth and "<failure" not in auth:
        auth = post(f"sid='{sid}'")
    assert "<success" in auth, auth
    restart = post(f"sid='{sid}' to='{domain}' xml:lang='en' xmpp:restart='true' "
                   "xmlns:xmpp='urn:xmpp:xbosh'")
    while "<bind" not in restart:
        restart = post(f"sid='{sid}'")
    bound = post(f"sid='{sid}'", "<iq type='set' id='b1' xmlns='jabber:client'>"
                 "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    while "<jid>" not in bound:
        bound = post(f"sid='{sid}'")
    return re.search(r"<jid>([^<]+)</jid>", bound).group(1)


def websocket_open(address: tuple[str, int], domain: str = "localhost") -> str:
    """Upgrades to XMPP over WebSocket (RFC 7395) through TLS and sends <open/>; returns
    what the server answered (its <open/> and the stream features)."""
    raw = socket.create_connection(address, timeout=15)
    with insecure_tls().wrap_socket(raw, server_hostname="localhost") as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, f"closed during the upgrade: {head!r}"
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        assert b" 101 " in status, head
        payload = (f"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' "
                   "version='1.0'/>").encode()
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        s.sendall(frame)
        data = head.split(b"\r\n\r\n", 1)[1]
        deadline = time.monotonic() + 15
        while b"</stream:features>" not in data and b"</features>" not in data:
            assert time.monotonic() < deadline, data
            chunk = s.recv(65536)
            assert chunk, f"closed: {data!r}"
            data += chunk
        return data.decode(errors="replace")


class ThroughProxy:
    """What ClientPool.connect needs of a server: the domain and the c2s addresses, here
    HAProxy's frontends."""

    def __init__(self, domain: str, starttls: tuple[str, int], direct: tuple[str, int]):
        self.domain = domain
        self.c2s_starttls = starttls
        self.c2s_direct_tls = direct


@pytest.mark.async_timeout(150)
@pytest.mark.server_config(SERVER_CONFIG)
async def test_clients_log_in_through_haproxy_with_the_example_config(server, tmp_path, certificate):
    haproxy_bin = tool("haproxy", "/usr/sbin/haproxy")
    ports = {"c2s": free_port(), "direct": free_port(), "https": free_port()}
    stats = tmp_path / "haproxy.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(rewrite_for_test(HAPROXY_CFG.read_text(), server, certificate, ports, stats))
    proxy = Haproxy(haproxy_bin, cfg, stats, tmp_path / "haproxy.log")
    pool = ClientPool()
    try:
        # node1 (the server) passes its /health/ready check; node2 (nobody) fails its own.
        for backend in ("heliograph_c2s", "heliograph_c2s_direct_tls", "heliograph_bosh",
                        "heliograph_websocket"):
            proxy.wait_until(f"{backend} node1 UP, node2 DOWN", lambda b=backend: (
                proxy.server_state(b, "node1")["status"] == "UP"
                and proxy.server_state(b, "node2")["status"] == "DOWN"))
        for user in ("alice", "bob", "carol"):
            server.create_user(user, "pw")
        front = ThroughProxy(server.domain, ("127.0.0.1", ports["c2s"]), ("127.0.0.1", ports["direct"]))
        alice = await pool.connect(front, "alice", "pw")
        assert await asyncio.to_thread(plain_login, front.c2s_direct_tls, "localhost", "bob", "pw") == "ok"
        jid = await asyncio.to_thread(bosh_login, f"https://127.0.0.1:{ports['https']}/http-bind",
                                      "carol", "pw")
        assert jid.startswith("carol@localhost/"), jid
        opened = await asyncio.to_thread(websocket_open, ("127.0.0.1", ports["https"]))
        assert "<mechanisms" in opened, opened
        transports = {s["jid"].split("/")[0]: s["transport"] for s in server.sessions()}
        assert transports.get("alice@localhost") in ("tcp", "tls"), transports
        assert transports.get("carol@localhost") == "bosh", transports
        assert proxy.server_state("heliograph_c2s", "node1")["stot"] != "0"

        # Draining turns /health/ready to 503: HAProxy takes the node out of rotation.
        # /metrics says the same: heliograph_ready 1 -> 0, heliograph_draining 0 -> 1.
        def state() -> tuple[float, float]:
            values = unlabelled_values(metrics_text(server))
            return values["heliograph_ready"], values["heliograph_draining"]

        assert state() == (1, 0)
        server.admin("POST", "/api/v1/drain", expect=202)
        proxy.wait_until("heliograph_ready 0 and heliograph_draining 1 on /metrics",
                         lambda: state() == (0, 1))
        proxy.wait_until("node1 DOWN on HTTP 503", lambda: (
            proxy.server_state("heliograph_c2s", "node1")["status"] == "DOWN"
            and proxy.server_state("heliograph_c2s", "node1")["check_code"] == "503"))
        print({k: proxy.server_state("heliograph_c2s", "node1")[k]
               for k in ("status", "check_status", "check_code", "last_chk")})
        await alice.stop()
    finally:
        await pool.aclose()
        proxy.stop()
        print(proxy.log.read_text())
