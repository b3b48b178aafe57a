"""Profiles and account management with slixmpp's own plugins: vCard-temp (XEP-0054) with
the photo hash in presence (XEP-0153), private XML storage (XEP-0049), last activity
(XEP-0012), password change and account removal (XEP-0077), and the tenant admins'
ad-hoc commands (XEP-0050). Each bad input gets its error and leaves what was stored
as it was."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase, register_stanza_plugin
from slixmpp.plugins.xep_0049 import PrivateXML

from harness.xmpp import DEFAULT_PLUGINS, WAIT, LoginFailed

VCARD_UPDATE = "vcard-temp:x:update"
PROFILE_PLUGINS = DEFAULT_PLUGINS + ("xep_0054", "xep_0049", "xep_0012", "xep_0077", "xep_0050", "xep_0004")
# A few bytes standing in for an image: the hash is of whatever bytes BINVAL holds.
PHOTO = bytes(range(256)) * 4


class Prefs(ElementBase):
    """A client's own private-storage payload."""
    name = "prefs"
    namespace = "urn:example:prefs"
    plugin_attrib = "prefs"
    interfaces = {"theme"}
    sub_interfaces = {"theme"}


register_stanza_plugin(PrivateXML, Prefs)


async def connect(server, xmpp, user: str, password: str = "pw", domain: str | None = None, **kw):
    """Creates ``user`` (at ``domain``, default localhost) and logs it in with the profile plugins."""
    jid = server.create_user(user, password, domain=domain)
    return await xmpp.connect(server, jid, password, plugins=PROFILE_PLUGINS, **kw)


async def befriend(a, b) -> None:
    """A mutual presence subscription between two connected clients."""
    a.send_presence(pto=b.bare, ptype="subscribe")
    await b.presence_from(a.bare, "subscribe")
    b.send_presence(pto=a.bare, ptype="subscribed")
    b.send_presence(pto=a.bare, ptype="subscribe")
    await a.presence_from(b.bare, "subscribe")
    a.send_presence(pto=b.bare, ptype="subscribed")
    await a.wait_roster_subscription(b.bare, "both")
    await b.wait_roster_subscription(a.bare, "both")


def error_condition(err: IqError) -> str:
    return err.iq["error"]["condition"]


# --- XEP-0054 / XEP-0153 ---------------------------------------------------------------

async def test_vcard_round_trip_and_photo_hash_in_presence(server, xmpp):
    alice = await connect(server, xmpp, "alice")
    bob = await connect(server, xmpp, "bob")
    await befriend(alice, bob)

    card = alice.plugin["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    card["NICKNAME"] = "alice"
    card["PHOTO"]["TYPE"] = "image/png"
    card["PHOTO"]["BINVAL"] = PHOTO
    await alice.plugin["xep_0054"].publish_vcard(card)

    # Bob reads it back from the server, byte for byte.
    got = await bob.plugin["xep_0054"].get_vcard(alice.bare, cached=False)
    assert got["vcard_temp"]["FN"] == "Alice Liddell"
    assert got["vcard_temp"]["PHOTO"]["BINVAL"] == PHOTO

    # Alice's next broadcast (she adds nothing) carries the SHA-1 of the photo.
    alice.send_presence(pstatus="with avatar")
    p = await bob.presence_from(alice.bare, "available", status="with avatar")
    photo = p.xml.find(f"{{{VCARD_UPDATE}}}x/{{{VCARD_UPDATE}}}photo")
    assert photo is not None, ET.tostring(p.xml)
    assert photo.text == hashlib.sha1(PHOTO).hexdigest()

    # A client that sets its own <x/> keeps it as it is.
    pres = alice.make_presence(pstatus="own hash")
    pres.append(ET.fromstring(f"<x xmlns='{VCARD_UPDATE}'><photo>abc</photo></x>"))
    pres.send()
    p = await bob.presence_from(alice.bare, "available", status="own hash")
    photos = p.xml.findall(f"{{{VCARD_UPDATE}}}x")
    assert [x.findtext(f"{{{VCARD_UPDATE}}}photo") for x in photos] == ["abc"]


@pytest.mark.server_config({"tenants": {"small": {"domains": ["small.test"],
                                                   "profiles": {"max_vcard_bytes": 2048}}}})
async def test_vcard_over_the_tenant_limit_is_refused_and_the_stored_one_kept(server, xmpp):
    carol = await connect(server, xmpp, "carol", domain="small.test")
    card = carol.plugin["xep_0054"].make_vcard()
    card["FN"] = "Carol"
    await carol.plugin["xep_0054"].publish_vcard(card)

    big = carol.plugin["xep_0054"].make_vcard()
    big["FN"] = "Carol"
    big["PHOTO"]["BINVAL"] = PHOTO * 4
    with pytest.raises(IqError) as err:
        await carol.plugin["xep_0054"].publish_vcard(big)
    assert error_condition(err.value) == "not-acceptable"

    got = await carol.plugin["xep_0054"].get_vcard(carol.bare, local=False, cached=False)
    assert got["vcard_temp"]["FN"] == "Carol"
    assert not got["vcard_temp"]["PHOTO"]["BINVAL"]


async def test_a_vcard_of_another_user_cannot_be_set(server, xmpp):
    alice = await connect(server, xmpp, "alice")
    server.create_user("bob", "pw")
    card = alice.plugin["xep_0054"].make_vcard()
    card["FN"] = "Not Bob"
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0054"].publish_vcard(card, jid="bob@localhost")
    assert error_condition(err.value) == "forbidden"


# --- XEP-0049 --------------------------------------------------------------------------

async def test_private_storage_round_trip_reserved_namespaces_and_other_users(server, xmpp):
    alice = await connect(server, xmpp, "alice")
    bob = await connect(server, xmpp, "bob")
    prefs = Prefs()
    prefs["theme"] = "dark"
    await alice.plugin["xep_0049"].store(prefs, timeout=WAIT)

    got = await alice.plugin["xep_0049"].retrieve("prefs", timeout=WAIT)
    assert got["private"]["prefs"]["theme"] == "dark"
    # Bob's storage is his own: nothing of Alice's there.
    got = await bob.plugin["xep_0049"].retrieve("prefs", timeout=WAIT)
    assert got["private"]["prefs"]["theme"] == ""

    # A reserved namespace is refused (XEP-0049 2.2), and nothing changes.
    iq = alice.make_iq_set()
    iq["private"].append(ET.fromstring("<vCard xmlns='vcard-temp'><FN>x</FN></vCard>"))
    with pytest.raises(IqError) as err:
        await iq.send(timeout=WAIT)
    assert error_condition(err.value) == "not-acceptable"
    # An empty query too.
    iq = alice.make_iq_set()
    iq.enable("private")
    with pytest.raises(IqError) as err:
        await iq.send(timeout=WAIT)
    assert error_condition(err.value) == "not-acceptable"
    # Someone else's storage: forbidden.
    iq = bob.make_iq_get(ito=alice.bare)
    iq["private"].enable("prefs")
    with pytest.raises(IqError) as err:
        await iq.send(timeout=WAIT)
    assert error_condition(err.value) == "forbidden"

    got = await alice.plugin["xep_0049"].retrieve("prefs", timeout=WAIT)
    assert got["private"]["prefs"]["theme"] == "dark"


@pytest.mark.server_config({"tenants": {"small": {"domains": ["small.test"],
                                                   "profiles": {"max_private_bytes": 1024}}}})
async def test_private_storage_over_the_limit_is_refused(server, xmpp):
    carol = await connect(server, xmpp, "carol", domain="small.test")
    prefs = Prefs()
    prefs["theme"] = "light"
    await carol.plugin["xep_0049"].store(prefs, timeout=WAIT)
    prefs["theme"] = "x" * 2000
    with pytest.raises(IqError) as err:
        await carol.plugin["xep_0049"].store(prefs, timeout=WAIT)
    assert error_condition(err.value) == "not-acceptable"
    got = await carol.plugin["xep_0049"].retrieve("prefs", timeout=WAIT)
    assert got["private"]["prefs"]["theme"] == "light"


# --- XEP-0012 --------------------------------------------------------------------------

async def test_last_activity_of_contacts_and_server_uptime(server, xmpp):
    alice = await connect(server, xmpp, "alice")
    bob = await connect(server, xmpp, "bob")
    eve = await connect(server, xmpp, "eve")
    await befriend(alice, bob)
    bob.send_presence()
    alice.send_presence()
    await alice.presence_from(bob.bare, "available")

    # Online contact: 0 seconds.
    got = await alice.plugin["xep_0012"].get_last_activity(bob.bare, timeout=WAIT)
    assert got["last_activity"]["seconds"] == 0

    bob.send_presence(ptype="unavailable", pstatus="gone fishing")
    await bob.stop()
    await alice.presence_from(bob.bare, "unavailable")
    logged_out = time.monotonic()
    # Wait (generously) until at least two seconds have passed since the logout.
    deadline = time.monotonic() + 30
    seconds = -1
    while True:
        try:
            got = await alice.plugin["xep_0012"].get_last_activity(bob.bare, timeout=WAIT)
            seconds = got["last_activity"]["seconds"]
        except IqError as err:  # the logout is recorded in the background
            assert error_condition(err) == "item-not-found"
        if seconds >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert 2 <= seconds <= time.monotonic() - logged_out + 2

    # Not subscribed: forbidden.
    with pytest.raises(IqError) as err:
        await eve.plugin["xep_0012"].get_last_activity(bob.bare, timeout=WAIT)
    assert error_condition(err.value) == "forbidden"

    # The server: its uptime.
    got = await eve.plugin["xep_0012"].get_last_activity(server.domain, timeout=WAIT)
    assert got["last_activity"]["seconds"] >= 0


# --- XEP-0077 --------------------------------------------------------------------------

async def test_password_change_then_login_with_the_new_one_only(server, xmpp):
    alice = await connect(server, xmpp, "alice", "old-pw")
    form = await alice.plugin["xep_0077"].get_registration(jid=server.domain, timeout=WAIT)
    assert form["register"]["registered"]
    assert form["register"]["username"] == "alice"
    await alice.plugin["xep_0077"].change_password("new-pw", jid=server.domain, timeout=WAIT)
    await alice.stop()

    with pytest.raises(LoginFailed):
        await xmpp.connect(server, "alice", "old-pw")
    again = await xmpp.connect(server, "alice", "new-pw")
    assert again.bare == "alice@localhost"


async def test_password_of_another_user_cannot_be_changed(server, xmpp):
    alice = await connect(server, xmpp, "alice")
    server.create_user("bob", "bob-pw")
    iq = alice.make_iq_set(ito=server.domain)
    iq["register"]["username"] = "bob"
    iq["register"]["password"] = "stolen"
    with pytest.raises(IqError) as err:
        await iq.send(timeout=WAIT)
    assert error_condition(err.value) == "not-allowed"
    bob = await xmpp.connect(server, "bob", "bob-pw")
    assert bob.bare == "bob@localhost"


async def test_account_removal_deletes_the_account_and_its_data(server, xmpp):
    alice = await connect(server, xmpp, "alice")
    card = alice.plugin["xep_0054"].make_vcard()
    card["FN"] = "Alice"
    await alice.plugin["xep_0054"].publish_vcard(card)
    disconnected = asyncio.Event()
    alice.add_event_handler("disconnected", lambda _: disconnected.set())
    await alice.plugin["xep_0077"].cancel_registration(jid=server.domain, timeout=WAIT)
    await asyncio.wait_for(disconnected.wait(), WAIT)

    assert "alice" not in [u["username"] if isinstance(u, dict) else u for u in server.users()]
    with pytest.raises(LoginFailed):
        await xmpp.connect(server, "alice", "pw")
    # A new account of the same name starts empty.
    server.create_user("alice", "pw2")
    again = await xmpp.connect(server, "alice", "pw2", plugins=PROFILE_PLUGINS)
    got = await again.plugin["xep_0054"].get_vcard(again.bare, local=False, cached=False)
    assert not got["vcard_temp"]["FN"]


# --- XEP-0050 --------------------------------------------------------------------------

ADMIN_TENANT = {"tenants": {"acme": {"domains": ["acme.test"], "admins": ["boss@acme.test"]}}}


def command_items(iq) -> list[str]:
    return [item[1] for item in iq["disco_items"]["items"]]


@pytest.mark.server_config(ADMIN_TENANT)
async def test_admin_commands_list_announce_and_end_sessions(server, xmpp):
    boss = await connect(server, xmpp, "boss", domain="acme.test")
    ann = await connect(server, xmpp, "ann", domain="acme.test")
    ann.send_presence()
    boss.send_presence()

    listed = await boss.plugin["xep_0050"].get_commands("acme.test", timeout=WAIT)
    nodes = command_items(listed)
    assert "http://jabber.org/protocol/admin#get-online-users-list" in nodes
    assert "http://jabber.org/protocol/admin#announce" in nodes
    assert "http://jabber.org/protocol/admin#end-user-session" in nodes

    # Online users.
    res = await boss.plugin["xep_0050"].send_command(
        "acme.test", "http://jabber.org/protocol/admin#get-online-users-list", timeout=WAIT)
    assert res["command"]["status"] == "completed"
    values = res["command"]["form"].get_values()
    assert set(values["onlineuserjids"]) == {"boss@acme.test", "ann@acme.test"}

    # Announce: a form first, then its submission reaches Ann.
    node = "http://jabber.org/protocol/admin#announce"
    res = await boss.plugin["xep_0050"].send_command("acme.test", node, timeout=WAIT)
    assert res["command"]["status"] == "executing"
    sid = res["command"]["sessionid"]
    form = res["command"]["form"]
    form["type"] = "submit"
    form.set_values({"announcement": "maintenance at noon"})
    res = await boss.plugin["xep_0050"].send_command(
        "acme.test", node, action="complete", sessionid=sid, payload=form, timeout=WAIT)
    assert res["command"]["status"] == "completed"
    msg = await ann.next_message(lambda m: m["body"] == "maintenance at noon")
    assert msg["type"] == "headline"
    assert str(msg["from"]) == "acme.test"

    # End Ann's sessions.
    gone = asyncio.Event()
    ann.add_event_handler("disconnected", lambda _: gone.set())
    node = "http://jabber.org/protocol/admin#end-user-session"
    res = await boss.plugin["xep_0050"].send_command("acme.test", node, timeout=WAIT)
    form = res["command"]["form"]
    form["type"] = "submit"
    form.set_values({"accountjids": ["ann@acme.test"]})
    res = await boss.plugin["xep_0050"].send_command(
        "acme.test", node, action="complete", sessionid=res["command"]["sessionid"],
        payload=form, timeout=WAIT)
    assert res["command"]["status"] == "completed"
    await asyncio.wait_for(gone.wait(), WAIT)


@pytest.mark.server_config(ADMIN_TENANT)
async def test_commands_are_refused_to_non_admins_and_bad_sessions(server, xmpp):
    ann = await connect(server, xmpp, "ann", domain="acme.test")
    listed = await ann.plugin["xep_0050"].get_commands("acme.test", timeout=WAIT)
    assert command_items(listed) == []
    with pytest.raises(IqError) as err:
        await ann.plugin["xep_0050"].send_command(
            "acme.test", "http://jabber.org/protocol/admin#get-online-users-list", timeout=WAIT)
    assert error_condition(err.value) == "forbidden"

    boss = await connect(server, xmpp, "boss", domain="acme.test")
    with pytest.raises(IqError) as err:
        await boss.plugin["xep_0050"].send_command(
            "acme.test", "http://jabber.org/protocol/admin#announce", action="complete",
            sessionid="not-a-session", timeout=WAIT)
    assert error_condition(err.value) == "bad-request"
    # An admin of one tenant is nobody at another: its domain is not even reachable.
    with pytest.raises(IqError) as err:
        await boss.plugin["xep_0050"].send_command(
            "localhost", "http://jabber.org/protocol/admin#get-online-users-list", timeout=WAIT)
    assert error_condition(err.value) == "remote-server-not-found"


# --- XEP-0077 before login -------------------------------------------------------------

async def register_in_band(xmpp, server, jid: str, password: str) -> tuple[str | None, bool]:
    """Connects as a client that registers ``jid`` when the server offers it, then logs
    in. Returns (the registration's outcome: "ok", an error condition, or None when no
    registration was offered; whether the login succeeded)."""
    client = xmpp.make(jid, password, plugins=PROFILE_PLUGINS)
    outcome: list[str] = []

    async def on_register(_form) -> None:
        resp = client.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = jid.split("@")[0]
        resp["register"]["password"] = password
        try:
            await resp.send(timeout=WAIT)
            outcome.append("ok")
        except IqError as err:
            outcome.append(error_condition(err))

    client.add_event_handler("register", on_register)
    try:
        await client.start(*server.c2s_starttls)
        logged_in = True
    except LoginFailed:
        logged_in = False
    await client.stop()
    return (outcome[0] if outcome else None), logged_in


@pytest.mark.server_config({"tenants": {"open": {"domains": ["open.test"], "profiles": {
    "registration": True, "registrations_per_hour": 3}}}})
async def test_in_band_registration_when_the_tenant_allows_it_rate_limited(server, xmpp):
    assert await register_in_band(xmpp, server, "newbie@open.test", "pw1") == ("ok", True)
    # The name is taken now (the attempt counts towards the address's hourly limit).
    assert await register_in_band(xmpp, server, "newbie@open.test", "other") == ("conflict", False)
    assert await register_in_band(xmpp, server, "second@open.test", "pw2") == ("ok", True)
    # A fourth attempt from the same address within the hour: refused, nothing created.
    assert await register_in_band(xmpp, server, "third@open.test", "pw3") == ("resource-constraint", False)
    users = [u["username"] if isinstance(u, dict) else u
             for u in server.admin("GET", "/api/v1/users/open.test", expect=200)[1]["users"]]
    assert sorted(users) == ["newbie", "second"]


async def test_in_band_registration_is_off_by_default(server, xmpp):
    # No registration offered on the default tenant: the client cannot register and the
    # login of the unknown account fails.
    assert await register_in_band(xmpp, server, "stranger@localhost", "pw") == (None, False)
    assert "stranger" not in [u["username"] if isinstance(u, dict) else u for u in server.users()]
