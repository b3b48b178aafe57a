"""Token helpers for tests: HS256/HS512 JWTs minted with the standard library, raw
token logins (PLAIN, OAUTHBEARER, X-OAUTH) that report the exact SASL outcome, and an
OAUTHBEARER mechanism for slixmpp (which ships none).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

from slixmpp.util.sasl.client import Mech, sasl_mech

from harness.raw import RawStream, stream_header

SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(secret: str, claims: dict, *, kid: str | None = None, alg: str = "HS256") -> str:
    """A compact JWS signed with HMAC (HS256/HS384/HS512)."""
    header = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(sig)


def claims(sub: str, *, ttl: int = 600, **extra) -> dict:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + ttl, **extra}


def oauthbearer_message(token: str, authzid: str | None = None) -> bytes:
    gs2 = f"n,a={authzid}," if authzid else "n,,"
    return f"{gs2}\x01host=localhost\x01auth=Bearer {token}\x01\x01".encode()


class Outcome:
    """What a raw SASL attempt ended with."""

    def __init__(self, ok: bool, condition: str | None, success_data: bytes, challenges: list[bytes]):
        self.ok = ok
        self.condition = condition
        self.success_data = success_data
        self.challenges = challenges

    def __repr__(self) -> str:
        return f"Outcome(ok={self.ok}, condition={self.condition!r})"


def _b64(el_text: bytes) -> bytes:
    t = el_text.strip()
    return b"" if t in (b"", b"=") else base64.b64decode(t)


def sasl_attempt(address, domain: str, mechanism: str, initial: bytes, *,
                 responses: tuple[bytes, ...] = (b"\x01",), bind: bool = True) -> Outcome:
    """One SASL exchange over direct TLS; answers challenges with ``responses`` in turn.

    On success also restarts the stream and binds, so the login is complete.
    """
    with RawStream.connect(address, tls=True) as s:
        s.send(stream_header(domain))
        s.read_until(b"features>")
        s.received = b""
        payload = base64.b64encode(initial).decode() or "="
        s.send(f"<auth xmlns='{SASL_NS}' mechanism='{mechanism}'>{payload}</auth>")
        challenges = []
        pending = list(responses)
        while True:
            data = s.read_until(b">")
            m = re.search(rb"<success[^>]*?(/>|>(.*?)</success>)", data, re.S)
            if m:
                success = _b64(m.group(2) or b"")
                break
            m = re.search(rb"<failure[^>]*><([a-z-]+)", data)
            if m and b"</failure>" in data:
                return Outcome(False, m.group(1).decode(), b"", challenges)
            m = re.search(rb"<challenge[^>]*?(/>|>(.*?)</challenge>)", data, re.S)
            if m:
                challenges.append(_b64(m.group(2) or b""))
                s.received = b""
                answer = pending.pop(0) if pending else b""
                s.send(f"<response xmlns='{SASL_NS}'>{base64.b64encode(answer).decode() or '='}</response>")
                continue
            if s.closed:
                raise AssertionError(f"closed: {data!r}")
            s.read_until(b">", timeout=5)
        if bind:
            s.received = b""
            s.send(stream_header(domain))
            s.read_until(b"features>")
            s.received = b""
            s.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            s.read_until(b"</iq>")
            assert b"result" in s.received, s.received
        s.try_send(b"</stream:stream>")
        return Outcome(True, None, success, challenges)


def plain_token(address, domain: str, user: str, token: str) -> Outcome:
    return sasl_attempt(address, domain, "PLAIN", f"\0{user}\0{token}".encode())


def oauthbearer(address, domain: str, token: str, authzid: str | None = None) -> Outcome:
    return sasl_attempt(address, domain, "OAUTHBEARER", oauthbearer_message(token, authzid))


def x_oauth(address, domain: str, token: str) -> Outcome:
    return sasl_attempt(address, domain, "X-OAUTH", token.encode())


@sasl_mech(1)
class OAUTHBEARER(Mech):
    """RFC 7628 for slixmpp: credentials ``username`` and ``access_token``."""

    name = "OAUTHBEARER"
    required_credentials = {"username", "access_token"}

    def setup(self, name):
        self.sent = False

    def process(self, challenge=b""):
        if not self.sent:
            self.sent = True
            token = self.credentials["access_token"].decode()
            return oauthbearer_message(token)
        # An error challenge: RFC 7628 §3.2.3 says answer %x01 and take the failure.
        return b"\x01"
