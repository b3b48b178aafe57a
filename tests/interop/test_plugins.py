"""Tenant authentication through WebAssembly plugins (issue 5), end to end.

Plugins come from ``plugins/`` built for wasm32-wasip2 by tests/run.sh into
``$CARGO_TARGET_DIR/plugins``. Logins here are raw PLAIN over direct TLS (fast, and they
show the exact SASL condition) plus slixmpp for a standard client's view.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.raw import RawStream, stream_header
from harness.xmpp import LoginFailed

SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
REPO_ROOT = Path(__file__).resolve().parents[2]
# The WIT package version, from the one place it is written.
WIT_VERSION = re.search(
    r"^package heliograph:plugin@([0-9.]+);",
    (REPO_ROOT / "wit" / "heliograph-plugin.wit").read_text(),
    re.M,
).group(1)


def wasm_path(name: str) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or (Path.home() / ".cache/heliograph-target"))
    path = target / "plugins" / "wasm32-wasip2" / "release" / f"{name}.wasm"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: tests/run.sh builds the plugins first")
        pytest.skip(f"{path} not built (run tests/run.sh, or cargo build the plugins workspace)")
    return path


def hash_password(salt: str, password: str) -> str:
    """The allowlist plugin's stored form: sha256$SALT$hex(sha256(SALT + password))."""
    return f"sha256${salt}${hashlib.sha256((salt + password).encode()).hexdigest()}"


def allowlist_config(users: dict[str, str], **extra) -> dict:
    return {"users": {u: hash_password(u, pw) for u, pw in users.items()}, **extra}


def install(server, tenant: str, slot: str, wasm: bytes, config: dict | None = None, *,
            token: str | None = None, content_type: str = "application/wasm",
            expect: int | tuple[int, ...] | None = 200) -> tuple[int, object]:
    """PUT /api/v1/tenants/{tenant}/plugins/{slot} with the raw component."""
    host, port = server.admin_address
    req = urllib.request.Request(f"http://{host}:{port}/api/v1/tenants/{tenant}/plugins/{slot}",
                                 data=wasm, method="PUT")
    req.add_header("Authorization", f"Bearer {server.admin_token if token is None else token}")
    req.add_header("Content-Type", content_type)
    if config is not None:
        req.add_header("Heliograph-Plugin-Config", json.dumps(config))
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    body = json.loads(raw) if raw else None
    if expect is not None:
        allowed = (expect,) if isinstance(expect, int) else expect
        assert status in allowed, f"install -> {status}: {body!r}"
    return status, body


def plain_login(address, domain: str, username: str, password: str, timeout: float = 10.0) -> str:
    """One PLAIN login over direct TLS, bind, close. Returns "ok" or the SASL condition."""
    with RawStream.connect(address, tls=True, timeout=timeout) as s:
        s.send(stream_header(domain))
        s.read_until(b"features>")
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        s.received = b""
        s.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>")
        while b"<success" not in s.received and b"</failure>" not in s.received:
            s.read_until(b">")
        if b"</failure>" in s.received:
            m = re.search(rb"<failure[^>]*><([a-z-]+)", s.received)
            return m.group(1).decode() if m else s.received.decode(errors="replace")
        s.read_until(b"success")
        s.received = b""
        s.send(stream_header(domain))
        s.read_until(b"features>")
        s.received = b""
        s.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        s.read_until(b"</iq>")
        assert b"result" in s.received, s.received
        s.try_send(b"</stream:stream>")
        return "ok"


def mechanisms(address, domain: str) -> list[str]:
    """The legacy SASL <mechanisms/> offered (not SASL2's <authentication/> list)."""
    with RawStream.connect(address, tls=True) as s:
        data = s.open(domain)
    legacy = re.search(r"<mechanisms xmlns=['\"]urn:ietf:params:xml:ns:xmpp-sasl['\"]>(.*?)</mechanisms>",
                       data.decode(), re.S)
    return re.findall(r"<mechanism>([^<]+)</mechanism>", legacy.group(1)) if legacy else []


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def plugin_tenant(server, name: str, domain: str, slot: str = "auth") -> None:
    server.create_tenant(name, [domain], auth={"method": "plugin", "plugin": slot})


# --- authentication through a plugin -------------------------------------------

@pytest.mark.async_timeout(90)
async def test_slixmpp_logs_in_through_the_allowlist_plugin_installed_with_the_cli(server, xmpp, heliograph_bin):
    wasm = wasm_path("allowlist")
    plugin_tenant(server, "acme", "acme.test")
    cfg = allowlist_config({"alice": "wonderland", "carol": "pw"}, disabled=["carol"])
    host, port = server.admin_address
    env = dict(os.environ, HELIOGRAPH_TOKEN=server.admin_token)
    out = subprocess.run(
        [heliograph_bin, "plugin", "install", "acme", "auth", str(wasm), "--plugin-config", json.dumps(cfg),
         "--api", f"http://{host}:{port}"],
        capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "installed acme/auth version 1" in out.stdout, out.stdout

    # Only PLAIN for a plugin tenant (SCRAM cannot hand the password to a plugin); the
    # built-in tenant still gets SCRAM.
    assert mechanisms(server.c2s_direct_tls, "acme.test") == ["PLAIN"]
    assert "SCRAM-SHA-256" in mechanisms(server.c2s_direct_tls, "localhost")

    alice = await xmpp.connect(server, "Alice@acme.test", "wonderland", direct_tls=True)
    assert alice.boundjid.bare == "alice@acme.test", "the plugin's canonical username is bound"
    with pytest.raises(LoginFailed):
        await xmpp.connect(server, "alice@acme.test", "wrong", direct_tls=True)

    d = server.c2s_direct_tls
    assert plain_login(d, "acme.test", "alice", "nope") == "not-authorized"
    assert plain_login(d, "acme.test", "carol", "pw") == "account-disabled"
    assert plain_login(d, "acme.test", "nobody", "pw") == "not-authorized"

    listing = subprocess.run([heliograph_bin, "plugin", "list", "acme", "--api", f"http://{host}:{port}"],
                             capture_output=True, text=True, env=env, timeout=30)
    assert listing.returncode == 0, listing.stderr
    assert "auth [authenticator] (tenant auth): active version 1" in listing.stdout, listing.stdout
    _, body = server.admin("GET", "/api/v1/tenants/acme/plugins", expect=200)
    stats = body["plugins"][0]["stats"]
    assert stats["calls"] >= 5 and stats["succeeded"] >= 1 and stats["denied"] >= 3, stats
    assert stats["p99_us"] > 0
    # The same calls are counted in the Prometheus metrics.
    _, text = server.admin("GET", "/metrics", token="")
    calls = [l for l in str(text).splitlines() if l.startswith("heliograph_plugin_calls_total{")]
    ok = sum(float(l.rsplit(" ", 1)[1]) for l in calls if 'outcome="ok"' in l)
    denied = sum(float(l.rsplit(" ", 1)[1]) for l in calls if 'outcome="denied"' in l)
    assert ok >= 1 and denied >= 3, calls
    assert "heliograph_plugin_call_seconds" in str(text)


def test_plugin_api_permissions_and_precise_refusals(server):
    wasm = wasm_path("allowlist").read_bytes()
    plugin_tenant(server, "acme", "acme.test")
    plugin_tenant(server, "other", "other.test")
    _, tok = server.admin("POST", "/api/v1/tenants/acme/token", expect=201)
    acme_token = tok["token"]

    # A tenant token manages its own plugins, and gets 403 elsewhere.
    install(server, "acme", "auth", wasm, allowlist_config({"a": "b"}), token=acme_token)
    install(server, "other", "auth", wasm, token=acme_token, expect=403)
    server.admin("GET", "/api/v1/tenants/other/plugins", token=acme_token, expect=403)
    server.admin("GET", "/api/v1/plugins", token=acme_token, expect=403)
    install(server, "nosuch", "auth", wasm, expect=404)

    status, body = install(server, "acme", "auth", wasm, content_type="application/json", expect=415)
    assert "application/wasm" in body["message"]
    status, body = install(server, "acme", "auth", b"not wasm at all", expect=400)
    assert body["message"] == "upload is not WebAssembly (no `\\0asm` header)", body
    status, body = install(server, "acme", "auth", wasm_path("wrong_world").read_bytes(), expect=400)
    assert f"does not export `heliograph:plugin/authentication@{WIT_VERSION}`" in body["message"], body
    status, body = install(server, "acme", "auth", wasm_path("wrong_version").read_bytes(), expect=400)
    assert f"rebuild it against heliograph:plugin@{WIT_VERSION}" in body["message"], body
    status, body = install(server, "acme", "auth", wasm, {"users": {"x": "not-a-hash"}}, expect=400)
    assert "init refused" in body["message"] and "users.x" in body["message"], body

    # Nothing of that changed the active version.
    _, body = server.admin("GET", "/api/v1/tenants/acme/plugins", expect=200)
    assert body["plugins"][0]["active"] == 1 and len(body["plugins"][0]["versions"]) == 1

    # Rollback and remove.
    install(server, "acme", "auth", wasm, allowlist_config({"a": "c"}))
    # Neither version has served a call yet: a bare rollback names none to go back to,
    # a rollback to a named version is done.
    _, body = server.admin("POST", "/api/v1/tenants/acme/plugins/auth/rollback", expect=409)
    assert body["error"] == "no_good_version", body
    _, v = server.admin("POST", "/api/v1/tenants/acme/plugins/auth/rollback?version=1", expect=200)
    assert v["version"] == 1
    server.admin("POST", "/api/v1/tenants/acme/plugins/auth/rollback?version=9", expect=409)
    _, v = server.admin("PUT", "/api/v1/tenants/acme/plugins/auth/config",
                        allowlist_config({"a": "d"}), expect=200)
    assert v["version"] == 3
    server.admin("DELETE", "/api/v1/tenants/acme/plugins/auth", expect=204)
    server.admin("DELETE", "/api/v1/tenants/acme/plugins/auth", expect=404)
    # With no plugin installed, the tenant's logins fail closed.
    assert plain_login(server.c2s_direct_tls, "acme.test", "a", "d") == "temporary-auth-failure"


@pytest.mark.server_config({"plugins": {"max_upload_mib": 1}})
def test_upload_over_the_limit_is_413(server):
    import http.client
    plugin_tenant(server, "acme", "acme.test")
    # The server answers from the declared length, without reading the body: send the
    # headers only, as a client that waits for the answer (Expect-style) would.
    host, port = server.admin_address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("PUT", "/api/v1/tenants/acme/plugins/auth")
    conn.putheader("Authorization", f"Bearer {server.admin_token}")
    conn.putheader("Content-Type", "application/wasm")
    conn.putheader("Content-Length", str(2 << 20))
    conn.endheaders()
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 413, body
    assert str(1 << 20) in body["message"], body


# --- hot swap under load -------------------------------------------------------

# A plain (not async) test: pytest-timeout's limit applies; three generous waits fit in it.
@pytest.mark.timeout(480)
def test_swap_under_200_looping_clients_loses_no_login_and_the_new_policy_holds_at_once(server):
    """200 clients log in and out in a loop while the plugin is swapped (via the API) to a
    configuration that disables half of them. Every login of the other half succeeds;
    every login of the disabled half that STARTS after the API call returned is refused
    with account-disabled. A bad upload afterwards is refused and changes nothing."""
    wasm = wasm_path("allowlist").read_bytes()
    plugin_tenant(server, "acme", "acme.test")
    users = {f"u{i}": f"pw{i}" for i in range(200)}
    disabled = [f"u{i}" for i in range(0, 200, 2)]
    install(server, "acme", "auth", wasm, allowlist_config(users, policy="v1"))
    d = server.c2s_direct_tls

    results: list[tuple[str, float, float, str]] = []  # user, start, end, outcome
    lock = threading.Lock()
    stop = threading.Event()

    def client(i: int) -> None:
        user, pw = f"u{i}", f"pw{i}"
        while not stop.is_set():
            start = time.monotonic()
            try:
                outcome = plain_login(d, "acme.test", user, pw, timeout=30)
            except (AssertionError, OSError) as err:
                outcome = f"error: {err}"
            with lock:
                results.append((user, start, time.monotonic(), outcome))

    def wait_for_logins(what: str, count) -> None:
        """Waits (generously: a loaded machine is slow) until ``count()`` reaches 200."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with lock:
                if count() >= 200:
                    return
            time.sleep(0.1)
        stop.set()
        with lock:
            raise AssertionError(f"only {count()} logins {what} after 120 s")

    with ThreadPoolExecutor(max_workers=200) as pool:
        for i in range(200):
            pool.submit(client, i)
        wait_for_logins("completed before the swap", lambda: len(results))
        swap_started = time.monotonic()
        install(server, "acme", "auth", wasm, allowlist_config(users, policy="v2", disabled=disabled))
        swap_returned = time.monotonic()
        wait_for_logins("started after the swap",
                        lambda: sum(1 for r in results if r[1] > swap_returned))
        # A bad upload is refused with the precise error while the clients keep going.
        _, body = install(server, "acme", "auth", b"\0asm\x0d\0\x01\0garbage", expect=400)
        assert body["error"] == "invalid_plugin", body
        bad_returned = time.monotonic()
        wait_for_logins("started after the bad upload",
                        lambda: sum(1 for r in results if r[1] > bad_returned))
        stop.set()

    before = [r for r in results if r[2] < swap_started]
    after = [r for r in results if r[1] > swap_returned]
    assert len(before) >= 200 and len(after) >= 200, (len(before), len(after))
    should_succeed = [r for r in results if r[0] not in disabled]
    failed = [r for r in should_succeed if r[3] != "ok"]
    assert not failed, f"{len(failed)} logins that should have succeeded failed: {failed[:5]}"
    late = [r for r in after if r[0] in disabled and r[3] != "account-disabled"]
    assert not late, f"{len(late)} logins started after the swap used the old policy: {late[:5]}"
    early = [r for r in before if r[0] in disabled and r[3] != "ok"]
    assert not early, f"old policy refused: {early[:5]}"
    _, body = server.admin("GET", "/api/v1/tenants/acme/plugins", expect=200)
    assert body["plugins"][0]["active"] == 2, "the bad upload did not replace version 2"
    print(f"swap under load: {len(results)} logins, {len(before)} before, {len(after)} after the swap")


# --- containment ---------------------------------------------------------------

@pytest.mark.async_timeout(240)
def test_each_hostile_plugin_fails_only_its_own_tenant_and_memory_stays_bounded(server):
    good_wasm = wasm_path("allowlist").read_bytes()
    hostile = wasm_path("hostile").read_bytes()
    plugin_tenant(server, "good", "good.test")
    install(server, "good", "auth", good_wasm, allowlist_config({"alice": "pw"}))
    modes = ["loop", "memory", "trap", "stack", "oversized", "invalid"]
    for mode in modes:
        plugin_tenant(server, f"bad-{mode}", f"{mode}.bad.test")
        install(server, f"bad-{mode}", "auth", hostile, {"mode": mode})
    d = server.c2s_direct_tls
    pid = server.ready["pid"]

    good_outcomes: list[str] = []
    stop = threading.Event()

    def good_client() -> None:
        while not stop.is_set():
            good_outcomes.append(plain_login(d, "good.test", "alice", "pw"))

    def hostile_round(n: int) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {m: set() for m in modes}
        def one(mode: str) -> None:
            seen[mode].add(plain_login(d, f"{mode}.bad.test", "mallory", "x"))
        with ThreadPoolExecutor(max_workers=12) as pool:
            for _ in range(n):
                for mode in modes:
                    pool.submit(one, mode)
        return seen

    goods = [threading.Thread(target=good_client) for _ in range(4)]
    for t in goods:
        t.start()
    try:
        hostile_round(5)  # warm up (pool slots, caches)
        rss_before = rss_kib(pid)
        seen = hostile_round(40)
        rss_after = rss_kib(pid)
    finally:
        stop.set()
        for t in goods:
            t.join()

    for mode in modes:
        assert seen[mode] == {"temporary-auth-failure"}, (mode, seen[mode])
    assert good_outcomes and set(good_outcomes) == {"ok"}, set(good_outcomes)
    growth_mib = (rss_after - rss_before) / 1024
    print(f"RSS {rss_before // 1024} MiB -> {rss_after // 1024} MiB after {40 * len(modes)} hostile calls")
    assert growth_mib < 64, f"server RSS grew by {growth_mib:.0f} MiB"

    _, body = server.admin("GET", "/api/v1/plugins", expect=200)
    failed = {p["tenant"]: p["stats"]["failed"] for p in body["plugins"]}
    # Causes as counted per plugin. The memory hog and the oversized result may use up
    # their 50 ms of CPU before reaching their own limit: still contained, still
    # temporary-auth-failure.
    expected = {"loop": {"timeout"}, "memory": {"memory"}, "trap": {"trap"},
                "stack": {"trap"}, "oversized": {"invalid-result"},
                "invalid": {"invalid-result"}}
    for mode, causes in expected.items():
        causes = causes | {"timeout"}
        got = failed[f"bad-{mode}"]
        assert sum(got.values()) >= 40 and set(got) <= causes, (mode, got)
    assert failed["good"] == {}, failed
    log = server.log_text()
    assert re.search(r"plugin call failed.*tenant=bad-loop.*plugin=auth.*version=1.*cause=timeout", log), \
        "failures are logged with tenant, plugin, version and cause"


# --- restart, config files, reload ---------------------------------------------

def test_restart_with_installed_plugins_does_not_recompile(server):
    wasm = wasm_path("allowlist").read_bytes()
    plugin_tenant(server, "acme", "acme.test")
    install(server, "acme", "auth", wasm, allowlist_config({"alice": "pw"}))
    install(server, "acme", "auth", wasm, allowlist_config({"alice": "pw2"}))
    _, before = server.admin("GET", "/api/v1/plugins", expect=200)
    assert before["cache"]["compiled"] == 1, before["cache"]

    server.restart()
    _, after = server.admin("GET", "/api/v1/plugins", expect=200)
    assert after["cache"] == {"compiled": 0, "hits": 2}, after["cache"]
    assert re.search(r"plugins restored slots=1 versions=2 failed=0 compiled=0 cache_hits=2",
                     server.log_text()), "startup logs what was restored"
    assert plain_login(server.c2s_direct_tls, "acme.test", "alice", "pw2") == "ok"


def test_config_file_plugin_installed_at_startup_and_on_reload_when_changed(heliograph_bin, tmp_path):
    from harness.server import HeliographServer
    wasm = wasm_path("allowlist")
    overrides = {"tenants": {"acme": {
        "domains": ["acme.test"], "auth": {"method": "plugin", "plugin": "auth"},
        "plugins": {"auth": {"path": str(wasm), "config": allowlist_config({"alice": "pw1"})}},
    }}}
    srv = HeliographServer(binary=heliograph_bin, config_overrides=overrides)
    srv.start()
    try:
        d = srv.c2s_direct_tls
        assert plain_login(d, "acme.test", "alice", "pw1") == "ok"
        # Unchanged file and config: reload installs nothing.
        _, r = srv.admin("POST", "/api/v1/reload", expect=200)
        assert r["plugins"] == {"installed": [], "failed": []}, r
        # A changed config: a new version, used at once.
        srv.config["tenants"]["acme"]["plugins"]["auth"]["config"] = allowlist_config({"alice": "pw2"})
        srv.write_config()
        _, r = srv.admin("POST", "/api/v1/reload", expect=200)
        assert r["plugins"]["installed"] == ["acme/auth v2"], r
        assert plain_login(d, "acme.test", "alice", "pw2") == "ok"
        # A bad file: refused, reported, the old version keeps serving.
        bad = tmp_path / "bad.wasm"
        bad.write_bytes(b"junk")
        srv.config["tenants"]["acme"]["plugins"]["auth"]["path"] = str(bad)
        srv.write_config()
        _, r = srv.admin("POST", "/api/v1/reload", expect=200)
        assert r["plugins"]["failed"] and "not WebAssembly" in r["plugins"]["failed"][0], r
        assert plain_login(d, "acme.test", "alice", "pw2") == "ok"
        # Restart with the good file again: the stored version is restored, not reinstalled.
        srv.config["tenants"]["acme"]["plugins"]["auth"]["path"] = str(wasm)
        srv.write_config()
        srv.restart()
        _, body = srv.admin("GET", "/api/v1/tenants/acme/plugins", expect=200)
        assert body["plugins"][0]["active"] == 2, body
        assert plain_login(srv.c2s_direct_tls, "acme.test", "alice", "pw2") == "ok"
    finally:
        srv.stop()
    # Kept only when something failed above, like the fixture's servers.
    shutil.rmtree(srv.workdir, ignore_errors=True)
    srv.remove_storage()


# --- in-band registration (XEP-0077) and the authenticator's veto ---------------------

REGISTRATION_TENANT = {"tenants": {"acme": {
    "domains": ["acme.test"], "auth": {"method": "plugin", "plugin": "auth"},
    "profiles": {"registration": True, "registrations_per_hour": 20}}}}


def acme_users(server) -> list[str]:
    return sorted(u["username"] if isinstance(u, dict) else u
                  for u in server.admin("GET", "/api/v1/users/acme.test", expect=200)[1]["users"])


@pytest.mark.server_config(REGISTRATION_TENANT)
@pytest.mark.async_timeout(120)
async def test_the_authenticator_vetoes_or_allows_in_band_registration(server, xmpp):
    """WIT 0.1.2's optional `registration.approve`: the allowlist plugin refuses sign-up
    unless configured (not-allowed, nothing created), then allows it and records the
    password, so the new account exists and logs in through the plugin; a name the
    plugin refuses stays not-allowed."""
    from test_profiles import register_in_band

    wasm = wasm_path("allowlist").read_bytes()
    install(server, "acme", "auth", wasm, allowlist_config({"alice": "pw"}))
    assert await register_in_band(xmpp, server, "zoe@acme.test", "s3cret") == ("not-allowed", False)
    assert acme_users(server) == []

    install(server, "acme", "auth", wasm, allowlist_config({"alice": "pw"}, registration=True))
    assert await register_in_band(xmpp, server, "zoe@acme.test", "s3cret") == ("ok", True)
    assert acme_users(server) == ["zoe"]
    assert plain_login(server.c2s_direct_tls, "acme.test", "zoe", "s3cret") == "ok"
    assert plain_login(server.c2s_direct_tls, "acme.test", "zoe", "wrong") == "not-authorized"
    # The plugin's own users are taken: vetoed, nothing created.
    assert await register_in_band(xmpp, server, "alice@acme.test", "x") == ("not-allowed", False)
    assert acme_users(server) == ["zoe"]


@pytest.mark.server_config(REGISTRATION_TENANT)
async def test_an_authenticator_without_the_registration_hook_keeps_registration_closed(server, xmpp):
    """A component built against WIT 0.1.0 (no `registration` export) installs and
    authenticates as before, and in-band registration stays refused with not-allowed."""
    from test_profiles import register_in_band

    install(server, "acme", "auth", wasm_path("legacy_authenticator").read_bytes(), {"password": "pw"})
    assert plain_login(server.c2s_direct_tls, "acme.test", "anyone", "pw") == "ok"
    assert await register_in_band(xmpp, server, "zoe@acme.test", "s3cret") == ("not-allowed", False)
    assert acme_users(server) == []
