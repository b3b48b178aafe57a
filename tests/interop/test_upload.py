"""HTTP File Upload (XEP-0363): a slixmpp client discovers the tenant's upload service,
asks for slots over XMPP and PUTs and GETs over HTTP, both with slixmpp's own xep_0363
plugin (aiohttp) and with raw requests (Python's http.client) for what a well-behaved
client never sends. Covers the round trip byte for byte, refused slots (too large, over
quota, unsafe names), and PUTs and GETs the listener must refuse with nothing stored: bad
signature, wrong length or type, expired slot, a body longer than its slot, another
tenant's path, and two PUTs in flight that together exceed the quota."""

from __future__ import annotations

import asyncio
import http.client
import os
import time
import urllib.parse
from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from harness.xmpp import DEFAULT_PLUGINS, WAIT

UPLOAD = "urn:xmpp:http:upload:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


def http_request(method: str, url: str, body=None, headers: dict | None = None,
         chunked: bool = False) -> tuple[int, bytes, dict]:
    """One HTTP request; returns (status, body, headers with lowercase names)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        try:
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            # The server answered before reading the whole body (a refusal such as 507)
            # and closed; its answer is in the socket's receive queue, read it as a
            # browser does.
            pass
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


async def ahttp(*args, **kwargs):
    return await asyncio.to_thread(http_request, *args, **kwargs)


async def request_slot(client, service: str, filename: str, size: int,
                       content_type: str = "application/octet-stream") -> tuple[str, str, dict]:
    iq = client.make_iq_get(ito=service)
    iq.append(ET.fromstring(
        f"<request xmlns='{UPLOAD}' filename={quoteattr(filename)} size='{size}' "
        f"content-type='{content_type}'/>"))
    res = await iq.send(timeout=WAIT)
    slot = res.xml.find(f"{{{UPLOAD}}}slot")
    put = slot.find(f"{{{UPLOAD}}}put")
    headers = {h.get("name"): h.text for h in put.findall(f"{{{UPLOAD}}}header")}
    return put.get("url"), slot.find(f"{{{UPLOAD}}}get").get("url"), headers


def quoteattr(s: str) -> str:
    from xml.sax.saxutils import quoteattr as q
    return q(s)


def tamper(url: str, **params) -> str:
    u = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(u.query))
    q.update({k: str(v) for k, v in params.items()})
    return urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode(q)))


def files_under(server) -> list[str]:
    root = server.data_dir / "uploads"
    out = []
    for dirpath, _, names in os.walk(root):
        out += [os.path.join(dirpath, n) for n in names]
    return out


SMALL = {"tenants": {"acme": {"domains": ["acme.test"],
                              "upload": {"max_file_size": 1_000_000, "user_quota": 1_500_000}},
                     "other": {"domains": ["other.test"]}},
         "listen": {"http": [{"address": "127.0.0.1:0", "allowed_origins": ["*"]}]}}


@pytest.mark.server_config(SMALL)
async def test_upload_round_trip_and_refused_slots(server, xmpp):
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")

    # Discovery: the service is an item of the domain, with store/file and max-file-size.
    items = await alice.plugin["xep_0030"].get_items(jid="acme.test", timeout=WAIT)
    assert "upload.acme.test" in [i[0] for i in items["disco_items"]["items"]]
    info = await alice.plugin["xep_0030"].get_info(jid="upload.acme.test", timeout=WAIT)
    assert ("store", "file", None, "HTTP File Upload") in info["disco_info"]["identities"] or \
        any(i[0] == "store" and i[1] == "file" for i in info["disco_info"]["identities"])
    assert UPLOAD in info["disco_info"]["features"]
    form = info.xml.find(f"{{{DISCO_INFO}}}query/{{jabber:x:data}}x")
    fields = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form}
    assert fields["max-file-size"] == "1000000"

    data = os.urandom(700_000)
    put_url, get_url, headers = await request_slot(alice, "upload.acme.test", "photo 1.png", len(data), "image/png")
    assert headers == {"Content-Type": "image/png"}
    status, _, _ = await ahttp("PUT", put_url, data, {"Content-Type": "image/png", "Content-Length": str(len(data))})
    assert status == 201
    status, body, resp_headers = await ahttp("GET", get_url)
    assert status == 200 and body == data
    assert resp_headers["content-type"] == "image/png"
    # A second PUT to the same slot does not replace the file.
    status, _, _ = await ahttp("PUT", put_url, b"x" * len(data), {"Content-Type": "image/png"})
    assert status == 409
    assert (await ahttp("GET", get_url))[1] == data

    # Too large for the tenant: not-acceptable with file-too-large and the limit.
    with pytest.raises(IqError) as err:
        await request_slot(alice, "upload.acme.test", "big.bin", 2_000_000)
    assert err.value.iq["error"]["condition"] == "not-acceptable"
    too_large = err.value.iq.xml.find(f"{{jabber:client}}error/{{{UPLOAD}}}file-too-large")
    assert too_large.findtext(f"{{{UPLOAD}}}max-file-size") == "1000000"
    # Over the user's quota (700 000 stored, 1 500 000 allowed).
    with pytest.raises(IqError) as err:
        await request_slot(alice, "upload.acme.test", "more.bin", 900_000)
    assert err.value.iq["error"]["condition"] == "resource-constraint"
    # Path traversal in the name.
    for bad in ("../../etc/passwd", "..", "a/b.png"):
        with pytest.raises(IqError) as err:
            await request_slot(alice, "upload.acme.test", bad, 10)
        assert err.value.iq["error"]["condition"] == "bad-request"


@pytest.mark.server_config(SMALL)
async def test_slixmpp_xep_0363_plugin_uploads_and_the_file_comes_back(server, xmpp):
    """What a slixmpp-based client does: the xep_0363 plugin finds the service by disco,
    requests a slot and PUTs with aiohttp; the GET URL it returns serves the same bytes."""
    import io

    import aiohttp
    from slixmpp.plugins.xep_0363 import FileTooBig

    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw",
                               plugins=DEFAULT_PLUGINS + ("xep_0363",))
    upload = alice.plugin["xep_0363"]
    data = os.urandom(300_000)
    get_url = await upload.upload_file("holiday photo.jpg", size=len(data), content_type="image/jpeg",
                                       input_file=io.BytesIO(data), domain="acme.test", timeout=WAIT)
    assert upload.upload_service == "upload.acme.test"
    assert upload.max_file_size == 1_000_000
    async with aiohttp.ClientSession() as session:
        async with session.get(get_url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/jpeg"
            assert await resp.read() == data
    # The service's max-file-size reached the plugin: a larger file is refused before any
    # slot is asked for.
    with pytest.raises(FileTooBig):
        await upload.upload_file("big.bin", size=2_000_000, input_file=io.BytesIO(b""),
                                 domain="acme.test", timeout=WAIT)
    stored = [f for f in files_under(server) if not f.endswith(".meta")]
    assert [os.path.basename(f) for f in stored] == ["holiday photo.jpg"]


@pytest.mark.server_config(SMALL)
async def test_bad_puts_and_gets_store_nothing(server, xmpp):
    server.create_user("alice", "pw", domain="acme.test")
    server.create_user("olga", "pw", domain="other.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    data = b"0123456789" * 1000
    put_url, get_url, _ = await request_slot(alice, "upload.acme.test", "a.bin", len(data))
    ct = {"Content-Type": "application/octet-stream"}

    # Bad signature: 403. Wrong length, wrong type: 400. Nothing stored by any of them.
    assert (await ahttp("PUT", tamper(put_url, sig="0" * 64), data, ct))[0] == 403
    assert (await ahttp("PUT", tamper(put_url, len=len(data) + 1), data + b"!", ct))[0] == 403
    assert (await ahttp("PUT", put_url, data + b"!", ct))[0] == 400
    assert (await ahttp("PUT", put_url, data, {"Content-Type": "text/html"}))[0] == 400
    # A body longer than the slot without a length (chunked): cut off at the slot's size.
    chunks = (b"x" * 65536 for _ in range(16 * 1024))  # 1 GiB offered
    try:
        status, _, _ = await ahttp("PUT", put_url, chunks, ct, chunked=True)
    except (BrokenPipeError, ConnectionResetError):
        status = 413  # the server answered 413 and closed while the client still sent
    assert status == 413
    assert (await ahttp("GET", get_url))[0] == 404
    assert files_under(server) == []

    # Then the real upload still works.
    assert (await ahttp("PUT", put_url, data, ct))[0] == 201
    assert (await ahttp("GET", get_url))[1] == data

    # GET with a forged signature or another tenant's path: 404.
    assert (await ahttp("GET", tamper(get_url, sig="ab" * 32)))[0] == 404
    other = get_url.replace("/upload/acme/", "/upload/other/")
    assert (await ahttp("GET", other))[0] == 404
    traversal = get_url.split("?")[0].rsplit("/", 1)[0] + "/..%2F..%2Fconfig.toml?" + get_url.split("?")[1]
    assert (await ahttp("GET", traversal))[0] == 404

    # A user of another tenant gets no slot from acme's service.
    olga = await xmpp.connect(server, "olga@other.test", "pw")
    with pytest.raises(IqError) as err:
        await request_slot(olga, "upload.acme.test", "x.bin", 10)
    assert err.value.iq["error"]["condition"] in ("forbidden", "service-unavailable", "remote-server-not-found")


@pytest.mark.server_config(SMALL)
async def test_two_slots_granted_at_once_cannot_both_exceed_the_quota(server, xmpp):
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    ct = {"Content-Type": "application/octet-stream"}
    first = await request_slot(alice, "upload.acme.test", "one.bin", 800_000)
    second = await request_slot(alice, "upload.acme.test", "two.bin", 800_000)
    assert (await ahttp("PUT", first[0], b"1" * 800_000, ct))[0] == 201
    assert (await ahttp("PUT", second[0], b"2" * 800_000, ct))[0] == 507
    assert (await ahttp("GET", second[1]))[0] == 404
    assert (await ahttp("GET", first[1]))[1] == b"1" * 800_000


async def start_put(url: str, size: int, first: bytes):
    """A PUT of ``size`` bytes whose body is only begun (``first``): (reader, writer)."""
    u = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    head = (f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n")
    writer.write(head.encode() + first)
    await writer.drain()
    return reader, writer


async def wait_for_files(server, predicate, what: str, timeout: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate(files_under(server)):
        assert loop.time() < deadline, f"timed out waiting for {what}: {files_under(server)}"
        await asyncio.sleep(0.05)


@pytest.mark.server_config(SMALL)
async def test_concurrent_puts_over_the_quota_exactly_one_succeeds(server, xmpp):
    """Two PUTs in flight at once that together exceed the user's quota (2 x 800 000 of
    1 500 000): the one that started first holds its room, the other gets 507; when the
    first fails, its room is free again."""
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    ct = {"Content-Type": "application/octet-stream"}
    size = 800_000
    first = await request_slot(alice, "upload.acme.test", "one.bin", size)
    second = await request_slot(alice, "upload.acme.test", "two.bin", size)

    # The first PUT is under way (its body is being written) ...
    reader, writer = await start_put(first[0], size, b"1" * 1000)
    await wait_for_files(server, lambda fs: any(os.path.getsize(f) > 0 for f in fs if f.endswith(".part")),
                         "the first PUT's body")
    # ... so the second, which would fit on its own, does not.
    assert (await ahttp("PUT", second[0], b"2" * size, ct))[0] == 507
    # The first one dies half-way: nothing kept, and its room is given back.
    writer.close()
    await writer.wait_closed()
    await wait_for_files(server, lambda fs: fs == [], "the broken upload to be removed")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (status := (await ahttp("PUT", second[0], b"2" * size, ct))[0]) == 507:
        assert loop.time() < deadline, "the broken PUT's reservation was never released"
        await asyncio.sleep(0.1)
    assert status == 201
    assert (await ahttp("GET", second[1]))[1] == b"2" * size
    # Now the first slot no longer fits.
    assert (await ahttp("PUT", first[0], b"1" * size, ct))[0] == 507

    # Both in flight, finished: exactly one is stored.
    third = await request_slot(alice, "upload.acme.test", "three.bin", 600_000)
    fourth = await request_slot(alice, "upload.acme.test", "four.bin", 600_000)
    reader, writer = await start_put(third[0], 600_000, b"3" * 1000)
    await wait_for_files(server, lambda fs: any(os.path.getsize(f) > 0 for f in fs if f.endswith(".part")),
                         "the third PUT's body")
    fourth_put = asyncio.create_task(ahttp("PUT", fourth[0], b"4" * 600_000, ct))
    writer.write(b"3" * (600_000 - 1000))
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), WAIT)
    writer.close()
    statuses = sorted([int(status_line.split()[1]), (await fourth_put)[0]])
    assert statuses == [201, 507], statuses


@pytest.mark.server_config({"tenants": {"acme": {"domains": ["acme.test"], "upload": {"slot_ttl": 1}}}})
async def test_expired_slot_is_gone(server, xmpp):
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    put_url, get_url, _ = await request_slot(alice, "upload.acme.test", "late.bin", 4)
    expires = int(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(put_url).query))["exp"])
    while time.time() <= expires + 1:
        await asyncio.sleep(0.25)
    assert (await ahttp("PUT", put_url, b"late", {"Content-Type": "application/octet-stream"}))[0] == 410
    assert files_under(server) == []


@pytest.mark.server_config({"tenants": {"acme": {"domains": ["acme.test"]}}})
async def test_files_of_a_removed_account_are_deleted(server, xmpp):
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw",
                               plugins=DEFAULT_PLUGINS + ("xep_0077",))
    put_url, get_url, _ = await request_slot(alice, "upload.acme.test", "mine.txt", 5, "text/plain")
    assert (await ahttp("PUT", put_url, b"hello", {"Content-Type": "text/plain"}))[0] == 201
    assert len(files_under(server)) == 2  # the file and its metadata
    await alice.plugin["xep_0077"].cancel_registration(jid="acme.test", timeout=WAIT)
    deadline = time.monotonic() + 30
    while files_under(server) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert files_under(server) == []
    assert (await ahttp("GET", get_url))[0] == 404


@pytest.mark.server_config(SMALL)
async def test_cors_preflight_allows_put(server, xmpp):
    server.create_user("alice", "pw", domain="acme.test")
    alice = await xmpp.connect(server, "alice@acme.test", "pw")
    put_url, _, _ = await request_slot(alice, "upload.acme.test", "c.bin", 3)
    status, _, headers = await ahttp("OPTIONS", put_url, None, {
        "Origin": "http://app.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204
    assert "PUT" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-origin"] == "http://app.example"
