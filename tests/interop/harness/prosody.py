"""A real Prosody (Debian's package) for federation tests: its own config, data and
certificate in a temp dir, every port on loopback and chosen free by the test, run in the
foreground as the unprivileged ``prosody`` user when started as root, stopped at the end.

Domains it must reach are mapped to fixed addresses by a test-only module
(prosody_plugins/mod_test_s2s_hosts.lua) instead of DNS.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PLUGINS = Path(__file__).resolve().parent / "prosody_plugins"


def _ephemeral_low() -> int:
    """The first port of the kernel's range for automatically chosen local ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port for a peer server a test starts, which binds it seconds later.

    Taken below the kernel's ephemeral range: a port from inside it (what binding port 0
    gives) may be taken in between as the local port of any outgoing connection or of
    another listener bound to port 0, and once ejabberd found its s2s port in use that
    way. Below the range, only another test picking the same port at random could.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _lua_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class Prosody:
    def __init__(self, domain: str, s2s_port: int | None = None, muc: str | None = None,
                 ca=None):
        """``ca`` (a harness.test_ca.TestCA): Prosody's certificate is signed by it, peers'
        certificates are checked against it, and s2s requires valid certificates
        (``s2s_secure_auth``), so peers authenticate by certificate (SASL EXTERNAL)."""
        self.domain = domain
        self.ca = ca
        self.muc = muc
        self.dir = Path(tempfile.mkdtemp(prefix="prosody-"))
        self.c2s_port = free_port()
        self.s2s_port = s2s_port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "prosody.log"

    def _cert(self) -> tuple[Path, Path]:
        if self.ca is not None:
            return self.ca.issue(self.domain, self.dir)
        crt, key = self.dir / f"{self.domain}.crt", self.dir / f"{self.domain}.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(crt), "-subj", f"/CN={self.domain}",
             "-addext", f"subjectAltName=DNS:{self.domain},DNS:*.{self.domain}"],
            check=True, capture_output=True)
        return crt, key

    def add_user(self, user: str, password: str) -> None:
        """An account in Prosody's internal storage (plain), written before start."""
        host = self.domain.replace(".", "%2e")
        accounts = self.dir / "data" / host / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        (accounts / f"{user}.dat").write_text(
            f'return {{ ["password"] = "{_lua_escape(password)}"; }};\n')

    def start(self, s2s_hosts: dict[str, tuple[str, int]], timeout: float = 30.0) -> None:
        crt, key = self._cert()
        (self.dir / "data").mkdir(exist_ok=True)
        hosts = "".join(f'["{d}"] = {{ "{h}", {p} }}; ' for d, (h, p) in s2s_hosts.items())
        muc = f'Component "{self.muc}" "muc"\n' if self.muc else ""
        cafile = ""
        if self.ca is not None:
            shutil.copy(self.ca.cert, self.dir / "ca.crt")
            cafile = f'cafile = "{self.dir / "ca.crt"}"; '
        cfg = f"""
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.dir}/data"
plugin_paths = {{ "{PLUGINS}" }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
s2s_ports = {{ {self.s2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
admin_socket = "{self.dir}/prosody.sock"
log = {{ debug = "{self.log}" }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "message"; "iq"; "pep"; "test_s2s_hosts" }}
modules_disabled = {{ "posix"; "admin_socket"; "offline"; "c2s_limits" }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
s2s_require_encryption = true
s2s_secure_auth = {"true" if self.ca is not None else "false"}
test_s2s_hosts = {{ {hosts} }}
ssl = {{ certificate = "{crt}"; key = "{key}"; {cafile}}}
VirtualHost "{self.domain}"
{muc}
"""
        cfg_path = self.dir / "prosody.cfg.lua"
        cfg_path.write_text(cfg)
        cmd = ["prosody", "--config", str(cfg_path), "-F"]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "prosody")
            for p in self.dir.rglob("*"):
                shutil.chown(p, "prosody")
            cmd = ["runuser", "-u", "prosody", "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "stderr.log", "wb"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prosody exited: {self.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.s2s_port), timeout=0.5).close()
                socket.create_connection(("127.0.0.1", self.c2s_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"prosody did not listen in {timeout}s: {self.log_text()}")

    def log_text(self) -> str:
        parts = []
        for f in (self.dir / "stderr.log", self.log):
            if f.exists():
                parts.append(f.read_text(errors="replace")[-8000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
