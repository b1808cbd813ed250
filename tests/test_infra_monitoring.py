"""The monitoring setup (``infra/monitoring``, the spec's T131-T133) against a real
platform: every metric a Grafana panel queries is on ``GET /metrics``, the dashboards are
Grafana dashboards (uid, title, panels with PromQL targets on a datasource variable),
Prometheus scrapes the platform's Service on ``/metrics``, and docs/monitoring.md lists
every ``llmops_*`` family the platform exposes (and nothing it does not).

The platform runs in-process with the MLflow plugin (its local SQLite store) and the Argo
plugin (on the Argo Server double); a tracking run, a pipeline on Argo and a refused key
make labelled series exist before /metrics is read with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from llmops.capabilities.tracking import MetricPoint, RunSpec, RunStatus
from llmops.config import CoreSettings
from llmops.testing.argo import ArgoServerDouble, running_argo_server
from llmops.testing.pytest_plugin import started_client
from llmops.testing.waiting import wait_for
from llmops_argo.settings import ArgoSettings

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "infra" / "monitoring"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
DOCS = ROOT / "docs" / "monitoring.md"
API = "/llm-ops/v1"
#: an overview and one dashboard per capability
EXPECTED_DASHBOARDS = {"overview", "tracking", "serving", "orchestration", "registry", "versioning"}

# -------------------------------------------------------------------------------------
# PromQL: the metric names an expression reads
# -------------------------------------------------------------------------------------

#: PromQL's keywords and operators that look like identifiers
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: identifiers before ``{``, ``[`` or used bare,
    less functions (an identifier before ``(``), keywords, label matchers, ranges,
    grouping labels, strings and Grafana's ``$variables``."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers: names and values
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges and subqueries, $__rate_interval
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # a variable used bare
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        name = match.group()
        if rest.startswith("(") or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, operation) (rate(llmops_x_seconds_bucket{a="b", '
        'c=~"$plugin"}[$__rate_interval])))'
    ) == {"llmops_x_seconds_bucket"}
    assert metric_names(
        "count(max by (p) (llmops_up) == 0) or vector(0) + on (p) group_left llmops_info"
    ) == {"llmops_up", "llmops_info"}
    assert metric_names('sum(rate(a_total{s=~"5.."}[5m])) / sum(rate(b_total[1h] offset 1d))') == {
        "a_total",
        "b_total",
    }
    assert metric_names("1e3 * llmops_bare > bool 2") == {"llmops_bare"}


# -------------------------------------------------------------------------------------
# The platform and its /metrics
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    text: str
    #: family name -> type, as prometheus_client's parser reads them
    families: dict[str, str]
    #: every name a PromQL query may use: gauges and families by name, counters with
    #: ``_total`` (and ``_created``), histograms with ``_bucket``, ``_sum``, ``_count``
    exposed: frozenset[str]

    def value(self, name: str, **labels: str) -> float | None:
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}


def read_scrape(text: str) -> Scrape:
    families: dict[str, str] = {}
    exposed: set[str] = set()
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        suffixes = _SUFFIXES.get(family.type, ())
        exposed.update(family.name + s for s in suffixes)
        if family.type not in ("counter",):
            exposed.add(family.name)
        exposed.update(sample.name for sample in family.samples)
    # the text format gives a counter's or histogram's _created samples a gauge family
    # of their own: part of that metric, not another one
    for name in [n for n in families if n.endswith("_created")]:
        if families.get(name.removesuffix("_created")) in _SUFFIXES:
            del families[name]
    return Scrape(text=text, families=families, exposed=frozenset(exposed))


def _argo_environment(argo: ArgoServerDouble) -> dict[str, str]:
    settings = ArgoSettings.model_validate(
        {
            "server_url": argo.url,
            "token": argo.token,
            "namespace": argo.namespace,
            "default_image": "busybox:1.36",
            "kubernetes_api_url": argo.kubernetes_url,
            "kubernetes_token": argo.token,
            "request_timeout_seconds": 5,
        }
    )
    env = {}
    for field, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        given = getattr(settings, field)
        text = given.get_secret_value() if isinstance(given, SecretStr) else value
        env[f"LLMOPS_ARGO__{field.upper()}"] = str(text)
    return env


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    """/metrics of a platform with MLflow and Argo on, after real calls through both."""
    root = tmp_path_factory.mktemp("monitoring")
    with (
        running_argo_server(namespace="argo", work_dir=root / "argo-pods") as argo,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        for name in list(os.environ):
            if name.startswith("LLMOPS_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
        for name, value in _argo_environment(argo).items():
            monkeypatch.setenv(name, value)
        settings = CoreSettings(
            data_dir=root / "data",
            database_url=f"sqlite:///{root / 'llmops.db'}",
            plugins="mlflow,argo",
            sync_interval_seconds=0.1,
            health_cache_seconds=0.2,
        )
        with started_client(settings) as client:
            _make_series(client)
            text = wait_for(
                lambda: _counted(client), timeout=60, interval=0.25, what="MLflow's run counts"
            )
            yield read_scrape(text)
        argo.check_errors()


def _make_series(client: TestClient) -> None:
    runtime = client.app.state.platform.runtime  # type: ignore[attr-defined]
    _, tracker = runtime.tracking_provider()
    run = tracker.create_run(RunSpec(experiment="monitoring", run_name="r"))
    now = datetime.now(UTC)
    points = [MetricPoint(key="loss", value=1.0 / (i + 1), step=i, timestamp=now) for i in range(3)]
    tracker.log_metrics(run.run_id, points)
    tracker.end_run(run.run_id, RunStatus.FINISHED)

    body = {
        "name": "monitoring",
        "provider": "argo",
        "stages": [{"name": "only", "command": ["sh", "-c", "exit 0"]}],
    }
    created = client.post(f"{API}/workflows/pipelines", json=body)
    assert created.status_code in (201, 202), created.text
    pipeline = created.json()["id"]
    wait_for(
        lambda: client.get(f"{API}/workflows/pipelines/{pipeline}").json()["status"] == "succeeded",
        timeout=30,
        interval=0.1,
        what="the pipeline on Argo",
    )
    refused = client.get(f"{API}/workflows/pipelines", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401


def _counted(client: TestClient) -> str | None:
    text = client.get("/metrics").text  # the first scrape starts MLflow's count
    families = {f.name: f for f in text_string_to_metric_families(text)}
    runs = families.get("llmops_mlflow_runs")
    return text if runs is not None and runs.samples else None


def test_the_calls_made_labelled_series(scrape: Scrape) -> None:
    assert scrape.value("llmops_mlflow_runs", experiment="monitoring", status="finished") == 1
    assert scrape.value("llmops_mlflow_up") == 1
    assert scrape.value("llmops_mlflow_metric_points_total", source="platform") == 3
    assert scrape.value("llmops_argo_workflows", phase="Succeeded") == 1
    assert scrape.value("llmops_argo_submissions_total", outcome="created") == 1
    assert scrape.value("llmops_pipelines_submitted_total", provider="argo") == 1
    assert scrape.value("llmops_authentication_refusals_total", reason="invalid") == 1
    calls = scrape.value(
        "llmops_integration_calls_total",
        plugin="mlflow",
        capability="tracking",
        operation="log_metrics",
        outcome="ok",
    )
    assert calls == 1
    assert scrape.value("llmops_plugin_enabled", plugin="argo") == 1


# -------------------------------------------------------------------------------------
# The dashboards
# -------------------------------------------------------------------------------------


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels


def _queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    for panel in _panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            found = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
            assert found, f"variable {variable['name']!r}: {query}"
            yield f"variable {variable['name']!r}", found.group(1)


def test_there_is_an_overview_and_a_dashboard_per_capability() -> None:
    assert set(_dashboards()) == EXPECTED_DASHBOARDS


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_each_dashboard_is_a_grafana_dashboard_on_a_datasource_variable(name: str) -> None:
    board = _dashboards()[name]

    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", board["uid"]), board["uid"]
    assert board["title"].startswith("llmops / ")
    assert isinstance(board["schemaVersion"], int)
    assert "llmops" in board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in _panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    graphs = [p for p in _panels(board) if p["type"] != "row"]
    assert graphs, "no panels"
    for panel in graphs:
        where = f"{name}: {panel['title']!r}"
        assert panel["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}, where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        box = panel["gridPos"]
        assert 0 <= box["x"] < box["x"] + box["w"] <= 24, where
        assert panel["targets"], where
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", where
            assert metric_names(target["expr"]), f"{where}: no metric in {target['expr']}"
    if name != "overview":  # a capability's dashboard: its own calls through the guard
        exprs = " ".join(t["expr"] for p in graphs for t in p["targets"])
        assert f'capability="{name}"' in exprs
    uids = [b["uid"] for b in _dashboards().values()]
    assert len(uids) == len(set(uids))


def test_every_metric_a_dashboard_queries_is_on_metrics(scrape: Scrape) -> None:
    missing = []
    for name, board in _dashboards().items():
        for where, expr in _queries(board):
            for metric in sorted(metric_names(expr) - scrape.exposed):
                missing.append(f"{name}, {where}: {metric}")
    assert missing == []


# -------------------------------------------------------------------------------------
# Prometheus and Grafana's provisioning
# -------------------------------------------------------------------------------------


def _service() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(
        (ROOT / "infra" / "k8s" / "platform" / "llmops-service.yaml").read_text()
    )
    return service


def test_prometheus_scrapes_the_platforms_service_on_metrics() -> None:
    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    kustomization = yaml.safe_load(
        (ROOT / "infra" / "k8s" / "platform" / "kustomization.yaml").read_text()
    )
    service = _service()
    [port] = [p["name"] for p in service["spec"]["ports"]]

    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    [discovery] = job["kubernetes_sd_configs"]
    assert discovery["role"] == "endpoints"
    assert discovery["namespaces"]["names"] == [kustomization["namespace"]]
    [keep] = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep["source_labels"] == [
        "__meta_kubernetes_service_name",
        "__meta_kubernetes_endpoint_port_name",
    ]
    assert keep["regex"] == f"{service['metadata']['name']};{port}"
    interval = config["global"]["scrape_interval"]
    timeout = config["global"]["scrape_timeout"]
    assert int(timeout.rstrip("s")) < int(interval.rstrip("s"))


def test_grafana_provisioning_loads_the_dashboards_and_a_prometheus_datasource() -> None:
    provisioning = MONITORING / "grafana" / "provisioning"
    dashboards = yaml.safe_load((provisioning / "dashboards" / "llmops.yaml").read_text())
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())

    [provider] = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http")
    assert dashboards["apiVersion"] == datasources["apiVersion"] == 1


# -------------------------------------------------------------------------------------
# docs/monitoring.md
# -------------------------------------------------------------------------------------


def _documented() -> tuple[set[str], set[str]]:
    """Every llmops_* name in the doc, and those its metric tables list (first column)."""
    text = DOCS.read_text()
    anywhere = set(re.findall(r"\bllmops_[a-z0-9_]+\b", text))
    listed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `llmops_"):
            first = line.split("|")[1]
            listed.update(re.findall(r"`(llmops_[a-z0-9_]+)`", first))
    return anywhere, listed


def test_the_doc_lists_every_llmops_metric_family_on_metrics(scrape: Scrape) -> None:
    _, listed = _documented()
    wire = {
        name + "_total" if kind == "counter" else name
        for name, kind in scrape.families.items()
        if name.startswith("llmops_")
    }

    assert sorted(wire - listed) == []  # on /metrics, not in the doc
    assert sorted(listed - scrape.exposed) == []  # in the doc, not on /metrics
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("| `llmops_")]
    unlisted = []
    for family in text_string_to_metric_families(scrape.text):
        if family.name not in scrape.families or not family.name.startswith("llmops_"):
            continue
        shown = f"{family.name}_total" if family.type == "counter" else family.name
        [row] = [r for r in rows if f"`{shown}`" in r.split("|")[1]]
        for sample in family.samples:
            unlisted += [
                f"{shown}: {label}"
                for label in sorted(set(sample.labels) - {"le"})
                if f"`{label}`" not in row
            ]
    assert sorted(set(unlisted)) == []  # a label the doc does not name
    assert "infra/monitoring" in DOCS.read_text()
