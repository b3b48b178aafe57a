"""A Heliograph cluster for interop tests: a private nats-server (tests/nats.sh, on a
loopback port it picks itself), one fresh database on the run's PostgreSQL
(``$HELIOGRAPH_TEST_POSTGRES_URL``) and N Heliograph processes configured as nodes of
one cluster over both. Started and stopped by the test (the ``cluster`` fixture)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness.server import HeliographServer, drop_postgres_database, postgres_database

REPO_ROOT = Path(__file__).resolve().parents[3]
NATS_SH = REPO_ROOT / "tests" / "nats.sh"


def _missing(what: str, env: str) -> None:
    """Skips the test, or fails it when the run requires ``what`` (tests/run.sh)."""
    if os.environ.get(env):
        pytest.fail(f"{what} is required ({env}) but not available", pytrace=False)
    pytest.skip(f"{what} not available")


def _shared_storage_server(binary: str, overrides: dict) -> HeliographServer:
    """A HeliographServer on the cluster's database: built as for the sled backend, so
    that a PostgreSQL run does not create a database of its own for it first."""
    backend = os.environ.get("HELIOGRAPH_TEST_BACKEND")
    os.environ["HELIOGRAPH_TEST_BACKEND"] = "sled"
    try:
        return HeliographServer(binary=binary, config_overrides=overrides)
    finally:
        if backend is None:
            del os.environ["HELIOGRAPH_TEST_BACKEND"]
        else:
            os.environ["HELIOGRAPH_TEST_BACKEND"] = backend


class Cluster:
    """``nodes[i]`` is the HeliographServer of node ``n{i+1}``."""

    def __init__(self, binary: str, size: int = 3):
        if not os.environ.get("HELIOGRAPH_TEST_POSTGRES_URL"):
            _missing("PostgreSQL (HELIOGRAPH_TEST_POSTGRES_URL)", "HELIOGRAPH_REQUIRE_POSTGRES")
        self.workdir = Path(tempfile.mkdtemp(prefix="heliograph-cluster-"))
        self.nats_dir = self.workdir / "nats"
        started = subprocess.run([str(NATS_SH), "start", str(self.nats_dir)],
                                 capture_output=True, text=True)
        if started.returncode != 0:
            _missing(f"nats-server ({started.stderr.strip()})", "HELIOGRAPH_REQUIRE_NATS")
        self.nats_url = started.stdout.strip()
        self.db_url = postgres_database()
        self.nodes: list[HeliographServer] = []
        try:
            for i in range(size):
                node = _shared_storage_server(binary, {
                    "storage": {"backend": "postgres", "url": self.db_url},
                    "cluster": {"nats": [self.nats_url], "node": f"n{i + 1}",
                                "heartbeat_ms": 250, "dead_after_ms": 1500},
                })
                node.start()
                self.nodes.append(node)
        except BaseException:
            self.close()
            raise

    def names(self) -> list[str]:
        return [n.config["cluster"]["node"] for n in self.nodes]

    def status(self, node: HeliographServer) -> dict:
        _, body = node.admin("GET", "/api/v1/cluster", expect=200)
        return body["status"]

    def wait_formed(self, nodes: list[HeliographServer] | None = None, timeout: float = 30.0):
        """Waits until each of ``nodes`` (default: every running one) places rooms over
        exactly the running nodes and knows each one's client address."""
        nodes = nodes or [n for n in self.nodes if n.running]
        names = sorted(n.config["cluster"]["node"] for n in nodes)
        deadline = time.monotonic() + timeout
        for node in nodes:
            while True:
                status = self.status(node)
                known = [n for n in status["nodes"] if n["node"] in names and n["address"]]
                if status["room_nodes"] == names and len(known) == len(names):
                    break
                assert time.monotonic() < deadline, f"cluster never formed: {status}"
                time.sleep(0.05)

    def close(self) -> None:
        for node in self.nodes:
            if node.running:
                node.stop(check=False)
            node.kill()
            if not os.environ.get("HELIOGRAPH_KEEP_TMP"):
                shutil.rmtree(node.workdir, ignore_errors=True)
        subprocess.run([str(NATS_SH), "stop", str(self.nats_dir)], capture_output=True)
        drop_postgres_database({"storage": {"url": self.db_url}})
        if not os.environ.get("HELIOGRAPH_KEEP_TMP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
