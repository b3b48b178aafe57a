#!/usr/bin/env python3
"""Round-trip time of a chat message from a slixmpp user to a component and back (a
benchmark, not a test): an external XEP-0114 component (slixmpp ComponentXMPP echoing
the body) and the Wasm echo-bot plugin, N sequential messages each. Prints one JSON line
with the median and p99 in milliseconds.

    CARGO_TARGET_DIR=... ~/.cache/heliograph/venv-*/bin/python tests/bench/component_rtt.py \
        $CARGO_TARGET_DIR/debug/heliograph 500

Needs the plugins built for wasm32-wasip2 ($CARGO_TARGET_DIR/plugins/...).
"""

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))

from harness.component import ComponentPool  # noqa: E402
from harness.server import HeliographServer  # noqa: E402
from harness.xmpp import ClientPool  # noqa: E402
from test_components import install_component  # noqa: E402


async def rtts(user, to: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        user.send_message(mto=to, mbody=f"m{i}", mtype="chat")
        await user.next_message(lambda m: m["body"].endswith(f"m{i}"), timeout=10)
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"median_ms": round(statistics.median(values), 2),
            "p99_ms": round(values[int(len(values) * 0.99) - 1], 2)}


async def run(server, n: int) -> dict:
    server.create_tenant("acme", ["acme.test"], components=[
        {"domains": ["ext.acme.test"], "secret": "s"},
        {"domains": ["echo.acme.test"], "plugin": "echo"}])
    install_component(server, "acme", "echo", "echo_bot")
    server.create_user("alice", "pw", domain="acme.test")
    clients, comps = ClientPool(), ComponentPool()
    try:
        ext = await comps.connect(server, "ext.acme.test", "s")
        ext.add_event_handler("message", lambda m: ext.send_message(
            mto=m["from"], mfrom=m["to"], mbody=m["body"], mtype="chat"))
        alice = await clients.connect(server, "alice@acme.test", "pw")
        await rtts(alice, "ext.acme.test", 20)  # warm-up
        ext_rtt = await rtts(alice, "ext.acme.test", n)
        await rtts(alice, "echo.acme.test", 20)
        wasm_rtt = await rtts(alice, "echo.acme.test", n)
        return {"messages": n, "external": summary(ext_rtt), "wasm_echo_bot": summary(wasm_rtt)}
    finally:
        await comps.aclose()
        await clients.aclose()


def main() -> None:
    binary, n = sys.argv[1], int(sys.argv[2])
    server = HeliographServer(binary=binary, config_overrides={"general": {"log_level": "warn"}})
    server.start()
    try:
        print(json.dumps(asyncio.run(run(server, n))))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
