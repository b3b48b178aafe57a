"""Upload throughput and server memory while streaming (XEP-0363).

Starts its own server (the interop harness: temp dir, ephemeral ports), logs a slixmpp
user in, asks for a slot for a SIZE_MB file, PUTs it in 64 KiB chunks generated on the
fly and GETs it back, sampling the server's resident memory (VmRSS) every 20 ms. Prints
MB/s both ways and RSS before, at its peak during each transfer, and after.

    HELIOGRAPH_BIN=... python tests/interop/bench_upload.py [SIZE_MB] [RUNS]

Run it from the venv tests/run.sh builds (slixmpp). Not a pytest test (no test_ prefix).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import _find_binary  # noqa: E402
from harness.server import HeliographServer  # noqa: E402
from harness.xmpp import ClientPool  # noqa: E402
from test_upload import request_slot  # noqa: E402

CHUNK = 64 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def chunks(size: int, digest):
    sent = 0
    block = bytes(range(256)) * (CHUNK // 256)
    while sent < size:
        part = block[: min(CHUNK, size - sent)]
        digest.update(part)
        sent += len(part)
        yield part


def put(url: str, size: int) -> tuple[int, float, str]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    digest = hashlib.sha256()
    start = time.perf_counter()
    conn.putrequest("PUT", f"{u.path}?{u.query}")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    for part in chunks(size, digest):
        conn.send(part)
    status = conn.getresponse().status
    took = time.perf_counter() - start
    conn.close()
    return status, took, digest.hexdigest()


def get(url: str) -> tuple[int, float, str, int]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    digest = hashlib.sha256()
    start = time.perf_counter()
    conn.request("GET", f"{u.path}?{u.query}")
    resp = conn.getresponse()
    n = 0
    while block := resp.read(CHUNK):
        digest.update(block)
        n += len(block)
    took = time.perf_counter() - start
    conn.close()
    return resp.status, took, digest.hexdigest(), n


async def main(size_mb: int, runs: int) -> None:
    size = size_mb * 1024 * 1024
    server = HeliographServer(binary=_find_binary(), config_overrides={
        "general": {"log_level": "warn"},
        "tenants": {"default": {"upload": {"max_file_size": size, "user_quota": 0}}}})
    server.start()
    pool = ClientPool()
    try:
        server.create_user("bench", "pw")
        client = await pool.connect(server, "bench", "pw")
        pid = server.proc.pid
        print(f"server {server.binary}, file {size_mb} MiB, {runs} runs")
        for run in range(runs):
            put_url, get_url, _ = await request_slot(client, "upload.localhost", f"bench{run}.bin", size)
            before = rss_kib(pid)
            sampler = RssSampler(pid)
            sampler.start()
            status, took, sent_hash = await asyncio.to_thread(put, put_url, size)
            put_peak = sampler.stop()
            assert status == 201, status
            sampler = RssSampler(pid)
            sampler.start()
            gstatus, gtook, got_hash, n = await asyncio.to_thread(get, get_url)
            get_peak = sampler.stop()
            assert gstatus == 200 and n == size and got_hash == sent_hash, (gstatus, n)
            after = rss_kib(pid)
            print(f"run {run + 1}: PUT {size / took / 1e6:.1f} MB/s ({took:.2f} s), "
                  f"GET {size / gtook / 1e6:.1f} MB/s ({gtook:.2f} s); server RSS "
                  f"before {before / 1024:.1f} MiB, peak during PUT {put_peak / 1024:.1f} MiB, "
                  f"peak during GET {get_peak / 1024:.1f} MiB, after {after / 1024:.1f} MiB")
    finally:
        await pool.aclose()
        server.stop(check=False)


if __name__ == "__main__":
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    asyncio.run(main(mb, n))
