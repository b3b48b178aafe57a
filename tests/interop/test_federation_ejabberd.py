"""Federation with a real ejabberd (Debian's package) on loopback: ejabberd hosts
``ejabberd.test`` (started by the test as an unprivileged user, with a config the test
writes: loopback ports picked free, its own spool and log, a self-signed certificate,
STARTTLS required, dialback), Heliograph gets a tenant ``heliograph.test`` added at
runtime with federation on. Heliograph reaches ejabberd through its static host map;
ejabberd, which resolves peers by DNS only, asks a DNS server the test runs on loopback
for Heliograph's SRV record (see harness/ejabberd.py and harness/dns.py). slixmpp users on both sides exchange
messages and pings, subscribe to each other's presence, and join each other's MUC rooms
(ejabberd's mod_muc at ``conference.ejabberd.test``, Heliograph's at
``conference.heliograph.test``).
"""

from __future__ import annotations

import pytest

from harness.ejabberd import Ejabberd, available
from harness.server import HeliographServer
from harness.waiting import wait_for
from harness.xmpp import DEFAULT_PLUGINS
from test_federation import groupchat, instant_room, subscribe_both_ways

EJABBERD = "ejabberd.test"
EJABBERD_MUC = "conference.ejabberd.test"
HELIO = "heliograph.test"
HELIO_MUC = "conference.heliograph.test"
MUC_PLUGINS = DEFAULT_PLUGINS + ("xep_0004", "xep_0045")

pytestmark = pytest.mark.skipif(not available(), reason="Debian's ejabberd is not installed")


@pytest.fixture
def federation(heliograph_bin):
    """(Heliograph, ejabberd), each knowing where the other's s2s listener is."""
    ejabberd = Ejabberd(EJABBERD)
    peer = f"127.0.0.1:{ejabberd.s2s_port}"
    helio = HeliographServer(binary=heliograph_bin, config_overrides={
        "listen": {"s2s": [{"address": "127.0.0.1:0"}]},
        "s2s": {"enabled": True, "hosts": {EJABBERD: peer, EJABBERD_MUC: peer}},
    })
    helio.start()
    try:
        ejabberd.add_user("eve", "pw-e")
        _, our_port = helio._listener("s2s", "starttls")
        ejabberd.start({HELIO: our_port, HELIO_MUC: our_port})
        try:
            yield helio, ejabberd
        finally:
            print(ejabberd.log_text()[-6000:])
            ejabberd.stop()
    finally:
        helio.stop(check=False)
        print(helio.log_tail())


def s2s_streams(helio) -> list[dict]:
    return helio.admin("GET", "/api/v1/s2s", expect=200)[1]["streams"]


@pytest.mark.async_timeout(180)
async def test_messages_pings_and_presence_with_ejabberd(federation, xmpp):
    helio, ejabberd = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="web", status="hana here")
    eve = xmpp.make(f"eve@{EJABBERD}/desk", "pw-e")
    await eve.start("127.0.0.1", ejabberd.c2s_port, timeout=30)
    await eve.get_roster(timeout=30)
    eve.send_presence(pstatus="eve here")

    # Heliograph -> ejabberd (our outgoing stream, ejabberd's dialback check back to us).
    hana.send_message(mto=f"eve@{EJABBERD}/desk", mbody="hello ejabberd", mtype="chat")
    got = await eve.next_message(timeout=60)
    assert got["body"] == "hello ejabberd"
    assert str(got["from"]) == f"hana@{HELIO}/web"

    # ejabberd -> Heliograph, over ejabberd's own outgoing stream.
    eve.send_message(mto=f"hana@{HELIO}/web", mbody="hello heliograph", mtype="chat")
    got = await hana.next_message(timeout=60)
    assert got["body"] == "hello heliograph"
    assert str(got["from"]) == f"eve@{EJABBERD}/desk"

    # Pings to the other server, both ways.
    assert await hana.plugin["xep_0199"].send_ping(EJABBERD, timeout=30) is not None
    assert await eve.plugin["xep_0199"].send_ping(HELIO, timeout=30) is not None

    streams = await wait_for(lambda: [s for s in s2s_streams(helio) if s["pairs"]],
                             what="s2s streams in the admin API")
    assert {s["direction"] for s in streams} == {"incoming", "outgoing"}, streams
    assert all(s["tls"] for s in streams), streams

    # Presence subscriptions both ways.
    await subscribe_both_ways(hana, eve)
    await eve.wait_roster_subscription(hana.bare, "both", timeout=30)
    await hana.presence_from(eve.bare, "available", status="eve here", timeout=30)
    await eve.presence_from(hana.bare, "available", status="hana here", timeout=30)

    # Logging out crosses as unavailable.
    await eve.stop()
    await hana.presence_from(eve.bare, "unavailable", timeout=30)


@pytest.mark.async_timeout(180)
async def test_users_join_each_others_rooms_with_ejabberd(federation, xmpp):
    helio, ejabberd = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="web", plugins=MUC_PLUGINS)
    eve = xmpp.make(f"eve@{EJABBERD}/desk", "pw-e", plugins=MUC_PLUGINS)
    await eve.start("127.0.0.1", ejabberd.c2s_port, timeout=30)
    eve.send_presence()

    # A room on ejabberd, joined by the Heliograph user.
    there = f"lounge@{EJABBERD_MUC}"
    await instant_room(eve, there, "Eve")
    await hana.plugin["xep_0045"].join_muc_wait(there, "Hana", maxstanzas=0, timeout=60)
    hana.send_message(mto=there, mbody="hi from heliograph", mtype="groupchat")
    await groupchat(eve, there, "Hana", "hi from heliograph", timeout=60)
    eve.send_message(mto=there, mbody="hi from ejabberd", mtype="groupchat")
    await groupchat(hana, there, "Eve", "hi from ejabberd", timeout=60)

    # A room on Heliograph, joined by the ejabberd user.
    here = f"den@{HELIO_MUC}"
    await instant_room(hana, here, "Hana")
    await eve.plugin["xep_0045"].join_muc_wait(here, "Eve", maxstanzas=0, timeout=60)
    eve.send_message(mto=here, mbody="visiting", mtype="groupchat")
    await groupchat(hana, here, "Eve", "visiting", timeout=60)
    hana.send_message(mto=here, mbody="welcome", mtype="groupchat")
    await groupchat(eve, here, "Hana", "welcome", timeout=60)
