"""Client-to-server interop with slixmpp: login, roster, presence, messages, blocking.

Each test gets a fresh server (``server``) and a client pool (``xmpp``); see
conftest.py. Every wait is bounded (harness.xmpp.WAIT unless given).
"""

from __future__ import annotations

import pytest

from harness.xmpp import LoginFailed

DELAY_NS = "urn:xmpp:delay"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def session_of(server, bare_jid: str) -> list[dict]:
    """The admin API's sessions for ``bare_jid``."""
    return [s for s in server.sessions() if s["jid"].split("/")[0] == bare_jid]


# --- authentication -----------------------------------------------------------

async def test_starttls_scram_sha256_login(server, xmpp):
    server.create_user("alice", "correct horse")
    alice = await xmpp.connect(server, "alice", "correct horse", mech="SCRAM-SHA-256")

    assert alice.boundjid.bare == "alice@localhost"
    assert alice.boundjid.resource, "server must bind a resource"
    assert alice.plugin["feature_mechanisms"].mech.name == "SCRAM-SHA-256"

    sessions = session_of(server, "alice@localhost")
    assert [s["jid"] for s in sessions] == [alice.jid]
    assert sessions[0]["transport"] == "tls"


async def test_wrong_password_rejected_then_correct_login_works(server, xmpp):
    server.create_user("alice", "right")

    with pytest.raises(LoginFailed) as failed:
        await xmpp.connect(server, "alice", "wrong", mech="SCRAM-SHA-256")
    assert failed.value.reason in ("failed_auth", "failed_all_auth"), failed.value
    assert session_of(server, "alice@localhost") == []

    alice = await xmpp.connect(server, "alice", "right", mech="SCRAM-SHA-256")
    assert alice.boundjid.bare == "alice@localhost"
    assert len(session_of(server, "alice@localhost")) == 1


async def test_unknown_user_rejected(server, xmpp):
    with pytest.raises(LoginFailed):
        await xmpp.connect(server, "nobody", "pw", mech="SCRAM-SHA-256")


async def test_plain_over_direct_tls(server, xmpp):
    server.create_user("alice", "pw")
    alice = await xmpp.connect(server, "alice", "pw", direct_tls=True, mech="PLAIN")
    assert alice.boundjid.bare == "alice@localhost"
    assert alice.plugin["feature_mechanisms"].mech.name == "PLAIN"
    assert len(session_of(server, "alice@localhost")) == 1


async def test_two_resources_of_one_user(server, xmpp):
    server.create_user("alice", "pw")
    a1 = await xmpp.connect(server, "alice", "pw", resource="phone")
    a2 = await xmpp.connect(server, "alice", "pw", resource="laptop", direct_tls=True)
    assert a1.jid != a2.jid
    assert sorted(s["jid"] for s in session_of(server, "alice@localhost")) == sorted([a1.jid, a2.jid])


# --- roster and presence -------------------------------------------------------

async def test_subscription_handshake_and_presence(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await xmpp.connect(server, "alice", "pw", status="alice here")
    bob = await xmpp.connect(server, "bob", "pw", status="bob here")

    # alice -> bob: subscribe; bob approves and asks back; alice approves.
    alice.send_presence(pto=bob.bare, ptype="subscribe")
    await bob.presence_from(alice.bare, "subscribe")
    bob.send_presence(pto=alice.bare, ptype="subscribed")
    bob.send_presence(pto=alice.bare, ptype="subscribe")
    await alice.presence_from(bob.bare, "subscribed")
    await alice.presence_from(bob.bare, "subscribe")
    alice.send_presence(pto=bob.bare, ptype="subscribed")
    await bob.presence_from(alice.bare, "subscribed")

    # Both rosters, as the server stores them.
    await alice.wait_roster_subscription(bob.bare, "both")
    await bob.wait_roster_subscription(alice.bare, "both")

    # Once approved, each side gets the other's current presence (RFC 6121 3.1.5).
    await alice.presence_from(bob.bare, "available", status="bob here")
    await bob.presence_from(alice.bare, "available", status="alice here")

    # A broadcast presence (no 'to') now reaches the subscriber, both ways.
    alice.send_presence(pstatus="alice busy", pshow="dnd")
    p = await bob.presence_from(alice.bare, "available", status="alice busy")
    assert p["show"] == "dnd"
    assert p["from"].full == alice.jid
    bob.send_presence(pstatus="bob away", pshow="away")
    p = await alice.presence_from(bob.bare, "available", status="bob away")
    assert p["show"] == "away"

    # And going offline is broadcast too.
    await bob.stop()
    await alice.presence_from(bob.bare, "unavailable")


# --- messages -----------------------------------------------------------------

async def test_chat_message(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    bob = await xmpp.connect(server, "bob", "pw")

    alice.send_message(mto=bob.bare, mbody="hello bob", mtype="chat")
    msg = await bob.next_message()
    assert msg["body"] == "hello bob"
    assert msg["from"].full == alice.jid, "server must stamp the sender's full JID"
    assert msg["type"] == "chat"


@pytest.mark.async_timeout(120)
async def test_500_messages_arrive_complete_and_in_order(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    bob = await xmpp.connect(server, "bob", "pw")

    count = 500
    for i in range(count):
        alice.send_message(mto=bob.jid, mbody=f"msg {i}", mtype="chat")

    bodies = []
    for _ in range(count):
        msg = await bob.next_message(timeout=30)
        bodies.append(msg["body"])
    assert bodies == [f"msg {i}" for i in range(count)]
    await bob.assert_no_message(within=0.5)


async def test_offline_message_delivered_with_delay(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await xmpp.connect(server, "alice", "pw")

    alice.send_message(mto="bob@localhost", mbody="while you were out", mtype="chat")
    # Make sure the server has handled it before bob logs in: an iq round trip
    # on the same stream is processed after the message.
    await alice.get_roster()
    assert session_of(server, "bob@localhost") == []

    bob = await xmpp.connect(server, "bob", "pw")  # sends initial presence
    msg = await bob.next_message()
    assert msg["body"] == "while you were out"
    assert msg["from"].bare == "alice@localhost"
    delay = msg.xml.find(f"{{{DELAY_NS}}}delay")
    assert delay is not None, f"no XEP-0203 delay element in {msg}"
    assert delay.get("stamp"), f"delay without stamp in {msg}"
    assert msg["delay"]["stamp"] is not None  # parses as a datetime


async def test_message_to_unknown_user_bounces(server, xmpp):
    server.create_user("alice", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    alice.send_message(mto="nobody@localhost", mbody="anyone?", mtype="chat")
    err = await alice.next_error()
    assert err["error"]["condition"] == "service-unavailable"


# --- blocking (XEP-0191) -------------------------------------------------------

async def test_blocking_command(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    bob = await xmpp.connect(server, "bob", "pw")

    await bob.plugin["xep_0191"].block(alice.boundjid.bare, timeout=10)
    assert alice.bare in {j.bare for j in await bob.plugin["xep_0191"].get_blocked_jids(timeout=10)}

    # XEP-0191 3.3: a message to someone who blocked you bounces with
    # service-unavailable and is not delivered.
    alice.send_message(mto=bob.bare, mbody="blocked one", mtype="chat")
    err = await alice.next_error()
    assert err["error"]["condition"] == "service-unavailable"
    assert err["from"].bare == bob.bare

    await bob.plugin["xep_0191"].unblock(alice.boundjid.bare, timeout=10)
    assert await bob.plugin["xep_0191"].get_blocked_jids(timeout=10) == set()

    alice.send_message(mto=bob.bare, mbody="after unblock", mtype="chat")
    # Messages from alice arrive in order, so the first one bob sees proves the
    # blocked one was dropped rather than delayed.
    msg = await bob.next_message()
    assert msg["body"] == "after unblock"
