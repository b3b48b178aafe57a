"""The plugin's configuration from the tenant's settings. The server flattens the JSON
object: nested objects become dotted keys (``users.alice``), strings stay as they are,
other values are JSON text (``true``, ``3``, ``["a","b"]``). Works in ``init`` too.
``json.loads(config.json())`` gives the whole document (Python has its parser built in)."""

from __future__ import annotations

import json as _json

from ._backend import backend


def json() -> str:
    """The whole configuration as JSON text (``{}`` when none was given)."""
    return backend().config_text()


def get(key: str) -> str | None:
    """One flattened entry."""
    return backend().config_get(key)


def entries() -> list[tuple[str, str]]:
    """Every flattened entry, sorted by key."""
    return backend().config_entries()


def with_prefix(prefix: str) -> list[tuple[str, str]]:
    """Entries under ``prefix.``, with the prefix removed."""
    dotted = prefix + "."
    return [(k[len(dotted):], v) for k, v in entries() if k.startswith(dotted)]


def get_bool(key: str, default: bool) -> bool:
    """A boolean entry (JSON booleans or those strings); ``default`` if absent."""
    value = get(key)
    if value == "true":
        return True
    if value == "false":
        return False
    return default


def get_list(key: str) -> list[str]:
    """A list entry: a JSON array of strings, or a comma-separated string; items trimmed,
    empty ones dropped."""
    value = get(key)
    if value is None:
        return []
    text = value.strip()
    if text.startswith("["):
        try:
            items = _json.loads(text)
        except ValueError:
            items = text[1:-1].split(",")
        return [str(i).strip() for i in items if str(i).strip()]
    return [item.strip() for item in text.split(",") if item.strip()]
