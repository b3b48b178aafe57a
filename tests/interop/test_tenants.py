"""Tenants at runtime (slixmpp + admin API): add, disable, isolation, tenant tokens,
per-tenant certificates by SNI and by the stream's domain, limits, and config reload.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from harness import waiting
from harness.raw import RawStream, stream_error_condition
from harness.xmpp import LoginFailed

STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    return await waiting.wait_for(predicate, timeout, what)


def stream_error_names(client) -> list[str]:
    return [e["condition"] for e in client.stream_errors]


async def chat(sender, receiver, count: int, interval: float) -> list[str]:
    """Send ``count`` numbered messages; returns the bodies the receiver got, in order."""
    for i in range(count):
        sender.send_message(mto=receiver.jid, mbody=f"m{i}", mtype="chat")
        await asyncio.sleep(interval)
    got = []
    for _ in range(count):
        got.append((await receiver.next_message(timeout=10))["body"])
    return got


# --- runtime changes ----------------------------------------------------------

@pytest.mark.async_timeout(90)
async def test_tenant_added_through_api_logs_in_at_once_while_others_keep_chatting(server, xmpp):
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    bob = await xmpp.connect(server, "bob", "pw")
    chatting = asyncio.create_task(chat(alice, bob, 200, 0.01))

    server.create_tenant("acme", ["acme.test"])
    server.create_user("carol", "pw", domain="acme.test")
    # "At once" is a matter of order, not speed: the first login attempt made right after
    # the API calls returned succeeds (no reload, no retry), while the others still chat.
    carol = await xmpp.connect(server, "carol@acme.test", "pw")
    assert carol.boundjid.bare == "carol@acme.test"

    got = await chatting
    assert got == [f"m{i}" for i in range(200)], "the other tenant lost or reordered messages"


@pytest.mark.async_timeout(90)
async def test_disable_ends_sessions_with_host_gone_and_refuses_logins_until_enabled(server, xmpp):
    server.create_tenant("acme", ["acme.test"])
    server.create_user("carol", "pw", domain="acme.test")
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    carol = await xmpp.connect(server, "carol@acme.test", "pw")
    alice = await xmpp.connect(server, "alice", "pw")
    bob = await xmpp.connect(server, "bob", "pw")

    server.admin("POST", "/api/v1/tenants/acme/disable", expect=200)
    await wait_for(lambda: "host-gone" in stream_error_names(carol), what="host-gone at carol")

    with RawStream.connect(server.c2s_direct_tls, tls=True) as raw:
        raw.send(b"<?xml version='1.0'?><stream:stream to='acme.test' version='1.0' "
                 b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        assert stream_error_condition(raw.read_to_close()) == "host-unknown"

    # The other tenant is not disturbed.
    alice.send_message(mto=bob.jid, mbody="still here", mtype="chat")
    assert (await bob.next_message())["body"] == "still here"
    assert not alice.stream_errors and not bob.stream_errors

    server.admin("POST", "/api/v1/tenants/acme/enable", expect=200)
    carol2 = await xmpp.connect(server, "carol@acme.test", "pw")
    assert carol2.boundjid.bare == "carol@acme.test"


async def test_remove_keeps_data_unless_purged(server, xmpp):
    server.create_tenant("acme", ["acme.test"])
    server.create_user("carol", "pw", domain="acme.test")
    server.admin("DELETE", "/api/v1/tenants/acme", expect=204)
    server.admin("GET", "/api/v1/users/acme.test", expect=404)
    server.create_tenant("acme", ["acme.test"])
    assert server.admin("GET", "/api/v1/users/acme.test", expect=200)[1]["users"] == ["carol"]
    server.admin("DELETE", "/api/v1/tenants/acme?purge=true", expect=204)
    server.create_tenant("acme", ["acme.test"])
    assert server.admin("GET", "/api/v1/users/acme.test", expect=200)[1]["users"] == []


# --- isolation and tenant tokens ------------------------------------------------

async def test_tenants_are_isolated_and_same_localpart_is_a_different_account(server, xmpp):
    server.create_tenant("a", ["a.test"])
    server.create_tenant("b", ["b.test"])
    server.create_user("alice", "pw-a", domain="a.test")
    server.create_user("alice", "pw-b", domain="b.test")
    server.create_user("bob", "pw", domain="b.test")
    with pytest.raises(LoginFailed):
        await xmpp.connect(server, "alice@a.test", "pw-b", mech="PLAIN")
    alice_a = await xmpp.connect(server, "alice@a.test", "pw-a")
    alice_b = await xmpp.connect(server, "alice@b.test", "pw-b")
    bob = await xmpp.connect(server, "bob@b.test", "pw")

    alice_a.send_message(mto="bob@b.test", mbody="across tenants", mtype="chat")
    err = await alice_a.next_error()
    assert err["error"]["condition"] == "remote-server-not-found", err
    await bob.assert_no_message(within=1.0)

    # Inside one tenant, traffic flows.
    alice_b.send_message(mto="bob@b.test", mbody="same tenant", mtype="chat")
    assert (await bob.next_message())["body"] == "same tenant"

    # Federation needs both sides.
    server.admin("PATCH", "/api/v1/tenants/a", {"federate_with": ["b"]}, expect=200)
    alice_a.send_message(mto="bob@b.test", mbody="one side only", mtype="chat")
    assert (await alice_a.next_error())["error"]["condition"] == "remote-server-not-found"
    server.admin("PATCH", "/api/v1/tenants/b", {"federate_with": ["a"]}, expect=200)
    alice_a.send_message(mto="bob@b.test", mbody="federated", mtype="chat")
    assert (await bob.next_message())["body"] == "federated"


async def test_tenant_token_manages_only_its_own_tenant(server):
    server.create_tenant("a", ["a.test"])
    server.create_tenant("b", ["b.test"])
    token = server.admin("POST", "/api/v1/tenants/a/token", expect=201)[1]["token"]

    server.admin("POST", "/api/v1/users/a.test", {"username": "u", "password": "p"}, expect=201, token=token)
    server.admin("GET", "/api/v1/users/a.test", expect=200, token=token)
    server.admin("GET", "/api/v1/tenants/a", expect=200, token=token)
    server.admin("PATCH", "/api/v1/tenants/a", {"federate_with": []}, expect=200, token=token)
    server.admin("GET", "/api/v1/sessions/a.test", expect=200, token=token)

    for method, path, body in [
        ("GET", "/api/v1/users/b.test", None),
        ("POST", "/api/v1/users/b.test", {"username": "x", "password": "p"}),
        ("GET", "/api/v1/tenants/b", None),
        ("GET", "/api/v1/tenants", None),
        ("GET", "/api/v1/sessions", None),
        ("POST", "/api/v1/tenants/a/disable", None),
        ("PATCH", "/api/v1/tenants/a", {"limits": {"max_sessions": 1000000}}),
        ("DELETE", "/api/v1/tenants/a", None),
        ("POST", "/api/v1/reload", None),
    ]:
        status, doc = server.admin(method, path, body, token=token)
        assert status == 403, (method, path, status, doc)
        assert doc["error"] == "forbidden"
    # A wrong or unknown token is 401, not 403.
    assert server.admin("GET", "/api/v1/users/a.test", token=token + "x")[0] == 401
    assert server.admin("GET", "/api/v1/users/a.test", token="nosuch.tenant")[0] == 401
    # A new token replaces the old one.
    server.admin("POST", "/api/v1/tenants/a/token", expect=201)
    assert server.admin("GET", "/api/v1/users/a.test", token=token)[0] == 401


# --- per-tenant certificates ------------------------------------------------------

def make_cert(workdir: Path, name: str) -> tuple[Path, Path]:
    cert, key = workdir / f"{name}.crt", workdir / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def cert_der(path: Path) -> bytes:
    pem = path.read_text()
    return ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----"):])


def presented_cert(address, sni: str | None, stream_domain: str | None = None) -> bytes:
    """Connect (direct TLS, or STARTTLS after a header to ``stream_domain``) and return the
    server certificate presented for ``sni`` (None: no SNI)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection(address, timeout=10)
    try:
        if stream_domain is not None:
            sock.sendall(
                f"<?xml version='1.0'?><stream:stream to='{stream_domain}' version='1.0' "
                "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>".encode())
            buf = b""
            while b"</stream:features>" not in buf:
                chunk = sock.recv(4096)
                assert chunk, buf
                buf += chunk
            sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            buf = b""
            while b"proceed" not in buf:
                chunk = sock.recv(4096)
                assert chunk, buf
                buf += chunk
        tls = ctx.wrap_socket(sock, server_hostname=sni)
        der = tls.getpeercert(binary_form=True)
        tls.close()
        return der
    finally:
        sock.close()


async def test_per_tenant_certificate_by_sni_and_by_stream_domain(server, xmpp):
    cert, key = make_cert(server.workdir, "acme.test")
    server.create_tenant("acme", ["acme.test"], tls={"cert": str(cert), "key": str(key)})
    server.create_tenant("plain", ["plain.test"])
    fallback = (server.data_dir / "selfsigned.crt")
    acme_der, fallback_der = cert_der(cert), cert_der(fallback)
    assert acme_der != fallback_der

    assert presented_cert(server.c2s_direct_tls, "acme.test") == acme_der
    assert presented_cert(server.c2s_direct_tls, "plain.test") == fallback_der
    assert presented_cert(server.c2s_direct_tls, "unknown.example") == fallback_der
    # STARTTLS without SNI: the stream's 'to' picks the certificate.
    assert presented_cert(server.c2s_starttls, None, stream_domain="acme.test") == acme_der
    assert presented_cert(server.c2s_starttls, None, stream_domain="plain.test") == fallback_der

    # A user of the tenant logs in over its own certificate (SNI from slixmpp).
    server.create_user("carol", "pw", domain="acme.test")
    carol = await xmpp.connect(server, "carol@acme.test", "pw", direct_tls=True)
    assert carol.boundjid.bare == "carol@acme.test"


# --- limits -------------------------------------------------------------------

async def test_max_sessions_and_max_accounts(server, xmpp):
    server.create_tenant("acme", ["acme.test"], limits={"max_sessions": 1, "max_accounts": 2})
    server.create_user("u1", "pw", domain="acme.test")
    server.create_user("u2", "pw", domain="acme.test")
    status, doc = server.admin("POST", "/api/v1/users/acme.test", {"username": "u3", "password": "pw"})
    assert status == 403 and doc["error"] == "limit_reached", doc
    await xmpp.connect(server, "u1@acme.test", "pw")
    with RawStream.connect(server.c2s_direct_tls, tls=True) as raw:
        raw.open("acme.test")
        import base64
        raw.received = b""
        raw.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                 + base64.b64encode(b"\0u2\0pw").decode() + "</auth>")
        raw.read_until(b"success")
        raw.received = b""
        raw.open("acme.test")
        raw.received = b""
        raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        raw.read_until(b"</iq>")
        assert b"resource-constraint" in raw.received, raw.received


@pytest.mark.async_timeout(60)
async def test_stanza_rate_slows_the_sender_without_losing_anything(server, xmpp):
    server.create_tenant("acme", ["acme.test"], limits={"stanza_rate": 20, "stanza_burst": 5})
    server.create_user("a", "pw", domain="acme.test")
    server.create_user("b", "pw", domain="acme.test")
    a = await xmpp.connect(server, "a@acme.test", "pw")
    b = await xmpp.connect(server, "b@acme.test", "pw")
    started = time.monotonic()
    for i in range(60):
        a.send_message(mto=b.jid, mbody=f"m{i}", mtype="chat")
    got = [(await b.next_message(timeout=15))["body"] for _ in range(60)]
    elapsed = time.monotonic() - started
    assert got == [f"m{i}" for i in range(60)]
    # 60 stanzas at 20/s with a burst of 5 need at least (60 - 5) / 20 = 2.75 s.
    assert elapsed >= 2.5, f"shaper let 60 stanzas through in {elapsed:.2f}s"


async def test_tenant_max_stanza_size(server, xmpp):
    server.create_tenant("acme", ["acme.test"], limits={"max_stanza_size": 2048})
    server.create_user("a", "pw", domain="acme.test")
    with RawStream.connect(server.c2s_direct_tls, tls=True) as raw:
        raw.login_plain("a", "pw", domain="acme.test")
        raw.try_send(b"<message to='x@acme.test'><body>" + b"x" * 4000 + b"</body></message>")
        assert stream_error_condition(raw.read_to_close()) == "policy-violation"


# --- config reload ------------------------------------------------------------

async def test_reload_applies_tenants_and_refuses_an_invalid_file(server, xmpp, heliograph_bin):
    server.config.setdefault("tenants", {})["zeta"] = {"domains": ["zeta.test"]}
    server.write_config()
    host, port = server.admin_address
    cli = [heliograph_bin, "--config", str(server.config_path), "--api", f"http://{host}:{port}"]
    run = subprocess.run(cli + ["reload"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert "added zeta" in run.stdout, run.stdout
    server.create_user("z", "pw", domain="zeta.test")
    z = await xmpp.connect(server, "z@zeta.test", "pw")

    # An invalid file is refused with the key and line, and nothing changes.
    good = server.config_path.read_text()
    server.config_path.write_text(good + "\n[tenants.bad]\ndomains = [\"bad.test\"]\nbogus_key = 1\n")
    run = subprocess.run(cli + ["reload"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert "bogus_key" in run.stderr and "line" in run.stderr, run.stderr
    status, _ = server.admin("GET", "/api/v1/tenants/bad")
    assert status == 404
    assert not z.stream_errors

    # Removing the tenant from the file ends its sessions with host-gone.
    server.config_path.write_text(good)
    del server.config["tenants"]["zeta"]
    server.write_config()
    run = subprocess.run(cli + ["reload"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    await wait_for(lambda: "host-gone" in stream_error_names(z), what="host-gone after reload")


async def test_openapi_document_is_public_and_lists_tenant_routes(server):
    status, doc = server.admin("GET", "/api/v1/openapi.json", token="")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    for path in ["/api/v1/tenants", "/api/v1/tenants/{tenant}", "/api/v1/reload", "/api/v1/users/{domain}"]:
        assert path in doc["paths"], path


async def test_sighup_reloads_and_rereads_certificates(server, xmpp):
    cert, key = make_cert(server.workdir, "cfg.test")
    server.config.setdefault("tenants", {})["cfg"] = {
        "domains": ["cfg.test"], "tls": {"cert": str(cert), "key": str(key)}}
    server.write_config()
    server.proc.send_signal(__import__("signal").SIGHUP)
    first = await wait_for(lambda: server.admin("GET", "/api/v1/tenants/cfg")[0] == 200 and
                           presented_cert(server.c2s_direct_tls, "cfg.test"),
                           what="tenant cfg after SIGHUP")
    assert first == cert_der(cert)

    # A renewed certificate on disk is served after the next reload.
    make_cert(server.workdir, "cfg.test")
    renewed = cert_der(cert)
    assert renewed != first
    server.proc.send_signal(__import__("signal").SIGHUP)
    await wait_for(lambda: presented_cert(server.c2s_direct_tls, "cfg.test") == renewed,
                   what="renewed certificate after SIGHUP")
