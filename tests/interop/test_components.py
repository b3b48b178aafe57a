"""Third-party components (issue 7): XEP-0114 external components with slixmpp's
ComponentXMPP, talking to slixmpp users, and Wasm-hosted components.

Components are tenant settings: most tests create a tenant through the admin API with
its components, which also shows they work for runtime-added domains.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest
from slixmpp.exceptions import IqError

from harness.raw import RawStream, stream_error_condition
from harness.xmpp import LoginFailed

COMPONENT_NS = "jabber:component:accept"
STREAM_NS = "http://etherx.jabber.org/streams"


def component(domain: str, secret: str | None = "s3cret", **extra) -> dict:
    spec = {"domains": [domain] if isinstance(domain, str) else domain, **extra}
    if secret is not None:
        spec["secret"] = secret
    return spec


def acme(server, *components, name: str = "acme", domain: str = "acme.test", **extra) -> None:
    server.create_tenant(name, [domain], components=list(components), **extra)


def raw_component_open(server, domain: str) -> tuple[RawStream, str]:
    """Open a component stream; returns the stream and the stream id."""
    raw = RawStream.connect(server.component_address)
    raw.send(f"<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_NS}' "
             f"xmlns:stream='{STREAM_NS}' to='{domain}'>")
    raw.read_until(b">")
    header = raw.read_until(b"id=")
    raw.read_until(b">", timeout=5)
    m = re.search(rb"id=['\"]([^'\"]+)['\"]", raw.received)
    assert m, raw.received
    _ = header
    return raw, m.group(1).decode()


def handshake(stream_id: str, secret: str) -> str:
    return f"<handshake>{hashlib.sha1((stream_id + secret).encode()).hexdigest()}</handshake>"


# --- handshake ----------------------------------------------------------------

async def test_handshake_and_wrong_secret_refusal(server, components):
    acme(server, component("bot.acme.test"))
    comp = await components.connect(server, "bot.acme.test", "s3cret")
    assert comp.sessionstarted

    wrong = components.make(server, "bot.acme.test", "not-it")
    with pytest.raises(LoginFailed):
        await wrong.start()
    assert "not-authorized" in wrong.stream_errors
    # The refused attempt did not disturb the connected component.
    assert comp.transport is not None


def test_raw_handshake_unknown_domain_and_bad_input(server):
    acme(server, component("bot.acme.test"))
    # Unknown domain: host-unknown.
    with RawStream.connect(server.component_address) as raw:
        raw.send(f"<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAM_NS}' "
                 "to='nobody.acme.test'>")
        assert stream_error_condition(raw.read_to_close(timeout=5)) == "host-unknown"
    # A client namespace on the component port: invalid-namespace.
    with RawStream.connect(server.component_address) as raw:
        raw.send(f"<stream:stream xmlns='jabber:client' xmlns:stream='{STREAM_NS}' "
                 "to='bot.acme.test'>")
        assert stream_error_condition(raw.read_to_close(timeout=5)) == "invalid-namespace"
    # The right secret, computed as XEP-0114 says, then garbage: not-well-formed.
    raw, sid = raw_component_open(server, "bot.acme.test")
    with raw:
        raw.received = b""
        raw.send(handshake(sid, "s3cret"))
        raw.read_until(b"<handshake/>")
        raw.received = b""
        raw.send("<message from='bot.acme.test' to='x@acme.test'><body>a</bo")
        raw.send("dy></message><<<")
        assert stream_error_condition(raw.read_to_close(timeout=5)) == "not-well-formed"
    # A stanza from a domain that is not the component's: invalid-from.
    raw, sid = raw_component_open(server, "bot.acme.test")
    with raw:
        raw.send(handshake(sid, "s3cret"))
        raw.read_until(b"<handshake/>")
        raw.received = b""
        raw.send("<message from='alice@acme.test' to='bob@acme.test'><body>spoof</body></message>")
        assert stream_error_condition(raw.read_to_close(timeout=5)) == "invalid-from"
    # Something that is not a stanza after the handshake.
    raw, sid = raw_component_open(server, "bot.acme.test")
    with raw:
        raw.send(handshake(sid, "s3cret"))
        raw.read_until(b"<handshake/>")
        raw.received = b""
        raw.send("<foo from='bot.acme.test'/>")
        assert stream_error_condition(raw.read_to_close(timeout=5)) == "unsupported-stanza-type"
    # An oversized stanza: policy-violation, like c2s.
    raw, sid = raw_component_open(server, "bot.acme.test")
    with raw:
        raw.send(handshake(sid, "s3cret"))
        raw.read_until(b"<handshake/>")
        raw.received = b""
        raw.try_send(b"<message from='bot.acme.test' to='a@acme.test'><body>"
                     + b"x" * 400_000 + b"</body></message>")
        assert stream_error_condition(raw.read_to_close(timeout=5)) == "policy-violation"
    # After all that the server still serves components.
    raw, sid = raw_component_open(server, "bot.acme.test")
    with raw:
        raw.send(handshake(sid, "s3cret"))
        raw.read_until(b"<handshake/>")


# --- routing ------------------------------------------------------------------

async def test_two_components_on_one_port_get_only_their_own_traffic(server, xmpp, components):
    acme(server, component("one.acme.test"), component("two.acme.test", secret="other"))
    server.create_user("alice", "pw", domain="acme.test")
    one = await components.connect(server, "one.acme.test", "s3cret")
    two = await components.connect(server, "two.acme.test", "other")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    for i in range(5):
        alice.send_message(mto="one.acme.test", mbody=f"to-one-{i}", mtype="chat")
        alice.send_message(mto="svc@two.acme.test", mbody=f"to-two-{i}", mtype="chat")
    for i in range(5):
        m = await one.messages.take(lambda m: m["body"] == f"to-one-{i}")
        assert m["from"].full == alice.jid and m["to"].full == "one.acme.test"
        m = await two.messages.take(lambda m: m["body"] == f"to-two-{i}")
        assert m["to"].full == "svc@two.acme.test"
    await asyncio.sleep(0.5)
    assert not one.messages.items and not two.messages.items


async def test_message_and_iq_round_trips_with_users(server, xmpp, components):
    acme(server, component("bot.acme.test", name="Bot"))
    server.create_user("alice", "pw", domain="acme.test")
    bot = await components.connect(server, "bot.acme.test", "s3cret")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")

    # user -> component -> user
    alice.send_message(mto="bot.acme.test", mbody="ping?", mtype="chat")
    m = await bot.messages.take()
    bot.send_message(mto=m["from"], mfrom="help@bot.acme.test", mbody="pong!", mtype="chat")
    reply = await alice.next_message()
    assert reply["body"] == "pong!" and reply["from"].full == "help@bot.acme.test"
    # The component may also write to the bare JID.
    bot.send_message(mto="alice@acme.test", mfrom="bot.acme.test", mbody="bare", mtype="chat")
    assert (await alice.next_message())["body"] == "bare"

    # user -> component iq (disco#info answered by the component's own xep_0030)
    info = await alice.plugin["xep_0030"].get_info(jid="bot.acme.test", timeout=10)
    assert info["type"] == "result"
    # user -> component iq with a custom payload, answered by the test
    iq = alice.make_iq_get(queryxmlns="urn:test:component", ito="bot.acme.test")
    pending = asyncio.ensure_future(iq.send(timeout=10))
    got = await bot.iqs.take()
    answer = got.reply()
    answer["query"] = "urn:test:component"
    answer.send()
    res = await pending
    assert res["type"] == "result" and res["from"].full == "bot.acme.test"

    # component -> user iq (XEP-0199 ping answered by alice's client)
    pong = await bot.plugin["xep_0030"].get_info(jid=alice.jid, ifrom="bot.acme.test", timeout=10)
    assert pong["type"] == "result"

    # component -> users that are not there: errors, not silence
    with pytest.raises(IqError) as err:
        await bot.make_iq_get(queryxmlns="urn:test:none", ito="alice@acme.test/gone",
                              ifrom="bot.acme.test").send(timeout=10)
    assert err.value.iq["error"]["condition"] == "service-unavailable"
    bot.send_message(mto="nobody@acme.test", mfrom="bot.acme.test", mbody="hello?", mtype="chat")
    bounce = await bot.errors.take()
    assert bounce["error"]["condition"] == "service-unavailable"

    # presence both ways: directed presence reaches the component, and its presence
    # reaches the user.
    alice.send_presence(pto="bot.acme.test")
    p = await bot.presences.take(lambda p: p["from"].full == alice.jid)
    assert p["to"].full == "bot.acme.test"
    bot.send_presence(pto=alice.jid, pfrom="bot.acme.test", pstatus="ready")
    assert (await alice.presence_from("bot.acme.test", status="ready"))


async def test_disconnected_component_answers_with_service_unavailable(server, xmpp):
    acme(server, component("bot.acme.test"))
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid="bot.acme.test", timeout=10)
    assert err.value.iq["error"]["condition"] == "service-unavailable"


async def test_reconnect_right_after_a_drop(server, xmpp, components):
    acme(server, component("bot.acme.test"))
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    for round_ in range(3):
        bot = await components.connect(server, "bot.acme.test", "s3cret")
        alice.send_message(mto="bot.acme.test", mbody=f"r{round_}", mtype="chat")
        assert (await bot.messages.take())["body"] == f"r{round_}"
        # Drop the TCP connection without closing the stream, and reconnect at once.
        bot.abort()


async def test_second_connection_is_refused_by_default(server, components):
    acme(server, component("bot.acme.test"))
    first = await components.connect(server, "bot.acme.test", "s3cret")
    second = components.make(server, "bot.acme.test", "s3cret")
    with pytest.raises(LoginFailed):
        await second.start()
    assert "conflict" in second.stream_errors
    assert first.transport is not None and not first.stream_errors


async def test_replace_closes_the_old_connection(server, xmpp, components):
    acme(server, component(["bot.acme.test", "bot2.acme.test"], on_conflict="replace"))
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    old = await components.connect(server, "bot.acme.test", "s3cret")
    new = await components.connect(server, "bot.acme.test", "s3cret")
    await old.wait_closed()
    assert "conflict" in old.stream_errors
    # Both domains now go to the new connection; the old one's cleanup did not remove them.
    alice.send_message(mto="bot.acme.test", mbody="a", mtype="chat")
    alice.send_message(mto="bot2.acme.test", mbody="b", mtype="chat")
    assert (await new.messages.take(lambda m: m["body"] == "a"))
    assert (await new.messages.take(lambda m: m["body"] == "b"))


async def test_components_of_one_tenant_cannot_reach_another_tenants_users(server, xmpp, components):
    acme(server, component("bot.acme.test"))
    server.create_tenant("other", ["other.test"])
    server.create_user("alice", "pw", domain="acme.test")
    server.create_user("eve", "pw", domain="other.test")
    bot = await components.connect(server, "bot.acme.test", "s3cret")
    eve = await xmpp.connect(server, "eve@other.test", "pw")
    # Component -> other tenant's user: bounced, never delivered.
    bot.send_message(mto="eve@other.test", mfrom="bot.acme.test", mbody="psst", mtype="chat")
    bounce = await bot.errors.take()
    assert bounce["error"]["condition"] == "remote-server-not-found"
    await eve.assert_no_message(within=1.0)
    # Other tenant's user -> component: not reachable either.
    with pytest.raises(IqError) as err:
        await eve.plugin["xep_0030"].get_info(jid="bot.acme.test", timeout=10)
    assert err.value.iq["error"]["condition"] == "remote-server-not-found"
    assert not bot.messages.items


async def test_runtime_component_added_and_removed_through_the_admin_api(server, xmpp, components):
    server.create_tenant("acme", ["acme.test"])
    server.create_user("alice", "pw", domain="acme.test")
    _, tok = server.admin("POST", "/api/v1/tenants/acme/token", expect=201)
    token = tok["token"]
    # The tenant itself adds its component with its own token.
    server.admin("PATCH", "/api/v1/tenants/acme",
                 {"components": [component("bot.acme.test", name="Support bot")]},
                 token=token, expect=200)
    # Another tenant's token cannot.
    server.create_tenant("other", ["other.test"])
    _, other = server.admin("POST", "/api/v1/tenants/other/token", expect=201)
    server.admin("PATCH", "/api/v1/tenants/acme", {"components": []},
                 token=other["token"], expect=403)
    # Nor can a tenant claim a domain outside its own.
    server.admin("PATCH", "/api/v1/tenants/acme", {"components": [component("bot.other.test")]},
                 token=token, expect=(400, 422))

    bot = await components.connect(server, "bot.acme.test", "s3cret")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    alice.send_message(mto="bot.acme.test", mbody="hi", mtype="chat")
    assert (await bot.messages.take())["body"] == "hi"
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=10)
    assert [(str(i[0]), i[2]) for i in items["disco_items"]["items"]] == [("bot.acme.test", "Support bot")]

    # Removing the component disconnects it.
    server.admin("PATCH", "/api/v1/tenants/acme", {"components": []}, token=token, expect=200)
    await bot.wait_closed()
    assert "host-gone" in bot.stream_errors
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=10)
    assert not items["disco_items"]["items"]


async def test_disco_items_list_non_hidden_components_and_secret_change_disconnects(server, xmpp, components):
    acme(server, component("bot.acme.test", name="Bot"),
         component("hidden.acme.test", secret="h", hidden=True),
         component("echo.acme.test", secret=None, plugin="echo", name="Echo"))
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=10)
    assert sorted((str(i[0]), i[2]) for i in items["disco_items"]["items"]) == [
        ("bot.acme.test", "Bot"), ("echo.acme.test", "Echo")]
    hidden = await components.connect(server, "hidden.acme.test", "h")
    _, t = server.admin("GET", "/api/v1/tenants/acme", expect=200)
    comps = t["components"]
    comps[1]["secret"] = "rotated"
    server.admin("PATCH", "/api/v1/tenants/acme", {"components": comps}, expect=200)
    await hidden.wait_closed()
    again = await components.connect(server, "hidden.acme.test", "rotated")
    assert again.sessionstarted


@pytest.mark.server_config({"tenants": {"cfg": {"domains": ["cfg.test"], "components": [
    {"domains": ["bot.cfg.test"], "secret": "one"}]}}})
async def test_components_from_the_config_file_follow_reload(server, components):
    bot = await components.connect(server, "bot.cfg.test", "one")
    server.config["tenants"]["cfg"]["components"] = [{"domains": ["bot.cfg.test"], "secret": "two"}]
    server.write_config()
    server.admin("POST", "/api/v1/reload", expect=200)
    await bot.wait_closed()
    assert "not-authorized" in bot.stream_errors
    again = await components.connect(server, "bot.cfg.test", "two")
    assert again.sessionstarted
