#!/usr/bin/env python3
"""PEP fan-out benchmark: one owner publishes to a node that N subscribed contacts want
(presence subscription + NODE+notify in their XEP-0115 caps); measures notifications
delivered per second and the server's CPU per notification.

It starts its own server (the interop harness: ephemeral loopback ports, temporary data
dir), makes N contacts with a mutual subscription to the owner, waits until every
contact's caps are resolved (a first publish reaches all of them), then publishes
ITEMS items, WINDOW in flight at a time, and waits until every contact has every
notification. The server's CPU comes from /proc/PID/stat over that phase.

    HELIOGRAPH_BIN=path/to/heliograph \\
      ~/.cache/heliograph/venv-*/bin/python tests/load/pep_bench.py [CONTACTS] [ITEMS] [WINDOW]

The clients are slixmpp in one Python process, so the rate is bounded by the clients on a
small machine; the CPU per notification is the server's alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))

from harness.server import HeliographServer  # noqa: E402
from harness.xmpp import ClientPool  # noqa: E402
from test_pep import NICK, PUBSUB, befriend, pep_client  # noqa: E402

DEADLINE = 120.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counter:
    """Counts the notifications the clients get (in place of their event queues)."""

    def __init__(self, clients, expected: int):
        self.remaining = len(clients) * expected
        self.done = asyncio.Event()
        for c in clients:
            c.events.queue.put_nowait = self._one

    def _one(self, _msg) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()


async def publish_nowait(owner, i: int):
    iq = owner.Iq()
    iq["type"] = "set"
    iq.append(ET.fromstring(f"<pubsub xmlns='{PUBSUB}'><publish node='{NICK}'><item id='current'>"
                            f"<nick xmlns='{NICK}'>n{i}</nick></item></publish></pubsub>"))
    return await iq.send(timeout=DEADLINE)


async def main(contacts: int, items: int, window: int) -> dict:
    binary = os.environ.get("HELIOGRAPH_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "heliograph")
    server = HeliographServer(binary=binary, config_overrides={})
    server.start()
    pool = ClientPool()
    try:
        for u in ["owner"] + [f"c{i}" for i in range(contacts)]:
            server.create_user(u, "pw")
        owner = await pep_client(server, pool, "owner", [], resource="pub")
        clients = []
        for i in range(contacts):
            c = await pep_client(server, pool, f"c{i}", [NICK], resource="r")
            await befriend(owner, c)
            clients.append(c)
        # Warm-up: publish until every contact got one (its caps are resolved).
        seen: set[str] = set()
        warm = asyncio.Event()

        def saw(msg) -> None:
            seen.add(msg.get("to"))
            if len(seen) == len(clients):
                warm.set()
        for c in clients:
            c.events.queue.put_nowait = saw
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while not warm.is_set():
            assert loop.time() < deadline, f"{len(clients) - len(seen)} contacts never got a notification"
            await publish_nowait(owner, -1)
            try:
                await asyncio.wait_for(warm.wait(), 3.0)
            except asyncio.TimeoutError:
                pass
        counter = Counter(clients, items)
        pid = server.proc.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        sem = asyncio.Semaphore(window)

        async def one_publish(i):
            async with sem:
                await publish_nowait(owner, i)
        await asyncio.gather(*(one_publish(i) for i in range(items)))
        await asyncio.wait_for(counter.done.wait(), DEADLINE)
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        notifications = contacts * items
        return {
            "measurement": "pep_fanout",
            "contacts": contacts,
            "items": items,
            "window": window,
            "notifications": notifications,
            "seconds": round(elapsed, 3),
            "notifications_per_s": round(notifications / elapsed),
            "server_cpu_us_per_notification": round(cpu / notifications * 1e6, 2),
            "binary": binary,
        }
    finally:
        await pool.aclose()
        server.stop(check=False)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    contacts, items, window = (args + [100, 200, 8][len(args):])[:3]
    print(json.dumps(asyncio.run(main(contacts, items, window))))
