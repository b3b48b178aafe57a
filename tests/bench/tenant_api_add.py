#!/usr/bin/env python3
"""Time to add a tenant through the admin API as the tenant count grows (a benchmark,
not a test). Starts the given `heliograph` binary on loopback with a temporary data dir,
adds N tenants one by one over one keep-alive connection, and prints one JSON line with
the mean time per add for the first 10 and the last 100.

    python3 tests/bench/tenant_api_add.py target/release/heliograph 10000
"""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time


def main() -> None:
    binary, n = sys.argv[1], int(sys.argv[2])
    work = tempfile.mkdtemp(prefix="heliograph-tenant-bench-")
    cfg = (
        f'[general]\nhosts = ["localhost"]\ndata_dir = "{work}/data"\nlog_level = "warn"\n'
        '[[listen.c2s]]\naddress = "127.0.0.1:0"\n[[listen.http]]\naddress = "127.0.0.1:0"\n'
        '[[listen.component]]\naddress = "127.0.0.1:0"\n'
        '[listen.admin]\naddress = "127.0.0.1:0"\n'
    )
    with open(f"{work}/h.toml", "w") as f:
        f.write(cfg)
    ready_path = f"{work}/ready.json"
    proc = subprocess.Popen([binary, "serve", "--config", f"{work}/h.toml", "--ready-file", ready_path],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(ready_path):
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("server did not start")
            time.sleep(0.05)
        time.sleep(0.1)
        with open(ready_path) as f:
            ready = json.load(f)
        admin = next(l for l in ready["listeners"] if l["kind"] == "admin")["address"]
        with open(ready["admin_token_file"]) as f:
            token = f.read().strip()
        host, port = admin.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def add(i: int) -> None:
            body = json.dumps({"name": f"t{i}", "domains": [f"t{i}.example"]})
            conn.request("POST", "/api/v1/tenants", body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 201:
                sys.exit(f"tenant {i}: HTTP {resp.status}")

        def mean_ms(lo: int, hi: int) -> float:
            start = time.perf_counter()
            for i in range(lo, hi):
                add(i)
            return (time.perf_counter() - start) / (hi - lo) * 1000

        first = mean_ms(0, 10)
        mean_ms(10, n - 100)
        last = mean_ms(n - 100, n)
        print(json.dumps({"tenants": n, "api_add_ms_first_10": round(first, 3),
                          "api_add_ms_last_100": round(last, 3)}))
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
