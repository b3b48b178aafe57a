"""Message carbons (XEP-0280) with slixmpp's xep_0280 plugin: a user's other devices get
what one sends and what reaches another; private and no-copy messages stay where they
are; a XEP-0353 call proposal rings every device, and the answer stops the others."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree as ET

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness.xmpp import DEFAULT_PLUGINS, WAIT

CARBON_PLUGINS = DEFAULT_PLUGINS + ("xep_0280",)
JMI = "urn:xmpp:jingle-message:0"


class Carbons:
    """Collects a client's <sent/> and <received/> carbons, by kind."""

    def __init__(self, client):
        self.sent: asyncio.Queue = asyncio.Queue()
        self.received: asyncio.Queue = asyncio.Queue()
        client.add_event_handler("carbon_sent", self.sent.put_nowait)
        client.add_event_handler("carbon_received", self.received.put_nowait)

    @staticmethod
    async def next(queue: asyncio.Queue, timeout: float = WAIT):
        return await asyncio.wait_for(queue.get(), timeout)


def on_jmi(client, kind: str, queue: asyncio.Queue) -> None:
    """Puts every message carrying a XEP-0353 ``kind`` element (not a carbon) in ``queue``."""
    client.register_handler(Callback(
        f"jmi {kind}", MatchXPath(f"{{jabber:client}}message/{{{JMI}}}{kind}"), queue.put_nowait))


async def device(server, xmpp, user: str, resource: str, *, enable: bool = True):
    client = await xmpp.connect(server, user, "pw", resource=resource, plugins=CARBON_PLUGINS)
    carbons = Carbons(client)
    if enable:
        await client.plugin["xep_0280"].enable()
    return client, carbons


async def test_sent_and_received_copies_reach_the_other_enabled_devices(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    phone, phone_c = await device(server, xmpp, "alice", "phone")
    laptop, laptop_c = await device(server, xmpp, "alice", "laptop")
    legacy, legacy_c = await device(server, xmpp, "alice", "legacy", enable=False)
    bob = await xmpp.connect(server, "bob", "pw", resource="desk")

    # Bob writes to alice's phone: the laptop gets a <received/> copy, the legacy client
    # (carbons not enabled) nothing.
    bob.send_message(mto=phone.jid, mbody="to the phone", mtype="chat")
    assert (await phone.next_message())["body"] == "to the phone"
    carbon = await Carbons.next(laptop_c.received)
    fwd = carbon["carbon_received"]
    assert fwd["body"] == "to the phone"
    assert str(fwd["from"]) == bob.jid and str(fwd["to"]) == phone.jid
    assert str(carbon["from"]) == "alice@localhost", "carbons come from the user's bare JID"

    # The phone answers: the laptop gets a <sent/> copy, the phone none of its own.
    phone.send_message(mto=bob.jid, mbody="from the phone", mtype="chat")
    assert (await bob.next_message())["body"] == "from the phone"
    sent = (await Carbons.next(laptop_c.sent))["carbon_sent"]
    assert sent["body"] == "from the phone" and str(sent["to"]) == bob.jid

    # <private/> and the no-copy hint stay on their way.
    for hint in ("<private xmlns='urn:xmpp:carbons:2'/>", "<no-copy xmlns='urn:xmpp:hints'/>"):
        msg = phone.make_message(mto=bob.jid, mbody=f"secret {hint[1:8]}", mtype="chat")
        msg.append(ET.fromstring(hint))
        msg.send()
        assert (await bob.next_message())["body"].startswith("secret")
    # A groupchat-typed or headline message is never copied; a normal one with a body is.
    bob.send_message(mto=phone.jid, mbody="headline", mtype="headline")
    bob.send_message(mto=phone.jid, mbody="normal", mtype="normal")
    assert (await phone.next_message(lambda m: m["body"] == "normal"))["body"] == "normal"
    carbon = await Carbons.next(laptop_c.received)
    assert carbon["carbon_received"]["body"] == "normal", "only the normal message was copied"
    assert laptop_c.sent.empty() and laptop_c.received.empty()
    assert legacy_c.sent.empty() and legacy_c.received.empty()
    await legacy.assert_no_message(within=0.5)

    # Disabled: no more copies.
    await laptop.plugin["xep_0280"].disable()
    phone.send_message(mto=bob.jid, mbody="after disable", mtype="chat")
    assert (await bob.next_message())["body"] == "after disable"
    # The copy would have been queued for the laptop before this direct message.
    phone.send_message(mto=laptop.jid, mbody="marker", mtype="chat")
    assert (await laptop.next_message())["body"] == "marker"
    assert laptop_c.sent.empty() and laptop_c.received.empty()


async def test_server_advertises_carbons(server, xmpp):
    server.create_user("alice", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    info = await alice.plugin["xep_0030"].get_info(jid="localhost")
    assert "urn:xmpp:carbons:2" in info["disco_info"]["features"]


@pytest.mark.async_timeout(90)
async def test_call_proposal_rings_every_device_and_the_answer_stops_the_others(server, xmpp):
    """XEP-0353: a propose to the callee's bare JID reaches both of its devices; one
    accepts with <proceed/>, and the other device sees that answer as a <sent/> carbon."""
    server.create_user("caller", "pw")
    server.create_user("callee", "pw")
    caller = await xmpp.connect(server, "caller", "pw", resource="app")
    phone, phone_c = await device(server, xmpp, "callee", "phone")
    tablet, tablet_c = await device(server, xmpp, "callee", "tablet")

    proposals = {phone.jid: asyncio.Queue(), tablet.jid: asyncio.Queue()}
    for c in (phone, tablet):
        on_jmi(c, "propose", proposals[c.jid])

    def jmi(client, to: str, kind: str, sid: str, media: bool = False):
        msg = client.make_message(mto=to, mtype="chat")
        inner = "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/>" if media else ""
        msg.append(ET.fromstring(f"<{kind} xmlns='{JMI}' id='{sid}'>{inner}</{kind}>"))
        msg.send()

    jmi(caller, "callee@localhost", "propose", "call-1", media=True)
    for jid, q in proposals.items():
        got = await asyncio.wait_for(q.get(), WAIT)
        assert got.xml.find(f"{{{JMI}}}propose").get("id") == "call-1", jid

    # The phone picks up: the caller gets <proceed/>, the tablet a <sent/> carbon of it.
    proceeds: asyncio.Queue = asyncio.Queue()
    on_jmi(caller, "proceed", proceeds)
    jmi(phone, caller.jid, "proceed", "call-1")
    got = await asyncio.wait_for(proceeds.get(), WAIT)
    assert str(got["from"]) == phone.jid
    carbon = await Carbons.next(tablet_c.sent)
    assert carbon.xml.find(f".//{{{JMI}}}proceed") is not None, "the tablet stops ringing"
    assert phone_c.sent.empty()
