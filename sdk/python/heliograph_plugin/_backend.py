"""Where the host API goes: the component's WIT imports when running inside the server
(``sys.platform == "wasi"``: componentize-py's CPython), else the current thread's
:class:`heliograph_plugin.testing.FakeHost` (unit tests). Not a public API."""

from __future__ import annotations

import sys

IN_COMPONENT = sys.platform == "wasi"

# Inside the component, every module must be imported when componentize-py
# pre-initializes the app (at build time): at run time there is no file system to import
# from. So the generated bindings are imported here, not in the functions that use them.
if IN_COMPONENT:
    from componentize_py_types import Err
    from wit_world.imports import host_config, host_kv, host_log, types


class KvError(Exception):
    """Why a key-value operation failed. ``kind`` is one of ``invalid-key``,
    ``value-too-large``, ``quota-exceeded``, ``call-budget-exhausted``, ``unavailable``;
    ``detail`` the reason or the limit in bytes."""

    def __init__(self, kind: str, detail: object = None):
        text = kind if detail is None else f"{kind}: {detail}"
        super().__init__(text)
        self.kind = kind
        self.detail = detail


class _Guest:
    """The host API through the generated bindings (``wit_world``)."""

    @staticmethod
    def _kv(call, *args):
        try:
            return call(*args)
        except Err as e:
            err = e.value
            kinds = {
                host_kv.KvError_InvalidKey: "invalid-key",
                host_kv.KvError_ValueTooLarge: "value-too-large",
                host_kv.KvError_QuotaExceeded: "quota-exceeded",
                host_kv.KvError_CallBudgetExhausted: "call-budget-exhausted",
                host_kv.KvError_Unavailable: "unavailable",
            }
            raise KvError(kinds.get(type(err), "unavailable"), getattr(err, "value", None)) from None

    def log(self, level, message, fields):
        host_log.log(
            types.LogLevel(int(level)), message, [types.KeyValue(k, v) for k, v in fields]
        )

    def kv_get(self, key):
        return self._kv(host_kv.get, key)

    def kv_set(self, key, value):
        self._kv(host_kv.set, key, value)

    def kv_delete(self, key):
        return self._kv(host_kv.delete, key)

    def kv_list_keys(self, prefix, limit):
        return self._kv(host_kv.list_keys, prefix, limit)

    def config_text(self):
        return host_config.json()

    def config_get(self, key):
        return host_config.get(key)

    def config_entries(self):
        return [(kv.key, kv.value) for kv in host_config.entries()]


_GUEST = _Guest() if IN_COMPONENT else None


def backend():
    """The host API in force."""
    if _GUEST is not None:
        return _GUEST
    from . import testing

    return testing.current()
