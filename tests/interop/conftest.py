"""Fixtures for the interop suite: a real Heliograph process, real slixmpp clients.

Writing a test (see test_c2s.py for many examples)::

    async def test_x(server, xmpp):                # async tests just work
        server.create_user("alice", "pw")
        alice = await xmpp.connect(server, "alice", "pw")
        ...

    @pytest.mark.server_config({"general": {"max_stanza_size": 4096}})
    def test_y(server): ...                        # per-test config overrides

    @pytest.mark.async_timeout(120)                # default 60 s per async test
    async def test_slow(server, xmpp): ...

Fixtures:
  server         a fresh server (own temp dir / data dir) for this test
  module_server  one server shared by a module's tests; use server.new_user()
                 for unique names. Takes no server_config marker.
  xmpp           a ClientPool: ``await xmpp.connect(server, user, pw, ...)``;
                 all its clients are disconnected when the test ends.
  components     a ComponentPool of XEP-0114 components (harness/component.py):
                 ``await components.connect(server, domain, secret)``.

The binary comes from $HELIOGRAPH_BIN (tests/run.sh sets it), else
$CARGO_TARGET_DIR/debug/heliograph, else <repo>/target/debug/heliograph.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
from pathlib import Path

import pytest

from harness.server import HeliographServer
from harness.component import ComponentPool
from harness.xmpp import ClientPool

DEFAULT_ASYNC_TIMEOUT = 60.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def _find_binary() -> str:
    candidates = []
    if os.environ.get("HELIOGRAPH_BIN"):
        candidates.append(Path(os.environ["HELIOGRAPH_BIN"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "heliograph")
    candidates.append(REPO_ROOT / "target" / "debug" / "heliograph")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    # Fail (not skip): a suite that silently skips everything tests nothing.
    pytest.fail("heliograph binary not found; build it (cargo build -p heliograph) and set "
                f"HELIOGRAPH_BIN. Looked at: {', '.join(map(str, candidates))}", pytrace=False)


@pytest.fixture(scope="session")
def heliograph_bin() -> str:
    return _find_binary()


def _run_server(binary: str, overrides: dict):
    srv = HeliographServer(binary=binary, config_overrides=overrides)
    srv.start()
    try:
        yield srv
    finally:
        try:
            srv.stop(check=True)
        finally:
            # pytest shows captured output only for failing tests, so this is
            # free when things pass and the first thing to read when not.
            print(srv.log_tail())
        # Reached only after a clean stop: a failed one leaves the temp dir
        # (config, data, full log) for inspection. HELIOGRAPH_KEEP_TMP=1 keeps all.
        if not os.environ.get("HELIOGRAPH_KEEP_TMP"):
            shutil.rmtree(srv.workdir, ignore_errors=True)
            srv.remove_storage()


@pytest.fixture
def server(heliograph_bin, request):
    marker = request.node.get_closest_marker("server_config")
    overrides = marker.args[0] if marker else {}
    yield from _run_server(heliograph_bin, overrides)


@pytest.fixture(scope="module")
def module_server(heliograph_bin):
    yield from _run_server(heliograph_bin, {})


@pytest.fixture
def xmpp() -> ClientPool:
    # Closed by pytest_pyfunc_call below, on the test's own event loop.
    return ClientPool()


@pytest.fixture
def components() -> ComponentPool:
    # XEP-0114 components (harness/component.py); closed like ``xmpp``.
    return ComponentPool()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """Run ``async def`` tests on a fresh event loop, bounded in time.

    A tiny stand-in for pytest-asyncio: one loop per test, the test coroutine
    wrapped in asyncio.wait_for, and the ``xmpp`` pool closed on that same loop
    afterwards whatever happened.
    """
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    marker = pyfuncitem.get_closest_marker("async_timeout")
    timeout = float(marker.args[0]) if marker else DEFAULT_ASYNC_TIMEOUT
    pool = kwargs.get("xmpp")
    comps = kwargs.get("components")

    async def main():
        try:
            await asyncio.wait_for(func(**kwargs), timeout)
        except asyncio.TimeoutError as err:
            # Keep the inner message (which wait timed out) when there is one.
            raise AssertionError(str(err) or f"test exceeded {timeout:.0f}s") from err
        finally:
            if isinstance(comps, ComponentPool):
                await comps.aclose()
            if isinstance(pool, ClientPool):
                await pool.aclose()

    asyncio.run(main())
    return True
