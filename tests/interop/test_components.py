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

    # component -> a user's bare JID: the server answers for the account
    acct = await bot.plugin["xep_0030"].get_info(jid="alice@acme.test", ifrom="bot.acme.test", timeout=10)
    assert ("account", "registered", None, None) in acct["disco_info"]["identities"]

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


async def test_a_users_block_list_holds_for_component_stanzas(server, xmpp, components):
    """XEP-0191: what a user blocked stays out, whoever sends it. A blocked iq gets
    service-unavailable; a blocked message is dropped without a word (XEP-0191 §3.4)."""
    acme(server, component("bot.acme.test", name="Bot"))
    server.create_user("alice", "pw", domain="acme.test")
    bot = await components.connect(server, "bot.acme.test", "s3cret")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    await alice.plugin["xep_0191"].block("spam@bot.acme.test", timeout=10)

    with pytest.raises(IqError) as err:
        await bot.make_iq_get(queryxmlns="urn:test:none", ito=alice.jid,
                              ifrom="spam@bot.acme.test").send(timeout=10)
    assert err.value.iq["error"]["condition"] == "service-unavailable"
    # The component's stanzas are routed in order: the blocked message would arrive
    # before the next one.
    bot.send_message(mto=alice.jid, mfrom="spam@bot.acme.test", mbody="buy now", mtype="chat")
    bot.send_message(mto=alice.jid, mfrom="help@bot.acme.test", mbody="hello", mtype="chat")
    assert (await alice.next_message())["body"] == "hello"
    assert not bot.errors.items, [str(e) for e in bot.errors.items]
    # Unblocked, the same address gets through.
    await alice.plugin["xep_0191"].unblock("spam@bot.acme.test", timeout=10)
    bot.send_message(mto=alice.jid, mfrom="spam@bot.acme.test", mbody="again", mtype="chat")
    assert (await alice.next_message())["body"] == "again"
    # Blocking the whole component domain blocks every address on it.
    await alice.plugin["xep_0191"].block("bot.acme.test", timeout=10)
    with pytest.raises(IqError) as err:
        await bot.make_iq_get(queryxmlns="urn:test:none", ito=alice.jid,
                              ifrom="help@bot.acme.test").send(timeout=10)
    assert err.value.iq["error"]["condition"] == "service-unavailable"


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
    assert sorted((str(i[0]), i[2]) for i in items["disco_items"]["items"]) == [
        ("bot.acme.test", "Support bot"), ("conference.acme.test", "Chatrooms"),
        ("upload.acme.test", "HTTP File Upload")]

    # Removing the component disconnects it.
    server.admin("PATCH", "/api/v1/tenants/acme", {"components": []}, token=token, expect=200)
    await bot.wait_closed()
    assert "host-gone" in bot.stream_errors
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=10)
    assert sorted(str(i[0]) for i in items["disco_items"]["items"]) == ["conference.acme.test", "upload.acme.test"]


async def test_disco_items_list_non_hidden_components_and_secret_change_disconnects(server, xmpp, components):
    acme(server, component("bot.acme.test", name="Bot"),
         component("hidden.acme.test", secret="h", hidden=True),
         component("echo.acme.test", secret=None, plugin="echo", name="Echo"))
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=10)
    assert sorted((str(i[0]), i[2]) for i in items["disco_items"]["items"]) == [
        ("bot.acme.test", "Bot"), ("conference.acme.test", "Chatrooms"), ("echo.acme.test", "Echo"),
        ("upload.acme.test", "HTTP File Upload")]
    hidden = await components.connect(server, "hidden.acme.test", "h")
    # Secrets are write-only: the view redacts them, and sending the view back keeps them.
    _, t = server.admin("GET", "/api/v1/tenants/acme", expect=200)
    comps = t["components"]
    assert [c.get("secret") for c in comps] == ["<redacted>", "<redacted>", None]
    comps[1]["secret"] = "rotated"
    server.admin("PATCH", "/api/v1/tenants/acme", {"components": comps}, expect=200)
    await hidden.wait_closed()
    again = await components.connect(server, "hidden.acme.test", "rotated")
    assert again.sessionstarted
    bot = await components.connect(server, "bot.acme.test", "s3cret")
    assert bot.sessionstarted
    # A redacted secret for domains that had none is refused.
    status, body = server.admin("PATCH", "/api/v1/tenants/acme", {"components": comps + [
        component("new.acme.test", secret="<redacted>")]})
    assert status == 400 and "new.acme.test" in body["message"], body


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


# --- Wasm-hosted components ---------------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from xml.etree import ElementTree as ET  # noqa: E402

ECHO_NS = "urn:heliograph:echo-bot:0"
ROUTER_NS = "urn:heliograph:call-router:0"


def wasm(name: str) -> bytes:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or (Path.home() / ".cache/heliograph-target"))
    path = target / "plugins" / "wasm32-wasip2" / "release" / f"{name}.wasm"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: tests/run.sh builds the plugins first")
        pytest.skip(f"{path} not built (run tests/run.sh, or cargo build the plugins workspace)")
    return path.read_bytes()


def install_component(server, tenant: str, slot: str, name: str, config: dict | None = None,
                      expect: int = 200) -> dict:
    host, port = server.admin_address
    req = urllib.request.Request(
        f"http://{host}:{port}/api/v1/tenants/{tenant}/plugins/{slot}",
        data=wasm(name), method="PUT")
    req.add_header("Authorization", f"Bearer {server.admin_token}")
    req.add_header("Content-Type", "application/wasm")
    if config is not None:
        req.add_header("Heliograph-Plugin-Config", json.dumps(config))
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    assert status == expect, f"install -> {status}: {raw!r}"
    return json.loads(raw) if raw else {}


def wasm_tenant(server, *components, name: str = "acme", domain: str = "acme.test") -> None:
    server.create_tenant(name, [domain], components=list(components))


def plugin_component(domain: str, slot: str, **extra) -> dict:
    return {"domains": [domain], "plugin": slot, **extra}


async def custom_iq(client, to: str, ty: str, payload: str, timeout: float = 10):
    iq = client.Iq()
    iq["type"] = ty
    iq["to"] = to
    iq.append(ET.fromstring(payload))
    return await iq.send(timeout=timeout)


async def test_echo_bot_answers_a_user(server, xmpp):
    wasm_tenant(server, plugin_component("echo.acme.test", "echo", name="Echo"))
    install_component(server, "acme", "echo", "echo_bot", {"prefix": "echo: ", "version": "7.1"})
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    for n in (1, 2):
        alice.send_message(mto="echo.acme.test", mbody=f"hello {n}", mtype="chat")
        reply = await alice.next_message()
        assert reply["body"] == f"echo: hello {n}"
        assert reply["from"].full == "echo.acme.test" and reply["type"] == "chat"
        assert reply.xml.find(f"{{{ECHO_NS}}}echo").get("count") == str(n)
    res = await custom_iq(alice, "echo.acme.test", "get", "<query xmlns='jabber:iq:version'/>")
    q = res.xml.find("{jabber:iq:version}query")
    assert q.find("{jabber:iq:version}name").text == "echo-bot"
    assert q.find("{jabber:iq:version}version").text == "7.1"
    info = await alice.plugin["xep_0030"].get_info(jid="echo.acme.test", timeout=10)
    assert ("component", "generic", None, "Echo bot") in info["disco_info"]["identities"]
    assert ECHO_NS in info["disco_info"]["features"]
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=10)
    assert sorted((str(i[0]), i[2]) for i in items["disco_items"]["items"]) == [
        ("conference.acme.test", "Chatrooms"), ("echo.acme.test", "Echo"),
        ("upload.acme.test", "HTTP File Upload")]
    # An unknown namespace: the plugin's own error.
    with pytest.raises(IqError) as err:
        await custom_iq(alice, "echo.acme.test", "get", "<query xmlns='urn:nothing'/>")
    assert err.value.iq["error"]["condition"] == "service-unavailable"


async def test_component_slot_without_a_plugin_is_service_unavailable(server, xmpp):
    wasm_tenant(server, plugin_component("echo.acme.test", "echo"))
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid="echo.acme.test", timeout=10)
    assert err.value.iq["error"]["condition"] == "service-unavailable"


# A generous call deadline: on a busy machine a debug build's first calls into a freshly
# compiled version can take far longer than the 50 ms default, and a timed-out call answers
# with an error instead of the echo this test counts (deadlines have their own tests).
@pytest.mark.server_config({"plugins": {"component_deadline_ms": 10000}})
@pytest.mark.async_timeout(120)
async def test_swap_while_users_talk_loses_no_reply(server, xmpp):
    wasm_tenant(server, plugin_component("echo.acme.test", "echo"))
    install_component(server, "acme", "echo", "echo_bot", {"prefix": "v1:"})
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    # Messages flow before, during and after the swap: the first 10 replies (v1) come back
    # before the swap starts, and 10 more are sent after the API call returned (v2), however
    # long the swap takes on a busy machine.
    loop = asyncio.get_running_loop()
    swapped = asyncio.Event()
    sent = 0

    async def talk():
        nonlocal sent
        after = 0
        while after < 10:
            alice.send_message(mto="echo.acme.test", mbody=f"m{sent}", mtype="chat")
            sent += 1
            after += swapped.is_set()
            await asyncio.sleep(0.02)

    talking = asyncio.ensure_future(talk())
    first = [(await alice.next_message(timeout=15))["body"] for _ in range(10)]
    info = await loop.run_in_executor(
        None, lambda: install_component(server, "acme", "echo", "echo_bot", {"prefix": "v2:"}))
    swapped.set()
    assert info["version"] == 2
    await talking
    total = sent
    bodies = first + [(await alice.next_message(timeout=15))["body"] for _ in range(total - 10)]
    # Every message answered once, in order; v1 until the swap, v2 after it.
    assert [b.split(":", 1)[1] for b in bodies] == [f"m{i}" for i in range(total)]
    versions = [b.split(":", 1)[0] for b in bodies]
    assert versions[0] == "v1" and versions[-1] == "v2"
    assert versions == sorted(versions), versions
    await alice.assert_no_message(within=0.5)


@pytest.mark.async_timeout(180)
async def test_hostile_component_is_contained(server, xmpp):
    wasm_tenant(server, plugin_component("bad.acme.test", "bad"),
                plugin_component("echo.acme.test", "echo"))
    install_component(server, "acme", "echo", "echo_bot")
    server.create_tenant("other", ["other.test"], components=[plugin_component("echo.other.test", "echo")])
    install_component(server, "other", "echo", "echo_bot")
    server.create_user("alice", "pw", domain="acme.test")
    server.create_user("bob", "pw", domain="acme.test")
    server.create_user("olga", "pw", domain="other.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    bob = await xmpp.connect(server, "bob@acme.test", "pw")
    olga = await xmpp.connect(server, "olga@other.test", "pw")

    expected = {"loop": "internal-server-error", "memory": "internal-server-error",
                "trap": "internal-server-error", "stack": "internal-server-error",
                "oversized": "internal-server-error", "invalid": "internal-server-error",
                "refuse": "service-unavailable"}
    for mode, condition in expected.items():
        install_component(server, "acme", "bad", "hostile_component", {"mode": mode})
        # An iq request gets an error reply, not silence.
        with pytest.raises(IqError) as err:
            await custom_iq(alice, "bad.acme.test", "get", "<query xmlns='urn:test:x'/>", timeout=15)
        assert err.value.iq["error"]["condition"] == condition, mode
        # So does a message.
        alice.send_message(mto="bad.acme.test", mbody=mode, mtype="chat")
        bounce = await alice.next_error(timeout=15)
        assert bounce["error"]["condition"] == condition, mode
        # The server keeps serving: users chat, other components and tenants answer.
        alice.send_message(mto=bob.jid, mbody=f"still here {mode}", mtype="chat")
        assert (await bob.next_message())["body"] == f"still here {mode}"
        olga.send_message(mto="echo.other.test", mbody=mode, mtype="chat")
        assert (await olga.next_message())["body"] == mode
    # The spoofed 'from' of the invalid mode never reached anyone.
    await bob.assert_no_message(within=0.5)
    _, plugins = server.admin("GET", "/api/v1/tenants/acme/plugins", expect=200)
    bad = next(p for p in plugins["plugins"] if p["slot"] == "bad")
    assert bad["world"] == "component"
    failed = bad["stats"]["failed"]
    assert failed.get("timeout", 0) >= 1 and failed.get("trap", 0) >= 1, bad["stats"]


async def test_call_router_allocates_least_loaded_endpoints(server, xmpp):
    config = {"endpoints": {
        "eu-1": {"url": "wss://eu-1.media.test/ws", "capacity": 2, "region": "eu"},
        "us-1": {"url": "wss://us-1.media.test/ws", "capacity": 4},
    }}
    wasm_tenant(server, plugin_component("calls.acme.test", "calls", name="Call router"))
    install_component(server, "acme", "calls", "call_router", config)
    # A configuration without endpoints is refused at install time (init).
    install_component(server, "acme", "calls", "call_router", {"endpoints": {}}, expect=400)
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")

    async def allocate(room: str):
        res = await custom_iq(alice, "calls.acme.test", "set",
                              f"<allocate xmlns='{ROUTER_NS}' room='{room}'/>")
        return res.xml.find(f"{{{ROUTER_NS}}}endpoint")

    got = [(await allocate(r)).get("id") for r in ("standup", "review", "retro", "demo")]
    assert got == ["eu-1", "us-1", "us-1", "eu-1"]
    ep = await allocate("standup")
    assert ep.get("id") == "eu-1" and ep.get("url") == "wss://eu-1.media.test/ws"
    await custom_iq(alice, "calls.acme.test", "set", f"<release xmlns='{ROUTER_NS}' room='standup'/>")
    with pytest.raises(IqError) as err:
        await custom_iq(alice, "calls.acme.test", "set", f"<release xmlns='{ROUTER_NS}' room='standup'/>")
    assert err.value.iq["error"]["condition"] == "item-not-found"
    res = await custom_iq(alice, "calls.acme.test", "get", f"<status xmlns='{ROUTER_NS}'/>")
    loads = {e.get("id"): e.get("load") for e in res.xml.find(f"{{{ROUTER_NS}}}status")}
    assert loads == {"eu-1": "1", "us-1": "2"}


# --- PROXY protocol on the component listener ----------------------------------

@pytest.mark.server_config({"listen": {"component": [
    {"address": "127.0.0.1:0", "proxy_protocol": True, "trusted_proxies": ["127.0.0.1"]}]}})
def test_proxy_protocol_on_the_component_listener(server):
    acme(server, component("bot.acme.test"))
    # From a trusted proxy: the header's address is the connection's, the handshake works.
    with RawStream.connect(server.component_address) as raw:
        raw.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 5347\r\n")
        raw.send(f"<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAM_NS}' "
                 "to='bot.acme.test'>")
        raw.read_until(b"id=")
        raw.read_until(b">")
        sid = re.search(rb"id=['\"]([^'\"]+)", raw.received).group(1).decode()
        raw.send(handshake(sid, "s3cret"))
        raw.read_until(b"<handshake/>")
    assert "peer=203.0.113.9:40000" in server.log_text()
    # Without the header the connection is refused (closed without a stream).
    with RawStream.connect(server.component_address) as raw:
        raw.send(f"<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAM_NS}' "
                 "to='bot.acme.test'>")
        data = raw.read_to_close(timeout=5)
        assert b"<handshake" not in data and b"stream:stream" not in data, data


async def test_components_answering_each_other_are_cut_off(server, xmpp):
    wasm_tenant(server, plugin_component("a.acme.test", "a"), plugin_component("b.acme.test", "b"),
                plugin_component("echo.acme.test", "echo"))
    install_component(server, "acme", "a", "hostile_component", {"mode": "relay", "target": "b.acme.test"})
    install_component(server, "acme", "b", "hostile_component", {"mode": "relay", "target": "a.acme.test"})
    install_component(server, "acme", "echo", "echo_bot")
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    alice.send_message(mto="a.acme.test", mbody="start", mtype="chat")
    # The ping-pong is cut after a bounded number of hops; the server keeps serving.
    alice.send_message(mto="echo.acme.test", mbody="after", mtype="chat")
    assert (await alice.next_message(timeout=15))["body"] == "after"

    def calls() -> dict:
        _, plugins = server.admin("GET", "/api/v1/tenants/acme/plugins", expect=200)
        return {p["slot"]: p["stats"]["calls"] for p in plugins["plugins"]}

    # Wait (generously) for the ping-pong to have started; then let it run on for a while:
    # more time only makes the bound on the hops stricter.
    deadline = asyncio.get_running_loop().time() + 30
    while (c := calls())["a"] + c["b"] == 0:
        assert asyncio.get_running_loop().time() < deadline, f"the relay never ran: {c}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    c = calls()
    assert 0 < c["a"] + c["b"] <= 8, c
