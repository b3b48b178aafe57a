"""A minimal authoritative DNS server on loopback (UDP, a port picked free) for servers
that resolve their federation peers by DNS only (ejabberd): it answers A and SRV
questions for the names a test registers and NXDOMAIN for everything else. Runs in a
thread of the test process; stopped by the test.
"""

from __future__ import annotations

import socket
import struct
import threading

A, SRV, AAAA = 1, 33, 28
CLASS_IN = 1


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        n = packet[offset]
        if n == 0:
            return ".".join(labels), offset + 1
        if n & 0xC0:
            raise ValueError("compressed names are not expected in a question")
        labels.append(packet[offset + 1:offset + 1 + n].decode())
        offset += 1 + n


class DnsServer:
    """``a``: name -> IPv4 address; ``srv``: service name (``_xmpp-server._tcp.x``) ->
    (target, port)."""

    def __init__(self) -> None:
        self.a: dict[str, str] = {}
        self.srv: dict[str, tuple[str, int]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.questions: list[tuple[str, int]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopped = False

    def start(self) -> "DnsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self.sock.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stopped:
            try:
                packet, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                reply = self.answer(packet)
            except (ValueError, IndexError, struct.error):
                continue
            try:
                self.sock.sendto(reply, peer)
            except OSError:
                return

    def answer(self, packet: bytes) -> bytes:
        (qid, flags, qdcount) = struct.unpack(">HHH", packet[:6])
        if qdcount != 1:
            raise ValueError("one question per query")
        name, end = _read_name(packet, 12)
        qtype, qclass = struct.unpack(">HH", packet[end:end + 4])
        question = packet[12:end + 4]
        name = name.lower()
        self.questions.append((name, qtype))
        records = []
        if qtype == A and name in self.a:
            rdata = socket.inet_aton(self.a[name])
            records.append(struct.pack(">HHHIH", 0xC00C, A, CLASS_IN, 60, len(rdata)) + rdata)
        elif qtype == SRV and name in self.srv:
            target, port = self.srv[name]
            rdata = struct.pack(">HHH", 0, 0, port) + _encode_name(target)
            records.append(struct.pack(">HHHIH", 0xC00C, SRV, CLASS_IN, 60, len(rdata)) + rdata)
        known = name in self.a or name in self.srv
        rcode = 0 if known else 3  # NOERROR (possibly no data) or NXDOMAIN
        rd = flags & 0x0100
        header = struct.pack(">HHHHHH", qid, 0x8400 | rd | rcode, 1, len(records), 0, 0)
        return header + question + b"".join(records)
