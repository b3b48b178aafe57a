"""The Grafana dashboard and the Prometheus alert rules of deploy/ read only what the
server exports: every metric name in their PromQL (sample names exactly, so a
histogram's `_bucket`/`_sum`/`_count` pass and a summary quantile series it does not have
fails), every label they match on or group by (`le` of the buckets included), and every
`quantile` they pick from a summary, checked against the /metrics of a real
server that has been made to produce each series (metrics are registered when first
recorded, so the test logs in, fails a login, routes messages and an error, refuses a
connection, runs a plugin).

The labels the dashboard's legends (`{{label}}`) and the alerts' annotations
(`$labels.X`) show must be in their query's result: an aggregation keeps only its `by`
labels.

The only name that does not come from the server is Prometheus' own `up` (EXTERNAL);
readiness is the server's `heliograph_ready`, CPU and memory its standard `process_*`
metrics. `job` and `instance` are the labels Prometheus attaches to every scraped series.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from deploy_files import (
    alert_annotation_labels,
    alert_expressions,
    dashboard,
    dashboard_expressions,
    dashboard_label_values,
    dashboard_legends,
    dashboard_panels,
    metrics_text,
    tool,
    unlabelled_values,
)
from harness.raw import RawStream
from harness.server import default_config
from harness.xmpp import DEFAULT_PLUGINS
from promql import parse, read_exposition
from test_plugins import allowlist_config, install, plain_login, plugin_tenant, wasm_path

# Series the files may read that the server does not export, and where they come from.
EXTERNAL = {
    "up": "Prometheus' own scrape health of each target",
}
# Read from /proc/self at each scrape: the dashboard's CPU, memory and descriptor panels.
PROCESS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
           "process_max_fds", "process_start_time_seconds")
TARGET_LABELS = {"job", "instance"}
DS_INPUT = "${DS_PROMETHEUS}"


def problems(expressions: list[tuple[str, str]], series: dict[str, dict[str, set[str]]]) -> list[str]:
    """What the expressions read that `series` (from read_exposition) lacks."""
    out = []
    for where, expr in expressions:
        parsed = parse(expr)
        if not parsed.selectors:
            out.append(f"{where}: reads no metric: {expr}")
        known_labels = set(TARGET_LABELS)
        for sel in parsed.selectors:
            if sel.name in EXTERNAL:
                continue
            if sel.name not in series:
                out.append(f"{where}: {sel.name} is not exported")
                continue
            labels = series[sel.name]
            known_labels |= set(labels)
            for label, op, value in sel.matchers:
                if label in TARGET_LABELS:
                    continue
                if label not in labels:
                    out.append(f"{where}: {sel.name} has no label {label!r} (it has {sorted(labels)})")
                elif label == "quantile" and op == "=" and value not in labels["quantile"]:
                    out.append(f"{where}: {sel.name} has no quantile {value} ({sorted(labels['quantile'])})")
        if any(sel.name in EXTERNAL for sel in parsed.selectors):
            continue  # their labels are not the server's to check
        for label in sorted(parsed.grouping_labels - known_labels):
            out.append(f"{where}: groups by {label!r}, a label none of its metrics has")
    return out


def shown_label_problems(shown: list[tuple[str, str, set[str]]],
                         series: dict[str, dict[str, set[str]]]) -> list[str]:
    """Legend `{{label}}`s and annotation `$labels.X` the query's result does not have:
    an aggregation keeps only its `by` labels; a plain selector has its metric's labels
    and the target labels."""
    out = []
    for where, expr, labels in shown:
        parsed = parse(expr)
        if parsed.aggregated:
            result = set(parsed.grouping_labels)
        else:
            result = set(TARGET_LABELS)
            for sel in parsed.selectors:
                result |= set(series.get(sel.name, {}))
        for label in sorted(labels - result):
            out.append(f"{where}: shows {label!r}, which its query's result lacks ({sorted(result)})")
    return out


def test_the_check_finds_what_is_missing():
    """problems() is what the real checks rely on: it must report each kind of mistake."""
    series = read_exposition(
        'h_bucket{op="a",le="0.1"} 1\nh_bucket{op="a",le="+Inf"} 1\nh_sum{op="a"} 1\n'
        'h_count{op="a"} 1\ns{op="a",quantile="0.5"} 1\nc_total{cause="x"} 1\n')
    assert problems([("ok", 'sum by (op) (rate(h_sum[5m])) / sum by (op) (rate(h_count[5m]))'),
                     ("ok2", 'histogram_quantile(0.99, sum by (op, le) (rate(h_bucket{job="j"}[5m])))'
                             ' + sum by (cause) (c_total)'),
                     ("ok3", 'max(s{quantile="0.5"})'),
                     ("ok4", "up == 0")], series) == []
    found = problems([("a", 'h{quantile="0.99"}'), ("b", 'c_total{reason="y"}'),
                      ("c", 's{quantile="0.99"}'), ("d", "sum by (cuase) (c_total)"),
                      ("e", "vector(1)"), ("f", "rate(s_bucket[5m])")], series)
    assert [p.split(":")[0] for p in found] == ["a", "b", "c", "d", "e", "f"], found
    assert shown_label_problems([("ok", "sum by (op) (h_count)", {"op"}),
                                 ("ok2", "h_count", {"op", "instance"}),
                                 ("f", "sum by (op) (h_count)", {"instance"}),
                                 ("g", "sum(c_total)", {"cause"})], series) == [
        "f: shows 'instance', which its query's result lacks (['op'])",
        "g: shows 'cause', which its query's result lacks ([])"]


def refused_connection(address: tuple[str, int]) -> None:
    """Holds one connection to a listener limited to one, and has a second refused."""
    with RawStream.connect(address, timeout=10) as held:
        # Answered, so the listener has counted it before the second one arrives (two
        # connections opened back to back were seen to swap roles).
        held.open()
        with RawStream.connect(address, timeout=10) as extra:
            extra.read_to_close(timeout=10)
            assert extra.closed and b"<stream:features" not in extra.received, extra.received


@pytest.fixture
def wasm():
    return wasm_path("allowlist").read_bytes()


@pytest.mark.async_timeout(120)
@pytest.mark.server_config({
    # Login attempts over 1/s from one address are held back (login_attempts_delayed_total).
    "limits": {"login_rate_per_address": 1, "login_burst_per_address": 1},
    "listen": {"c2s": default_config(Path("."))["listen"]["c2s"]
               + [{"address": "127.0.0.1:0", "tls": "starttls", "max_connections": 1}]},
})
async def test_dashboard_and_alerts_read_only_exported_metrics(server, xmpp, wasm):
    dash = dashboard()
    expressions = dashboard_expressions(dash) + alert_expressions()
    assert len(dashboard_expressions(dash)) >= 20 and len(alert_expressions()) >= 8
    used = set().union(*(parse(e).metric_names for _, e in expressions)) - set(EXTERNAL)

    # Make the server record what the files read.
    server.create_user("alice", "pw")
    server.create_user("bob", "pw")
    alice = await xmpp.connect(server, "alice", "pw", plugins=DEFAULT_PLUGINS + ("xep_0198",))
    bob = await xmpp.connect(server, "bob", "pw")
    alice.send_message(mto=bob.bare, mbody="hello", mtype="chat")
    await bob.next_message(lambda m: m["body"] == "hello")
    alice.send_message(mto="nobody@unknown.invalid", mbody="lost", mtype="chat")
    await alice.next_error()
    direct = server.c2s_direct_tls
    assert await asyncio.to_thread(plain_login, direct, "localhost", "alice", "wrong") == "not-authorized"
    limited = [l.host_port for l in server.listeners if l.kind == "c2s"][2]
    await asyncio.to_thread(refused_connection, limited)
    plugin_tenant(server, "acme", "acme.test")
    install(server, "acme", "auth", wasm, allowlist_config({"carol": "pw"}))
    assert await asyncio.to_thread(plain_login, direct, "acme.test", "carol", "pw") == "ok"

    deadline = time.monotonic() + 30
    while True:
        series = read_exposition(metrics_text(server))
        if used <= set(series) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    found = problems(expressions, series)
    found += shown_label_problems(dashboard_legends(dash) + alert_annotation_labels(), series)
    assert not found, "\n".join(found) + f"\n\nexported: {sorted(series)}"

    # A serving node: ready, not draining; its process figures are its own and sensible.
    values = unlabelled_values(metrics_text(server))
    assert values["heliograph_ready"] == 1 and values["heliograph_draining"] == 0, values
    for name in PROCESS:
        assert values.get(name, 0) > 0, (name, values)
    assert values["process_open_fds"] <= values["process_max_fds"], values
    assert time.time() - 600 < values["process_start_time_seconds"] <= time.time() + 2, values
    assert {"process_cpu_seconds_total", "process_open_fds", "heliograph_ready",
            "heliograph_draining"} <= used, "the dashboard shows CPU, descriptors and readiness"

    for name, selector, label in dashboard_label_values(dash):
        for sel in parse(selector).selectors:
            assert label in TARGET_LABELS | set(series.get(sel.name, {})), (name, sel, label)
    print(f"checked {len(expressions)} expressions reading {len(used)} exported metrics: "
          + ", ".join(sorted(used)))


def test_dashboard_imports_cleanly():
    """The dashboard asks for its Prometheus data source on import (`__inputs`), every
    panel and target uses that input, ids are unique, and panels do not overlap."""
    dash = dashboard()
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    assert dash["__inputs"][0]["pluginId"] == "prometheus"
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    assert dash["id"] is None, "an exported dashboard has no database id"
    panels = dashboard_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    occupied: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in occupied, f"{p['title']!r} overlaps {occupied[(x, y)]!r}"
                occupied[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == DS_INPUT, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == DS_INPUT, p["title"]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == DS_INPUT, var["name"]


def test_metrics_text_passes_promtool_check(server):
    """A real server's /metrics parses for `promtool check metrics`, the process metrics
    appended after the recorder's output included. Its only complaints are the lint
    "no help text" of the older heliograph_ metrics; the readiness gauges and the
    process metrics have theirs."""
    promtool = tool("promtool")
    text = metrics_text(server)
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    print(f"promtool check metrics -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode in (0, 3), "exit 3 is lint problems only; else it did not parse"
    assert all(line.endswith(" no help text") for line in problems), problems
    undescribed = {line.split()[0] for line in problems}
    described = set(PROCESS) | {"heliograph_ready", "heliograph_draining"}
    assert not undescribed & described, undescribed & described
    assert described <= set(unlabelled_values(text)), text
