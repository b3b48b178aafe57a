"""TURN credentials from XEP-0215 work on a real TURN server: slixmpp asks the tenant's
external services and one service's credentials (slixmpp 1.17 has no XEP-0215 plugin:
the iqs are built by hand), then coturn (Debian's `coturn`, started here on loopback with
`use-auth-secret` and the tenant's secret) accepts them: `turnutils_uclient` allocates
relays and sends through them client to client with 0 packets lost. A tampered password
and an expired username are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from harness.xmpp import WAIT

EXTDISCO = "urn:xmpp:extdisco:2"
SECRET = "turn-shared-secret-for-tests"
CREDENTIAL_TTL = 600

COTURN = shutil.which("turnserver") is not None and shutil.which("turnutils_uclient") is not None
# tests/run.sh installs the Debian package and sets HELIOGRAPH_REQUIRE_COTURN: there a
# missing coturn fails the test instead of skipping it.
needs_coturn = pytest.mark.skipif(
    not COTURN and not os.environ.get("HELIOGRAPH_REQUIRE_COTURN"),
    reason="coturn is not installed (apt-get install coturn)")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
    raise AssertionError("no free port")


class Coturn:
    """A turnserver process on loopback with the TURN REST API shared secret, its pid
    file and log in a temporary directory; stopped by pid."""

    def __init__(self, secret: str):
        self.dir = Path(tempfile.mkdtemp(prefix="coturn-"))
        self.port = free_port()
        self.secret = secret
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [
            "turnserver", "-n",
            "--listening-ip=127.0.0.1", f"--listening-port={self.port}",
            "--relay-ip=127.0.0.1", "--min-port=49152", "--max-port=65535",
            "--use-auth-secret", f"--static-auth-secret={self.secret}",
            "--realm=heliograph.test",
            "--no-cli", "--no-tls", "--no-dtls",
            # uclient's peers are on loopback too.
            "--allow-loopback-peers",
            f"--pidfile={self.dir / 'turnserver.pid'}",
            f"--log-file={self.dir / 'turn.log'}", "--simple-log",
            f"--db={self.dir / 'turndb'}",
        ]
        self.out = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        # Ready once it answers a STUN binding request on its UDP port.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"turnserver exited: {self.log()}"
            if stun_binding_ok(self.port):
                return
            time.sleep(0.1)
        raise AssertionError(f"turnserver never answered STUN: {self.log()}")

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "turn.log"):
            p = self.dir / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if getattr(self, "out", None):
            self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def stun_binding_ok(port: int) -> bool:
    """Sends a STUN Binding request (RFC 5389) and says whether a success came back."""
    txid = os.urandom(12)
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + txid
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    try:
        s.sendto(request, ("127.0.0.1", port))
        data, _ = s.recvfrom(2048)
        return data[:2] == b"\x01\x01" and data[8:20] == txid
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture
def coturn():
    turn = Coturn(SECRET)
    try:
        yield turn
    finally:
        turn.stop()


def uclient(port: int, username: str, password: str) -> subprocess.CompletedProcess:
    """Two clients allocate relays and send 50 messages each to the other through them."""
    return subprocess.run(
        ["turnutils_uclient", "-y", "-n", "50", "-m", "2", "-e", "127.0.0.1",
         "-p", str(port), "-u", username, "-w", password, "127.0.0.1"],
        capture_output=True, text=True, timeout=120)


async def extdisco(client, payload: str):
    iq = client.Iq()
    iq["type"] = "get"
    iq["to"] = client.boundjid.domain
    iq.append(ET.fromstring(payload))
    return await iq.send(timeout=WAIT)


def services_in(iq, wrapper: str) -> list[dict]:
    el = iq.xml.find(f"{{{EXTDISCO}}}{wrapper}")
    assert el is not None, str(iq)
    return [dict(s.attrib) for s in el.findall(f"{{{EXTDISCO}}}service")]


@needs_coturn
@pytest.mark.async_timeout(240)
async def test_coturn_accepts_the_server_issued_credentials(server, xmpp, coturn):
    server.create_tenant("acme", ["acme.test"], external_services={
        "turn_secret": SECRET,
        "credential_ttl": CREDENTIAL_TTL,
        "services": [
            {"type": "turn", "host": "127.0.0.1", "port": coturn.port, "transport": "udp"},
            {"type": "stun", "host": "127.0.0.1", "port": coturn.port, "transport": "udp"},
        ],
    })
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")

    # The secret is write-only.
    _, shown = server.admin("GET", "/api/v1/tenants/acme", expect=200)
    assert SECRET not in str(shown)
    assert shown["external_services"]["turn_secret_set"] is True

    listed = services_in(await extdisco(alice, f"<services xmlns='{EXTDISCO}'/>"), "services")
    assert {s["type"] for s in listed} == {"turn", "stun"}
    turn = next(s for s in listed if s["type"] == "turn")
    assert turn["restricted"] == "true"
    expiry, user = turn["username"].split(":", 1)
    assert user == "alice@acme.test"
    assert abs(int(expiry) - (time.time() + CREDENTIAL_TTL)) < 120
    stun = next(s for s in listed if s["type"] == "stun")
    assert "password" not in stun

    creds = services_in(await extdisco(
        alice,
        f"<credentials xmlns='{EXTDISCO}'><service type='turn' host='127.0.0.1' "
        f"port='{coturn.port}'/></credentials>"), "credentials")
    assert len(creds) == 1
    username, password = creds[0]["username"], creds[0]["password"]
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
    assert password == expected

    coturn.start()
    run = uclient(coturn.port, username, password)
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"{out}\n{coturn.log()}"
    lost = re.search(r"Total lost packets (\d+)", out)
    assert lost, out
    assert int(lost.group(1)) == 0, out
    sent = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", out)
    assert sent and int(sent[-1][0]) > 0 and sent[-1][0] == sent[-1][1], out
    print(f"turnutils_uclient through coturn: {sent[-1][0]} sent, {sent[-1][1]} received, "
          f"{lost.group(1)} lost")

    # A tampered password: no allocation.
    tampered = ("A" if password[0] != "A" else "B") + password[1:]
    bad = uclient(coturn.port, username, tampered)
    assert bad.returncode != 0, bad.stdout
    assert "Cannot complete Allocation" in bad.stdout + bad.stderr
    # An expired username, correctly signed: refused as well (the TTL is the TURN
    # server's to enforce, from the username).
    old = f"{int(time.time()) - 60}:alice@acme.test"
    old_password = base64.b64encode(
        hmac.new(SECRET.encode(), old.encode(), hashlib.sha1).digest()).decode()
    expired = uclient(coturn.port, old, old_password)
    assert expired.returncode != 0, expired.stdout


async def test_unknown_service_and_unauthenticated_requests_are_refused(server, xmpp):
    from slixmpp.exceptions import IqError

    from harness.raw import RawStream, stream_error_condition

    server.create_tenant("acme", ["acme.test"], external_services={
        "turn_secret": SECRET,
        "services": [{"type": "turn", "host": "127.0.0.1", "port": 3478}],
    })
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    with pytest.raises(IqError) as err:
        await extdisco(alice, f"<credentials xmlns='{EXTDISCO}'>"
                              "<service type='turn' host='turn.nowhere.test' port='3478'/></credentials>")
    assert err.value.iq["error"]["condition"] == "item-not-found"

    # No authentication: the stream ends, nothing is answered.
    with RawStream.connect(server.c2s_starttls, tls=False, timeout=10) as raw:
        raw.open("acme.test")
        raw.send(f"<iq type='get' id='x' to='acme.test'><credentials xmlns='{EXTDISCO}'>"
                 "<service type='turn' host='127.0.0.1'/></credentials></iq>")
        data = raw.read_to_close()
    assert b"password" not in data
    assert stream_error_condition(data) == "not-authorized", data
