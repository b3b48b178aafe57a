"""The files of ``deploy/`` as the deploy tests read them: the dashboard's and the alert
rules' PromQL expressions, and the external tools that check the files (found on the
PATH; a missing tool skips its test with the reason, unless
``HELIOGRAPH_REQUIRE_DEPLOY_TOOLS=1``, which tests/run.sh sets after installing them, so a
missing tool fails there)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
DEPLOY = REPO_ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "heliograph.json"
ALERTS = DEPLOY / "prometheus" / "heliograph-alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "heliograph-alerts.test.yml"
UNIT = DEPLOY / "systemd" / "heliograph.service"
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"

# Grafana's `label_values(selector, label)` variable query.
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(dash: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    out = []
    for panel in dash.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_expressions(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable; a variable's
    `label_values(selector, label)` gives its selector (the label is checked by the
    caller through the returned `label_values` entries)."""
    out = []
    for panel in dashboard_panels(dash):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append((f"panel {panel['title']!r} target {target.get('refId')}", target["expr"]))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = _LABEL_VALUES.match(query or "")
        if m:
            out.append((f"variable {var['name']!r}", m.group(1)))
        elif query:
            out.append((f"variable {var['name']!r}", query))
    return out


def dashboard_legends(dash: dict) -> list[tuple[str, str, set[str]]]:
    """(where, PromQL, labels its legend shows as `{{label}}`) of every panel target."""
    out = []
    for panel in dashboard_panels(dash):
        for target in panel.get("targets", []):
            labels = set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", target.get("legendFormat", "")))
            if target.get("expr"):
                out.append((f"panel {panel['title']!r} legend {target.get('refId')}", target["expr"], labels))
    return out


def alert_annotation_labels() -> list[tuple[str, str, set[str]]]:
    """(where, PromQL, labels its annotations show as `$labels.X`) of every alert."""
    out = []
    for rule in alert_rules():
        text = " ".join(str(v) for v in rule.get("annotations", {}).values())
        labels = set(re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text))
        out.append((f"alert {rule.get('alert')} annotations", rule["expr"], labels))
    return out


def dashboard_label_values(dash: dict) -> list[tuple[str, str, str]]:
    """(variable, selector, label) of each `label_values(selector, label)` variable."""
    out = []
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = _LABEL_VALUES.match(query or "")
        if m:
            out.append((var["name"], m.group(1), m.group(2)))
    return out


def alert_rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_expressions() -> list[tuple[str, str]]:
    return [(f"alert {r.get('alert') or r.get('record')}", r["expr"]) for r in alert_rules()]


def tool(name: str, *candidates: str) -> str:
    """The path of an external tool, or a skip (a failure when tools are required)."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    reason = f"{name} is not installed (Debian: see tests/run.sh's deploy step)"
    if os.environ.get("HELIOGRAPH_REQUIRE_DEPLOY_TOOLS") == "1":
        pytest.fail(reason + "; HELIOGRAPH_REQUIRE_DEPLOY_TOOLS=1 requires it", pytrace=False)
    print(f"skipping: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A port free on loopback now (for tools that cannot bind port 0 and report it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics_text(server) -> str:
    """The server's /metrics, as Prometheus scrapes it."""
    host, port = server.admin_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def unlabelled_values(text: str) -> dict[str, float]:
    """The value of every sample without labels in a /metrics text (`name value`)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
            out[parts[0]] = float(parts[1])
    return out
