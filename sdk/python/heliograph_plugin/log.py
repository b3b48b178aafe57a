"""Structured logging into the server's log: ``log.info("login", user="alice")``. The
server adds the tenant, plugin slot and version to every line; at most 64 lines per call
are kept."""

from __future__ import annotations

from enum import IntEnum

from ._backend import backend


class Level(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


def log(level: Level, message: str, **fields: object) -> None:
    """Writes one line with key/value fields (values are turned into text)."""
    backend().log(level, message, [(k, str(v)) for k, v in fields.items()])


def trace(message: str, **fields: object) -> None:
    log(Level.TRACE, message, **fields)


def debug(message: str, **fields: object) -> None:
    log(Level.DEBUG, message, **fields)


def info(message: str, **fields: object) -> None:
    log(Level.INFO, message, **fields)


def warn(message: str, **fields: object) -> None:
    log(Level.WARN, message, **fields)


def error(message: str, **fields: object) -> None:
    log(Level.ERROR, message, **fields)
