"""The plugin's private key-value store: scoped to its (tenant, slot), kept across calls,
restarts and new versions. Limits (server defaults): keys up to 256 bytes, values up to
64 KiB, 1 MiB in total, 256 KiB written per call. Failures raise :class:`KvError`."""

from __future__ import annotations

from ._backend import KvError, backend

__all__ = ["KvError", "delete", "get", "get_string", "list_keys", "set"]


def get(key: str) -> bytes | None:
    """The value of ``key``."""
    return backend().kv_get(key)


def get_string(key: str) -> str | None:
    """The value of ``key`` as text (invalid UTF-8 replaced)."""
    value = get(key)
    return None if value is None else value.decode("utf-8", "replace")


def set(key: str, value: bytes | str) -> None:  # noqa: A001 (mirrors the Rust SDK's kv::set)
    """Stores ``value`` (text is stored as UTF-8) under ``key``."""
    backend().kv_set(key, value.encode() if isinstance(value, str) else bytes(value))


def delete(key: str) -> bool:
    """Deletes ``key``; True if it existed."""
    return backend().kv_delete(key)


def list_keys(prefix: str, limit: int) -> list[str]:
    """Keys starting with ``prefix``, sorted, at most ``limit`` (capped at 1000)."""
    return backend().kv_list_keys(prefix, limit)
