"""The alerting rules, their unit tests and the example Prometheus config pass promtool, and the
alerts and the Grafana dashboard use only metrics the job exports (no server needed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devkit.paths import PROJECT_ROOT
from enrolment_reconciliation.io.prometheus import exported_metric_names

ROOT = PROJECT_ROOT
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "enrolment-reconciliation.json"

# What the job exports (its stream endpoint and a batch run's push), read from the job itself;
# tests/integration/test_prometheus.py checks the same names against a running endpoint and a
# real Pushgateway. ``up`` is Prometheus' own, one per scrape target.
JOB_METRICS = frozenset({"up", *exported_metric_names()})

TOKEN = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression uses: tokens of the job's prefix, and ``up``
    (label values, in quotes, are left out: they are not names)."""
    tokens = TOKEN.findall(STRING.sub('""', expr))
    return {t for t in tokens if t.startswith(("enrolment_reconciliation_", "up"))}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: ./dev.sh setup installs it (Debian's prometheus)")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )


def rules() -> list[dict[str, Any]]:
    [group] = yaml.safe_load(ALERTS.read_text())["groups"]
    assert group["name"] == "enrolment-reconciliation"
    return group["rules"]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def test_promtool_checks_the_alerting_rules():
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alerting_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_checks_the_example_config_and_the_rules_it_loads():
    checked = promtool("check", "config", str(CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "alerts.yml" in checked.stdout


def test_every_alert_has_a_duration_a_severity_and_what_to_do():
    for rule in rules():
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 100, rule["alert"]


def test_every_alert_is_tested_firing_and_silent():
    cases = [c for group in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
             for c in group["alert_rule_test"]]  # fmt: skip
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {rule["alert"] for rule in rules()}
    assert names - fires == set(), "never tested firing"
    assert names - silent == set(), "never tested silent"


def test_the_alerts_use_only_metrics_the_job_exports():
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    assert used - JOB_METRICS == set()
    assert "enrolment_reconciliation_run_exit_code" in used  # the parser finds names at all


def test_the_dashboard_uses_only_metrics_the_job_exports():
    variables = dashboard()["templating"]["list"]
    queries = [v["definition"] for v in variables if v["type"] == "query"]
    used = {name for expr in [*dashboard_exprs(), *queries] for name in metric_names(expr)}
    assert used - JOB_METRICS == set()
    assert "enrolment_reconciliation_consumer_lag" in used


def test_every_dashboard_query_goes_to_the_datasource_variable():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids))


def test_the_dashboard_s_expressions_are_valid_promql(tmp_path):
    """Each expression, its Grafana variables filled in, as a recording rule promtool parses."""

    def filled(expr: str) -> str:  # $__rate_interval and the like: a range; $env: a regex
        return GRAFANA_VARIABLE.sub(lambda m: "5m" if m[1].startswith("__") else ".*", expr)

    recorded = [
        {"record": f"dashboard:expr_{i}", "expr": filled(expr)}
        for i, expr in enumerate(dashboard_exprs())
    ]
    assert all("$" not in r["expr"] for r in recorded)
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
