"""The alert rules and the systemd unit of deploy/, checked by the tools that run them:
`promtool check rules` and `promtool test rules` (the unit tests in
deploy/prometheus/heliograph-alerts.test.yml), `systemd-analyze verify` and `security`
on the unit with the built binary in place of /usr/local/bin/heliograph, and the unit's
reload and stop commands run against a real server as systemd would run them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from deploy_files import ALERT_TESTS, ALERTS, REPO_ROOT, UNIT, free_port, tool
from harness.raw import RawStream, stream_error_condition
from harness.server import HeliographServer

INSTALLED_BINARY = "/usr/local/bin/heliograph"
INSTALLED_CONFIG = "/etc/heliograph/heliograph.toml"
# The most exposure `systemd-analyze security` may report (0-100, printed as 0.0-10.0).
MAX_EXPOSURE = 20


def run(cmd: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    print(f"$ {shlex.join(cmd)}  -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def test_alert_rules_pass_promtool_check():
    promtool = tool("promtool")
    proc = run([promtool, "check", "rules", str(ALERTS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alert_rules_unit_tests_pass():
    promtool = tool("promtool")
    proc = run([promtool, "test", "rules", ALERT_TESTS.name], cwd=ALERT_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every alert of the rules file is exercised by at least one case.
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    defined = set(re.findall(r"- alert: (\w+)", ALERTS.read_text()))
    untested = defined - tested
    # Thresholds-only variants of a tested alert need no case of their own.
    assert untested <= {"HeliographPluginSlow", "HeliographQueuedStanzasHigh",
                        "HeliographStorageOperationSlow"}, untested


def unit_directives() -> list[tuple[str, str, str]]:
    """(section, key, value) of every directive of the unit, in order (keys repeat)."""
    out, section = [], ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def directive(key: str) -> list[str]:
    return [v for (_, k, v) in unit_directives() if k == key]


def installed_unit(tmp_path: Path, binary: str) -> Path:
    path = tmp_path / "heliograph.service"
    path.write_text(UNIT.read_text().replace(INSTALLED_BINARY, binary))
    return path


def test_systemd_unit_verifies(tmp_path, heliograph_bin):
    analyze = tool("systemd-analyze")
    unit = installed_unit(tmp_path, heliograph_bin)
    proc = run([analyze, "verify", str(unit)])
    assert proc.returncode == 0, proc.stderr
    assert "heliograph.service" not in proc.stderr, proc.stderr


def test_systemd_unit_sandbox_exposure(tmp_path, heliograph_bin):
    analyze = tool("systemd-analyze")
    unit = installed_unit(tmp_path, heliograph_bin)
    proc = run([analyze, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}", str(unit)])
    overall = [l for l in proc.stdout.splitlines() if "Overall exposure level" in l]
    print("systemd-analyze security:", overall)
    assert proc.returncode == 0, f"exposure above {MAX_EXPOSURE / 10}: {overall}"


def test_systemd_unit_settings():
    """What the unit promises, against what the binary does."""
    assert directive("DynamicUser") == ["yes"]
    assert directive("StateDirectory") == ["heliograph"]
    assert directive("ProtectSystem") == ["strict"]
    assert directive("NoNewPrivileges") == ["yes"]
    assert directive("CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    assert directive("AmbientCapabilities") == ["CAP_NET_BIND_SERVICE"]
    assert directive("SystemCallFilter")[0] == "@system-service"
    # Type=notify only if the server spoke sd_notify; it does not.
    sources = [p for p in (REPO_ROOT / "host").rglob("*.rs") if "NOTIFY_SOCKET" in p.read_text()]
    assert directive("Type") == (["notify"] if sources else ["exec"]), sources
    # The stop drains: its timeout leaves the drain's deadline (built-in default, the
    # same as config/heliograph.toml) and the shutdown after it room to finish.
    deadline = tomllib.loads((REPO_ROOT / "config" / "heliograph.toml").read_text())["drain"]["deadline"]
    timeout = int(directive("TimeoutStopSec")[0].rstrip("s"))
    assert timeout >= deadline + 15, (timeout, deadline)
    assert any(" drain " in f" {v} " for v in directive("ExecStop"))
    assert any(" reload " in f" {v} " for v in directive("ExecReload"))


def systemd_command(line: str, binary: str, config: Path) -> list[str]:
    """An Exec line as systemd runs it: prefixes dropped, `$$` to `$`, and the installed
    paths replaced by the test's."""
    line = line.lstrip("-@:+!")
    line = line.replace(INSTALLED_BINARY, binary).replace(INSTALLED_CONFIG, str(config))
    return [w.replace("$$", "$") for w in shlex.split(line)]


def test_systemd_reload_and_graceful_stop_commands(heliograph_bin):
    """ExecReload and the ExecStop sequence, run as systemd runs them (MAINPID in their
    environment): the reload is applied, and the stop drains the server (its session is
    closed with system-shutdown after the grace period), waits for it to exit by itself
    with status 0, and returns."""
    # The CLI reads the admin address from the config, so the admin listener needs a
    # real port here (the others stay ephemeral).
    srv = HeliographServer(binary=heliograph_bin, config_overrides={
        "listen": {"admin": {"address": f"127.0.0.1:{free_port()}"}},
        "drain": {"grace_period": 1, "deadline": 10},
    })
    srv.start()
    try:
        srv.create_user("alice", "pw")
        client = RawStream.connect(srv.c2s_direct_tls, tls=True, timeout=30)
        client.login_plain("alice", "pw")
        env = dict(os.environ, MAINPID=str(srv.proc.pid))
        for line in directive("ExecReload"):
            proc = run(systemd_command(line, heliograph_bin, srv.config_path), env=env)
            assert proc.returncode == 0, proc.stderr
        assert "configuration reloaded" in srv.log_text(), srv.log_tail()
        main = srv.proc
        started = time.monotonic()
        limit = int(directive("TimeoutStopSec")[0].rstrip("s"))
        for line in directive("ExecStop"):
            cmd = systemd_command(line, heliograph_bin, srv.config_path)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            # systemd reaps its main process as soon as it exits; so does this loop (a
            # zombie would still answer `kill -0`).
            while proc.poll() is None:
                main.poll()
                assert time.monotonic() - started < limit, f"{cmd} still running after {limit}s"
                time.sleep(0.1)
            print(f"$ {shlex.join(cmd)}  -> {proc.returncode}\n{proc.stdout.read()}")
            assert proc.returncode == 0
        took = time.monotonic() - started
        # The last stop command returned only once the server had exited.
        assert main.poll() == 0, f"server still running or failed: {main.poll()}\n{srv.log_tail()}"
        assert "draining" in srv.log_text()
        # The session was sent away by the drain (no see_other_host: system-shutdown).
        client.read_to_close(timeout=10)
        client.close()
        assert stream_error_condition(client.received) == "system-shutdown", client.received
        print(f"graceful stop took {took:.1f}s")
    finally:
        srv.stop(check=True)
        if not os.environ.get("HELIOGRAPH_KEEP_TMP"):
            shutil.rmtree(srv.workdir, ignore_errors=True)
            srv.remove_storage()


def test_systemd_stop_returns_at_once_when_the_drain_cannot_be_asked(tmp_path, heliograph_bin):
    """With no API answering, the stop command returns at once (systemd then sends
    SIGTERM) instead of waiting out TimeoutStopSec for a process that is not draining."""
    config = tmp_path / "heliograph.toml"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "admin.token").write_text("nobody-checks-it\n")
    config.write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n'
                      f'[listen.admin]\naddress = "127.0.0.1:{free_port()}"\n')
    stand_in = subprocess.Popen(["sleep", "120"])  # the "main process", not draining
    try:
        env = dict(os.environ, MAINPID=str(stand_in.pid))
        started = time.monotonic()
        for line in directive("ExecStop"):
            proc = run(systemd_command(line, heliograph_bin, config), env=env, timeout=60)
            assert proc.returncode == 0
        took = time.monotonic() - started
        assert took < 15, f"the stop waited {took:.0f}s for a process that was never drained"
        assert stand_in.poll() is None
    finally:
        stand_in.kill()
        stand_in.wait()
