"""A real ejabberd (Debian's package) for federation tests: its own config, spool, log
and self-signed certificate in a temp dir, every port on loopback and chosen free by the
test, run in the foreground as the unprivileged ``ejabberd`` user when started as root
(the package's system service is never used), stopped by PID at the end.

The Erlang VM runs without distribution (no ``-sname``), so no epmd and no port of its
own beyond the XMPP listeners. Users are checked by an external authentication script
(``auth_method: external``) that knows the accounts the test added.

ejabberd resolves the domains it federates with by DNS: the SRV record
``_xmpp-server._tcp.DOMAIN`` with the Erlang resolver, then the target with the
system's getaddrinfo. The test runs a small DNS server on a free loopback port
(harness/dns.py) whose SRV records name 127.0.0.1 and the peer's port (a numeric target
needs no further lookup), and points the Erlang resolver at it with an ``inetrc`` file
(``ERL_INETRC``: ``{nameserver, IP, Port}``). Nothing of the system's is changed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.dns import DnsServer
from harness.prosody import free_port

ERL_LIBS = "/usr/lib/x86_64-linux-gnu"

# ejabberd's external authentication protocol: each request is a 2-byte big-endian
# length and "op:user:server[:password]"; the answer is 2-byte length 2 and 0 or 1.
EXTAUTH = r'''
import json, struct, sys
users = json.load(open(sys.argv[1]))
def read():
    head = sys.stdin.buffer.read(2)
    if len(head) < 2:
        sys.exit(0)
    (n,) = struct.unpack(">H", head)
    return sys.stdin.buffer.read(n).decode()
while True:
    op, _, rest = read().partition(":")
    user, _, rest = rest.partition(":")
    server, _, password = rest.partition(":")
    key = f"{user}@{server}"
    if op == "auth":
        ok = users.get(key) == password
    elif op == "isuser":
        ok = key in users
    else:
        ok = False
    sys.stdout.buffer.write(struct.pack(">HH", 2, 1 if ok else 0))
    sys.stdout.buffer.flush()
'''


def available() -> bool:
    return Path(ERL_LIBS, "ejabberd-23.01").exists() or any(
        p.name.startswith("ejabberd-") for p in Path(ERL_LIBS).glob("ejabberd-*"))


class Ejabberd:
    def __init__(self, domain: str):
        self.domain = domain
        self.dir = Path(tempfile.mkdtemp(prefix="ejabberd-"))
        self.c2s_port = free_port()
        self.s2s_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "log" / "ejabberd.log"
        self.users: dict[str, str] = {}
        self.dns: DnsServer | None = None

    def add_user(self, user: str, password: str) -> None:
        self.users[f"{user}@{self.domain}"] = password

    def _cert(self) -> Path:
        crt, key = self.dir / "cert.crt", self.dir / "cert.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(crt), "-subj", f"/CN={self.domain}",
             "-addext", f"subjectAltName=DNS:{self.domain},DNS:*.{self.domain}"],
            check=True, capture_output=True)
        pem = self.dir / "cert.pem"
        pem.write_text(crt.read_text() + key.read_text())
        return pem

    def start(self, peers: dict[str, int], timeout: float = 60.0) -> None:
        """Starts ejabberd; ``peers`` maps the domains it federates with to their s2s
        port on 127.0.0.1 (published as SRV records by the test's DNS server)."""
        import json
        self.dns = DnsServer()
        for domain, port in peers.items():
            # The SRV target is the address itself: ejabberd looks targets up with the
            # system's getaddrinfo (hosts file, system DNS), not with the Erlang resolver,
            # and a numeric host needs no lookup.
            self.dns.srv[f"_xmpp-server._tcp.{domain}"] = ("127.0.0.1", port)
        self.dns.start()
        pem = self._cert()
        (self.dir / "users.json").write_text(json.dumps(self.users))
        (self.dir / "extauth.py").write_text(EXTAUTH)
        for d in ("spool", "log", "home"):
            (self.dir / d).mkdir(exist_ok=True)
        (self.dir / "inetrc").write_text(
            f"{{resolv_conf, \"\"}}.\n{{hosts_file, \"\"}}.\n"
            f"{{nameserver, {{127,0,0,1}}, {self.dns.port}}}.\n{{lookup, [dns]}}.\n")
        cfg = f"""
hosts:
  - "{self.domain}"
loglevel: info
certfiles:
  - "{pem}"
acme:
  auto: false
auth_method: external
extauth_program: "python3 {self.dir}/extauth.py {self.dir}/users.json"
auth_use_cache: false
s2s_use_starttls: required
outgoing_s2s_families: [ipv4]
s2s_dns_timeout: 2
s2s_dns_retries: 1
s2s_access: all
listen:
  - port: {self.c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
  - port: {self.s2s_port}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
  mod_version: {{}}
  mod_muc:
    host: "conference.@HOST@"
    access: all
    access_create: all
    access_persistent: all
"""
        cfg_path = self.dir / "ejabberd.yml"
        cfg_path.write_text(cfg)
        env = dict(os.environ,
                   HOME=str(self.dir / "home"),
                   ERL_LIBS=ERL_LIBS,
                   ERL_INETRC=str(self.dir / "inetrc"),
                   EJABBERD_CONFIG_PATH=str(cfg_path),
                   EJABBERD_LOG_PATH=str(self.log))
        cmd = ["erl", "-noinput", "-noshell", "-mnesia", "dir", f'"{self.dir / "spool"}"',
               "-s", "ejabberd"]
        if os.geteuid() == 0:
            for p in [self.dir, *self.dir.rglob("*")]:
                shutil.chown(p, "ejabberd")
            cmd = ["runuser", "-u", "ejabberd", "--"] + cmd
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "stdout.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ejabberd exited: {self.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.s2s_port), timeout=0.5).close()
                socket.create_connection(("127.0.0.1", self.c2s_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"ejabberd did not listen in {timeout}s: {self.log_text()}")

    def log_text(self) -> str:
        parts = []
        for f in (self.dir / "stdout.log", self.log):
            if f.exists():
                parts.append(f.read_text(errors="replace")[-8000:])
        parts.append(f"DNS questions: {self.dns.questions if self.dns else []}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # The VM and the extauth script it started are one session: signal the group
            # that this process leads (started by this test), nothing else.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.dns:
            self.dns.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
