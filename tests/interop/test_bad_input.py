"""Bad input over raw sockets: the right stream error, then the server carries on.

RFC 6120 4.9: on a stream error the server sends <stream:error> with a defined
condition (possibly after its own stream header, if it had not sent one yet),
closes the stream and the connection. Each test then checks that a normal
slixmpp login still works, i.e. the bad connection harmed nothing else.
"""

from __future__ import annotations

import pytest

from harness.raw import RawStream, stream_error_condition, stream_header

SMALL_LIMIT = 4096


def assert_stream_error(raw: RawStream, condition: str) -> None:
    data = raw.read_to_close(timeout=10)
    assert stream_error_condition(data) == condition, f"expected {condition}, got {data!r}"
    assert raw.closed, f"server did not close the connection after the stream error; got {data!r}"


async def assert_login_still_works(server, xmpp) -> None:
    server.create_user("carol", "pw")
    carol = await xmpp.connect(server, "carol", "pw")
    assert carol.boundjid.bare == "carol@localhost"


async def test_garbage_before_stream_header(server, xmpp):
    with RawStream.connect(server.c2s_starttls) as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert_stream_error(raw, "not-well-formed")
    await assert_login_still_works(server, xmpp)


async def test_garbage_after_stream_header(server, xmpp):
    with RawStream.connect(server.c2s_starttls) as raw:
        raw.open()
        raw.try_send(b"<message><body>unclosed</message>")
        assert_stream_error(raw, "not-well-formed")
    await assert_login_still_works(server, xmpp)


async def test_doctype_is_restricted_xml(server, xmpp):
    with RawStream.connect(server.c2s_starttls) as raw:
        raw.send(b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY boom 'boom'>]>"
                 + stream_header().removeprefix(b"<?xml version='1.0'?>"))
        assert_stream_error(raw, "restricted-xml")
    await assert_login_still_works(server, xmpp)


async def test_processing_instruction_is_restricted_xml(server, xmpp):
    with RawStream.connect(server.c2s_direct_tls, tls=True) as raw:
        raw.open()
        raw.try_send(b"<?evil instruction?>")
        assert_stream_error(raw, "restricted-xml")
    await assert_login_still_works(server, xmpp)


@pytest.mark.server_config({"general": {"max_stanza_size": SMALL_LIMIT}})
async def test_stanza_under_limit_is_accepted(server, xmpp):
    server.create_user("dave", "pw")
    with RawStream.connect(server.c2s_direct_tls, tls=True) as raw:
        raw.login_plain("dave", "pw")
        body = "x" * (SMALL_LIMIT // 2)
        raw.send(f"<message to='{raw.jid}' type='chat'><body>{body}</body></message>")
        data = raw.read_until(b"</message>")
        assert body.encode() in data


@pytest.mark.server_config({"general": {"max_stanza_size": SMALL_LIMIT}})
async def test_oversize_stanza_is_policy_violation(server, xmpp):
    server.create_user("dave", "pw")
    with RawStream.connect(server.c2s_direct_tls, tls=True) as raw:
        raw.login_plain("dave", "pw")
        # The server may close as soon as the limit is crossed, mid-send.
        raw.try_send(f"<message to='{raw.jid}' type='chat'><body>{'x' * (4 * SMALL_LIMIT)}</body></message>"
                     .encode())
        assert_stream_error(raw, "policy-violation")
    await assert_login_still_works(server, xmpp)


@pytest.mark.server_config({"general": {"max_stanza_size": SMALL_LIMIT}})
async def test_oversize_stanza_before_auth_is_policy_violation(server, xmpp):
    with RawStream.connect(server.c2s_direct_tls, tls=True) as raw:
        raw.open()
        raw.try_send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                     f"{'A' * (4 * SMALL_LIMIT)}</auth>".encode())
        assert_stream_error(raw, "policy-violation")
    await assert_login_still_works(server, xmpp)
