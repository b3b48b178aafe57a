"""Federation with a real Prosody (Debian's package) on loopback: Prosody hosts
``prosody.test``, Heliograph gets a tenant ``heliograph.test`` added at runtime through
the admin API with federation on; slixmpp users on both sides exchange messages and iq
over s2s (STARTTLS + dialback both ways), and disabling the tenant ends its s2s streams.
"""

from __future__ import annotations

import asyncio

import pytest

from harness.prosody import Prosody, free_port
from harness.server import HeliographServer
from harness.waiting import wait_for
from harness.xmpp import DEFAULT_PLUGINS

PROSODY = "prosody.test"
PROSODY_MUC = "conference.prosody.test"
HELIO = "heliograph.test"
HELIO_MUC = "conference.heliograph.test"
MUC_PLUGINS = DEFAULT_PLUGINS + ("xep_0004", "xep_0045")


@pytest.fixture
def federation(heliograph_bin):
    """(Heliograph, Prosody), each knowing where the other's s2s listener is."""
    prosody = Prosody(PROSODY, muc=PROSODY_MUC)
    peer = f"127.0.0.1:{prosody.s2s_port}"
    helio = HeliographServer(binary=heliograph_bin, config_overrides={
        "listen": {"s2s": [{"address": "127.0.0.1:0"}]},
        "s2s": {"enabled": True, "hosts": {PROSODY: peer, PROSODY_MUC: peer}},
    })
    helio.start()
    try:
        prosody.add_user("pat", "pw-p")
        ours = helio._listener("s2s", "starttls")
        prosody.start({HELIO: ours, HELIO_MUC: ours})
        try:
            yield helio, prosody
        finally:
            print(prosody.log_text()[-6000:])
            prosody.stop()
    finally:
        helio.stop(check=False)
        print(helio.log_tail())


def s2s_streams(helio) -> list[dict]:
    return helio.admin("GET", "/api/v1/s2s", expect=200)[1]["streams"]


@pytest.mark.async_timeout(120)
async def test_runtime_tenant_chats_with_prosody_and_its_streams_end_when_disabled(federation, xmpp):
    helio, prosody = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="web")
    pat = xmpp.make(f"pat@{PROSODY}/desk", "pw-p")
    await pat.start("127.0.0.1", prosody.c2s_port)
    pat.send_presence()

    # Heliograph -> Prosody: the first message opens the stream (dialback, STARTTLS).
    loop = asyncio.get_running_loop()
    started = loop.time()
    hana.send_message(mto=f"pat@{PROSODY}", mbody="hello prosody", mtype="chat")
    got = await pat.next_message(timeout=30)
    assert got["body"] == "hello prosody"
    assert str(got["from"]) == f"hana@{HELIO}/web"
    first_delivery = loop.time() - started

    # Prosody -> Heliograph, over Prosody's own outgoing stream.
    pat.send_message(mto=f"hana@{HELIO}/web", mbody="hello heliograph", mtype="chat")
    got = await hana.next_message(timeout=30)
    assert got["body"] == "hello heliograph"
    assert str(got["from"]) == f"pat@{PROSODY}/desk"

    # iq across: a ping to the other server is answered.
    reply = await hana.plugin["xep_0199"].send_ping(PROSODY, timeout=30)
    assert reply is not None

    streams = await wait_for(lambda: [s for s in s2s_streams(helio) if s["pairs"]],
                             what="s2s streams in the admin API")
    directions = {s["direction"] for s in streams}
    assert directions == {"incoming", "outgoing"}, streams
    assert all(s["tls"] for s in streams), streams
    print(f"first federated delivery (stream set-up included): {first_delivery:.3f}s")
    assert first_delivery < 1.0, f"a runtime tenant federated in {first_delivery:.3f}s"

    # Disabling the tenant ends its s2s streams.
    helio.admin("POST", "/api/v1/tenants/fed/disable", expect=(200, 204))
    await wait_for(lambda: not s2s_streams(helio), what="s2s streams to end")


async def groupchat(client, room: str, nick: str, body: str, timeout: float = 30):
    return await client.messages.take(
        lambda m: m["type"] == "groupchat" and str(m["from"]) == f"{room}/{nick}"
        and m["body"] == body, timeout, f"groupchat {body!r} from {nick}")


async def instant_room(client, room: str, nick: str):
    """Join (creating) `room` and submit an empty configuration form (instant room)."""
    await client.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0, timeout=30)
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    await client.plugin["xep_0045"].set_room_config(room, form, timeout=30)


@pytest.mark.async_timeout(120)
async def test_users_join_each_others_rooms_across_federation(federation, xmpp):
    helio, prosody = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="web", plugins=MUC_PLUGINS)
    pat = xmpp.make(f"pat@{PROSODY}/desk", "pw-p", plugins=MUC_PLUGINS)
    await pat.start("127.0.0.1", prosody.c2s_port)
    pat.send_presence()

    # A room on Prosody, joined by the Heliograph user.
    there = f"lounge@{PROSODY_MUC}"
    await instant_room(pat, there, "Pat")
    await hana.plugin["xep_0045"].join_muc_wait(there, "Hana", maxstanzas=0, timeout=30)
    hana.send_message(mto=there, mbody="hi from heliograph", mtype="groupchat")
    await groupchat(pat, there, "Hana", "hi from heliograph")
    pat.send_message(mto=there, mbody="hi from prosody", mtype="groupchat")
    await groupchat(hana, there, "Pat", "hi from prosody")

    # A room on Heliograph, joined by the Prosody user.
    here = f"den@{HELIO_MUC}"
    await instant_room(hana, here, "Hana")
    await pat.plugin["xep_0045"].join_muc_wait(here, "Pat", maxstanzas=0, timeout=30)
    pat.send_message(mto=here, mbody="visiting", mtype="groupchat")
    await groupchat(hana, here, "Pat", "visiting")
    hana.send_message(mto=here, mbody="welcome", mtype="groupchat")
    await groupchat(pat, here, "Hana", "welcome")
