"""Multi-user chat (XEP-0045) with slixmpp's xep_0045 plugin: rooms, joins, broadcast,
moderation, refusals, history, persistence, destruction, limits, tenant isolation and
the meeting management API/CLI."""

from __future__ import annotations

import asyncio
import datetime
import subprocess

import pytest
from slixmpp.exceptions import IqError, PresenceError

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
    for var, field in form["fields"].items():
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


async def presence_of(client, room, nick, ptype="available", timeout=10):
    def match(p):
        return (str(p["from"]) == f"{room}/{nick}"
                and (p.xml.get("type") or "available") == ptype)
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
