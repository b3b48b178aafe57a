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


async def subscribe_both_ways(first, second, timeout: float = 30):
    """RFC 6121 mutual subscription across servers: `first` asks, `second` approves and
    asks back, `first` approves; returns once every step reached the other side and
    `first`'s roster says `both`."""
    first.send_presence(pto=second.bare, ptype="subscribe")
    await second.presence_from(first.bare, "subscribe", timeout=timeout)
    second.send_presence(pto=first.bare, ptype="subscribed")
    second.send_presence(pto=first.bare, ptype="subscribe")
    await first.presence_from(second.bare, "subscribed", timeout=timeout)
    await first.presence_from(second.bare, "subscribe", timeout=timeout)
    first.send_presence(pto=second.bare, ptype="subscribed")
    await second.presence_from(first.bare, "subscribed", timeout=timeout)
    await first.wait_roster_subscription(second.bare, "both", timeout=timeout)


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


@pytest.mark.async_timeout(180)
async def test_presence_subscriptions_both_ways_with_prosody(federation, xmpp):
    """RFC 6121 across servers: each server keeps its own user's side of the
    subscription; probes on login, broadcasts and unavailable on logout cross s2s."""
    helio, prosody = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="web", status="hana here")
    pat = xmpp.make(f"pat@{PROSODY}/desk", "pw-p")
    await pat.start("127.0.0.1", prosody.c2s_port)
    await pat.get_roster(timeout=30)
    pat.send_presence(pstatus="pat here")

    # hana -> pat: subscribe; pat approves and asks back; hana approves.
    await subscribe_both_ways(hana, pat)

    # Both rosters, as each server stores them.
    await pat.wait_roster_subscription(hana.bare, "both", timeout=30)

    # Once approved, each side got the other's current presence.
    await hana.presence_from(pat.bare, "available", status="pat here", timeout=30)
    await pat.presence_from(hana.bare, "available", status="hana here", timeout=30)

    # Broadcasts cross, both ways.
    hana.send_presence(pstatus="hana busy", pshow="dnd")
    p = await pat.presence_from(hana.bare, "available", status="hana busy", timeout=30)
    assert p["show"] == "dnd"
    assert p["from"].full == hana.jid
    pat.send_presence(pstatus="pat away", pshow="away")
    p = await hana.presence_from(pat.bare, "available", status="pat away", timeout=30)
    assert p["show"] == "away"

    # Logging out is broadcast as unavailable, both ways.
    await hana.stop()
    await pat.presence_from(hana.bare, "unavailable", timeout=30)

    # Logging in again probes the contact: Prosody answers with pat's presence, and
    # hana's initial presence reaches pat.
    hana2 = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="phone", status="back")
    await hana2.presence_from(pat.bare, "available", status="pat away", timeout=30)
    await pat.presence_from(hana.bare, "available", status="back", timeout=30)

    # pat logs in on a second device: Prosody probes hana, Heliograph answers.
    pat2 = xmpp.make(f"pat@{PROSODY}/laptop", "pw-p")
    await pat2.start("127.0.0.1", prosody.c2s_port)
    await pat2.get_roster(timeout=30)
    pat2.send_presence(pstatus="pat laptop")
    await pat2.presence_from(hana.bare, "available", status="back", timeout=30)

    await pat.stop()
    await pat2.stop()
    await hana2.presence_from(pat.bare, "unavailable", timeout=30)


@pytest.mark.async_timeout(180)
async def test_unsubscribing_a_prosody_contact_ends_presence_both_ways(federation, xmpp):
    helio, prosody = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="web", status="hana here")
    pat = xmpp.make(f"pat@{PROSODY}/desk", "pw-p")
    await pat.start("127.0.0.1", prosody.c2s_port)
    await pat.get_roster(timeout=30)
    pat.send_presence(pstatus="pat here")

    # pat -> hana: subscribe, hana approves: pat sees hana (to/from).
    pat.send_presence(pto=hana.bare, ptype="subscribe")
    await hana.presence_from(pat.bare, "subscribe", timeout=30)
    hana.send_presence(pto=pat.bare, ptype="subscribed")
    await pat.presence_from(hana.bare, "available", status="hana here", timeout=30)
    await hana.wait_roster_subscription(pat.bare, "from", timeout=30)
    await pat.wait_roster_subscription(hana.bare, "to", timeout=30)

    # hana revokes it: pat gets unavailable and both rosters say none.
    hana.send_presence(pto=pat.bare, ptype="unsubscribed")
    await pat.presence_from(hana.bare, "unavailable", timeout=30)
    await pat.wait_roster_subscription(hana.bare, "none", timeout=30)
    await hana.wait_roster_subscription(pat.bare, "none", timeout=30)


@pytest.mark.async_timeout(180)
async def test_carbons_and_archive_cover_messages_with_a_prosody_user(federation, xmpp):
    """A message from Prosody is carbon-copied to the user's other device and archived;
    one sent to Prosody is archived and carbon-copied as <sent/>."""
    from test_carbons import CARBON_PLUGINS, Carbons
    from test_mam import mam_query

    helio, prosody = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    phone = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="phone",
                               plugins=CARBON_PLUGINS)
    laptop = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="laptop",
                                plugins=CARBON_PLUGINS)
    laptop_c = Carbons(laptop)
    await phone.plugin["xep_0280"].enable()
    await laptop.plugin["xep_0280"].enable()
    pat = xmpp.make(f"pat@{PROSODY}/desk", "pw-p")
    await pat.start("127.0.0.1", prosody.c2s_port)
    pat.send_presence()

    # Prosody -> the phone: the laptop gets a <received/> copy.
    pat.send_message(mto=phone.jid, mbody="to the phone", mtype="chat")
    assert (await phone.next_message(timeout=30))["body"] == "to the phone"
    carbon = await Carbons.next(laptop_c.received, timeout=30)
    fwd = carbon["carbon_received"]
    assert fwd["body"] == "to the phone"
    assert str(fwd["from"]) == f"pat@{PROSODY}/desk"

    # The phone -> Prosody: the laptop gets a <sent/> copy.
    phone.send_message(mto=f"pat@{PROSODY}/desk", mbody="to prosody", mtype="chat")
    assert (await pat.next_message(timeout=30))["body"] == "to prosody"
    carbon = await Carbons.next(laptop_c.sent, timeout=30)
    fwd = carbon["carbon_sent"]
    assert fwd["body"] == "to prosody"
    assert str(fwd["to"]) == f"pat@{PROSODY}/desk"

    # Both are in hana's archive, with pat (a query waits for what is being written).
    results, _ = await mam_query(phone, fields={"with": f"pat@{PROSODY}"})
    assert [r.body for r in results] == ["to the phone", "to prosody"], results


@pytest.mark.async_timeout(180)
async def test_pep_notifications_from_a_prosody_contact_reach_the_local_user(federation, xmpp):
    """Prosody's PEP (mod_pep) asks the local resource for its caps over s2s and sends
    it the contact's events (XEP-0163 with +notify)."""
    from test_pep import EVENT, NICK, PEP_PLUGINS, PUBSUB, Events
    from xml.etree import ElementTree as ET

    helio, prosody = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = xmpp.make(f"hana@{HELIO}/web", "pw-h", plugins=PEP_PLUGINS)
    hana.events = Events(hana)
    await hana.start(*helio.c2s_starttls)
    await hana.get_roster(timeout=30)
    hana.plugin["xep_0030"].add_feature(f"{NICK}+notify")
    await hana.plugin["xep_0115"].update_caps(hana.boundjid.full, broadcast=False)
    hana.send_presence()
    pat = xmpp.make(f"pat@{PROSODY}/desk", "pw-p")
    await pat.start("127.0.0.1", prosody.c2s_port)
    await pat.get_roster(timeout=30)
    pat.send_presence()

    # Mutual subscription: Prosody learns hana's caps from the presence she sends pat.
    await subscribe_both_ways(hana, pat)
    await pat.presence_from(hana.bare, "available", timeout=30)

    iq = pat.Iq()
    iq["type"] = "set"
    iq.append(ET.fromstring(
        f"<pubsub xmlns='{PUBSUB}'><publish node='{NICK}'><item id='current'>"
        f"<nick xmlns='{NICK}'>Pat from Prosody</nick></item></publish></pubsub>"))
    await iq.send(timeout=30)

    msg, items = await hana.events.next(NICK, timeout=30)
    assert msg.get("from") == pat.bare, ET.tostring(msg)
    nick = items.find(f"{{{EVENT}}}item/{{{NICK}}}nick")
    assert nick is not None and nick.text == "Pat from Prosody", ET.tostring(msg)


@pytest.mark.async_timeout(180)
async def test_pep_notifications_of_a_local_user_reach_a_prosody_contact(federation, xmpp):
    """Our PEP sends a local owner's events to the remote contact's resources whose caps
    (asked over s2s when their presence came) carry +notify."""
    from test_pep import EVENT, NICK, PEP_PLUGINS, PUBSUB, Events
    from xml.etree import ElementTree as ET

    helio, prosody = federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="web", plugins=PEP_PLUGINS)
    pat = xmpp.make(f"pat@{PROSODY}/desk", "pw-p", plugins=PEP_PLUGINS)
    pat.events = Events(pat)
    await pat.start("127.0.0.1", prosody.c2s_port)
    await pat.get_roster(timeout=30)
    pat.plugin["xep_0030"].add_feature(f"{NICK}+notify")
    await pat.plugin["xep_0115"].update_caps(pat.boundjid.full, broadcast=False)
    pat.send_presence()

    # Mutual subscription: pat's presence (with caps) comes to Heliograph.
    await subscribe_both_ways(pat, hana)
    await hana.wait_roster_subscription(pat.bare, "both", timeout=30)
    await hana.presence_from(pat.bare, "available", timeout=30)

    # pat's caps are asked for in the background once its presence arrives: publish
    # until an event comes (each publish replaces the item), within a deadline.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    n = 0
    while True:
        n += 1
        iq = hana.Iq()
        iq["type"] = "set"
        iq.append(ET.fromstring(
            f"<pubsub xmlns='{PUBSUB}'><publish node='{NICK}'><item id='current'>"
            f"<nick xmlns='{NICK}'>Hana {n}</nick></item></publish></pubsub>"))
        await iq.send(timeout=30)
        try:
            msg, items = await pat.events.next(NICK, timeout=1)
            break
        except asyncio.TimeoutError:
            assert loop.time() < deadline, "no PEP event reached the Prosody contact"
    assert msg.get("from") == hana.bare, ET.tostring(msg)
    nick = items.find(f"{{{EVENT}}}item/{{{NICK}}}nick")
    assert nick is not None and nick.text.startswith("Hana "), ET.tostring(msg)

    # pat's second device comes online wanting nicknames: it gets hana's last one.
    laptop = xmpp.make(f"pat@{PROSODY}/laptop", "pw-p", plugins=PEP_PLUGINS)
    laptop.events = Events(laptop)
    await laptop.start("127.0.0.1", prosody.c2s_port)
    laptop.plugin["xep_0030"].add_feature(f"{NICK}+notify")
    await laptop.plugin["xep_0115"].update_caps(laptop.boundjid.full, broadcast=False)
    laptop.send_presence()
    msg, items = await laptop.events.next(NICK, timeout=30)
    assert msg.get("from") == hana.bare, ET.tostring(msg)
    assert items.find(f"{{{EVENT}}}item/{{{NICK}}}nick").text == nick.text, ET.tostring(msg)
