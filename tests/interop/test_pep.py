"""Personal eventing (XEP-0163) with slixmpp clients: publishing (XEP-0060 subset),
notifications to contacts by presence subscription filtered by XEP-0115 caps
(+notify), the last item for a new resource, access models, items by id / max / RSM,
retract, configure, purge, delete, and the bad inputs; then the profiles built on it:
nicknames (XEP-0172), avatars (XEP-0084, and XEP-0398's hash in presence), bookmarks
(XEP-0402 with the XEP-0048 compatibility node), OMEMO device lists (XEP-0384)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from xml.etree import ElementTree as ET

from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness.xmpp import DEFAULT_PLUGINS, WAIT

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
DATA = "jabber:x:data"
RSM = "http://jabber.org/protocol/rsm"
NICK = "http://jabber.org/protocol/nick"
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_META = "urn:xmpp:avatar:metadata"
BOOKMARKS = "urn:xmpp:bookmarks:1"
OMEMO_DEVICES = "eu.siacs.conversations.axolotl.devicelist"
OMEMO_NS = "eu.siacs.conversations.axolotl"
PEP_PLUGINS = DEFAULT_PLUGINS + ("xep_0115", "xep_0163")


class Events:
    """The PEP notifications a client receives, as (from, node, item ids, element)."""

    def __init__(self, client):
        self.queue: asyncio.Queue = asyncio.Queue()
        client.register_handler(Callback(
            "pep events", MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event"),
            lambda msg: self.queue.put_nowait(msg.xml)))

    async def next(self, node: str | None = None, timeout: float = WAIT):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await asyncio.wait_for(self.queue.get(), max(0.01, deadline - loop.time()))
            event = msg.find(f"{{{EVENT}}}event")
            child = event[0]
            if node is None or child.get("node") == node:
                return msg, child

    async def assert_none(self, node: str, within: float = 2.0) -> None:
        try:
            msg, _ = await self.next(node, timeout=within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected event {ET.tostring(msg)!r}")


async def pep_client(server, xmpp, user: str, interests=(), resource: str | None = None,
                     domain: str | None = None, plugins=PEP_PLUGINS):
    """A logged-in client whose caps carry NODE+notify for each interest, available."""
    jid = f"{user}@{domain or server.domain}" + (f"/{resource}" if resource else "")
    c = xmpp.make(jid, "pw", plugins=plugins)
    c.events = Events(c)
    await c.start(*server.c2s_starttls)
    await c.get_roster(timeout=WAIT)
    for ns in interests:
        c.plugin["xep_0030"].add_feature(f"{ns}+notify")
    await c.plugin["xep_0115"].update_caps(c.boundjid.full, broadcast=False)
    c.send_presence()
    return c


async def befriend(a, b) -> None:
    """Mutual presence subscription between two connected clients."""
    a.send_presence(pto=b.bare, ptype="subscribe")
    await b.presence_from(a.bare, "subscribe")
    b.send_presence(pto=a.bare, ptype="subscribed")
    b.send_presence(pto=a.bare, ptype="subscribe")
    await a.presence_from(b.bare, "subscribe")
    a.send_presence(pto=b.bare, ptype="subscribed")
    await a.wait_roster_subscription(b.bare, "both")
    await b.wait_roster_subscription(a.bare, "both")


def form(form_type: str, fields: dict) -> str:
    out = f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>"
    for var, value in fields.items():
        out += f"<field var='{var}'><value>{value}</value></field>"
    return out + "</x>"


async def iq(client, ty: str, xml: str, to: str | None = None):
    stanza = client.Iq()
    stanza["type"] = ty
    if to:
        stanza["to"] = to
    stanza.append(ET.fromstring(xml))
    return await stanza.send(timeout=WAIT)


async def publish(client, node: str, payload: str, item_id: str | None = None,
                  options: dict | None = None, to: str | None = None):
    item = f"<item id='{item_id}'>" if item_id else "<item>"
    opts = ""
    if options:
        opts = f"<publish-options>{form(PUBSUB + '#publish-options', options)}</publish-options>"
    xml = f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'>{item}{payload}</item></publish>{opts}</pubsub>"
    result = await iq(client, "set", xml, to)
    return result.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish/{{{PUBSUB}}}item").get("id")


async def items(client, owner: str | None, node: str, inner: str = "", attrs: str = "", extra: str = ""):
    xml = f"<pubsub xmlns='{PUBSUB}'><items node='{node}' {attrs}>{inner}</items>{extra}</pubsub>"
    result = await iq(client, "get", xml, owner)
    ps = result.xml.find(f"{{{PUBSUB}}}pubsub")
    ids = [i.get("id") for i in ps.find(f"{{{PUBSUB}}}items")]
    return ids, ps


async def refused(coro) -> tuple[str, str | None, str]:
    """Awaits a request that must fail: (condition, pubsub condition, error type)."""
    try:
        await coro
    except IqError as e:
        err = e.iq.xml.find("{jabber:client}error")
        app = err.find(f"{{{ERRORS}}}*")
        app_name = app.tag.split("}")[1] if app is not None else None
        return e.iq["error"]["condition"], app_name, err.get("type")
    raise AssertionError("the request succeeded")


def nick(name: str) -> str:
    return f"<nick xmlns='{NICK}'>{name}</nick>"


# --- notifications --------------------------------------------------------------------

async def test_publish_notifies_subscribed_contacts_and_own_resources_by_caps(server, xmpp):
    for u in ("alice", "bob", "carol"):
        server.create_user(u, "pw")
    alice = await pep_client(server, xmpp, "alice", [NICK], resource="phone")
    alice2 = await pep_client(server, xmpp, "alice", [NICK], resource="laptop")
    bob = await pep_client(server, xmpp, "bob", [NICK], resource="desk")
    # bob's second client does not ask for nicknames: different caps, no +notify.
    bob_plain = await pep_client(server, xmpp, "bob", [AVATAR_META], resource="tv")
    carol = await pep_client(server, xmpp, "carol", [NICK])
    await befriend(alice, bob)

    await publish(alice, NICK, nick("Alice"), "current")
    for c in (alice, alice2, bob):
        msg, items_el = await c.events.next(NICK)
        assert msg.get("from") == "alice@localhost"
        item = items_el.find(f"{{{EVENT}}}item")
        assert item.get("id") == "current"
        assert item.find(f"{{{NICK}}}nick").text == "Alice"
    # Not subscribed to alice's presence, or not interested: nothing.
    await carol.events.assert_none(NICK)
    await bob_plain.events.assert_none(NICK)

    # A republished id replaces the item: one item, the new payload.
    await publish(alice, NICK, nick("Alice A."), "current")
    _, items_el = await bob.events.next(NICK)
    assert items_el.find(f"{{{EVENT}}}item/{{{NICK}}}nick").text == "Alice A."
    ids, ps = await items(bob, "alice@localhost", NICK)
    assert ids == ["current"]
    assert ps.find(f"{{{PUBSUB}}}items/{{{PUBSUB}}}item/{{{NICK}}}nick").text == "Alice A."


async def test_new_resource_gets_the_last_item_of_nodes_it_wants(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await pep_client(server, xmpp, "alice", [], resource="phone")
    bob = await pep_client(server, xmpp, "bob", [], resource="desk")
    await befriend(alice, bob)
    await publish(alice, NICK, nick("first"), "current")
    await publish(alice, OMEMO_DEVICES, f"<list xmlns='{OMEMO_NS}'><device id='7'/></list>", "current",
                  {"pubsub#access_model": "open"})
    # bob's new resource wants nicknames only: it gets alice's nick, not her devices.
    bob2 = await pep_client(server, xmpp, "bob", [NICK], resource="tablet")
    msg, items_el = await bob2.events.next(NICK)
    assert msg.get("from") == "alice@localhost"
    assert items_el.find(f"{{{EVENT}}}item/{{{NICK}}}nick").text == "first"
    await bob2.events.assert_none(OMEMO_DEVICES)
    # The owner's own new resource gets its own last item too.
    alice2 = await pep_client(server, xmpp, "alice", [OMEMO_DEVICES], resource="laptop")
    _, items_el = await alice2.events.next(OMEMO_DEVICES)
    assert items_el.find(f"{{{EVENT}}}item/{{{OMEMO_NS}}}list/{{{OMEMO_NS}}}device").get("id") == "7"


async def test_new_presence_subscription_gets_the_last_item(server, xmpp):
    """XEP-0163 §4.3: when bob's subscription to alice's presence becomes active, bob's
    available resources that want the node get alice's last item, without a new publish."""
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await pep_client(server, xmpp, "alice", [], resource="phone")
    bob = await pep_client(server, xmpp, "bob", [NICK], resource="desk")
    bob_plain = await pep_client(server, xmpp, "bob", [AVATAR_META], resource="tv")
    await publish(alice, NICK, nick("before we met"), "current")
    await bob.events.assert_none(NICK, within=1.0)

    await befriend(alice, bob)
    msg, items_el = await bob.events.next(NICK)
    assert msg.get("from") == "alice@localhost"
    assert msg.get("to") == bob.boundjid.full
    assert items_el.find(f"{{{EVENT}}}item").get("id") == "current"
    assert items_el.find(f"{{{EVENT}}}item/{{{NICK}}}nick").text == "before we met"
    # The resource whose caps do not want nicknames gets nothing.
    await bob_plain.events.assert_none(NICK)


# --- access models ---------------------------------------------------------------------

async def test_access_models_decide_who_reads(server, xmpp):
    for u in ("alice", "bob", "stranger"):
        server.create_user(u, "pw")
    alice = await pep_client(server, xmpp, "alice")
    bob = await pep_client(server, xmpp, "bob")
    stranger = await pep_client(server, xmpp, "stranger")
    await befriend(alice, bob)

    # OMEMO: device list and bundle are open (XEP-0384): anyone reads them.
    await publish(alice, OMEMO_DEVICES, f"<list xmlns='{OMEMO_NS}'><device id='42'/></list>", "current",
                  {"pubsub#access_model": "open"})
    bundle = f"{OMEMO_NS}.bundles:42"
    await publish(alice, bundle, f"<bundle xmlns='{OMEMO_NS}'><signedPreKeyPublic signedPreKeyId='1'>AAAA</signedPreKeyPublic></bundle>",
                  "current", {"pubsub#access_model": "open"})
    assert (await items(stranger, "alice@localhost", OMEMO_DEVICES))[0] == ["current"]
    assert (await items(stranger, "alice@localhost", bundle))[0] == ["current"]

    # presence (the default): subscribers only.
    await publish(alice, NICK, nick("Alice"), "current")
    assert (await items(bob, "alice@localhost", NICK))[0] == ["current"]
    assert await refused(items(stranger, "alice@localhost", NICK)) == (
        "not-authorized", "presence-subscription-required", "auth")

    # roster: only contacts in an allowed group.
    await publish(alice, "urn:example:roster-only", "<x xmlns='urn:example'/>", "1",
                  {"pubsub#access_model": "roster", "pubsub#roster_groups_allowed": "family"})
    assert (await refused(items(bob, "alice@localhost", "urn:example:roster-only")))[1] == "not-in-roster-group"
    alice.update_roster(bob.bare, groups=["family"], subscription="both")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while (await alice.fetch_roster())[bob.bare]["groups"] != ["family"]:
        assert loop.time() < deadline
        await asyncio.sleep(0.2)
    assert (await items(bob, "alice@localhost", "urn:example:roster-only"))[0] == ["1"]

    # whitelist: the owner only (bookmarks are private).
    await publish(alice, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}' autojoin='true'/>",
                  "room@conference.localhost",
                  {"pubsub#access_model": "whitelist", "pubsub#persist_items": "true", "pubsub#max_items": "max"})
    assert (await refused(items(bob, "alice@localhost", BOOKMARKS)))[1] == "closed-node"
    assert (await items(alice, None, BOOKMARKS))[0] == ["room@conference.localhost"]

    # disco#items of the account lists the nodes each requester may read (XEP-0163 §7.1).
    async def nodes(client):
        r = await client.plugin["xep_0030"].get_items(jid="alice@localhost", timeout=WAIT)
        return sorted(i[1] for i in r["disco_items"]["items"] if i[1])
    assert await nodes(stranger) == sorted([OMEMO_DEVICES, bundle])
    assert await nodes(bob) == sorted([OMEMO_DEVICES, bundle, NICK, "urn:example:roster-only"])
    assert await nodes(alice) == sorted([OMEMO_DEVICES, bundle, NICK, "urn:example:roster-only",
                                         BOOKMARKS, "storage:bookmarks"])


async def test_whitelist_members_are_managed_with_owner_affiliations(server, xmpp):
    """XEP-0060 §8.9 on a PEP node: the owner adds a member to a whitelist node, who may
    then read it and gets its notifications; a contact not on the list gets closed-node,
    an outcast forbidden; §5.6/§5.7: each entity sees its own affiliations and
    subscriptions."""
    secret = "urn:example:secret"
    for u in ("alice", "bob", "carol", "dave"):
        server.create_user(u, "pw")
    alice = await pep_client(server, xmpp, "alice")
    bob = await pep_client(server, xmpp, "bob", [secret])
    carol = await pep_client(server, xmpp, "carol", [secret])
    dave = await pep_client(server, xmpp, "dave")
    await befriend(alice, bob)
    await befriend(alice, carol)
    await publish(alice, secret, "<x xmlns='urn:example'>1</x>", "one",
                  {"pubsub#access_model": "whitelist"})
    ps = alice.plugin["xep_0060"]

    async def affiliations():
        r = await ps.get_node_affiliations("alice@localhost", secret, timeout=WAIT)
        return sorted((a["jid"].bare, a["affiliation"]) for a in r["pubsub_owner"]["affiliations"])

    assert await affiliations() == [("alice@localhost", "owner")]
    assert (await refused(items(bob, "alice@localhost", secret)))[:2] == ("not-allowed", "closed-node")

    await ps.modify_affiliations("alice@localhost", secret,
                                 [("bob@localhost/desk", "member"), ("dave@localhost", "outcast")],
                                 timeout=WAIT)
    assert await affiliations() == [("alice@localhost", "owner"), ("bob@localhost", "member"),
                                    ("dave@localhost", "outcast")]
    assert (await items(bob, "alice@localhost", secret))[0] == ["one"]
    assert (await refused(items(carol, "alice@localhost", secret)))[:2] == ("not-allowed", "closed-node")
    assert (await refused(items(dave, "alice@localhost", secret)))[0] == "forbidden"

    # Notifications reach the member (subscribed, +notify), not the other contact.
    await publish(alice, secret, "<x xmlns='urn:example'>2</x>", "two")
    _, items_el = await bob.events.next(secret)
    assert items_el.find(f"{{{EVENT}}}item").get("id") == "two"
    await carol.events.assert_none(secret)

    # Each entity's own view (XEP-0060 §5.6, §5.7).
    mine = await bob.plugin["xep_0060"].get_affiliations("alice@localhost", timeout=WAIT)
    assert [(a["node"], a["affiliation"]) for a in mine["pubsub"]["affiliations"]] == [(secret, "member")]
    subs = await bob.plugin["xep_0060"].get_subscriptions("alice@localhost", timeout=WAIT)
    assert [(s["node"], s["subscription"]) for s in subs["pubsub"]["subscriptions"]] == [(secret, "subscribed")]
    assert [s["node"] for s in (await carol.plugin["xep_0060"].get_subscriptions(
        "alice@localhost", timeout=WAIT))["pubsub"]["subscriptions"]] == []
    owned = await ps.get_affiliations("alice@localhost", timeout=WAIT)
    assert [(a["node"], a["affiliation"]) for a in owned["pubsub"]["affiliations"]] == [(secret, "owner")]

    # Only the owner manages affiliations; a bad entry changes nothing.
    assert (await refused(bob.plugin["xep_0060"].modify_affiliations(
        "alice@localhost", secret, [("bob@localhost", "publisher")], timeout=WAIT)))[0] == "forbidden"
    assert (await refused(ps.modify_affiliations(
        "alice@localhost", secret, [("carol@localhost", "member"), ("bob@localhost", "king")],
        timeout=WAIT)))[0] == "bad-request"
    assert (await refused(ps.modify_affiliations(
        "alice@localhost", secret, [("alice@localhost", "member")], timeout=WAIT)))[0] == "not-acceptable"
    # Removing the member closes the node to him again.
    await ps.modify_affiliations("alice@localhost", secret, [("bob@localhost", "none")], timeout=WAIT)
    assert await affiliations() == [("alice@localhost", "owner"), ("dave@localhost", "outcast")]
    assert (await refused(items(bob, "alice@localhost", secret)))[:2] == ("not-allowed", "closed-node")


# --- items, retract, configuration, purge, delete --------------------------------------

async def test_items_by_id_latest_and_rsm_pages_then_retract_purge_delete(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await pep_client(server, xmpp, "alice")
    bob = await pep_client(server, xmpp, "bob", [BOOKMARKS, NICK])
    await befriend(alice, bob)
    opts = {"pubsub#access_model": "presence", "pubsub#max_items": "max"}
    node = "urn:example:many"
    for i in range(7):
        await publish(alice, node, f"<n xmlns='urn:example'>{i}</n>", f"i{i}", opts)
    assert (await items(alice, None, node))[0] == [f"i{i}" for i in range(7)]
    assert (await items(alice, None, node, attrs="max_items='2'"))[0] == ["i5", "i6"]
    assert (await items(alice, None, node, inner="<item id='i3'/><item id='i0'/>"))[0] == ["i0", "i3"]
    ids, ps = await items(alice, None, node, extra=f"<set xmlns='{RSM}'><max>3</max></set>")
    assert ids == ["i0", "i1", "i2"]
    assert ps.findtext(f"{{{RSM}}}set/{{{RSM}}}count") == "7"
    last = ps.findtext(f"{{{RSM}}}set/{{{RSM}}}last")
    ids, _ = await items(alice, None, node, extra=f"<set xmlns='{RSM}'><max>3</max><after>{last}</after></set>")
    assert ids == ["i3", "i4", "i5"]
    ids, _ = await items(alice, None, node, extra=f"<set xmlns='{RSM}'><max>2</max><before/></set>")
    assert ids == ["i5", "i6"]

    # max_items 3 through the owner's configuration keeps the newest three.
    got = await iq(alice, "get", f"<pubsub xmlns='{OWNER}'><configure node='{node}'/></pubsub>")
    fields = {f.get("var"): f.findtext(f"{{{DATA}}}value")
              for f in got.xml.find(f"{{{OWNER}}}pubsub/{{{OWNER}}}configure/{{{DATA}}}x")}
    assert fields["pubsub#access_model"] == "presence" and fields["pubsub#max_items"] == "max"
    await iq(alice, "set", f"<pubsub xmlns='{OWNER}'><configure node='{node}'>"
             f"{form(PUBSUB + '#node_config', {'pubsub#max_items': '3'})}</configure></pubsub>")
    assert (await items(alice, None, node))[0] == ["i4", "i5", "i6"]

    # Retract with notify: bob, a subscriber with +notify... for this node he has none;
    # use the bookmarks node he wants.
    await publish(alice, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}'/>", "a@conference.localhost",
                  {"pubsub#access_model": "presence", "pubsub#max_items": "max"})
    await bob.events.next(BOOKMARKS)
    await iq(alice, "set", f"<pubsub xmlns='{PUBSUB}'><retract node='{BOOKMARKS}' notify='true'>"
             "<item id='a@conference.localhost'/></retract></pubsub>")
    _, items_el = await bob.events.next(BOOKMARKS)
    assert items_el.find(f"{{{EVENT}}}retract").get("id") == "a@conference.localhost"
    assert (await items(alice, None, BOOKMARKS))[0] == []

    # Purge and delete, each notified to bob.
    await publish(alice, NICK, nick("x"), "current")
    await bob.events.next(NICK)
    await iq(alice, "set", f"<pubsub xmlns='{OWNER}'><purge node='{NICK}'/></pubsub>")
    _, purge = await bob.events.next(NICK)
    assert purge.tag == f"{{{EVENT}}}purge"
    assert (await items(alice, None, NICK))[0] == []
    await iq(alice, "set", f"<pubsub xmlns='{OWNER}'><delete node='{NICK}'/></pubsub>")
    _, delete = await bob.events.next(NICK)
    assert delete.tag == f"{{{EVENT}}}delete"
    assert (await refused(items(alice, None, NICK)))[0] == "item-not-found"


# --- bad input ------------------------------------------------------------------------

async def test_bad_input_is_refused_and_loses_nothing(server, xmpp):
    server.create_tenant("acme", ["acme.test"], pep={"max_item_bytes": 2048, "max_nodes": 3, "max_items": 5})
    for u in ("alice", "bob"):
        server.create_user(u, "pw", domain="acme.test")
    alice = await pep_client(server, xmpp, "alice", domain="acme.test")
    bob = await pep_client(server, xmpp, "bob", domain="acme.test")
    await publish(alice, NICK, nick("kept"), "current")

    # Too big: not-acceptable / payload-too-big.
    big = nick("x" * 4000)
    assert await refused(publish(alice, NICK, big, "current")) == ("not-acceptable", "payload-too-big", "modify")
    # Another user's node: forbidden.
    assert (await refused(publish(bob, NICK, nick("mallory"), "current", to="alice@acme.test")))[0] == "forbidden"
    assert (await refused(iq(bob, "set", f"<pubsub xmlns='{OWNER}'><purge node='{NICK}'/></pubsub>",
                             "alice@acme.test")))[0] == "forbidden"
    # Preconditions that do not match the node: conflict / precondition-not-met.
    assert await refused(publish(alice, NICK, nick("other"), "current", {"pubsub#access_model": "open"})) == (
        "conflict", "precondition-not-met", "cancel")
    # Unknown option; no node; too many nodes.
    assert (await refused(publish(alice, NICK, nick("o"), "c", {"pubsub#bogus": "1"})))[1] == "invalid-options"
    assert (await refused(iq(alice, "set", f"<pubsub xmlns='{PUBSUB}'><publish><item>{nick('n')}</item></publish></pubsub>")))[1] == "nodeid-required"
    await publish(alice, "urn:example:2", "<a xmlns='urn:example'/>")
    await publish(alice, "urn:example:3", "<a xmlns='urn:example'/>")
    assert (await refused(publish(alice, "urn:example:4", "<a xmlns='urn:example'/>")))[1] == "max-nodes-exceeded"
    # Nothing stored before was lost.
    ids, ps = await items(alice, None, NICK)
    assert ids == ["current"]
    assert ps.find(f"{{{PUBSUB}}}items/{{{PUBSUB}}}item/{{{NICK}}}nick").text == "kept"


async def test_max_items_max_is_capped_by_the_tenant_limit(server, xmpp):
    server.create_tenant("acme", ["acme.test"], pep={"max_items": 5})
    server.create_user("alice", "pw", domain="acme.test")
    alice = await pep_client(server, xmpp, "alice", domain="acme.test")
    for i in range(8):
        await publish(alice, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}'/>", f"r{i}@conference.acme.test",
                      {"pubsub#max_items": "max", "pubsub#access_model": "whitelist"})
    ids, _ = await items(alice, None, BOOKMARKS)
    assert ids == [f"r{i}@conference.acme.test" for i in range(3, 8)]


# --- profiles on PEP --------------------------------------------------------------------

async def test_disco_shows_the_pep_service(server, xmpp):
    server.create_user("alice", "pw")
    alice = await pep_client(server, xmpp, "alice")
    info = await alice.plugin["xep_0030"].get_info(jid=alice.bare, timeout=WAIT)
    identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
    features = set(info["disco_info"]["features"])
    assert ("pubsub", "pep") in identities
    for f in ("publish", "publish-options", "access-open", "access-presence", "access-roster",
              "access-whitelist", "auto-create", "filtered-notifications", "last-published",
              "retract-items", "purge-nodes", "delete-nodes", "config-node", "retrieve-items",
              "modify-affiliations", "retrieve-affiliations", "retrieve-subscriptions"):
        assert f"{PUBSUB}#{f}" in features, f
    assert "urn:xmpp:bookmarks:1#compat-pep" in features
    assert "urn:xmpp:bookmarks:1#compat" in features
    assert "urn:xmpp:pep-vcard-conversion:0" in features


async def test_bookmarks_2_are_mirrored_to_the_xep_0048_node(server, xmpp):
    server.create_user("alice", "pw")
    alice = await pep_client(server, xmpp, "alice")
    opts = {"pubsub#persist_items": "true", "pubsub#max_items": "max", "pubsub#access_model": "whitelist"}
    await publish(alice, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}' name='Team' autojoin='true'>"
                  f"<nick>al</nick></conference>", "team@conference.localhost", opts)
    await publish(alice, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}' name='Other'/>",
                  "other@conference.localhost", opts)
    ids, ps = await items(alice, None, "storage:bookmarks")
    assert ids == ["current"]
    confs = ps.findall(f"{{{PUBSUB}}}items/{{{PUBSUB}}}item/{{storage:bookmarks}}storage/{{storage:bookmarks}}conference")
    assert [(c.get("jid"), c.get("name"), c.get("autojoin"), c.findtext("{storage:bookmarks}nick")) for c in confs] == [
        ("team@conference.localhost", "Team", "true", "al"),
        ("other@conference.localhost", "Other", "false", None)]
    # Retracting one, then deleting the node, follows on the legacy node.
    await iq(alice, "set", f"<pubsub xmlns='{PUBSUB}'><retract node='{BOOKMARKS}'>"
             "<item id='team@conference.localhost'/></retract></pubsub>")
    _, ps = await items(alice, None, "storage:bookmarks")
    confs = ps.findall(f"{{{PUBSUB}}}items/{{{PUBSUB}}}item/{{storage:bookmarks}}storage/{{storage:bookmarks}}conference")
    assert [c.get("jid") for c in confs] == ["other@conference.localhost"]
    await iq(alice, "set", f"<pubsub xmlns='{OWNER}'><delete node='{BOOKMARKS}'/></pubsub>")
    assert (await refused(items(alice, None, "storage:bookmarks")))[0] == "item-not-found"


async def test_private_storage_bookmarks_and_bookmarks_2_are_one_list(server, xmpp):
    """XEP-0402 #compat: bookmarks stored with XEP-0049 private storage show in the
    urn:xmpp:bookmarks:1 node (with notifications), and XEP-0402 items show in private
    storage."""
    from slixmpp.plugins.xep_0048.stanza import Bookmarks

    server.create_user("alice", "pw")
    old = await pep_client(server, xmpp, "alice", resource="old", plugins=PEP_PLUGINS + ("xep_0048",))
    new = await pep_client(server, xmpp, "alice", [BOOKMARKS], resource="new")
    legacy = old.plugin["xep_0048"]

    # XEP-0402 → XEP-0049. (Published until the new resource's caps are known to the
    # server, which asks for them in the background: then notifications reach it.)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        await publish(new, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}' name='Dev'><nick>a</nick></conference>",
                      "dev@conference.localhost", {"pubsub#access_model": "whitelist"})
        try:
            await new.events.next(BOOKMARKS, timeout=1)
            break
        except asyncio.TimeoutError:
            assert loop.time() < deadline, "the new resource never got a bookmarks notification"
    got = await legacy.get_bookmarks(method="xep_0049", timeout=WAIT)
    confs = got["private"]["bookmarks"]["conferences"]
    assert [(c["jid"], c["name"], c["nick"], c["autojoin"]) for c in confs] == [
        ("dev@conference.localhost", "Dev", "a", False)]

    # XEP-0049 → XEP-0402: the list becomes the node's items, the new ones notified.
    stored = Bookmarks()
    stored.add_conference("team@conference.localhost", "al", name="Team", autojoin=True)
    stored.add_conference("dev@conference.localhost", "a", name="Dev")
    stored.add_conference("misc@conference.localhost", "al2")
    await legacy.set_bookmarks(stored, method="xep_0049", timeout=WAIT)
    seen = set()
    while not {"team@conference.localhost", "misc@conference.localhost"} <= seen:
        _, items_el = await new.events.next(BOOKMARKS)
        seen |= {i.get("id") for i in items_el.findall(f"{{{EVENT}}}item")}
    ids, ps = await items(new, None, BOOKMARKS)
    assert ids == ["team@conference.localhost", "dev@conference.localhost", "misc@conference.localhost"]
    team = ps.find(f"{{{PUBSUB}}}items/{{{PUBSUB}}}item/{{{BOOKMARKS}}}conference")
    assert (team.get("name"), team.get("autojoin"), team.findtext(f"{{{BOOKMARKS}}}nick")) == ("Team", "true", "al")
    got = await legacy.get_bookmarks(method="xep_0049", timeout=WAIT)
    assert [c["jid"] for c in got["private"]["bookmarks"]["conferences"]] == [
        "team@conference.localhost", "dev@conference.localhost", "misc@conference.localhost"]

    # A private set with one bookmark less retracts it from the node.
    stored = Bookmarks()
    stored.add_conference("dev@conference.localhost", "a", name="Dev")
    await legacy.set_bookmarks(stored, method="xep_0049", timeout=WAIT)
    retracted = set()
    while not {"team@conference.localhost", "misc@conference.localhost"} <= retracted:
        _, items_el = await new.events.next(BOOKMARKS)
        retracted |= {r.get("id") for r in items_el.findall(f"{{{EVENT}}}retract")}
    assert (await items(new, None, BOOKMARKS))[0] == ["dev@conference.localhost"]


async def test_avatar_nodes_and_the_hash_in_presence(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await pep_client(server, xmpp, "alice")
    bob = await pep_client(server, xmpp, "bob", [AVATAR_META])
    await befriend(alice, bob)
    image = bytes(range(256)) * 4
    sha1 = hashlib.sha1(image).hexdigest()
    await publish(alice, AVATAR_DATA, f"<data xmlns='{AVATAR_DATA}'>{base64.b64encode(image).decode()}</data>", sha1)
    await publish(alice, AVATAR_META, f"<metadata xmlns='{AVATAR_META}'><info id='{sha1}' bytes='{len(image)}' "
                  "type='image/png' height='16' width='16'/></metadata>", sha1)
    _, items_el = await bob.events.next(AVATAR_META)
    assert items_el.find(f"{{{EVENT}}}item").get("id") == sha1
    # bob (a subscriber) fetches the data by id.
    ids, ps = await items(bob, "alice@localhost", AVATAR_DATA, inner=f"<item id='{sha1}'/>")
    assert ids == [sha1]
    data = ps.findtext(f"{{{PUBSUB}}}items/{{{PUBSUB}}}item/{{{AVATAR_DATA}}}data")
    assert base64.b64decode(data) == image
    # XEP-0398: alice's next presence carries the hash, whatever her client put there.
    alice.send_presence(pstatus="with avatar")
    p = await bob.presence_from(alice.bare, "available", status="with avatar")
    assert p.xml.findtext("{vcard-temp:x:update}x/{vcard-temp:x:update}photo") == sha1


# --- caps cache ---------------------------------------------------------------------------

async def exact_caps_client(server, xmpp, user: str, interests, resource: str):
    """A client whose presence carries a verification string the test computes itself
    from the disco#info answer as it goes over the wire (an independent check of the
    server's hashing), and which records the caps queries the server sends it."""
    jid = f"{user}@{server.domain}/{resource}"
    c = xmpp.make(jid, "pw", plugins=PEP_PLUGINS)
    c.events = Events(c)
    c.caps_queries = []

    def on_query(iq) -> None:
        q = iq.xml.find("{http://jabber.org/protocol/disco#info}query")
        # The server's queries (contacts' clients ask too).
        if iq["type"] == "get" and q is not None and q.get("node") and iq["from"] == server.domain:
            c.caps_queries.append(q.get("node"))
    c.register_handler(Callback("caps queries",
                                MatchXPath("{jabber:client}iq/{http://jabber.org/protocol/disco#info}query"),
                                on_query))
    await c.start(*server.c2s_starttls)
    await c.get_roster(timeout=WAIT)
    caps = c.plugin["xep_0115"]
    caps.broadcast = False
    for ns in interests:
        c.plugin["xep_0030"].add_feature(f"{ns}+notify")
    # The answer as it goes over the wire (asked of itself, through the server), hashed
    # by XEP-0115 section 5.1.
    answer = await iq(c, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", c.boundjid.full)
    q = answer.xml.find("{http://jabber.org/protocol/disco#info}query")
    ids = sorted("/".join(i.get(a) or "" for a in ("category", "type", "{http://www.w3.org/XML/1998/namespace}lang", "name"))
                 for i in q.findall("{http://jabber.org/protocol/disco#info}identity"))
    feats = sorted(f.get("var") for f in q.findall("{http://jabber.org/protocol/disco#info}feature"))
    ver = base64.b64encode(hashlib.sha1("".join(x + "<" for x in ids + feats).encode()).digest()).decode()
    info = await c.plugin["xep_0030"].get_info(jid=c.boundjid.full, local=True)
    await c.plugin["xep_0030"].set_info(jid=c.boundjid.full, node=f"{caps.caps_node}#{ver}", info=info)
    presence = c.Presence()
    presence.append(ET.fromstring(
        f"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{caps.caps_node}' ver='{ver}'/>"))
    presence.send()
    return c


async def test_caps_hash_is_queried_once_and_cached(server, xmpp):
    for u in ("alice", "bob", "carol"):
        server.create_user(u, "pw")
    alice = await pep_client(server, xmpp, "alice", [], resource="phone")
    bob = await exact_caps_client(server, xmpp, "bob", [NICK], "desk")
    carol = await exact_caps_client(server, xmpp, "carol", [NICK], "desk")
    await befriend(alice, bob)
    await befriend(alice, carol)
    await publish(alice, NICK, nick("once"), "current")
    # Both have the same caps: both get the event, and one of them was asked, once.
    for c in (bob, carol):
        _, items_el = await c.events.next(NICK)
        assert items_el.find(f"{{{EVENT}}}item/{{{NICK}}}nick").text == "once"
    assert len(bob.caps_queries) + len(carol.caps_queries) == 1, (bob.caps_queries, carol.caps_queries)
    # A third resource with those caps is not asked either, and gets the last item.
    bob2 = await exact_caps_client(server, xmpp, "bob", [NICK], "tablet")
    _, items_el = await bob2.events.next(NICK)
    assert items_el.find(f"{{{EVENT}}}item/{{{NICK}}}nick").text == "once"
    assert bob2.caps_queries == []
