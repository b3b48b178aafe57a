"""Client state indication (XEP-0352) with slixmpp's xep_0352 plugin: while the client is
inactive, presence updates and chat states wait (only the latest presence per contact is
kept) and come on <active/>; a message with a body or a call proposal brings everything
held before it at once; nothing is lost."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree as ET

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness.xmpp import DEFAULT_PLUGINS, WAIT

CSI_PLUGINS = DEFAULT_PLUGINS + ("xep_0352",)
CHAT_STATES = "http://jabber.org/protocol/chatstates"


class Arrivals:
    """Everything a client receives from one sender, in order, as short labels."""

    def __init__(self, client, sender: str):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sender = sender
        for kind in ("presence", "message"):
            client.register_handler(Callback(
                f"arrivals {kind}", MatchXPath(f"{{jabber:client}}{kind}"), self._on))

    def _on(self, stanza) -> None:
        if str(stanza["from"]).split("/")[0] != self.sender:
            return
        x = stanza.xml
        if x.tag.endswith("presence"):
            self.queue.put_nowait("presence:" + (x.findtext("{jabber:client}show") or "available"))
        elif x.find("{jabber:client}body") is not None:
            self.queue.put_nowait("body:" + x.findtext("{jabber:client}body"))
        elif (state := next((c for c in x if c.tag.startswith(f"{{{CHAT_STATES}}}")), None)) is not None:
            self.queue.put_nowait("state:" + state.tag.split("}")[1])
        elif x.find("{urn:xmpp:jingle-message:0}propose") is not None:
            self.queue.put_nowait("propose")

    async def take(self, n: int) -> list[str]:
        return [await asyncio.wait_for(self.queue.get(), WAIT) for _ in range(n)]

    async def assert_nothing(self, within: float = 1.0) -> None:
        try:
            got = await asyncio.wait_for(self.queue.get(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"an inactive client was sent {got}")


def directed_presence(client, to: str, show: str) -> None:
    client.send_presence(pto=to, pshow=show)


def chat_state(client, to: str, state: str) -> None:
    msg = client.make_message(mto=to, mtype="chat")
    msg.append(ET.fromstring(f"<{state} xmlns='{CHAT_STATES}'/>"))
    msg.send()


async def roundtrip(client) -> None:
    """A ping to the server answered: everything the client sent before is routed."""
    await client.plugin["xep_0199"].ping(jid=client.boundjid.domain, timeout=WAIT)


async def start_inactive(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = xmpp.make("alice@localhost/phone", "pw", plugins=CSI_PLUGINS)
    enabled = asyncio.Event()
    alice.add_event_handler("csi_enabled", lambda _: enabled.set())
    await alice.start(*server.c2s_starttls)
    await asyncio.wait_for(enabled.wait(), WAIT)
    alice.send_presence()
    bob = await xmpp.connect(server, "bob", "pw", resource="desk")
    arrivals = Arrivals(alice, "bob@localhost")
    alice.plugin["xep_0352"].send_inactive()
    await roundtrip(alice)
    return alice, bob, arrivals


async def test_inactive_client_gets_the_latest_presence_and_chat_states_on_active(server, xmpp):
    alice, bob, arrivals = await start_inactive(server, xmpp)
    directed_presence(bob, alice.jid, "away")
    chat_state(bob, alice.jid, "composing")
    directed_presence(bob, alice.jid, "dnd")
    chat_state(bob, alice.jid, "paused")
    await roundtrip(bob)
    await arrivals.assert_nothing(within=1.0)

    alice.plugin["xep_0352"].send_active()
    # The superseded 'away' is gone; the rest in order.
    assert await arrivals.take(3) == ["state:composing", "presence:dnd", "state:paused"]
    # Active again: things arrive at once.
    directed_presence(bob, alice.jid, "chat")
    assert await arrivals.take(1) == ["presence:chat"]


async def test_a_message_or_a_call_brings_what_was_held_at_once(server, xmpp):
    alice, bob, arrivals = await start_inactive(server, xmpp)
    directed_presence(bob, alice.jid, "away")
    chat_state(bob, alice.jid, "composing")
    bob.send_message(mto=alice.jid, mbody="hello", mtype="chat")
    assert await arrivals.take(3) == ["presence:away", "state:composing", "body:hello"]

    # Still inactive: held again, until a call proposal rings.
    directed_presence(bob, alice.jid, "dnd")
    await roundtrip(bob)
    await arrivals.assert_nothing(within=0.5)
    propose = bob.make_message(mto=alice.jid, mtype="chat")
    propose.append(ET.fromstring(
        "<propose xmlns='urn:xmpp:jingle-message:0' id='c1'>"
        "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>"))
    propose.send()
    assert await arrivals.take(2) == ["presence:dnd", "propose"]


async def test_csi_toggling_fast_loses_nothing(server, xmpp):
    alice, bob, arrivals = await start_inactive(server, xmpp)
    for i in range(200):
        alice.plugin["xep_0352"].send_active()
        alice.plugin["xep_0352"].send_inactive()
        chat_state(bob, alice.jid, "composing" if i % 2 else "paused")
    alice.plugin["xep_0352"].send_active()
    await roundtrip(alice)
    got = await arrivals.take(200)
    assert got == ["state:" + ("composing" if i % 2 else "paused") for i in range(200)]
