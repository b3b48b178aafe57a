"""Message archive (XEP-0313 mam:2 with extended features), stanza ids (XEP-0359) and
retraction (XEP-0424), from slixmpp clients: paging through 250 messages both ways,
filters, flip-page, limits and errors, preferences, offline messages sharing the
archive's stanza-id, room archives, deletion with the account, and a tenant that turns
archiving off."""

from __future__ import annotations

import asyncio
import itertools
from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness.xmpp import DEFAULT_PLUGINS, WAIT

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"
FWD = "urn:xmpp:forward:0"
CLIENT = "jabber:client"
_ids = itertools.count()


class Result:
    """One archived message as a query returned it."""

    def __init__(self, el: ET.Element):
        self.id = el.get("id")
        fwd = el.find(f"{{{FWD}}}forwarded")
        self.stamp = fwd.find("{urn:xmpp:delay}delay").get("stamp")
        self.message = fwd.find(f"{{{CLIENT}}}message")
        self.body = self.message.findtext(f"{{{CLIENT}}}body")
        self.sender = self.message.get("from")


class Fin:
    def __init__(self, el: ET.Element):
        self.complete = el.get("complete") in ("true", "1")
        s = el.find(f"{{{RSM}}}set")
        self.count = int(s.findtext(f"{{{RSM}}}count"))
        first = s.find(f"{{{RSM}}}first")
        self.first = first.text if first is not None else None
        self.first_index = int(first.get("index")) if first is not None and first.get("index") else None
        self.last = s.findtext(f"{{{RSM}}}last")


async def mam_query(client, *, to: str | None = None, fields: dict | None = None,
                    max: int | None = None, after: str | None = None,
                    before: str | None = None, flip: bool = False,
                    raw_form: str | None = None) -> tuple[list[Result], Fin]:
    """One XEP-0313 query; raises IqError on an error answer."""
    qid = f"q{next(_ids)}"
    results: list[Result] = []

    def on_result(msg) -> None:
        r = msg.xml.find(f"{{{MAM}}}result")
        if r is not None and r.get("queryid") == qid:
            results.append(Result(r))

    name = f"mam {qid}"
    client.register_handler(Callback(name, MatchXPath(f"{{{CLIENT}}}message/{{{MAM}}}result"), on_result))
    form = raw_form or ""
    if fields and not raw_form:
        form = f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
        for var, values in fields.items():
            values = values if isinstance(values, list) else [values]
            form += f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"
        form += "</x>"
    rsm = ""
    if max is not None or after is not None or before is not None:
        rsm = f"<set xmlns='{RSM}'>"
        if max is not None:
            rsm += f"<max>{max}</max>"
        if after is not None:
            rsm += f"<after>{after}</after>"
        if before is not None:
            rsm += f"<before>{before}</before>" if before else "<before/>"
        rsm += "</set>"
    iq = client.Iq()
    iq["type"] = "set"
    if to:
        iq["to"] = to
    iq.append(ET.fromstring(f"<query xmlns='{MAM}' queryid='{qid}'>{form}{rsm}{'<flip-page/>' if flip else ''}</query>"))
    try:
        answer = await iq.send(timeout=WAIT)
    finally:
        client.remove_handler(name)
    return results, Fin(answer.xml.find(f"{{{MAM}}}fin"))


async def error_of(coro) -> str:
    with pytest.raises(IqError) as err:
        await coro
    return err.value.condition


async def chat(server, xmpp, *users: str):
    for u in users:
        server.create_user(u, "pw")
    return [await xmpp.connect(server, u, "pw", resource="r") for u in users]


async def send_and_wait(sender, receiver, bodies: list[str]) -> list:
    for b in bodies:
        sender.send_message(mto=receiver.jid, mbody=b, mtype="chat")
    return [await receiver.next_message() for _ in bodies]


@pytest.mark.async_timeout(180)
async def test_paging_through_250_messages_forward_and_backward(server, xmpp):
    alice, bob = await chat(server, xmpp, "alice", "bob")
    bodies = [f"m{i}" for i in range(250)]
    got = await send_and_wait(bob, alice, bodies)
    # Each delivered message carries the id it has in alice's archive.
    ids = [m.xml.find(f"{{{SID}}}stanza-id") for m in got]
    assert all(i is not None and i.get("by") == "alice@localhost" for i in ids)

    seen, after, pages = [], None, 0
    while True:
        results, fin = await mam_query(alice, max=40, after=after)
        pages += 1
        assert fin.count == 250
        seen += results
        if fin.complete:
            break
        after = fin.last
        assert pages < 20
    assert [r.body for r in seen] == bodies
    assert [r.id for r in seen] == [i.get("id") for i in ids], "stanza-ids are the archive ids"
    assert pages == 7

    backward, before = [], ""
    while True:
        results, fin = await mam_query(alice, max=60, before=before)
        backward = results + backward
        if fin.complete:
            assert fin.first_index == 0
            break
        before = fin.first
    assert [r.body for r in backward] == bodies

    # The sender's own archive has the same conversation, outgoing.
    results, fin = await mam_query(bob, max=250, fields={"with": "alice@localhost"})
    assert fin.count == 250 and [r.body for r in results] == bodies
    assert all(r.sender.startswith("bob@localhost") for r in results)

    # A page larger than the limit is capped, not refused.
    results, fin = await mam_query(alice, max=100000)
    assert len(results) == 250 and fin.complete


@pytest.mark.async_timeout(120)
async def test_filters_flip_page_and_errors(server, xmpp):
    alice, bob, carol = await chat(server, xmpp, "alice", "bob", "carol")
    await send_and_wait(bob, alice, ["b1", "b2"])
    await send_and_wait(carol, alice, ["c1"])
    await send_and_wait(bob, alice, ["b3"])
    everything, _ = await mam_query(alice)
    assert [r.body for r in everything] == ["b1", "b2", "c1", "b3"]
    ids = [r.id for r in everything]

    results, fin = await mam_query(alice, fields={"with": "bob@localhost"})
    assert [r.body for r in results] == ["b1", "b2", "b3"] and fin.count == 3
    results, _ = await mam_query(alice, fields={"with": bob.jid})
    assert [r.body for r in results] == ["b1", "b2", "b3"], "a full JID matches its resource"
    results, _ = await mam_query(alice, fields={"with": "bob@localhost/elsewhere"})
    assert results == []
    results, _ = await mam_query(alice, fields={"after-id": ids[0], "before-id": ids[3]})
    assert [r.body for r in results] == ["b2", "c1"]
    results, _ = await mam_query(alice, fields={"ids": [ids[3], ids[1]]})
    assert [r.body for r in results] == ["b2", "b3"]
    # Stamps have millisecond precision (several messages may share one): the result is
    # exactly the messages stamped at or after the start.
    start = everything[2].stamp
    results, _ = await mam_query(alice, fields={"start": start})
    assert [r.body for r in results] == [r.body for r in everything if r.stamp >= start]
    assert [r.body for r in results][-2:] == ["c1", "b3"]
    results, _ = await mam_query(alice, fields={"end": "2000-01-01T00:00:00Z"})
    assert results == []
    results, fin = await mam_query(alice, max=2, before="", flip=True)
    assert [r.body for r in results] == ["b3", "c1"] and not fin.complete

    assert await error_of(mam_query(alice, fields={"start": "not a date"})) == "bad-request"
    assert await error_of(mam_query(alice, fields={"shoe-size": "44"})) == "bad-request"
    bad_form = f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:0</value></field></x>"
    assert await error_of(mam_query(alice, raw_form=bad_form)) == "bad-request"
    assert await error_of(mam_query(alice, after="00000000000000ff")) == "item-not-found"
    assert await error_of(mam_query(alice, max="many")) == "bad-request"

    # Carol's archive holds only her side; alice's messages are not hers to read.
    results, fin = await mam_query(carol)
    assert [r.body for r in results] == ["c1"]
    assert await error_of(mam_query(carol, to="alice@localhost")) in ("forbidden", "service-unavailable")


async def test_disco_and_forged_stanza_ids(server, xmpp):
    alice, bob = await chat(server, xmpp, "alice", "bob")
    info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
    for f in (MAM, MAM + "#extended", SID):
        assert f in info["disco_info"]["features"]
    forged = bob.make_message(mto=alice.jid, mbody="trust me", mtype="chat")
    forged.append(ET.fromstring(f"<stanza-id xmlns='{SID}' id='0000000000000001' by='alice@localhost'/>"))
    forged.send()
    got = await alice.next_message()
    ids = [e for e in got.xml.findall(f"{{{SID}}}stanza-id") if e.get("by") == "alice@localhost"]
    assert len(ids) == 1 and ids[0].get("id") != "0000000000000001"


@pytest.mark.async_timeout(90)
async def test_offline_message_and_archive_share_the_stanza_id(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    bob = await xmpp.connect(server, "bob", "pw")
    bob.send_message(mto="alice@localhost", mbody="while you were away", mtype="chat")
    # The query is a round trip: bob's message has been handled (stored offline).
    results, _ = await mam_query(bob, fields={"with": "alice@localhost"})
    assert [r.body for r in results] == ["while you were away"]
    alice = await xmpp.connect(server, "alice", "pw")
    got = await alice.next_message()
    sid = [e for e in got.xml.findall(f"{{{SID}}}stanza-id") if e.get("by") == "alice@localhost"]
    assert len(sid) == 1
    archived, _ = await mam_query(alice)
    assert [r.id for r in archived] == [sid[0].get("id")]


async def test_preferences_never_and_always(server, xmpp):
    alice, bob, carol = await chat(server, xmpp, "alice", "bob", "carol")
    iq = alice.Iq()
    iq["type"] = "set"
    iq.append(ET.fromstring(
        f"<prefs xmlns='{MAM}' default='never'><always><jid>carol@localhost</jid></always><never/></prefs>"))
    answer = await iq.send(timeout=WAIT)
    assert answer.xml.find(f"{{{MAM}}}prefs").get("default") == "never"
    await send_and_wait(bob, alice, ["not kept"])
    await send_and_wait(carol, alice, ["kept"])
    results, _ = await mam_query(alice)
    assert [r.body for r in results] == ["kept"]
    get = alice.Iq()
    get["type"] = "get"
    get.append(ET.fromstring(f"<prefs xmlns='{MAM}'/>"))
    prefs = (await get.send(timeout=WAIT)).xml.find(f"{{{MAM}}}prefs")
    assert prefs.findtext(f"{{{MAM}}}always/{{{MAM}}}jid") == "carol@localhost"
    bad = alice.Iq()
    bad["type"] = "set"
    bad.append(ET.fromstring(f"<prefs xmlns='{MAM}' default='sometimes'/>"))
    assert await error_of(bad.send(timeout=WAIT)) == "bad-request"


async def test_retraction_replaces_only_the_senders_own_message(server, xmpp):
    alice, bob = await chat(server, xmpp, "alice", "bob")

    def with_origin(sender, to, body, origin):
        m = sender.make_message(mto=to, mbody=body, mtype="chat")
        m.append(ET.fromstring(f"<origin-id xmlns='{SID}' id='{origin}'/>"))
        m.send()

    with_origin(bob, alice.jid, "oops", "o-1")
    with_origin(alice, bob.jid, "mine", "o-2")
    assert (await alice.next_message())["body"] == "oops"
    assert (await bob.next_message())["body"] == "mine"
    # Bob retracts his message, and tries to retract alice's.
    for target in ("o-1", "o-2"):
        r = bob.make_message(mto=alice.jid, mbody="retracted", mtype="chat")
        r.append(ET.fromstring(f"<retract xmlns='urn:xmpp:message-retract:1' id='{target}'/>"))
        r.send()
        await alice.next_message()
    for owner in (alice, bob):
        results, _ = await mam_query(owner)
        by_body = [r.body for r in results]
        assert "oops" not in by_body, f"{owner.bare} still has the retracted message"
        assert "mine" in by_body, f"{owner.bare} lost alice's message"
        tomb = [r for r in results if r.message.find("{urn:xmpp:message-retract:1}retracted") is not None]
        assert len(tomb) == 1


async def test_account_deletion_removes_the_archive(server, xmpp):
    alice, bob = await chat(server, xmpp, "alice", "bob")
    await send_and_wait(bob, alice, ["before deletion"])
    await alice.stop()
    server.delete_user("alice")
    server.create_user("alice", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    results, fin = await mam_query(alice)
    assert results == [] and fin.count == 0


@pytest.mark.async_timeout(90)
async def test_room_archive_is_read_at_the_room_by_those_allowed(server, xmpp):
    for u in ("alice", "bob", "eve"):
        server.create_user(u, "pw")
    alice = await xmpp.connect(server, "alice", "pw", plugins=DEFAULT_PLUGINS + ("xep_0004", "xep_0045"))
    bob = await xmpp.connect(server, "bob", "pw", plugins=DEFAULT_PLUGINS + ("xep_0004", "xep_0045"))
    eve = await xmpp.connect(server, "eve", "pw")
    room = "team@conference.localhost"
    await alice.plugin["xep_0045"].join_muc_wait(room, "alice", maxstanzas=0, timeout=WAIT)
    # Make it members-only, with bob a member.
    submit = alice.plugin["xep_0004"].make_form(ftype="submit")
    submit.add_field(var="muc#roomconfig_membersonly", value="1")
    await alice.plugin["xep_0045"].set_room_config(room, submit, timeout=WAIT)
    await alice.plugin["xep_0045"].set_affiliation(room, "member", jid="bob@localhost")
    await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=WAIT)
    for i in range(3):
        alice.send_message(mto=room, mbody=f"g{i}", mtype="groupchat")
    seen = []
    while len(seen) < 3:
        m = await bob.next_message(lambda m: m["type"] == "groupchat")
        sid = m.xml.find(f"{{{SID}}}stanza-id")
        assert sid is not None and sid.get("by") == room
        seen.append(sid.get("id"))

    results, fin = await mam_query(bob, to=room)
    assert [r.body for r in results] == ["g0", "g1", "g2"] and fin.count == 3
    assert [r.id for r in results] == seen
    assert all(r.sender == f"{room}/alice" for r in results)
    results, _ = await mam_query(bob, to=room, fields={"with": f"{room}/bob"})
    assert results == []
    assert await error_of(mam_query(eve, to=room)) == "forbidden"


@pytest.mark.async_timeout(90)
async def test_a_tenant_can_turn_archiving_off(server, xmpp):
    server.create_tenant("vault", ["vault.test"], features={"mam": False})
    server.create_user("alice", "pw", domain="vault.test")
    server.create_user("bob", "pw", domain="vault.test")
    clients = []
    for u in ("alice", "bob"):
        c = xmpp.make(f"{u}@vault.test/r", "pw")
        await c.start(*server.c2s_starttls)
        c.send_presence()
        clients.append(c)
    alice, bob = clients
    bob.send_message(mto=alice.jid, mbody="off the record", mtype="chat")
    got = await alice.next_message()
    assert got.xml.find(f"{{{SID}}}stanza-id") is None
    info = await alice.plugin["xep_0030"].get_info(jid="alice@vault.test")
    assert MAM not in info["disco_info"]["features"]
    assert await error_of(mam_query(alice)) in ("service-unavailable", "feature-not-implemented")
