"""docs/grafana-dashboard.json: a dashboard Grafana can import, whose queries name only metrics /metrics serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
METRIC = re.compile(r"\bkyma_[a-z0-9_]+\b")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def exposed_names(text: str) -> set[str]:
    """Every series name a Prometheus text exposition declares (a histogram's _bucket/_sum/_count too)."""
    names = set()
    for kind, name, mtype in re.findall(r"^# (TYPE) (\S+) (\S+)$", text, re.M):
        names.add(name)
        if mtype == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SERIES)
        if mtype == "counter" and not name.endswith("_total"):
            names.add(name + "_total")
    return names


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_metric_a_panel_queries_is_served(make_app, dashboard):
    app = make_app(metrics=True)
    served = exposed_names(app.test_client().get("/metrics").get_data(as_text=True))
    queried = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    assert queried and queried <= served, sorted(queried - served)


def test_the_panels_an_operator_needs_are_there(dashboard):
    wanted = {"kyma_requests_total", "kyma_request_duration_seconds_bucket",
              "kyma_time_to_first_token_seconds_bucket", "kyma_upstream_failures_total", "kyma_fallback_layer_total",
              "kyma_circuit_state", "kyma_holds_outstanding", "kyma_open_streams", "kyma_credits_spent_usd_total"}
    queried = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    assert wanted <= queried
    assert any("histogram_quantile(0.95" in e for e in expressions(dashboard))
    assert any('status=~"5.."' in e for e in expressions(dashboard))


def test_it_is_a_dashboard_grafana_imports(dashboard):
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in panels:
        assert p["type"] in ("timeseries", "stat") and p["datasource"]["uid"] == "${datasource}"
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")") and t["expr"].count("{") == t["expr"].count("}")
