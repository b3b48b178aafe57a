"""Room policies (issue 6): a tenant's `room-policy` plugin decides on its MUC rooms, and
each decision changes what slixmpp clients see. The tenant authenticates through the
allowlist plugin (which gives `hal` the role `host`) and its rooms follow
plugins/meeting-policy; hostile-policy shows failing closed and failing open."""

from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from harness.xmpp import DEFAULT_PLUGINS, Inbox
from test_plugins import allowlist_config, install, wasm_path

MUC_PLUGINS = DEFAULT_PLUGINS + ("xep_0004", "xep_0045")
DOMAIN = "meet.test"
SERVICE = f"conference.{DOMAIN}"
USERS = ("ann", "bob", "cat", "dan", "hal")
UNAVAILABLE = "the room policy is unavailable; try again later"

MEETING = {
    "room_patterns": ["team-*"],
    "max_participants": 3,
    "moderator_if": "role=host",
    "max_message_bytes": 40,
    "redact_words": ["secret"],
    "nick_changes": "moderators",
    "locked_config": {"muc#roomconfig_persistentroom": "0"},
}


def meeting_tenant(server, name="meet", domain=DOMAIN, *, policy=MEETING,
                   policy_wasm="meeting_policy", fail_open=False):
    """A tenant whose users log in through the allowlist plugin (slot `auth`, `hal` has
    the role `host`) and whose rooms follow a room policy (slot `rooms`)."""
    server.create_tenant(name, [domain], auth={"method": "plugin", "plugin": "auth"},
                         room_policy={"plugin": "rooms", "fail_open": fail_open})
    install(server, name, "auth", wasm_path("allowlist").read_bytes(),
            allowlist_config({u: "pw" for u in USERS}, roles={"hal": "host"}))
    _, info = install(server, name, "rooms", wasm_path(policy_wasm).read_bytes(), policy)
    assert info["world"] == "room-policy", info


async def login(xmpp, server, name, domain=DOMAIN):
    client = await xmpp.connect(server, f"{name}@{domain}", "pw", plugins=MUC_PLUGINS)
    client.muc_presences = Inbox("room presence")
    client.add_event_handler("groupchat_presence", client.muc_presences.put)
    client.muc_errors = Inbox("groupchat error")
    client.add_event_handler("groupchat_message_error", client.muc_errors.put)
    client.presence_errors = Inbox("presence error")
    return client


def codes(stanza) -> set[int]:
    return set(stanza["muc"]["status_codes"])


async def join(client, room, nick):
    return await client.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0, timeout=10)


async def instant_room(client, room, nick):
    pres = (await join(client, room, nick))[0]
    assert {110, 201} <= codes(pres), pres
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    await client.plugin["xep_0045"].set_room_config(room, form, timeout=10)
    return pres


async def refused_join(client, room, nick) -> PresenceError:
    with pytest.raises(PresenceError) as err:
        await join(client, room, nick)
    return err.value


async def groupchat(client, room, nick, timeout=10):
    def match(m):
        return m["type"] == "groupchat" and str(m["from"]) == f"{room}/{nick}" and m["body"]
    return await client.messages.take(match, timeout, f"groupchat from {nick}")


async def test_each_decision_point_changes_what_clients_see(server, xmpp):
    meeting_tenant(server)
    ann, bob, cat, dan, hal = [await login(xmpp, server, u) for u in USERS]

    # Creation: the name must match team-*.
    err = await refused_join(ann, f"party@{SERVICE}", "Ann")
    assert err.condition == "forbidden" and err.text == "room names must match team-*", err

    # The first joiner (the creator) moderates; the next user participates.
    room = f"team-blue@{SERVICE}"
    pres = await instant_room(ann, room, "Ann")
    assert pres["muc"]["role"] == "moderator" and pres["muc"]["affiliation"] == "owner"
    pres = (await join(bob, room, "Bob"))[0]
    assert pres["muc"]["role"] == "participant", pres
    # hal's authenticator role `host` makes it a moderator without any affiliation.
    pres = (await join(hal, room, "Hal"))[0]
    assert pres["muc"]["role"] == "moderator" and pres["muc"]["affiliation"] == "none", pres
    seen = await ann.muc_presences.take(
        lambda p: str(p["from"]) == f"{room}/Hal", 10, "Hal's presence")
    assert seen["muc"]["role"] == "moderator"
    # Three participants: the fourth is refused with the policy's reason.
    err = await refused_join(cat, room, "Cat")
    assert err.condition == "forbidden" and err.text == "the meeting is full (3 participants)"

    # Messages: a long one is refused with an error to the sender only; a body with a
    # redacted word is broadcast replaced; a normal one as sent.
    bob.send_message(mto=room, mbody="x" * 41, mtype="groupchat")
    error = await bob.muc_errors.take(None, 10, "error for the long message")
    assert error["error"]["condition"] == "not-acceptable"
    assert error["error"]["text"] == "messages are limited to 40 bytes (this one has 41)"
    bob.send_message(mto=room, mbody="the secret plan", mtype="groupchat")
    for c in (ann, bob, hal):
        msg = await groupchat(c, room, "Bob")
        assert msg["body"] == "the ****** plan", msg
    bob.send_message(mto=room, mbody="hello", mtype="groupchat")
    for c in (ann, bob, hal):
        assert (await groupchat(c, room, "Bob"))["body"] == "hello"
    # Nobody received the refused message.
    assert not [m for m in ann.messages.items if m["body"] == "x" * 41]

    # Nick changes: participants may not, moderators may.
    # (slixmpp reports MUC error presences only when they carry <x xmlns='…muc'/>; catch
    # any error presence from the room, then check the marker is there.)
    bob.register_handler(Callback("nick error", StanzaPath("presence@type=error"),
                                  bob.presence_errors.put))
    bob.send_presence(pto=f"{room}/Robert")
    perr = await bob.presence_errors.take(
        lambda p: str(p["from"]) == f"{room}/Robert", 10, "nick change error")
    assert perr["error"]["condition"] == "not-acceptable"
    assert perr["error"]["text"] == "only moderators may change their nickname"
    # XEP-0045 §7.6: the error presence carries the MUC marker.
    assert perr.xml.find("{http://jabber.org/protocol/muc}x") is not None, perr
    ann.send_presence(pto=f"{room}/Annie")
    new = await bob.muc_presences.take(
        lambda p: str(p["from"]) == f"{room}/Annie", 10, "Annie's presence")
    assert new["muc"]["role"] == "moderator"

    # Configuration: the owner may not make a meeting persistent.
    form = await ann.plugin["xep_0045"].get_room_config(room, timeout=10)
    assert "var=\"muc#roomconfig_persistentroom\"" in str(form), form
    submit = ann.plugin["xep_0004"].make_form(ftype="submit")
    submit.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#roomconfig",
                     ftype="hidden")
    submit.add_field(var="muc#roomconfig_persistentroom", value="1", ftype="boolean")
    with pytest.raises(IqError) as err:
        await ann.plugin["xep_0045"].set_room_config(room, submit, timeout=10)
    assert err.value.condition == "forbidden"
    assert err.value.text == "muc#roomconfig_persistentroom is fixed to 0 for meetings"

    # The plugin counted every decision, with denials.
    _, body = server.admin("GET", "/api/v1/tenants/meet/plugins", expect=200)
    rooms = next(p for p in body["plugins"] if p["slot"] == "rooms")
    assert rooms["bound_to_room_policy"] and not rooms["bound_to_auth"]
    # 2 creations, 4 joins, the instant form, 3 messages, 2 nick changes, 1 form; denied:
    # the name, the full room, the long message, the nick change, the persistent room.
    stats = rooms["stats"]
    assert (stats["calls"], stats["denied"], stats["failed"]) == (13, 5, {}), stats


async def test_swapping_the_policy_applies_to_the_next_join_only(server, xmpp):
    meeting_tenant(server, policy={"max_participants": 2})
    ann, bob, cat, dan, _ = [await login(xmpp, server, u) for u in USERS]
    room = f"standup@{SERVICE}"
    await instant_room(ann, room, "Ann")
    await join(bob, room, "Bob")
    err = await refused_join(cat, room, "Cat")
    assert err.text == "the meeting is full (2 participants)"

    # Swap while the room is active: a cap of 3, and nobody but hosts moderates.
    install(server, "meet", "rooms", wasm_path("meeting_policy").read_bytes(),
            {"max_participants": 3, "moderator_if": "role=host"})
    pres = (await join(cat, room, "Cat"))[0]
    assert pres["muc"]["role"] == "participant"
    err = await refused_join(dan, room, "Dan")
    assert err.text == "the meeting is full (3 participants)"

    # The occupants from before the swap are undisturbed: still there, same roles, and
    # the room keeps working for them.
    await ann.muc_presences.take(lambda p: str(p["from"]) == f"{room}/Cat", 10, "Cat joining")
    roster = {nick: ann.plugin["xep_0045"].get_jid_property(room, nick, "role")
              for nick in ("Ann", "Bob", "Cat")}
    assert roster == {"Ann": "moderator", "Bob": "participant", "Cat": "participant"}, roster
    bob.send_message(mto=room, mbody="still here", mtype="groupchat")
    for c in (ann, bob, cat):
        assert (await groupchat(c, room, "Bob"))["body"] == "still here"
    assert not [p for p in ann.muc_presences.items
                if p["type"] == "unavailable" and p["from"].resource in ("Ann", "Bob")]


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "open"])
async def test_a_failing_policy_fails_closed_unless_the_tenant_opts_into_open(
        server, xmpp, fail_open):
    meeting_tenant(server, policy={"mode": "trap"}, policy_wasm="hostile_policy",
                   fail_open=fail_open)
    ann = await login(xmpp, server, "ann")
    room = f"team-x@{SERVICE}"
    if fail_open:
        pres = await instant_room(ann, room, "Ann")
        assert pres["muc"]["role"] == "moderator"
        ann.send_message(mto=room, mbody="works", mtype="groupchat")
        assert (await groupchat(ann, room, "Ann"))["body"] == "works"
    else:
        err = await refused_join(ann, room, "Ann")
        assert err.condition == "forbidden" and err.text == UNAVAILABLE, err
    _, body = server.admin("GET", "/api/v1/tenants/meet/plugins", expect=200)
    rooms = next(p for p in body["plugins"] if p["slot"] == "rooms")
    assert rooms["stats"]["failed"].get("trap", 0) >= 1, rooms["stats"]
    # One log record per failed call, with tenant, plugin and cause first.
    assert "plugin call failed" in server.log_text()
