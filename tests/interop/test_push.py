"""Push notifications (XEP-0357): a slixmpp component acting as the app server gets a
summary publish when a message or a call arrives for a user whose only session is
detached (stream management) or gone; never while the user is connected, never with the
body unless the tenant allows, and no more after the client disables it or after the app
server failed repeatedly."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree as ET

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness.xmpp import DEFAULT_PLUGINS, WAIT
from test_stream_management import reset_connection, session_state

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
APP = "push.acme.test"


class AppServer:
    """Records publishes the component receives; answers them with a result or an error."""

    def __init__(self, component, fail: bool = False):
        self.publishes: asyncio.Queue = asyncio.Queue()
        self.fail = fail
        component.register_handler(Callback(
            "push publish", MatchXPath(f"{{jabber:component:accept}}iq/{{{PUBSUB}}}pubsub"), self._on))

    def _on(self, iq) -> None:
        self.publishes.put_nowait(iq)
        reply = iq.reply(clear=True)
        if self.fail:
            reply["type"] = "error"
            reply["error"]["condition"] = "item-not-found"
            reply["error"]["type"] = "cancel"
        reply.send()

    async def next(self, timeout: float = WAIT) -> dict:
        iq = await asyncio.wait_for(self.publishes.get(), timeout)
        publish = iq.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        summary = publish.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification/{{{DATA}}}x")
        options = iq.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish-options/{{{DATA}}}x")
        fields = lambda x: {f.get("var"): f.findtext(f"{{{DATA}}}value") for f in x} if x is not None else {}
        return {"from": str(iq["from"]), "node": publish.get("node"),
                "summary": fields(summary), "options": fields(options)}

    async def assert_none(self, within: float = 1.0) -> None:
        try:
            got = await asyncio.wait_for(self.publishes.get(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected publish {got}")


async def setup(server, xmpp, components, *, fail: bool = False, **tenant):
    server.create_tenant("acme", ["acme.test"], components=[{"domains": [APP], "secret": "s3cret"}], **tenant)
    for u in ("alice", "bob"):
        server.create_user(u, "pw", domain="acme.test")
    app = AppServer(await components.connect(server, APP, "s3cret"), fail=fail)
    alice = xmpp.make("alice@acme.test/phone", "pw", plugins=DEFAULT_PLUGINS + ("xep_0198",))
    enabled = asyncio.Event()
    alice.add_event_handler("sm_enabled", lambda _: enabled.set())
    await alice.start(*server.c2s_starttls)
    await asyncio.wait_for(enabled.wait(), WAIT)
    alice.send_presence()
    bob = xmpp.make("bob@acme.test/desk", "pw")
    await bob.start(*server.c2s_starttls)
    return app, alice, bob


async def push_iq(client, xml: str) -> None:
    iq = client.Iq()
    iq["type"] = "set"
    iq.append(ET.fromstring(xml))
    await iq.send(timeout=WAIT)


ENABLE = (f"<enable xmlns='{PUSH}' jid='{APP}' node='device-1'><x xmlns='{DATA}' type='submit'>"
          f"<field var='FORM_TYPE'><value>{PUBSUB}#publish-options</value></field>"
          f"<field var='secret'><value>token-123</value></field></x></enable>")


@pytest.mark.async_timeout(120)
async def test_a_detached_session_gets_pushes_and_an_online_one_does_not(server, xmpp, components):
    app, alice, bob = await setup(server, xmpp, components)
    info = await alice.plugin["xep_0030"].get_info(jid="alice@acme.test")
    assert PUSH in info["disco_info"]["features"]
    await push_iq(alice, ENABLE)

    bob.send_message(mto="alice@acme.test", mbody="online", mtype="chat")
    assert (await alice.next_message())["body"] == "online"
    await app.assert_none()

    reset_connection(alice)
    await session_state(server, "alice@acme.test/phone")
    bob.send_message(mto="alice@acme.test", mbody="the secret plan", mtype="chat")
    got = await app.next()
    assert got["from"] == "alice@acme.test" and got["node"] == "device-1"
    assert got["options"]["secret"] == "token-123"
    assert got["summary"]["message-count"] == "1"
    assert got["summary"]["last-message-sender"] == "bob@acme.test/desk"
    assert "last-message-body" not in got["summary"], "no body unless the tenant allows"
    assert "last-message-call" not in got["summary"]

    call = bob.make_message(mto="alice@acme.test", mtype="chat")
    call.append(ET.fromstring("<propose xmlns='urn:xmpp:jingle-message:0' id='c1'>"
                              "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/></propose>"))
    call.send()
    got = await app.next()
    assert got["summary"]["message-count"] == "2"
    assert got["summary"]["last-message-call"] == "true"


@pytest.mark.async_timeout(120)
async def test_bodies_when_allowed_disable_and_offline_users(server, xmpp, components):
    app, alice, bob = await setup(server, xmpp, components, push={"include_body": True})
    await push_iq(alice, ENABLE)
    await alice.stop()
    bob.send_message(mto="alice@acme.test", mbody="hello there", mtype="chat")
    got = await app.next()
    assert got["summary"]["last-message-body"] == "hello there"

    alice2 = xmpp.make("alice@acme.test/laptop", "pw")
    await alice2.start(*server.c2s_starttls)
    await push_iq(alice2, f"<disable xmlns='{PUSH}' jid='{APP}' node='device-1'/>")
    await alice2.stop()
    bob.send_message(mto="alice@acme.test", mbody="after disable", mtype="chat")
    # A round trip through alice's archive would need alice; bob's own query orders it.
    await bob.plugin["xep_0199"].ping(jid="acme.test", timeout=WAIT)
    await app.assert_none(within=1.5)


@pytest.mark.async_timeout(120)
async def test_an_app_server_that_keeps_failing_is_disabled(server, xmpp, components):
    app, alice, bob = await setup(server, xmpp, components, fail=True, push={"max_errors": 2})
    await push_iq(alice, ENABLE)
    await alice.stop()
    for i in range(2):
        bob.send_message(mto="alice@acme.test", mbody=f"m{i}", mtype="chat")
        await app.next()
    # Disabled after the second failure is recorded; wait until the server says so by
    # sending more and seeing nothing, with a generous window for the record to land.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    quiet = False
    while loop.time() < deadline and not quiet:
        bob.send_message(mto="alice@acme.test", mbody="more", mtype="chat")
        try:
            await asyncio.wait_for(app.publishes.get(), 2.0)
        except asyncio.TimeoutError:
            quiet = True
    assert quiet, "the failing app server was never disabled"
    bob.send_message(mto="alice@acme.test", mbody="still quiet", mtype="chat")
    await app.assert_none(within=1.5)
