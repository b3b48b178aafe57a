"""Stream management (XEP-0198) with slixmpp's xep_0198 plugin: a connection cut by a
TCP reset mid-conversation resumes with every message exactly once and in order; a
resumption after the timeout fails and the messages come from offline storage."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from harness.xmpp import DEFAULT_PLUGINS, WAIT

SM_PLUGINS = DEFAULT_PLUGINS + ("xep_0198",)


class Events:
    """One asyncio.Event per slixmpp event name, set when the event fires."""

    def __init__(self, client, *names: str):
        self.fired = {name: asyncio.Event() for name in names}
        for name, ev in self.fired.items():
            client.add_event_handler(name, lambda _data, ev=ev: ev.set())

    async def wait(self, name: str, timeout: float = WAIT) -> None:
        await asyncio.wait_for(self.fired[name].wait(), timeout)

    def clear(self, name: str) -> None:
        self.fired[name].clear()


def reset_connection(client) -> None:
    """Cut the client's TCP connection with a reset (no </stream>, no FIN)."""
    sock = client.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.transport.abort()


async def session_state(server, jid: str, timeout: float = 30.0):
    """Polls the sessions API until ``jid`` is listed detached; returns its entry."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        entry = next((s for s in server.sessions() if s["jid"] == jid), None)
        if entry is not None and entry["detached"]:
            return entry
        assert loop.time() < deadline, f"{jid} never detached: {entry}"
        await asyncio.sleep(0.1)


async def session_gone(server, jid: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(s["jid"] == jid for s in server.sessions()):
        assert loop.time() < deadline, f"{jid} still has a session"
        await asyncio.sleep(0.1)


async def bodies(client, n: int) -> list[str]:
    return [(await client.next_message())["body"] for _ in range(n)]


@pytest.mark.async_timeout(120)
async def test_reset_mid_conversation_resumes_with_every_message_once_in_order(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = xmpp.make("alice@localhost/phone", "pw", plugins=SM_PLUGINS)
    events = Events(alice, "sm_enabled", "session_resumed", "disconnected")
    await alice.start(*server.c2s_starttls)
    await events.wait("sm_enabled")
    assert alice.plugin["xep_0198"].sm_id, "the server offered resumption"
    alice.send_presence()
    bob = await xmpp.connect(server, "bob", "pw")

    for i in range(1, 6):
        bob.send_message(mto=alice.jid, mbody=f"m{i}", mtype="chat")
    assert await bodies(alice, 5) == [f"m{i}" for i in range(1, 6)]
    # Alice writes, and her network dies right after: slixmpp keeps what the server has
    # not acknowledged and sends it again after resuming.
    alice.send_message(mto=bob.jid, mbody="a1", mtype="chat")
    reset_connection(alice)
    await events.wait("disconnected")
    await session_state(server, alice.jid)
    for i in range(6, 11):
        bob.send_message(mto=alice.jid, mbody=f"m{i}", mtype="chat")
    await bob.get_roster()  # round trip: bob's messages are routed

    alice.connect(*server.c2s_starttls)
    await events.wait("session_resumed")
    assert await bodies(alice, 5) == [f"m{i}" for i in range(6, 11)]
    # Nothing twice, on either side.
    bob.send_message(mto=alice.jid, mbody="end", mtype="chat")
    assert (await alice.next_message())["body"] == "end"
    await alice.assert_no_message(within=1.0)
    assert [m["body"] for m in [await bob.next_message()]] == ["a1"]
    alice.send_message(mto=bob.jid, mbody="a2", mtype="chat")
    assert (await bob.next_message())["body"] == "a2"
    await bob.assert_no_message(within=1.0)
    assert not any(s["detached"] for s in server.sessions())


@pytest.mark.server_config({"c2s": {"resume_timeout": 1}})
@pytest.mark.async_timeout(120)
async def test_resumption_after_the_timeout_fails_and_messages_come_from_offline(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = xmpp.make("alice@localhost/phone", "pw", plugins=SM_PLUGINS)
    events = Events(alice, "sm_enabled", "sm_failed", "session_start", "disconnected")
    await alice.start(*server.c2s_starttls)
    await events.wait("sm_enabled")
    alice.send_presence()
    bob = await xmpp.connect(server, "bob", "pw")
    bob.send_message(mto=alice.jid, mbody="before", mtype="chat")
    assert (await alice.next_message())["body"] == "before"
    reset_connection(alice)
    await events.wait("disconnected")
    await session_state(server, alice.jid)
    bob.send_message(mto=alice.jid, mbody="while away 1", mtype="chat")
    bob.send_message(mto=alice.jid, mbody="while away 2", mtype="chat")
    await bob.get_roster()
    await session_gone(server, alice.jid)

    events.clear("session_start")
    alice.connect(*server.c2s_starttls)
    await events.wait("sm_failed")
    await events.wait("session_start")
    alice.send_presence()  # offline messages come after initial presence
    got = []
    try:
        while True:
            got.append(await alice.next_message(timeout=2.0 if len(got) >= 2 else WAIT))
    except asyncio.TimeoutError:
        pass
    # "before" reached the old connection but was never acknowledged: it comes again,
    # stamped with when it was first sent (unless the client had acknowledged it).
    # Nothing is lost, nothing comes twice.
    assert [m["body"] for m in got] in (
        ["before", "while away 1", "while away 2"],
        ["while away 1", "while away 2"],
    ), [str(m) for m in got]
    assert all(m["delay"]["stamp"] is not None for m in got), "stamped with when they came"
