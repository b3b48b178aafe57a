"""Multi-user chat (XEP-0045) with slixmpp's xep_0045 plugin: rooms, joins, broadcast,
moderation, refusals, history, persistence, destruction, limits, tenant isolation and
the meeting management API/CLI."""

from __future__ import annotations

import asyncio
import datetime
import re
import subprocess

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from harness.raw import RawStream
from harness.xmpp import DEFAULT_PLUGINS, Inbox

MUC_PLUGINS = DEFAULT_PLUGINS + ("xep_0004", "xep_0045", "xep_0249", "xep_0410")
SERVICE = "conference.localhost"
MUC_USER = "http://jabber.org/protocol/muc#user"


async def login(xmpp, server, name, password="pw", create=True, **kw):
    """Create and log in a user whose client records room presences in `muc_presences`
    (slixmpp stops reporting a room's presences as plain `presence` events once it has
    seen one MUC presence from it)."""
    if create:
        server.create_user(name, password)
    client = await xmpp.connect(server, name, password, plugins=MUC_PLUGINS, **kw)
    client.muc_presences = Inbox("room presence")
    client.add_event_handler("groupchat_presence", client.muc_presences.put)
    return client


def codes(stanza) -> set[int]:
    return set(stanza["muc"]["status_codes"])


async def instant_room(client, room: str, nick: str):
    """Create `room` as an instant room (XEP-0045 §10.1.2); returns the join result."""
    result = await client.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0, timeout=10)
    assert {110, 201} <= codes(result[0]), result[0]
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    await client.plugin["xep_0045"].set_room_config(room, form, timeout=10)
    return result


async def configure(client, room: str, **fields):
    """Submit the owner form with `fields` (muc#roomconfig_ suffix -> value)."""
    form = await client.plugin["xep_0045"].get_room_config(room, timeout=10)
    values = {f"muc#roomconfig_{k}": v for k, v in fields.items()}
    submit = client.plugin["xep_0004"].make_form(ftype="submit")
    for field in form["fields"]:
        var = field["var"]
        if var in values:
            submit.add_field(var=var, value=values.pop(var))
    assert not values, f"unknown fields {values}"
    await client.plugin["xep_0045"].set_room_config(room, submit, timeout=10)


async def join(client, room, nick, **kw):
    return await client.plugin["xep_0045"].join_muc_wait(room, nick, timeout=10, **kw)


async def groupchat_from(client, room, nick, body=None, timeout=10):
    def match(m):
        return (m["type"] == "groupchat" and str(m["from"]) == f"{room}/{nick}"
                and (body is None or m["body"] == body))
    return await client.messages.take(match, timeout, f"groupchat from {nick}")


async def presence_of(client, room, nick, ptype="available", timeout=10, role=None):
    def match(p):
        return (str(p["from"]) == f"{room}/{nick}"
                and (p.xml.get("type") or "available") == ptype
                and (role is None or p["muc"]["role"] == role))
    return await client.muc_presences.take(match, timeout, f"{ptype} presence of {nick}")


async def test_instant_room_join_broadcast_and_leave(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"standup@{SERVICE}"
    await instant_room(alice, room, "Alice")

    pres, subject, occupants, history = await join(bob, room, "Bob")
    assert 110 in codes(pres) and 201 not in codes(pres)
    assert pres["muc"]["role"] == "participant" and pres["muc"]["affiliation"] == "none"
    # slixmpp lists every occupant presence of the join, its own included.
    by_nick = {p["from"].resource: p for p in occupants}
    assert set(by_nick) == {"Alice", "Bob"}
    assert by_nick["Alice"]["muc"]["affiliation"] == "owner"
    assert by_nick["Alice"]["muc"]["role"] == "moderator"
    assert not subject["subject"]  # empty <subject/>: none set
    seen = await presence_of(alice, room, "Bob")
    # Semi-anonymous by default: the moderator sees Bob's real JID.
    assert seen["muc"]["jid"].bare == "bob@localhost"

    bob.send_message(mto=room, mbody="hello room", mtype="groupchat")
    for c in (alice, bob):
        msg = await groupchat_from(c, room, "Bob", "hello room")
        assert msg["to"].bare == c.bare

    bob.plugin["xep_0045"].leave_muc(room, "Bob")
    gone = await presence_of(alice, room, "Bob", "unavailable")
    assert gone["muc"]["role"] == "none"
    own = await presence_of(bob, room, "Bob", "unavailable")
    assert 110 in codes(own)


def error_condition(exc) -> str:
    if isinstance(exc, PresenceError):
        return exc.condition
    return exc.iq["error"]["condition"]


async def join_refused(client, room, nick, **kw) -> str:
    with pytest.raises(PresenceError) as err:
        await join(client, room, nick, **kw)
    return err.value.condition


async def test_reserved_room_is_locked_until_the_owner_submits_the_form(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"planning@{SERVICE}"
    pres, *_ = await join(alice, room, "Alice")
    assert {110, 201} <= codes(pres)
    # Locked: nobody else may enter until the owner configures it.
    assert await join_refused(bob, room, "Bob") == "item-not-found"

    form = await alice.plugin["xep_0045"].get_room_config(room, timeout=10)
    fields = {f["var"] for f in form["fields"]}
    for var in ("muc#roomconfig_roomname", "muc#roomconfig_persistentroom",
                "muc#roomconfig_membersonly", "muc#roomconfig_moderatedroom",
                "muc#roomconfig_passwordprotectedroom", "muc#roomconfig_roomsecret",
                "muc#roomconfig_maxusers", "muc#roomconfig_whois", "muc#roomconfig_publicroom"):
        assert var in fields, var
    await configure(alice, room, roomname="Planning", roomdesc="Sprint planning",
                    whois="anyone")

    pres, *_ = await join(bob, room, "Bob")
    assert 100 in codes(pres), "non-anonymous rooms say so on join"
    info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
    q = info["disco_info"]
    assert ("conference", "text", None, "Planning") in q["identities"]
    features = set(q["features"])
    assert {"http://jabber.org/protocol/muc", "muc_nonanonymous", "muc_open", "muc_temporary",
            "muc_unmoderated", "muc_unsecured", "muc_public"} <= features
    roominfo = {f["var"]: f["value"] for f in q.get_plugin("form", check=True)["fields"]}
    assert roominfo["FORM_TYPE"] in ("http://jabber.org/protocol/muc#roominfo",
                                     ["http://jabber.org/protocol/muc#roominfo"])
    assert roominfo["muc#roominfo_description"] == "Sprint planning"
    assert roominfo["muc#roominfo_occupants"] == "2"

    items = await bob.plugin["xep_0030"].get_items(jid=SERVICE, timeout=10)
    assert (room, None, "Planning") in items["disco_items"]["items"]
    server_items = await bob.plugin["xep_0030"].get_items(jid="localhost", timeout=10)
    assert sorted(i[0] for i in server_items["disco_items"]["items"]) == [SERVICE, "upload.localhost"]
    sinfo = await bob.plugin["xep_0030"].get_info(jid=SERVICE, timeout=10)
    assert any(i[0] == "conference" for i in sinfo["disco_info"]["identities"])

    # Hidden rooms are not listed.
    await configure(alice, room, publicroom="0")
    items = await bob.plugin["xep_0030"].get_items(jid=SERVICE, timeout=10)
    assert room not in [i[0] for i in items["disco_items"]["items"]]


async def test_nick_change_subject_and_private_messages(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"chat@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    await presence_of(alice, room, "Bob")

    new = await bob.plugin["xep_0045"].set_self_nick(room, "Robert", timeout=10)
    assert new == "Robert"
    left = await presence_of(alice, room, "Bob", "unavailable")
    assert 303 in codes(left) and left["muc"]["item_nick"] == "Robert"
    await presence_of(alice, room, "Robert")

    # Nickname conflicts with another user.
    carol = await login(xmpp, server, "carol")
    assert await join_refused(carol, room, "Alice") == "conflict"

    # Participants may not change the subject by default; moderators may.
    bob.plugin["xep_0045"].set_subject(room, "bob's topic")
    refused = await bob.next_error(timeout=10) if False else None  # noqa: F841
    alice.plugin["xep_0045"].set_subject(room, "Today: MUC")
    subj = await asyncio.wait_for(_subject(bob, room), 10)
    assert subj["subject"] == "Today: MUC" and subj["from"].resource == "Alice"

    # Private message between occupants, via their occupant JIDs.
    bob.send_message(mto=f"{room}/Alice", mbody="psst", mtype="chat")
    pm = await alice.next_message(lambda m: m["body"] == "psst")
    assert str(pm["from"]) == f"{room}/Robert"
    assert pm.xml.find(f"{{{MUC_USER}}}x") is not None

    # A join from a session already in the room gets the room again (self-presence,
    # occupants, subject) without a duplicate occupant.
    pres, subj, occupants, _ = await join(bob, room, "Robert")
    assert 110 in codes(pres) and subj["subject"] == "Today: MUC"
    assert {p["from"].resource for p in occupants} == {"Alice", "Robert"}
    shown = server.admin("GET", f"/api/v1/tenants/default/rooms/{room}", expect=200)[1]
    assert [o["nick"] for o in shown["occupants"]] == ["Alice", "Robert"]

    # Self-ping (XEP-0410): answered by the service for an occupant...
    status = await bob.plugin["xep_0410"].send_self_ping(JID(f"{room}/Robert"), timeout=10)
    assert status.name == "JOINED"
    # ... and refused for someone not in the room.
    status = await carol.plugin["xep_0410"].send_self_ping(JID(f"{room}/Carol"), timeout=10)
    assert status.name == "DISCONNECTED"


async def test_a_users_block_list_holds_for_muc_private_messages(server, xmpp):
    """XEP-0191 for stanzas a room relays: nothing from a blocked occupant JID (private or
    group messages) reaches the user, and the user stays in the room (no error goes back:
    the room would take it for the user having left)."""
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"pm@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    await presence_of(alice, room, "Bob")
    await alice.plugin["xep_0191"].block(f"{room}/Bob", timeout=10)

    bob.send_message(mto=f"{room}/Alice", mbody="psst", mtype="chat")
    bob.send_message(mto=room, mbody="hello all", mtype="groupchat")
    # The room handles Bob's stanzas in order: once his own group message is back, the
    # private one was routed (and refused).
    await groupchat_from(bob, room, "Bob", "hello all")
    assert not bob.errors.items, [str(e) for e in bob.errors.items]
    shown = server.admin("GET", f"/api/v1/tenants/default/rooms/{room}", expect=200)[1]
    assert sorted(o["nick"] for o in shown["occupants"]) == ["Alice", "Bob"]
    # Unblocked, the next private message arrives, and nothing from before it did.
    await alice.plugin["xep_0191"].unblock(f"{room}/Bob", timeout=10)
    bob.send_message(mto=f"{room}/Alice", mbody="psst again", mtype="chat")
    pm = await alice.next_message(lambda m: m["body"] == "psst again")
    assert str(pm["from"]) == f"{room}/Bob"
    assert not [m for m in alice.messages.items if m["body"] in ("psst", "hello all")]


async def _subject(client, room):
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def on_subject(msg):
        if msg["from"].bare == room and msg["subject"] and not fut.done():
            fut.set_result(msg)
    client.add_event_handler("groupchat_subject", on_subject)
    try:
        return await fut
    finally:
        client.del_event_handler("groupchat_subject", on_subject)


async def test_kick_ban_and_voice(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    carol = await login(xmpp, server, "carol")
    room = f"mod@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    await join(carol, room, "Carol")

    # A participant cannot kick.
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0045"].set_role(room, "Carol", "none", timeout=10)
    assert error_condition(err.value) == "forbidden"

    await alice.plugin["xep_0045"].set_role(room, "Bob", "none", reason="too loud", timeout=10)
    own = await presence_of(bob, room, "Bob", "unavailable")
    assert {110, 307} <= codes(own)
    seen = await presence_of(carol, room, "Bob", "unavailable")
    assert 307 in codes(seen) and seen["muc"]["item"]["reason"] == "too loud"
    # Kicked users may come back.
    await join(bob, room, "Bob")

    await alice.plugin["xep_0045"].set_affiliation(room, "outcast", jid="bob@localhost",
                                                  reason="spam", timeout=10)
    banned = await presence_of(carol, room, "Bob", "unavailable")
    assert 301 in codes(banned)
    assert {110, 301} <= codes(await presence_of(bob, room, "Bob", "unavailable"))
    assert await join_refused(bob, room, "Bob") == "forbidden"
    outcasts = await alice.plugin["xep_0045"].get_affiliation_list(room, "outcast", timeout=10)
    assert [str(j) for j in outcasts] == ["bob@localhost"]

    # Moderated room: visitors have no voice until a moderator grants it.
    await configure(alice, room, moderatedroom="1")
    dave = await login(xmpp, server, "dave")
    pres, *_ = await join(dave, room, "Dave")
    assert pres["muc"]["role"] == "visitor"
    dave.send_message(mto=room, mbody="can I speak?", mtype="groupchat")
    refused = await dave.next_error(timeout=10)
    assert refused["error"]["condition"] == "forbidden"
    await alice.plugin["xep_0045"].set_role(room, "Dave", "participant", timeout=10)
    voiced = await presence_of(carol, room, "Dave", role="participant")
    assert voiced["muc"]["role"] == "participant"
    dave.send_message(mto=room, mbody="now I can", mtype="groupchat")
    await groupchat_from(carol, room, "Dave", "now I can")


async def test_password_and_members_only_refusals(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"secret@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await configure(alice, room, passwordprotectedroom="1", roomsecret="s3cret")
    assert await join_refused(bob, room, "Bob") == "not-authorized"
    assert await join_refused(bob, room, "Bob", password="wrong") == "not-authorized"
    await join(bob, room, "Bob", password="s3cret")
    info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
    assert "muc_passwordprotected" in info["disco_info"]["features"]

    club = f"club@{SERVICE}"
    await instant_room(alice, club, "Alice")
    await configure(alice, club, membersonly="1")
    assert await join_refused(bob, club, "Bob") == "registration-required"
    await alice.plugin["xep_0045"].set_affiliation(club, "member", jid="bob@localhost", timeout=10)
    pres, *_ = await join(bob, club, "Bob")
    assert pres["muc"]["affiliation"] == "member"
    members = await alice.plugin["xep_0045"].get_affiliation_list(club, "member", timeout=10)
    assert [str(j) for j in members] == ["bob@localhost"]
    # Losing membership in a members-only room removes the occupant (321).
    await alice.plugin["xep_0045"].set_affiliation(club, "none", jid="bob@localhost", timeout=10)
    gone = await presence_of(bob, club, "Bob", "unavailable")
    assert 321 in codes(gone)


async def test_history_on_join_honours_the_limits(server, xmpp):
    alice = await login(xmpp, server, "alice")
    room = f"history@{SERVICE}"
    await instant_room(alice, room, "Alice")
    for n in range(5):
        alice.send_message(mto=room, mbody=f"m{n}", mtype="groupchat")
        await groupchat_from(alice, room, "Alice", f"m{n}")
    bob = await login(xmpp, server, "bob")
    _, _, _, history = await join(bob, room, "Bob", maxstanzas=2)
    assert [m["body"] for m in history] == ["m3", "m4"]
    assert all(m["delay"]["from"] == room and m["delay"]["stamp"] for m in history)
    assert all(str(m["from"]) == f"{room}/Alice" for m in history)

    carol = await login(xmpp, server, "carol")
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    _, _, _, history = await join(carol, room, "Carol", since=future)
    assert history == []

    dave = await login(xmpp, server, "dave")
    _, _, _, history = await join(dave, room, "Dave")
    assert [m["body"] for m in history] == [f"m{n}" for n in range(5)]
    _, _, _, none = await join(await login(xmpp, server, "erin"), room, "Erin", maxchars=0)
    assert none == []


async def test_history_length_follows_the_tenant_setting(server, xmpp):
    server.create_tenant("acme", ["acme.test"], muc={"history_length": 3})
    for u in ("alice", "bob"):
        server.create_user(u, "pw", domain="acme.test")
    alice = await login(xmpp, server, "alice@acme.test", create=False)
    bob = await login(xmpp, server, "bob@acme.test", create=False)
    room = "standup@conference.acme.test"
    await instant_room(alice, room, "Alice")
    for n in range(6):
        alice.send_message(mto=room, mbody=f"m{n}", mtype="groupchat")
        await groupchat_from(alice, room, "Alice", f"m{n}")
    _, _, _, history = await join(bob, room, "Bob")
    assert [m["body"] for m in history] == ["m3", "m4", "m5"]


async def test_persistent_room_survives_restart_and_temporary_room_goes_away(server, xmpp):
    alice = await login(xmpp, server, "alice")
    room = f"keep@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await configure(alice, room, persistentroom="1", roomname="Kept", membersonly="1")
    await alice.plugin["xep_0045"].set_affiliation(room, "member", jid="bob@localhost", timeout=10)
    alice.plugin["xep_0045"].set_subject(room, "Survives restarts")
    await asyncio.wait_for(_subject(alice, room), 10)
    temp = f"temp@{SERVICE}"
    await instant_room(alice, temp, "Alice")
    rooms = {r["jid"] for r in server.admin("GET", "/api/v1/tenants/default/rooms", expect=200)[1]["rooms"]}
    assert rooms == {room, temp}
    alice.plugin["xep_0045"].leave_muc(temp, "Alice")
    await presence_of(alice, temp, "Alice", "unavailable")
    rooms = {r["jid"] for r in server.admin("GET", "/api/v1/tenants/default/rooms", expect=200)[1]["rooms"]}
    assert rooms == {room}, "a temporary room goes away with its last occupant"
    await xmpp.aclose()

    server.restart()
    listed = server.admin("GET", "/api/v1/tenants/default/rooms", expect=200)[1]["rooms"]
    assert [(r["jid"], r["name"], r["occupants"], r["persistent"], r["members_only"])
            for r in listed] == [(room, "Kept", 0, True, True)]
    bob = await login(xmpp, server, "bob")
    _, subject, _, _ = await join(bob, room, "Bob")
    assert subject["subject"] == "Survives restarts"
    carol = await login(xmpp, server, "carol")
    assert await join_refused(carol, room, "Carol") == "registration-required"
    alice = await login(xmpp, server, "alice", create=False)
    pres, *_ = await join(alice, room, "Alice")
    assert pres["muc"]["affiliation"] == "owner"


async def test_destroy_with_alternate_venue(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"old@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0045"].destroy(room, reason="mine now", timeout=10)
    assert error_condition(err.value) == "forbidden"
    await alice.plugin["xep_0045"].destroy(room, reason="moved", altroom=f"new@{SERVICE}", timeout=10)
    gone = await presence_of(bob, room, "Bob", "unavailable")
    destroy = gone.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}destroy")
    assert destroy is not None and destroy.get("jid") == f"new@{SERVICE}"
    assert destroy.find(f"{{{MUC_USER}}}reason").text == "moved"
    assert server.admin("GET", "/api/v1/tenants/default/rooms", expect=200)[1]["rooms"] == []


async def test_max_occupants_and_multi_session_nicks(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    carol = await login(xmpp, server, "carol")
    room = f"small@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await configure(alice, room, maxusers="2")
    await join(bob, room, "Bob")
    assert await join_refused(carol, room, "Carol") == "service-unavailable"

    # Bob's second session shares his nick (and does not count as another occupant).
    bob2 = await login(xmpp, server, "bob", create=False, resource="phone")
    pres, _, occupants, _ = await join(bob2, room, "Bob")
    assert 110 in codes(pres)
    assert {p["from"].resource for p in occupants} == {"Alice", "Bob"}
    alice.send_message(mto=room, mbody="to both sessions", mtype="groupchat")
    for c in (bob, bob2):
        await groupchat_from(c, room, "Alice", "to both sessions")
    shown = server.admin("GET", f"/api/v1/tenants/default/rooms/{room}", expect=200)[1]
    bob_entry = [o for o in shown["occupants"] if o["nick"] == "Bob"][0]
    assert len(bob_entry["sessions"]) == 2
    # Leaving with one session keeps the occupant; others see nothing.
    bob2.plugin["xep_0045"].leave_muc(room, "Bob")
    own = await presence_of(bob2, room, "Bob", "unavailable")
    assert 110 in codes(own)
    shown = server.admin("GET", f"/api/v1/tenants/default/rooms/{room}", expect=200)[1]
    assert [o["nick"] for o in shown["occupants"]] == ["Alice", "Bob"]


async def test_invitations_mediated_and_direct(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"party@{SERVICE}"
    await instant_room(alice, room, "Alice")
    alice.plugin["xep_0045"].invite(room, "bob@localhost", reason="come along")
    inv = await bob.next_message(lambda m: m["from"].bare == room)
    invite = inv.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite")
    assert invite is not None and invite.get("from") == "alice@localhost"
    assert invite.find(f"{{{MUC_USER}}}reason").text == "come along"
    bob.plugin["xep_0045"].decline(room, "alice@localhost", reason="busy")
    dec = await alice.next_message(lambda m: m["from"].bare == room and "declined" in m["body"])
    assert dec.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}decline").get("from") == "bob@localhost"

    # XEP-0249 direct invitations go from user to user.
    got = asyncio.get_running_loop().create_future()
    bob.add_event_handler("groupchat_direct_invite",
                          lambda m: got.done() or got.set_result(m))
    alice.plugin["xep_0249"].send_invitation(JID("bob@localhost"), JID(room), reason="direct")
    direct = await asyncio.wait_for(got, 10)
    assert str(direct["groupchat_invite"]["jid"]) == room
    info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
    assert "jabber:x:conference" in info["disco_info"]["features"]


async def test_room_creation_can_be_restricted_and_tenants_are_isolated(server, xmpp):
    server.create_tenant("acme", ["acme.test"],
                         muc={"room_creation": "admins", "admins": ["boss@acme.test"], "max_rooms": 1})
    for u in ("boss", "worker"):
        server.create_user(u, "pw", domain="acme.test")
    boss = await login(xmpp, server, "boss@acme.test", create=False)
    worker = await login(xmpp, server, "worker@acme.test", create=False)
    assert await join_refused(worker, "mine@conference.acme.test", "W") == "not-allowed"
    await instant_room(boss, "allhands@conference.acme.test", "Boss")
    assert await join_refused(boss, "second@conference.acme.test", "Boss") == "not-allowed"
    await join(worker, "allhands@conference.acme.test", "Worker")

    # A user of another tenant reaches neither the service nor its rooms.
    alice = await login(xmpp, server, "alice")
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid="conference.acme.test", timeout=10)
    assert error_condition(err.value) == "remote-server-not-found"
    with pytest.raises((PresenceError, asyncio.TimeoutError)):
        await alice.plugin["xep_0045"].join_muc_wait("allhands@conference.acme.test", "Spy", timeout=3)
    shown = server.admin("GET", "/api/v1/tenants/acme/rooms/allhands@conference.acme.test",
                         expect=200)[1]
    assert sorted(o["jid"] for o in shown["occupants"]) == ["boss@acme.test", "worker@acme.test"]
    # The default tenant's own service still works for it, and acme users cannot reach it.
    await instant_room(alice, f"home@{SERVICE}", "Alice")
    with pytest.raises(IqError) as err:
        await worker.plugin["xep_0030"].get_info(jid=f"home@{SERVICE}", timeout=10)
    assert error_condition(err.value) == "remote-server-not-found"

    # A tenant token sees its own rooms only.
    token = server.admin("POST", "/api/v1/tenants/acme/token", expect=201)[1]["token"]
    server.admin("GET", "/api/v1/tenants/acme/rooms", expect=200, token=token)
    server.admin("GET", "/api/v1/tenants/default/rooms", expect=403, token=token)
    server.admin("GET", f"/api/v1/tenants/acme/rooms/home@{SERVICE}", expect=404, token=token)


async def test_admin_api_and_cli_manage_meetings(server, xmpp, heliograph_bin):
    host, port = server.admin_address
    cli = [heliograph_bin, "--api", f"http://{host}:{port}"]
    env = {"HELIOGRAPH_TOKEN": server.admin_token, "PATH": "/usr/bin:/bin"}

    def run(*args):
        out = subprocess.run(cli + list(args), capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    room = f"weekly@{SERVICE}"
    assert "created room" in run("room", "create", room, "--tenant", "default", "--name", "Weekly",
                                 "--owner", "alice@localhost", "--set", "moderatedroom=1")
    server.admin("POST", "/api/v1/tenants/default/rooms", {"jid": room}, expect=409)
    server.admin("POST", "/api/v1/tenants/default/rooms", {"jid": "x@conference.elsewhere"}, expect=404)
    assert room in run("room", "list", "--tenant", "default")

    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    pres, *_ = await join(alice, room, "Alice")
    assert pres["muc"]["affiliation"] == "owner"
    pres, *_ = await join(bob, room, "Bob")
    assert pres["muc"]["role"] == "visitor"

    shown = server.admin("GET", f"/api/v1/tenants/default/rooms/{room}", expect=200)[1]
    assert shown["name"] == "Weekly" and shown["moderated"] is True
    assert [(o["nick"], o["jid"], o["role"], o["affiliation"]) for o in shown["occupants"]] == [
        ("Alice", "alice@localhost", "moderator", "owner"),
        ("Bob", "bob@localhost", "visitor", "none"),
    ]
    assert '"nick": "Bob"' in run("room", "show", room, "--tenant", "default")

    run("room", "kick", room, "Bob", "--tenant", "default", "--reason", "wrong meeting")
    kicked = await presence_of(alice, room, "Bob", "unavailable")
    assert 307 in codes(kicked) and kicked["muc"]["item"]["reason"] == "wrong meeting"
    await presence_of(bob, room, "Bob", "unavailable")
    server.admin("POST", f"/api/v1/tenants/default/rooms/{room}/kick", {"nick": "Nobody"}, expect=404)

    run("room", "destroy", room, "--tenant", "default", "--reason", "meeting over",
        "--alternate", f"next@{SERVICE}")
    gone = await presence_of(alice, room, "Alice", "unavailable")
    destroy = gone.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}destroy")
    assert destroy.get("jid") == f"next@{SERVICE}"
    assert destroy.find(f"{{{MUC_USER}}}reason").text == "meeting over"
    assert "no rooms" in run("room", "list", "--tenant", "default")
    server.admin("GET", f"/api/v1/tenants/default/rooms/{room}", expect=404)


async def test_a_logged_room_warns_occupants_and_keeps_its_log(server, xmpp, heliograph_bin):
    # A tenant made through the API, so its MUC settings can be changed there.
    server.create_tenant("acme", ["acme.test"])
    for name in ("alice", "bob"):
        server.create_user(name, "pw", domain="acme.test")
    alice = await login(xmpp, server, "alice@acme.test", create=False)
    bob = await login(xmpp, server, "bob@acme.test", create=False)
    service = "conference.acme.test"
    room = f"minutes@{service}"
    await instant_room(alice, room, "Alice")
    notices = Inbox("room notice")
    alice.register_handler(Callback("room notice", StanzaPath("message@type=groupchat"),
                                    lambda m: notices.put(m) if str(m["from"]) == room else None))
    log_path = f"/api/v1/tenants/acme/rooms/{room}/log"
    assert server.admin("GET", log_path, expect=200)[1]["logging"] is False

    # Turning logging on is announced (104 + 170) to the occupants ...
    await configure(alice, room, enablelogging="1", persistentroom="1")
    notice = await notices.take(None, 10, "configuration notice")
    status = {int(s.get("code")) for s in notice.xml.iter(f"{{{MUC_USER}}}status")}
    assert status == {104, 170}, notice
    # ... and each joiner is warned in its own presence; disco says so too.
    pres, *_ = await join(bob, room, "Bob")
    assert {110, 170} <= codes(pres)
    info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
    assert info["disco_info"].xml.find(
        ".//{jabber:x:data}field[@var='muc#roomconfig_enablelogging']/{jabber:x:data}value"
    ).text == "1"

    for body in ("first point", "second point", "third point"):
        bob.send_message(mto=room, mbody=body, mtype="groupchat")
        await groupchat_from(alice, room, "Bob", body)
    alice.plugin["xep_0045"].set_subject(room, "Minutes")
    await asyncio.wait_for(_subject(bob, room), 10)

    log = server.admin("GET", log_path, expect=200)[1]
    assert log["logging"] is True and log["next"] is None
    lines = [(e["number"], e["nick"], e["jid"], e.get("subject", False), e["text"]) for e in log["entries"]]
    assert lines == [
        (1, "Bob", "bob@acme.test", False, "first point"),
        (2, "Bob", "bob@acme.test", False, "second point"),
        (3, "Bob", "bob@acme.test", False, "third point"),
        (4, "Alice", "alice@acme.test", True, "Minutes"),
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", log["entries"][0]["at"])
    page = server.admin("GET", f"{log_path}?after=1&limit=2", expect=200)[1]
    assert [e["number"] for e in page["entries"]] == [2, 3] and page["next"] == 3
    server.admin("GET", f"{log_path}?limit=0", expect=400)
    server.admin("GET", f"{log_path}?after=x", expect=400)

    host, port = server.admin_address
    out = subprocess.run([heliograph_bin, "--api", f"http://{host}:{port}", "room", "log", room,
                          "--tenant", "acme", "--after", "2"],
                         capture_output=True, text=True, timeout=30,
                         env={"HELIOGRAPH_TOKEN": server.admin_token, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    printed = out.stdout.splitlines()
    assert len(printed) == 2, printed
    assert printed[0].startswith("3\t") and printed[0].endswith("Bob: third point")
    assert printed[1].endswith("Alice: set the subject: Minutes")

    # The log bound is the operator's; a tenant without logs cannot turn logging on.
    token = server.admin("POST", "/api/v1/tenants/acme/token", expect=201)[1]["token"]
    server.admin("PATCH", "/api/v1/tenants/acme", {"muc": {"max_log_messages": 5}},
                 expect=403, token=token)
    server.admin("PATCH", "/api/v1/tenants/acme", {"muc": {"max_log_messages": 0}}, expect=200)
    other = f"offtherecord@{service}"
    await instant_room(alice, other, "Alice")
    with pytest.raises(IqError) as refused:
        await configure(alice, other, enablelogging="1")
    assert refused.value.iq["error"]["condition"] == "not-acceptable"
    server.admin("PATCH", "/api/v1/tenants/acme", {"muc": {"max_log_messages": 2}}, expect=200)
    bob.send_message(mto=room, mbody="fourth point", mtype="groupchat")
    await groupchat_from(alice, room, "Bob", "fourth point")
    log = server.admin("GET", log_path, expect=200)[1]
    assert [(e["number"], e["text"]) for e in log["entries"]] == [(4, "Minutes"), (5, "fourth point")]

    # Destroying the room takes its log with it.
    server.admin("DELETE", f"/api/v1/tenants/acme/rooms/{room}", expect=204)
    server.admin("GET", log_path, expect=404)
    server.admin("POST", "/api/v1/tenants/acme/rooms",
                 {"jid": room, "config": {"enablelogging": True}}, expect=201)
    assert server.admin("GET", log_path, expect=200)[1]["entries"] == []


async def test_muc_settings_follow_tenant_changes(server, xmpp):
    server.create_tenant("acme", ["acme.test"])
    server.create_user("alice", "pw", domain="acme.test")
    alice = await login(xmpp, server, "alice@acme.test", create=False)
    info = await alice.plugin["xep_0030"].get_info(jid="conference.acme.test", timeout=10)
    assert "http://jabber.org/protocol/muc" in info["disco_info"]["features"]
    await instant_room(alice, "old@conference.acme.test", "Alice")

    token = server.admin("POST", "/api/v1/tenants/acme/token", expect=201)[1]["token"]
    # The tenant may move and tune its own service, but not raise its room cap.
    server.admin("PATCH", "/api/v1/tenants/acme", {"muc": {"max_rooms": 5000}}, expect=403, token=token)
    server.admin("PATCH", "/api/v1/tenants/acme", {"muc": {"subdomain": "bad.label"}}, expect=400,
                 token=token)
    t = server.admin("PATCH", "/api/v1/tenants/acme", {"muc": {"subdomain": "rooms"}}, expect=200,
                     token=token)[1]
    assert t["muc"]["subdomain"] == "rooms" and t["muc"]["history_length"] == 20
    # The service at the old subdomain went away: its occupants were told (332).
    moved = await presence_of(alice, "old@conference.acme.test", "Alice", "unavailable")
    assert {110, 332} <= codes(moved)
    await instant_room(alice, "standup@rooms.acme.test", "Alice")
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid="conference.acme.test", timeout=10)
    assert error_condition(err.value) == "remote-server-not-found"
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=10)
    assert sorted(i[0] for i in items["disco_items"]["items"]) == ["rooms.acme.test", "upload.acme.test"]

    server.admin("PATCH", "/api/v1/tenants/acme", {"muc": {"enabled": False}}, expect=200, token=token)
    off = await presence_of(alice, "standup@rooms.acme.test", "Alice", "unavailable")
    assert {110, 332} <= codes(off)
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid="rooms.acme.test", timeout=10)
    assert error_condition(err.value) == "remote-server-not-found"
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=10)
    assert [i[0] for i in items["disco_items"]["items"]] == ["upload.acme.test"]


@pytest.mark.server_config({"tenants": {"cfg": {"domains": ["cfg.test"]}}})
async def test_a_reload_that_moves_or_removes_a_service_tells_its_occupants(server, xmpp):
    server.create_user("alice", "pw", domain="cfg.test")
    alice = await login(xmpp, server, "alice@cfg.test", create=False)
    await instant_room(alice, "daily@conference.cfg.test", "Alice")
    server.config["tenants"]["cfg"]["muc"] = {"subdomain": "meet"}
    server.write_config()
    server.admin("POST", "/api/v1/reload", expect=200)
    moved = await presence_of(alice, "daily@conference.cfg.test", "Alice", "unavailable")
    assert {110, 332} <= codes(moved)

    await instant_room(alice, "daily@meet.cfg.test", "Alice")
    del server.config["tenants"]["cfg"]
    server.write_config()
    server.admin("POST", "/api/v1/reload", expect=200)
    gone = await presence_of(alice, "daily@meet.cfg.test", "Alice", "unavailable")
    assert {110, 332} <= codes(gone)


async def test_occupants_leave_when_their_session_ends(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"lobby@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    await presence_of(alice, room, "Bob")
    await bob.stop()
    gone = await presence_of(alice, room, "Bob", "unavailable")
    assert gone["muc"]["role"] == "none"

    # An error bouncing from an occupant removes it (ghost removal, 307 + 333).
    carol = await login(xmpp, server, "carol")
    await join(carol, room, "Carol")
    bounce = carol.make_message(mto=room, mtype="error")
    bounce["error"]["condition"] = "recipient-unavailable"
    bounce.send()
    ghost = await presence_of(alice, room, "Carol", "unavailable")
    assert {307, 333} <= codes(ghost)
    shown = server.admin("GET", f"/api/v1/tenants/default/rooms/{room}", expect=200)[1]
    assert [o["nick"] for o in shown["occupants"]] == ["Alice"]
    # The last occupant's session ending takes the temporary room away.
    await alice.stop()
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        if not server.admin("GET", "/api/v1/tenants/default/rooms", expect=200)[1]["rooms"]:
            break
        await asyncio.sleep(0.1)
    assert server.admin("GET", "/api/v1/tenants/default/rooms", expect=200)[1]["rooms"] == []


async def test_disabling_a_tenant_empties_its_rooms_and_keeps_persistent_ones(server, xmpp):
    server.create_tenant("acme", ["acme.test"])
    server.create_user("alice", "pw", domain="acme.test")
    alice = await login(xmpp, server, "alice@acme.test", create=False)
    kept, temp = "kept@conference.acme.test", "temp@conference.acme.test"
    await instant_room(alice, kept, "Alice")
    await configure(alice, kept, persistentroom="1")
    await instant_room(alice, temp, "Alice")
    server.admin("POST", "/api/v1/tenants/acme/disable", expect=200)
    server.admin("POST", "/api/v1/tenants/acme/enable", expect=200)
    rooms = server.admin("GET", "/api/v1/tenants/acme/rooms", expect=200)[1]["rooms"]
    assert [(r["jid"], r["occupants"]) for r in rooms] == [(kept, 0)]
    # Removing the tenant with --purge deletes its stored rooms too.
    server.admin("DELETE", "/api/v1/tenants/acme?purge=true", expect=204)
    server.create_tenant("acme", ["acme.test"])
    assert server.admin("GET", "/api/v1/tenants/acme/rooms", expect=200)[1]["rooms"] == []


async def test_federated_tenants_share_rooms(server, xmpp):
    server.create_tenant("a", ["a.test"], federate_with=["b"])
    server.create_tenant("b", ["b.test"], federate_with=["a"])
    server.create_user("alice", "pw", domain="a.test")
    server.create_user("bob", "pw", domain="b.test")
    alice = await login(xmpp, server, "alice@a.test", create=False)
    bob = await login(xmpp, server, "bob@b.test", create=False)
    room = "joint@conference.a.test"
    await instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    bob.send_message(mto=room, mbody="hello from b", mtype="groupchat")
    await groupchat_from(alice, room, "Bob", "hello from b")
    shown = server.admin("GET", f"/api/v1/tenants/a/rooms/{room}", expect=200)[1]
    assert sorted(o["jid"] for o in shown["occupants"]) == ["alice@a.test", "bob@b.test"]
    # The room belongs to tenant a: tenant b's API does not reach it.
    server.admin("GET", f"/api/v1/tenants/b/rooms/{room}", expect=404)


async def test_disabling_the_tenant_removes_occupants_with_332(server, xmpp):
    server.create_tenant("a", ["a.test"], federate_with=["b"])
    server.create_tenant("b", ["b.test"], federate_with=["a"])
    server.create_user("alice", "pw", domain="a.test")
    server.create_user("bob", "pw", domain="b.test")
    alice = await login(xmpp, server, "alice@a.test", create=False)
    bob = await login(xmpp, server, "bob@b.test", create=False)
    room = "joint@conference.a.test"
    await instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    server.admin("POST", "/api/v1/tenants/a/disable", expect=200)
    # Bob's session (tenant b) stays: the presence is how he learns the room is gone.
    for client, nick in ((bob, "Bob"), (alice, "Alice")):
        gone = await presence_of(client, room, nick, "unavailable")
        assert {110, 332} <= codes(gone), gone
        assert gone["muc"]["role"] == "none"


async def test_server_shutdown_removes_occupants_with_332(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"closing@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    await asyncio.to_thread(server.stop)
    for client, nick in ((alice, "Alice"), (bob, "Bob")):
        gone = await presence_of(client, room, nick, "unavailable")
        assert {110, 332} <= codes(gone), gone


def test_a_nick_changed_by_the_service_is_announced_with_210(server):
    server.create_user("dave", "pw")
    with RawStream.connect(server.c2s_direct_tls, tls=True) as raw:
        raw.login_plain("dave", "pw")
        # The service trims and collapses whitespace: the nick becomes "Dave Smith".
        raw.send(f"<presence to='nicks@{SERVICE}/ Dave   Smith '>"
                 "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
        raw.read_until(b"</presence>")
        own = raw.received.decode()
        assert f"nicks@{SERVICE}/Dave Smith" in own, own
        assert re.search(r"code=['\"]210['\"]", own), own
        assert re.search(r"code=['\"]110['\"]", own), own


async def test_voice_request_is_approved_by_a_moderator(server, xmpp):
    alice = await login(xmpp, server, "alice")
    bob = await login(xmpp, server, "bob")
    room = f"speak@{SERVICE}"
    await instant_room(alice, room, "Alice")
    await configure(alice, room, moderatedroom="1")
    pres, *_ = await join(bob, room, "Bob")
    assert pres["muc"]["role"] == "visitor"

    request = bob.plugin["xep_0004"].make_form(ftype="submit")
    request.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#request")
    request.add_field(var="muc#role", value="participant")
    msg = bob.make_message(mto=room)
    msg.append(request)
    msg.send()

    asked = await alice.messages.take(
        lambda m: str(m["from"]) == room and m["form"]["title"] == "Voice request",
        10, "voice request")
    values = asked["form"]["values"]
    assert values["muc#roomnick"] == "Bob"
    assert JID(values["muc#jid"]).bare == "bob@localhost"
    answer = alice.plugin["xep_0004"].make_form(ftype="submit")
    answer.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#request")
    for var in ("muc#role", "muc#jid", "muc#roomnick"):
        answer.add_field(var=var, value=str(values[var]))
    answer.add_field(var="muc#request_allow", ftype="boolean", value=True)
    reply = alice.make_message(mto=room)
    reply.append(answer)
    reply.send()

    voiced = await presence_of(bob, room, "Bob", role="participant")
    assert 110 in codes(voiced)
    bob.send_message(mto=room, mbody="thanks for the voice", mtype="groupchat")
    await groupchat_from(alice, room, "Bob", "thanks for the voice")


async def test_owner_form_edits_the_owner_and_admin_lists(server, xmpp):
    alice = await login(xmpp, server, "alice")
    room = f"lists@{SERVICE}"
    await instant_room(alice, room, "Alice")
    form = await alice.plugin["xep_0045"].get_room_config(room, timeout=10)
    owners = {f["var"]: f for f in form["fields"]}["muc#roomconfig_roomowners"]
    assert owners["type"] == "jid-multi"
    assert [str(j) for j in owners.get_value()] == ["alice@localhost"]

    async def submit(var, jids):
        f = alice.plugin["xep_0004"].make_form(ftype="submit")
        f.add_field(var=var, ftype="jid-multi", value=jids)
        await alice.plugin["xep_0045"].set_room_config(room, f, timeout=10)

    await submit("muc#roomconfig_roomadmins", ["bob@localhost"])
    admins = await alice.plugin["xep_0045"].get_affiliation_list(room, "admin", timeout=10)
    assert [str(j) for j in admins] == ["bob@localhost"]
    # The last owner cannot be removed.
    with pytest.raises(IqError) as err:
        await submit("muc#roomconfig_roomowners", [])
    assert error_condition(err.value) == "conflict"
    await submit("muc#roomconfig_roomowners", ["alice@localhost", "carol@localhost"])
    owners = await alice.plugin["xep_0045"].get_affiliation_list(room, "owner", timeout=10)
    assert sorted(str(j) for j in owners) == ["alice@localhost", "carol@localhost"]


async def test_a_rooms_affiliation_list_is_capped(server, xmpp):
    server.create_tenant("acme", ["acme.test"], muc={"max_affiliations": 2})
    server.create_user("alice", "pw", domain="acme.test")
    alice = await login(xmpp, server, "alice@acme.test", create=False)
    room = "capped@conference.acme.test"
    await instant_room(alice, room, "Alice")
    muc = alice.plugin["xep_0045"]
    await muc.set_affiliation(room, "member", jid="bob@acme.test", timeout=10)
    with pytest.raises(IqError) as err:
        await muc.set_affiliation(room, "outcast", jid="spam@acme.test", timeout=10)
    assert error_condition(err.value) == "not-allowed"
    # Removing an entry frees its place.
    await muc.set_affiliation(room, "none", jid="bob@acme.test", timeout=10)
    await muc.set_affiliation(room, "outcast", jid="spam@acme.test", timeout=10)
    # The cap bounds storage: only the operator may change it.
    token = server.admin("POST", "/api/v1/tenants/acme/token", expect=201)[1]["token"]
    server.admin("PATCH", "/api/v1/tenants/acme", {"muc": {"max_affiliations": 0}}, expect=403,
                 token=token)


@pytest.mark.server_config({"drain": {"see_other_host": "other.example:5222", "deadline": 10}})
async def test_a_drain_removes_occupants_with_332_before_sending_clients_away(server, xmpp):
    alice = await login(xmpp, server, "alice")
    room = f"moving@{SERVICE}"
    await instant_room(alice, room, "Alice")
    server.admin("POST", "/api/v1/drain", expect=(200, 202))
    gone = await presence_of(alice, room, "Alice", "unavailable")
    assert {110, 332} <= codes(gone), gone
