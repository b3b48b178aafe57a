"""What was accepted before a clean restart is still there after it."""

from __future__ import annotations


async def test_users_roster_and_offline_messages_survive_restart(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    bob = await xmpp.connect(server, "bob", "pw")

    # alice subscribes to bob and bob approves: alice "to", bob "from".
    alice.send_presence(pto=bob.bare, ptype="subscribe")
    await bob.presence_from(alice.bare, "subscribe")
    bob.send_presence(pto=alice.bare, ptype="subscribed")
    await alice.wait_roster_subscription(bob.bare, "to")
    await bob.stop()

    alice.send_message(mto=bob.bare, mbody="kept across restart", mtype="chat")
    await alice.get_roster()  # round trip: the message has been handled
    await xmpp.aclose()

    server.restart()  # SIGTERM (must exit 0), same data dir, maybe new ports

    alice = await xmpp.connect(server, "alice", "pw")
    assert (await alice.fetch_roster())["bob@localhost"]["subscription"] == "to"
    bob = await xmpp.connect(server, "bob", "pw")
    assert (await bob.fetch_roster())["alice@localhost"]["subscription"] == "from"
    msg = await bob.next_message()
    assert msg["body"] == "kept across restart"


def test_admin_user_lifecycle(server):
    server.create_user("erin", "pw1")
    assert "erin" in str(server.users())
    server.set_password("erin", "pw2")
    server.delete_user("erin")
    assert "erin" not in str(server.users())
