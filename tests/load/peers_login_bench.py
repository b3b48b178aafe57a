#!/usr/bin/env python3
"""Logins side by side: Heliograph, ejabberd and Prosody (Debian's packages), each started
here on loopback with the same accounts, measured with the same load generator
(`heliograph-load connect`), one after the other in one run (issue 26, point 1).

    tests/load/peers_login_bench.py [--bin-dir DIR] [-n 10000] [--concurrency 200]
                                    [--rounds 1] [--only NAME ...]

DIR holds release builds of `heliograph` and `heliograph-load` (default: the cargo target
directory's `release`). Every run logs each of the N accounts in once (its first login on
that server) with CONCURRENCY logins in flight, over plain TCP unless the name ends in
`-tls` (direct TLS, XEP-0368, with an ECDSA P-256 certificate everywhere), and keeps the
sessions until all are in. Runs (NAME: what it measures):

- `ejabberd-plain`, `prosody-plain`: PLAIN, passwords stored in plaintext;
- `heliograph-plain`: PLAIN against stored SCRAM keys (the server derives PBKDF2 with
  4096 iterations on an account's first login), and `heliograph-plain-i1` with 1
  iteration (the hash's cost taken out: the like-for-like against plaintext storage);
- `ejabberd-scram`, `prosody-scram`, `heliograph-scram`: SCRAM-SHA-256 against hashed
  storage, 4096 iterations everywhere (ejabberd's and Heliograph's default; Prosody's is
  10,000, which changes only the client's work);
- `heliograph-jwt`, `heliograph-token`: PLAIN carrying a JWT checked against the
  tenant's HS256 key, or a server-issued access token (minted through the admin API
  before the run): the token paths a video platform's reconnects use.
- `heliograph-fast-tls`: XEP-0484 FAST (SASL2 `HT-SHA-256-NONE` with an inline Bind 2),
  offered over TLS only; each account's token is requested and used once before the run,
  so the measured logins are a client's usual reconnects. Against it, PLAIN over TLS:
  `ejabberd-plain-tls`, `prosody-plain-tls` (plaintext storage) and
  `heliograph-token-tls`.

Every server listens with a backlog of 4096 (Heliograph's default). Server CPU is read
from /proc for the server's process (the Erlang VM for ejabberd).
Prints one JSON line per run and a table at the end. Accounts: ejabberd gets them through
its HTTP API (`mod_http_api`, loopback only), Prosody as files in its data directory,
Heliograph through its admin API (the load generator provisions them).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOMAIN = "bench.test"
PREFIX = "load"
PASSWORD = "load-password"  # the load generator's (tests/load/src/connect.rs)
ITERATIONS = 4096
JWT_SECRET = "heliograph-load-jwt-secret-0123456789"  # tests/load/src/target.rs
ERL_LIBS = "/usr/lib/x86_64-linux-gnu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str, log: Path,
                   timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited:\n{tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on {port} in {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


def service_user(user: str, root: Path) -> dict:
    """Servers refuse to (or should not) run as root: as root, the files under `root` go
    to `user` and the server runs as it (Popen's user and group: no PAM session, which
    would set the open-file limit back to 1,024)."""
    if os.geteuid() != 0:
        return {}
    for p in [root, *root.rglob("*")]:
        shutil.chown(p, user, user)
    return {"user": user, "group": user, "extra_groups": []}


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def process_in_group(proc: subprocess.Popen, name: str) -> int:
    """The pid of the process called `name` in the group `proc` leads (the Erlang VM
    under erl's wrapper)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            pgrp = int(stat[stat.rindex(")") + 2:].split()[2])
            if pgrp == proc.pid and comm.startswith(name):
                return int(entry.name)
        time.sleep(0.2)
    raise SystemExit(f"no {name} process under {proc.pid}")


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for DOMAIN (what Heliograph generates for
    itself), as `cert.pem` and `key.pem`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "30", "-subj", f"/CN={DOMAIN}", "-addext",
                    f"subjectAltName=DNS:{DOMAIN}"], check=True, capture_output=True)
    return cert, key


class Ejabberd:
    """ejabberd with internal (Mnesia) authentication; `scram` stores SCRAM-SHA-256 keys
    instead of the password. Besides the plain c2s port, a direct TLS one."""

    def __init__(self, root: Path, scram: bool):
        self.dir = root / ("ejabberd-scram" if scram else "ejabberd-plain")
        self.scram = scram
        self.c2s = free_port()
        self.c2s_tls = free_port()
        self.api = free_port()
        self.log = self.dir / "ejabberd.log"

    def start(self) -> int:
        for d in ("spool", "home"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        cert, key = write_certificate(self.dir / "tls")
        bundle = self.dir / "tls" / "bundle.pem"
        bundle.write_text(cert.read_text() + key.read_text())
        storage = ("auth_password_format: scram\nauth_scram_hash: sha256\n" if self.scram
                   else "auth_password_format: plain\n")
        (self.dir / "ejabberd.yml").write_text(f"""
hosts:
  - "{DOMAIN}"
loglevel: warning
acme:
  auto: false
auth_method: internal
{storage}
certfiles:
  - "{bundle}"
listen:
  - port: {self.c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 4096
    max_stanza_size: 262144
    shaper: none
    access: c2s
  - port: {self.c2s_tls}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    tls: true
    backlog: 4096
    max_stanza_size: 262144
    shaper: none
    access: c2s
  - port: {self.api}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  c2s:
    allow: all
  register:
    allow: all
api_permissions:
  "benchmark provisioning":
    from:
      - mod_http_api
    who:
      - acl: loopback
    what:
      - register
shaper_rules:
  c2s_shaper: none
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
""")
        env = dict(os.environ, HOME=str(self.dir / "home"), ERL_LIBS=ERL_LIBS,
                   EJABBERD_CONFIG_PATH=str(self.dir / "ejabberd.yml"),
                   EJABBERD_LOG_PATH=str(self.log))
        cmd = ["erl", "+K", "true", "+P", "1000000", "-noinput", "-noshell",
               "-mnesia", "dir", f'"{self.dir / "spool"}"', "-s", "ejabberd"]
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
            stdout=open(self.dir / "stdout.log", "wb"), stderr=subprocess.STDOUT,
            start_new_session=True, **service_user("ejabberd", self.dir))
        wait_listening(self.api, self.proc, "ejabberd", self.dir / "stdout.log")
        wait_listening(self.c2s, self.proc, "ejabberd", self.dir / "stdout.log")
        wait_listening(self.c2s_tls, self.proc, "ejabberd", self.dir / "stdout.log")
        return process_in_group(self.proc, "beam")

    def provision(self, n: int) -> None:
        def register(i: int) -> None:
            body = json.dumps({"user": f"{PREFIX}{i}", "host": DOMAIN,
                               "password": PASSWORD}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{self.api}/api/register",
                                         data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(register, range(n)))

    def stop(self) -> None:
        stop_group(self.proc)


class Prosody:
    """Prosody with its internal storage: `internal_plain`, or `internal_hashed` with
    SCRAM-SHA-256 keys (written here as its account files, one salt for all)."""

    def __init__(self, root: Path, scram: bool):
        self.dir = root / ("prosody-scram" if scram else "prosody-plain")
        self.scram = scram
        self.c2s = free_port()
        self.c2s_tls = free_port()
        self.log = self.dir / "prosody.log"

    def provision(self, n: int) -> None:
        accounts = self.dir / "data" / DOMAIN.replace(".", "%2e") / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        if self.scram:
            salt = "benchmark-salt"
            salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt.encode(),
                                         ITERATIONS)
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            stored_key = hashlib.sha256(client_key).hexdigest()
            server_key = hmac.new(salted, b"Server Key", "sha256").hexdigest()
            record = (f'return {{ ["stored_key"] = "{stored_key}"; '
                      f'["server_key"] = "{server_key}"; ["salt"] = "{salt}"; '
                      f'["iteration_count"] = {ITERATIONS}; }};\n')
        else:
            record = f'return {{ ["password"] = "{PASSWORD}"; }};\n'
        for i in range(n):
            (accounts / f"{PREFIX}{i}.dat").write_text(record)

    def start(self) -> int:
        auth = ('authentication = "internal_hashed"\npassword_hash = "SHA-256"\n'
                if self.scram else 'authentication = "internal_plain"\n')
        cert, key = write_certificate(self.dir / "tls")
        cfg = self.dir / "prosody.cfg.lua"
        cfg.write_text(f"""
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.dir}/data"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s} }}
s2s_ports = {{ }}
c2s_direct_tls_ports = {{ {self.c2s_tls} }}
ssl = {{ certificate = "{cert}"; key = "{key}" }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
network_backend = "epoll"
network_settings = {{ tcp_backlog = 4096 }}
log = {{ warn = "{self.log}" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "presence"; "message"; "iq" }}
modules_disabled = {{ "posix"; "admin_socket"; "offline"; "c2s_limits"; "s2s" }}
{auth}storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
VirtualHost "{DOMAIN}"
""")
        cmd = ["prosody", "--config", str(cfg), "-F"]
        stderr = open(self.dir / "stderr.log", "wb")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True, **service_user("prosody", self.dir))
        wait_listening(self.c2s, self.proc, "prosody", self.dir / "stderr.log")
        wait_listening(self.c2s_tls, self.proc, "prosody", self.dir / "stderr.log")
        return process_in_group(self.proc, "lua")

    def stop(self) -> None:
        stop_group(self.proc)


def load(bin_dir: Path, args: list[str]) -> dict:
    """One `heliograph-load connect` run; its connect measurement."""
    out = subprocess.run([str(bin_dir / "heliograph-load"), "connect", *args],
                         capture_output=True, text=True)
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    found = [l for l in lines if l.get("measurement") == "connect"]
    if out.returncode != 0 or not found:
        raise SystemExit(f"heliograph-load connect {' '.join(args)} failed "
                         f"({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return found[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/heliograph-target"))
    ap.add_argument("--bin-dir", type=Path, default=Path(target) / "release")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None)
    a = ap.parse_args()
    common = ["-n", str(a.n), "--concurrency", str(a.concurrency),
              "--domain", DOMAIN, "--user-prefix", PREFIX]
    heliograph = str(a.bin_dir / "heliograph")

    def peer(cls, scram: bool, transport: str = "plain"):
        def run() -> dict:
            root = Path(tempfile.mkdtemp(prefix="peers-bench-"))
            root.chmod(0o755)  # the server's own user works inside
            server = cls(root, scram)
            try:
                if cls is Prosody:
                    server.provision(a.n)
                    pid = server.start()
                else:
                    pid = server.start()
                    t0 = time.monotonic()
                    server.provision(a.n)
                    print(f"  ejabberd: {a.n} accounts in {time.monotonic() - t0:.0f} s",
                          flush=True)
                return load(a.bin_dir, [*common, "--server-pid", str(pid), "--foreign",
                                        "--c2s", f"127.0.0.1:{server.c2s}",
                                        "--c2s-tls", f"127.0.0.1:{server.c2s_tls}",
                                        "--transport", transport, "--mech",
                                        "scram-sha-256" if scram else "plain"])
            finally:
                server.stop()
                shutil.rmtree(root, ignore_errors=True)
        return run

    def ours(mech: str, iterations: int, *extra: str, transport: str = "plain"):
        return lambda: load(a.bin_dir, [*common, "--server-bin", heliograph, "--mech", mech,
                                        "--transport", transport,
                                        "--scram-iterations", str(iterations), *extra])

    runs = {
        "ejabberd-plain": peer(Ejabberd, False),
        "prosody-plain": peer(Prosody, False),
        "heliograph-plain": ours("plain", ITERATIONS),
        "heliograph-plain-i1": ours("plain", 1),
        "heliograph-jwt": ours("jwt", ITERATIONS, "--jwt-secret", JWT_SECRET),
        "heliograph-token": ours("token", ITERATIONS),
        "ejabberd-plain-tls": peer(Ejabberd, False, "tls"),
        "prosody-plain-tls": peer(Prosody, False, "tls"),
        "heliograph-token-tls": ours("token", ITERATIONS, transport="tls"),
        "heliograph-fast-tls": ours("fast", ITERATIONS, transport="tls"),
        "ejabberd-scram": peer(Ejabberd, True),
        "prosody-scram": peer(Prosody, True),
        "heliograph-scram": ours("scram-sha-256", ITERATIONS),
    }
    chosen = [k for k in runs if a.only is None or k in a.only]
    results: dict[str, list[dict]] = {k: [] for k in chosen}
    for r in range(a.rounds):
        for name in chosen:
            print(f"== round {r + 1}: {name}", flush=True)
            m = runs[name]()
            m["run"] = name
            print(json.dumps(m), flush=True)
            results[name].append(m)
    print(f"\n{a.n} logins per run, {a.concurrency} in flight, plain TCP unless -tls "
          f"(medians of {a.rounds}):")
    print(f"{'run':22} {'logins/s':>9} {'CPU/login':>10} {'p50':>8} {'p99':>8} {'failed':>6}")
    for name, ms in results.items():
        def med(key: str) -> float:
            return statistics.median(m.get(key, 0) for m in ms)
        print(f"{name:22} {med('logins_per_s'):9.0f} {med('server_cpu_ms_per_login'):8.3f}ms "
              f"{med('login_p50_ms'):6.1f}ms {med('login_p99_ms'):6.1f}ms "
              f"{sum(m.get('failed', 0) for m in ms):6}")


if __name__ == "__main__":
    main()
