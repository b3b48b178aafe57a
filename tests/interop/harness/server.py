"""Start, stop and talk to a Heliograph server process for one test (or module).

The server is the real binary (``$HELIOGRAPH_BIN``) started with a generated
config whose listeners all bind ``127.0.0.1:0``; the ports it actually got are
read from the ready file it writes once every listener is bound.

Typical use goes through the ``server`` fixture in ``conftest.py``::

    def test_something(server):
        server.create_user("alice", "pw")
        host, port = server.c2s_starttls
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOMAIN = "localhost"
# The server's default ports (c2s, direct TLS, HTTP, admin, components): never used here.
DEFAULT_PORTS = {5222, 5223, 5280, 5281, 5347}
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def postgres_database() -> str:
    """A fresh database on the test run's PostgreSQL (``$HELIOGRAPH_TEST_POSTGRES_URL``,
    a key-value connection string); returns its connection string."""
    admin = os.environ.get("HELIOGRAPH_TEST_POSTGRES_URL")
    if not admin:
        raise ServerError("HELIOGRAPH_TEST_BACKEND=postgres needs HELIOGRAPH_TEST_POSTGRES_URL")
    name = "hg_it_" + uuid.uuid4().hex[:16]
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin,
                    "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    parts = [p for p in admin.split() if not p.startswith("dbname=")]
    return " ".join(parts + [f"dbname={name}"])


def drop_postgres_database(config: dict) -> None:
    """Drops the database :func:`postgres_database` made for a server with this config
    (nothing for sled): a run starts hundreds of servers, each database about 8 MB."""
    url = config.get("storage", {}).get("url")
    admin = os.environ.get("HELIOGRAPH_TEST_POSTGRES_URL")
    if not url or not admin:
        return
    name = next(p.split("=", 1)[1] for p in url.split() if p.startswith("dbname="))
    subprocess.run(["psql", "-X", "-q", "-d", admin,
                    "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                   check=False, capture_output=True)


def storage_config() -> dict[str, Any]:
    """``[storage]`` for the backend the run asked for (``$HELIOGRAPH_TEST_BACKEND``:
    ``sled``, the default, or ``postgres`` with a database of the server's own)."""
    backend = os.environ.get("HELIOGRAPH_TEST_BACKEND", "sled")
    if backend == "sled":
        return {}
    if backend == "postgres":
        return {"storage": {"backend": "postgres", "url": postgres_database()}}
    raise ServerError(f"unknown HELIOGRAPH_TEST_BACKEND {backend!r}")


def default_config(data_dir: Path) -> dict[str, Any]:
    """The config every test server starts from (docs/DESIGN.md: every listener on an ephemeral port)."""
    return storage_config() | {
        "general": {
            "hosts": [DOMAIN],
            "data_dir": str(data_dir),
        },
        "listen": {
            "c2s": [
                {"address": "127.0.0.1:0", "tls": "starttls", "require_tls": True},
                {"address": "127.0.0.1:0", "tls": "direct"},
            ],
            "http": [{"address": "127.0.0.1:0"}],
            "component": [{"address": "127.0.0.1:0"}],
            "admin": {"address": "127.0.0.1:0"},
        },
    }


def merge_config(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base``.

    Tables merge key by key; any other value (including lists, so also the
    ``listen.c2s`` array of tables) replaces the base value outright.
    """
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- a tiny TOML writer (tomllib in the stdlib only reads) -------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted one (`"example.net"`)."""
    bare = key and all(c.isalnum() or c in "-_" for c in key) and key.isascii()
    return key if bare else json.dumps(key)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: dict, prefix: str = "") -> str:
    """Serialise nested dicts / lists of dicts / scalars as TOML."""
    lines: list[str] = []
    nested: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) or _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in nested:
        name = f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key)
        if isinstance(value, dict):
            body = to_toml(value, name)
            # A table with only sub-tables needs no header of its own.
            if any(not (isinstance(v, dict) or _is_table_array(v)) for v in value.values()):
                out += f"\n[{name}]\n"
            out += body
        else:
            for item in value:
                out += f"\n[[{name}]]\n" + to_toml(item, name)
    return out


# --- the server process -------------------------------------------------------

@dataclass
class Listener:
    kind: str
    address: str
    tls: str | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


class ServerError(AssertionError):
    """The server failed to start, stop, or answer as the contract says."""


@dataclass
class HeliographServer:
    """One Heliograph process with its own temp dir, config and data dir."""

    binary: str
    config_overrides: dict = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="heliograph-it-")))

    def __post_init__(self) -> None:
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "heliograph.toml"
        self.ready_path = self.workdir / "ready.json"
        self.log_path = self.workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self.listeners: list[Listener] = []
        self.config = merge_config(default_config(self.data_dir), self.config_overrides)
        self.config_path.write_text(to_toml(self.config))
        self._starts = 0

    # -- lifecycle --

    def start(self) -> None:
        """Start the process and wait until its ready file appears."""
        assert self.proc is None, "server already running"
        self.ready_path.unlink(missing_ok=True)
        self._starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self._starts}: {self.binary} serve =====\n".encode())
        log.flush()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.config_path),
             "--ready-file", str(self.ready_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=self.workdir, env=env,
        )
        log.close()  # the child holds its own descriptor
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise ServerError(f"server exited with {code} before it was ready\n{self.log_tail()}")
            if self.ready_path.exists():
                try:
                    ready = json.loads(self.ready_path.read_text())
                except json.JSONDecodeError:
                    ready = None  # still being written; try again
                if ready is not None:
                    self._apply_ready(ready)
                    return
            time.sleep(0.05)
        self.kill()
        raise ServerError(f"no ready file after {READY_TIMEOUT:.0f}s\n{self.log_tail()}")

    def _apply_ready(self, ready: dict) -> None:
        self.ready = ready
        self.listeners = [
            Listener(kind=l["kind"], address=l["address"], tls=l.get("tls"))
            for l in ready["listeners"]
        ]
        # Every listener on an ephemeral port: a listener kind missing from the config
        # would bind its fixed default and collide with whatever else runs here.
        fixed = [l.address for l in self.listeners if l.host_port[1] in DEFAULT_PORTS]
        if fixed:
            self.kill()
            raise ServerError(f"test server bound fixed default ports {fixed}; give every "
                              "listener address 127.0.0.1:0 in the config")
        token_file = ready.get("admin_token_file") or str(self.data_dir / "admin.token")
        self.admin_token = Path(token_file).read_text().strip()

    def stop(self, check: bool = True) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT, kill if still alive.

        With ``check`` (the default) a kill or a non-zero exit fails the test.
        Returns the exit code (None if there was no process).
        """
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            if check:
                raise ServerError(f"server ignored SIGTERM for {STOP_TIMEOUT:.0f}s\n{self.log_tail()}")
            return None
        if check and code != 0:
            raise ServerError(f"server exited with {code} after SIGTERM\n{self.log_tail()}")
        return code

    def remove_storage(self) -> None:
        """Deletes the server's PostgreSQL database, if it has one (its data dir is the
        caller's to remove)."""
        drop_postgres_database(self.config)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        """Clean stop, then start again on the same data dir (ports may change)."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 200) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- server log ({self.log_path}, last {len(tail)} lines) ---\n" + "\n".join(tail)

    # -- addresses --

    def _listener(self, kind: str, tls: str | None = None) -> tuple[str, int]:
        for l in self.listeners:
            if l.kind == kind and (tls is None or l.tls == tls):
                return l.host_port
        raise ServerError(f"no {kind}/{tls} listener in ready file: {self.ready}")

    @property
    def c2s_starttls(self) -> tuple[str, int]:
        return self._listener("c2s", "starttls")

    @property
    def c2s_direct_tls(self) -> tuple[str, int]:
        return self._listener("c2s", "direct")

    @property
    def component_address(self) -> tuple[str, int]:
        """The XEP-0114 component listener."""
        return self._listener("component")

    @property
    def admin_address(self) -> tuple[str, int]:
        return self._listener("admin")

    @property
    def domain(self) -> str:
        return DOMAIN

    # -- admin API (plain urllib: no extra dependencies) --

    def admin(self, method: str, path: str, body: Any = None,
              expect: int | tuple[int, ...] | None = None,
              token: str | None = None) -> tuple[int, Any]:
        """Call the admin API; returns (status, decoded JSON or None).

        With ``expect``, any other status raises ServerError with the body. ``token``
        replaces the operator token (e.g. a tenant token; "" sends none).
        """
        host, port = self.admin_address
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{host}:{port}{path}", data=data, method=method)
        token = self.admin_token if token is None else token
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            decoded = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            decoded = raw.decode(errors="replace")
        if expect is not None:
            allowed = (expect,) if isinstance(expect, int) else expect
            if status not in allowed:
                raise ServerError(f"{method} {path} -> {status} (expected {allowed}): {decoded!r}")
        return status, decoded

    def create_user(self, username: str, password: str, domain: str | None = None) -> str:
        """Create ``username@domain`` (default localhost); returns the bare JID."""
        domain = domain or self.domain
        self.admin("POST", f"/api/v1/users/{domain}",
                   {"username": username, "password": password}, expect=201)
        return f"{username}@{domain}"

    def new_user(self, prefix: str = "user", password: str = "secret") -> tuple[str, str]:
        """Create a user with a unique name (handy on a shared server); returns (jid, password)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        return self.create_user(name, password), password

    def delete_user(self, username: str) -> None:
        self.admin("DELETE", f"/api/v1/users/{self.domain}/{username}", expect=204)

    def set_password(self, username: str, password: str) -> None:
        self.admin("PUT", f"/api/v1/users/{self.domain}/{username}/password",
                   {"password": password}, expect=204)

    def users(self) -> list:
        return self.admin("GET", f"/api/v1/users/{self.domain}", expect=200)[1]["users"]

    def create_tenant(self, name: str, domains: list[str], **settings) -> dict:
        """Create a tenant through the admin API; returns it."""
        return self.admin("POST", "/api/v1/tenants", {"name": name, "domains": domains, **settings},
                          expect=201)[1]

    def write_config(self) -> None:
        """Rewrite the config file from ``self.config`` (for reload tests)."""
        self.config_path.write_text(to_toml(self.config))

    def sessions(self) -> list[dict]:
        return self.admin("GET", "/api/v1/sessions", expect=200)[1]["sessions"]
