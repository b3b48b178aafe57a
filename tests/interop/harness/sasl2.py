"""A raw-XML XEP-0388 (SASL2) client with Bind 2 and FAST, for tests: slixmpp 1.17 has
no SASL2. One call = one connection over direct TLS, returning what the server said.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field

import slixmpp.util.sasl.mechanisms  # noqa: F401  (registers the mechanisms)
from slixmpp.util.sasl.client import MECHANISMS

from harness.raw import RawStream, stream_header

SASL2 = "urn:xmpp:sasl:2"
BIND2 = "urn:xmpp:bind:0"
FAST = "urn:xmpp:fast:0"


@dataclass
class Sasl2Result:
    ok: bool
    condition: str | None = None
    identifier: str | None = None
    bound: bool = False
    additional_data: bytes = b""
    token: str | None = None
    expiry: str | None = None
    features_after: str = ""
    raw: bytes = b""
    challenges: list = field(default_factory=list)


def advertised(address, domain: str) -> str:
    """The <authentication/> feature as XML text ('' if absent)."""
    with RawStream.connect(address, tls=True) as s:
        data = s.open(domain).decode()
    m = re.search(r"<authentication xmlns=['\"]urn:xmpp:sasl:2['\"].*?</authentication>", data, re.S)
    return m.group(0) if m else ""


def ht_proof(token: str, label: bytes, cb: bytes = b"") -> bytes:
    return hmac.new(token.encode(), label + cb, hashlib.sha256).digest()


def ht_initial(user: str, token: str) -> bytes:
    return user.encode() + b"\0" + ht_proof(token, b"Initiator")


class ScramClient:
    """Drives slixmpp's SCRAM implementation for one exchange."""

    def __init__(self, user: str, password: str, name: str = "SCRAM-SHA-256"):
        creds = {"username": user.encode(), "password": password.encode(), "authzid": b"",
                 "channel_binding": None}
        security = {"encrypted": True, "unencrypted_scram": False, "tls_version": "TLSv1.3",
                    "binding_proposed": True}
        self.mech = MECHANISMS[name](name, creds, security)

    def first(self) -> bytes:
        return self.mech.process(b"")

    def respond(self, challenge: bytes) -> bytes:
        return self.mech.process(challenge)

    def verify_final(self, data: bytes) -> None:
        self.mech.process(data)  # raises if the server signature is wrong


def authenticate(address, domain: str, mechanism: str, initial: bytes | None, *,
                 user_agent: str | None = "2f2c4e38-6a7d-4b45-9d19-9a1d7c1b2e10",
                 bind_tag: str | None = None, request_token: str | None = None,
                 fast: dict | None = None, on_challenge=None, then=None) -> Sasl2Result:
    """One <authenticate/>; ``on_challenge(bytes) -> bytes`` answers challenges;
    ``then(stream)`` runs on the open stream after success (e.g. send a stanza)."""
    with RawStream.connect(address, tls=True) as s:
        s.send(stream_header(domain))
        s.read_until(b"features>")
        s.received = b""
        parts = [f"<authenticate xmlns='{SASL2}' mechanism='{mechanism}'>"]
        if initial is not None:
            parts.append(f"<initial-response>{base64.b64encode(initial).decode() or '='}</initial-response>")
        if user_agent:
            parts.append(f"<user-agent id='{user_agent}'><software>heliograph-tests</software></user-agent>")
        if bind_tag is not None:
            parts.append(f"<bind xmlns='{BIND2}'><tag>{bind_tag}</tag></bind>")
        if request_token:
            parts.append(f"<request-token xmlns='{FAST}' mechanism='{request_token}'/>")
        if fast is not None:
            attrs = "".join(f" {k}='{v}'" for k, v in fast.items())
            parts.append(f"<fast xmlns='{FAST}'{attrs}/>")
        parts.append("</authenticate>")
        s.send("".join(parts))
        result = Sasl2Result(ok=False)
        while True:
            data = s.read_until(b">")
            text = data.decode(errors="replace")
            if "</success>" in text:
                s.read_until(b"features")
                s.read_until(b">")
                try:
                    s.read_until(b"</stream:features>", timeout=2)
                except AssertionError:
                    pass
                text = s.received.decode(errors="replace")
                result.ok = True
                m = re.search(r"<authorization-identifier>([^<]+)</authorization-identifier>", text)
                result.identifier = m.group(1) if m else None
                result.bound = "<bound" in text
                m = re.search(r"<additional-data>([^<]*)</additional-data>", text)
                result.additional_data = base64.b64decode(m.group(1)) if m else b""
                m = re.search(r"<token [^>]*>", text)
                if m:
                    result.token = re.search(r"token=['\"]([^'\"]+)", m.group(0)).group(1)
                    result.expiry = re.search(r"expiry=['\"]([^'\"]+)", m.group(0)).group(1)
                result.features_after = text.split("</success>", 1)[1]
                result.raw = s.received
                if then is not None:
                    s.received = b""
                    then(s)
                break
            m = re.search(r"<failure xmlns=['\"]urn:xmpp:sasl:2['\"]><([a-z-]+)", text)
            if m and "</failure>" in text:
                result.condition = m.group(1)
                result.raw = s.received
                break
            m = re.search(r"<challenge xmlns=['\"]urn:xmpp:sasl:2['\"]>([^<]*)</challenge>", text)
            if m:
                raw = m.group(1).strip()
                challenge = b"" if raw in ("", "=") else base64.b64decode(raw)
                result.challenges.append(challenge)
                s.received = b""
                answer = on_challenge(challenge) if on_challenge else b""
                s.send(f"<response xmlns='{SASL2}'>{base64.b64encode(answer).decode() or '='}</response>")
                continue
            s.read_until(b">", timeout=5)
        s.try_send(b"</stream:stream>")
        return result
