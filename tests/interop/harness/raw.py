"""Raw XMPP over a plain socket, for sending what no real client would send.

Blocking sockets with a timeout on every operation; no XML parsing beyond
"has this string arrived yet", which is all the bad-input tests need::

    with RawStream.connect(server.c2s_direct_tls, tls=True) as s:
        s.send(b"<stream:stream ...>")
        s.read_until(b"</stream:features>")
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import time

STREAM_NS = "http://etherx.jabber.org/streams"
STREAM_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-streams"


def stream_header(domain: str = "localhost") -> bytes:
    return (
        "<?xml version='1.0'?>"
        f"<stream:stream to='{domain}' version='1.0' xml:lang='en' "
        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    ).encode()


class RawStream:
    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.timeout = timeout
        self.received = b""  # everything read so far, for assertions and messages
        self.closed = False   # set once the server has closed the connection
        self.jid: str | None = None  # the bound JID after login_plain()

    @classmethod
    def connect(cls, address: tuple[str, int], *, tls: bool = False,
                timeout: float = 10.0) -> "RawStream":
        sock = socket.create_connection(address, timeout=timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        sock.settimeout(timeout)
        return cls(sock, timeout)

    def __enter__(self) -> "RawStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, tolerating the server closing on us halfway (it may, after a stream error)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return False

    def read_until(self, marker: bytes | str, timeout: float | None = None) -> bytes:
        """Read until ``marker`` is in the received data; AssertionError on timeout/EOF."""
        if isinstance(marker, str):
            marker = marker.encode()
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {marker!r}; got {self.received!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except (ConnectionResetError, ssl.SSLError, OSError) as err:
                raise AssertionError(f"connection failed ({err}) waiting for {marker!r}; got {self.received!r}") from None
            if not chunk:
                raise AssertionError(f"EOF waiting for {marker!r}; got {self.received!r}")
            self.received += chunk
        return self.received

    def read_to_close(self, timeout: float | None = None) -> bytes:
        """Read until the server closes the connection (sets ``closed``) or the timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            except (ConnectionResetError, ssl.SSLError, OSError):
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            self.received += chunk
        return self.received

    # -- a minimal happy path, for tests that misbehave only after logging in --

    def open(self, domain: str = "localhost") -> bytes:
        """Send a stream header and wait for the features."""
        self.send(stream_header(domain))
        return self.read_until(b"features>")

    def login_plain(self, username: str, password: str, domain: str = "localhost") -> None:
        """SASL PLAIN + stream restart + resource bind. Use on a TLS connection only."""
        self.open(domain)
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        self.received = b""
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        self.read_until(b"success")
        self.received = b""
        self.open(domain)
        self.received = b""
        self.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  "<resource>raw</resource></bind></iq>")
        self.read_until(b"</iq>")
        assert b"type='result'" in self.received or b'type="result"' in self.received, self.received
        bound = re.search(rb"<jid>([^<]+)</jid>", self.received)
        assert bound, f"no bound JID in {self.received!r}"
        self.jid = bound.group(1).decode()
        self.received = b""


def stream_error_condition(data: bytes) -> str | None:
    """The defined condition of the first stream error in ``data``, if any.

    Accepts both ``<stream:error>`` and ``<error xmlns='http://etherx.jabber.org/streams'>``;
    the condition is the first child element in the xmpp-streams namespace.
    """
    text = data.decode(errors="replace")
    start = re.search(r"<(stream:error|error\s+xmlns=['\"]" + re.escape(STREAM_NS) + r"['\"])[\s>]", text)
    if not start:
        return None
    cond = re.search(r"<([a-z-]+)\s+xmlns=['\"]" + re.escape(STREAM_ERRORS_NS) + r"['\"]",
                     text[start.start():])
    return cond.group(1) if cond else None
