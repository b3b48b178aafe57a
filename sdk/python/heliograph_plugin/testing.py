"""Native test helpers (the Rust SDK's ``testing::FakeHost``): an in-memory key-value
store, a configuration flattened exactly like the server does it, and captured log
lines, so ``python -m unittest`` runs a plugin's logic without the server::

    host = FakeHost().config_json('{"password": "s3cret"}').kv("greeting", "hi").install()
    assert config.get("password") == "s3cret"
    log.info("hello", k="v")
    assert host.logs()[0].message == "hello"

The fake host is per thread; :meth:`FakeHost.install` replaces whatever the thread had.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from ._backend import KvError
from .log import Level


@dataclass(frozen=True)
class LogLine:
    level: Level
    message: str
    fields: list[tuple[str, str]]


def flatten(value: dict, prefix: str = "") -> list[tuple[str, str]]:
    """The server's flattening: nested objects become dotted keys, strings stay as they
    are, other values become compact JSON text; sorted by key."""
    out: list[tuple[str, str]] = []

    def walk(obj: dict, prefix: str) -> None:
        for key, val in obj.items():
            full = f"{prefix}.{key}" if prefix else key
            if isinstance(val, dict):
                walk(val, full)
            elif isinstance(val, str):
                out.append((full, val))
            else:
                out.append((full, canonical_json(val)))

    walk(value, prefix)
    return sorted(out)


def canonical_json(value: object) -> str:
    """JSON text as the server writes it: compact, keys sorted, non-ASCII as is."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class FakeHost:
    """Builds and inspects the fake host of the current thread."""

    def __init__(self) -> None:
        self._json = "{}"
        self._entries: list[tuple[str, str]] = []
        self._kv: dict[str, bytes] = {}
        self._logs: list[LogLine] = []
        self._kv_unavailable = False

    def config_json(self, text: str) -> FakeHost:
        """Sets the configuration from JSON text (an object)."""
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("config_json: the configuration must be a JSON object")
        self._json = canonical_json(value)
        self._entries = flatten(value)
        return self

    def kv(self, key: str, value: bytes | str) -> FakeHost:
        """Pre-stores a key-value entry."""
        self._kv[key] = value.encode() if isinstance(value, str) else bytes(value)
        return self

    def kv_unavailable(self) -> FakeHost:
        """Makes every key-value operation fail with ``unavailable``."""
        self._kv_unavailable = True
        return self

    def install(self) -> FakeHost:
        """Makes this the current thread's host; keep it to inspect it."""
        _local.host = self
        return self

    def logs(self) -> list[LogLine]:
        return list(self._logs)

    def kv_value(self, key: str) -> bytes | None:
        return self._kv.get(key)

    # --- the host API (used by config, kv and log) ---

    def log(self, level, message, fields):
        self._logs.append(LogLine(Level(int(level)), message, list(fields)))

    def _check(self, key: str) -> None:
        if self._kv_unavailable:
            raise KvError("unavailable", "fake host: unavailable")
        if not key or len(key.encode()) > 256:
            raise KvError("invalid-key", "empty or over 256 bytes")

    def kv_get(self, key):
        self._check(key)
        return self._kv.get(key)

    def kv_set(self, key, value):
        self._check(key)
        if len(value) > 64 * 1024:
            raise KvError("value-too-large", 64 * 1024)
        self._kv[key] = value

    def kv_delete(self, key):
        self._check(key)
        return self._kv.pop(key, None) is not None

    def kv_list_keys(self, prefix, limit):
        if self._kv_unavailable:
            raise KvError("unavailable", "fake host: unavailable")
        keys = sorted(k for k in self._kv if k.startswith(prefix))
        return keys[: min(limit, 1000)]

    def config_text(self) -> str:
        return self._json

    def config_get(self, key):
        return dict(self._entries).get(key)

    def config_entries(self):
        return list(self._entries)


_local = threading.local()


def current() -> FakeHost:
    """The current thread's fake host (an empty one if none was installed)."""
    host = getattr(_local, "host", None)
    if host is None:
        host = FakeHost().install()
    return host
