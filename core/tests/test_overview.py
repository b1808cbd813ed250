"""The operations overview (GET /observability/overview) and the status history behind it:
each change of a provider's health is recorded once, with its reason and time, and kept
for ``status_history_hours``; the outbox, calls per plugin, throughput and inference
traffic are what the database and the platform's Prometheus registry hold after real
work.

The tool behind the test plugin "flaptrack" is a module-level switch: ``MODE[0]`` is
"ok" or "down"; its orchestrator "flaky" fails every call while ``UP[0]`` is False.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, inspect, select

from llmops.api.app import create_app
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.config import CoreSettings
from llmops.db.migrate import downgrade, upgrade
from llmops.db.models import IntegrationStatusChange, Operation
from llmops.db.session import make_engine, make_session_factory
from llmops.observability.health import NOT_CHECKED, ProviderHealth
from llmops.observability.status_history import StatusMonitor
from llmops.platform import Platform
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.models import DIRECT_SERVING_PLUGIN, serving_in_thread
from llmops.testing.plugins import PluginInstaller, orchestrator_plugin
from llmops.testing.waiting import wait_for

OVERVIEW = "/observability/overview"

_TRACKER = """
import llmops
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.plugins.info import PluginInfo

MODE = ["ok"]


class Tracker:
    def health(self):
        if MODE[0] == "down":
            return Health(status=HealthStatus.DOWN, detail="the tracking server refused us")
        return Health(status=HealthStatus.OK, detail="fine")


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="flaptrack",
        version="1.0.0",
        display_name="A tracker whose tool goes down when told",
        capabilities=frozenset({Capability.TRACKING}),
    )


@llmops.hookimpl
def llmops_tracking(settings, context):
    return Tracker()
"""

_ORCHESTRATOR = orchestrator_plugin(
    "flaky",
    """
from llmops.capabilities.orchestration import (
    PipelineState, PipelineStatus, StageState, StageStatus,
)
from llmops.testing.plugins import QuietOrchestrator

UP = [False]


class Orchestrator(QuietOrchestrator):
    def _status(self, key):
        return PipelineStatus(
            external_id=key, state=PipelineState.RUNNING,
            stages=[StageStatus(name="a", state=StageState.RUNNING)],
        )

    def submit(self, spec):
        if not UP[0]:
            raise ConnectionRefusedError("the orchestrator is down")
        return self._status(spec.idempotency_key)

    def status(self, external_id):
        if not UP[0]:
            raise ConnectionRefusedError("the orchestrator is down")
        return self._status(external_id)
""",
)


def platform_of(client: TestClient) -> Platform:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform


def overview(client: TestClient, api: str) -> dict[str, Any]:
    answer = client.get(f"{api}{OVERVIEW}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def integration(body: dict[str, Any], plugin: str) -> dict[str, Any]:
    found = [i for i in body["integrations"] if i["plugin"] == plugin]
    assert len(found) == 1, body["integrations"]
    entry: dict[str, Any] = found[0]
    return entry


def changes(client: TestClient, plugin: str = "flaptrack") -> list[IntegrationStatusChange]:
    """The status changes recorded for ``plugin`` (the built-in "local" has its own)."""
    table = IntegrationStatusChange
    platform = platform_of(client)
    assert platform.status_history.flush(), "the status changes were not written in time"
    with platform.transaction() as session:
        rows = session.scalars(select(table).where(table.plugin == plugin).order_by(table.id)).all()
        session.expunge_all()
    return list(rows)


Start = Callable[..., tuple[TestClient, Any]]


@pytest.fixture
def start(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[Start]:
    """``start(**settings)``: an app (no background worker) with "flaptrack"; returns the
    client and the plugin's module. The same database each time it is called."""
    module = install("flaptrack", _TRACKER)
    with ExitStack() as stack:

        def start_app(**overrides: Any) -> tuple[TestClient, Any]:
            settings = make_settings(plugins="flaptrack", **overrides)
            client = stack.enter_context(TestClient(create_app(settings, start_worker=False)))
            authenticate(client)
            return client, sys.modules[module]

        yield start_app


# -- the status history ----------------------------------------------------------------


def test_a_health_change_is_recorded_once_with_its_reason_and_time(start: Start, api: str) -> None:
    client, tool = start()
    health = platform_of(client).health
    for _ in range(3):  # the background rounds go on meanwhile, every second
        health.run_round()
    first = changes(client)
    assert [(c.plugin, c.status, c.previous) for c in first] == [("flaptrack", "ok", None)]

    tool.MODE[0] = "down"
    before = datetime.now(UTC)
    for _ in range(3):
        health.run_round()
    after = datetime.now(UTC)
    for _ in range(2):
        health.run_round()
    tool.MODE[0] = "ok"
    for _ in range(3):
        health.run_round()

    rows = changes(client)
    assert [(c.status, c.previous) for c in rows] == [("ok", None), ("down", "ok"), ("ok", "down")]
    down = rows[1]
    assert down.detail == "the tracking server refused us"
    assert (down.capability, down.provider) == ("tracking", "flaptrack")
    assert before <= down.at <= after
    assert down.instance_id == platform_of(client).instance_id
    assert down.host

    entry = integration(overview(client, api), "flaptrack")
    assert entry["status"] == "ok"
    assert [(h["status"], h["previous"]) for h in entry["history"]] == [
        ("ok", None),
        ("down", "ok"),
        ("ok", "down"),
    ]
    assert entry["history"][1]["detail"] == "the tracking server refused us"
    assert datetime.fromisoformat(entry["history"][1]["at"]) == down.at


def test_a_restart_that_finds_a_provider_as_it_left_it_records_nothing(
    install: PluginInstaller, make_settings: Callable[..., CoreSettings]
) -> None:
    module = install("flaptrack", _TRACKER)
    # no background round but start()'s own, which each block waits for: a late one would
    # record what the tool said before the test changed it
    settings = make_settings(plugins="flaptrack", health_cache_seconds=3600)

    def settled(client: TestClient) -> Platform:
        platform = platform_of(client)
        wait_for(
            lambda: all(r.health.detail != NOT_CHECKED for r in platform.health.results()),
            timeout=30,
            what="start()'s health round",
        )
        return platform

    with TestClient(create_app(settings, start_worker=False)) as first:
        settled(first)
        tool = sys.modules[module]
        tool.MODE[0] = "down"
        platform_of(first).health.run_round()
        before = [(c.id, c.status) for c in changes(first)]
        assert before[-1][1] == "down"

    with TestClient(create_app(settings, start_worker=False)) as again:  # a restart
        platform = settled(again)
        platform.health.run_round()
        platform.health.run_round()
        assert [(c.id, c.status) for c in changes(again)] == before

        tool.MODE[0] = "ok"
        platform.health.run_round()
        rows = changes(again)
        assert [(c.id, c.status) for c in rows[:-1]] == before
        assert (rows[-1].status, rows[-1].previous) == ("ok", "down")
        assert rows[-1].instance_id == platform.instance_id


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def result(status: HealthStatus, at: datetime, detail: str = "") -> ProviderHealth:
    return ProviderHealth(
        "flaptrack",
        Capability.TRACKING,
        "flaptrack",
        Health(status=status, detail=detail, checked_at=at),
    )


def test_changes_older_than_the_window_are_deleted(engine: Engine) -> None:
    t0 = datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    now = [t0]
    sessions = make_session_factory(engine)
    monitor = StatusMonitor(
        sessions,
        window=timedelta(hours=1),
        instance_id="a" * 32,
        clock=lambda: now[0],
        prune_every=0,
    )

    def kept() -> list[tuple[str, datetime]]:
        with sessions() as session:
            rows = session.scalars(
                select(IntegrationStatusChange).order_by(IntegrationStatusChange.at)
            )
            return [(r.status, r.at) for r in rows]

    assert monitor.record([result(HealthStatus.DOWN, t0, "refused")]) == 1
    now[0] = t0 + timedelta(minutes=30)
    assert monitor.record([result(HealthStatus.OK, now[0])]) == 1
    assert kept() == [("down", t0), ("ok", t0 + timedelta(minutes=30))]

    now[0] = t0 + timedelta(minutes=61)  # the first change is past the window
    assert monitor.record([result(HealthStatus.OK, now[0])]) == 0
    assert kept() == [("ok", t0 + timedelta(minutes=30))]

    now[0] = t0 + timedelta(hours=3)
    assert monitor.record([result(HealthStatus.OK, now[0])]) == 0  # unchanged: no new row
    assert kept() == []
    now[0] += timedelta(minutes=1)
    assert monitor.record([result(HealthStatus.DOWN, now[0], "refused")]) == 1
    assert kept() == [("down", now[0])]


def test_a_database_that_hangs_holds_up_no_health_round() -> None:
    release = threading.Event()

    def hang() -> Any:
        release.wait(30)
        raise ConnectionRefusedError("gave up")

    engine = create_engine("sqlite://", creator=hang)
    monitor = StatusMonitor(
        make_session_factory(engine), window=timedelta(hours=1), instance_id="b" * 32
    )
    try:
        started = time.monotonic()
        for status in (HealthStatus.DOWN, HealthStatus.OK, HealthStatus.DOWN):
            monitor.observe([result(status, datetime.now(UTC))])
        assert time.monotonic() - started < 0.5
        assert not monitor.flush(timeout=0.3)  # the changes wait for the database
    finally:
        release.set()
        monitor.close()
        engine.dispose()


def test_the_window_is_the_status_history_hours_setting(start: Start, api: str) -> None:
    client, _ = start(status_history_hours=0.5)

    assert platform_of(client).status_history.window == timedelta(minutes=30)
    assert overview(client, api)["historyHours"] == 0.5
    assert CoreSettings().status_history_hours == 24


def test_the_0008_migration_adds_the_status_history_and_its_downgrade_removes_it(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0007")
        assert "integration_status_changes" not in inspect(engine).get_table_names()
        upgrade(engine)
        assert "integration_status_changes" in inspect(engine).get_table_names()
        indexes = {i["name"] for i in inspect(engine).get_indexes("integration_status_changes")}
        assert indexes == {
            "ix_integration_status_changes_at",
            "ix_integration_status_changes_provider_at",
        }
        downgrade(engine, "0007")
        assert "integration_status_changes" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


# -- the outbox and calls per plugin ---------------------------------------------------


@pytest.fixture
def flaky(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[tuple[TestClient, Any]]:
    """A platform without a background worker on the "flaky" orchestrator, down."""
    name = install("flaky", _ORCHESTRATOR)
    settings = make_settings(plugins="flaky", circuit_failure_threshold=100)
    with TestClient(create_app(settings, start_worker=False)) as client:
        authenticate(client)
        yield client, sys.modules[name]


def submit(client: TestClient, api: str, name: str) -> dict[str, Any]:
    body = {"name": name, "provider": "flaky", "stages": [{"name": "a", "command": ["true"]}]}
    answer = client.post(f"{api}/workflows/pipelines", json=body)
    assert answer.status_code in {201, 202}, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_the_overview_reports_the_outbox_depth_and_the_oldest_waiting_write(
    flaky: tuple[TestClient, Any], api: str
) -> None:
    client, _ = flaky
    started = time.monotonic()
    queued = [submit(client, api, f"p{i}") for i in range(3)]
    assert all(q["degraded"] for q in queued)

    def aged() -> dict[str, Any] | None:
        found = overview(client, api)
        age = found["outbox"]["oldestPendingAgeSeconds"]
        return found if age is not None and age >= 0.5 else None

    body = wait_for(aged, timeout=10, interval=0.05, what="the oldest write to wait 0.5 s")
    waited = time.monotonic() - started
    outbox = body["outbox"]
    assert (outbox["pending"], outbox["running"], outbox["depth"]) == (3, 0, 3)
    with platform_of(client).transaction() as session:
        first = session.scalars(select(Operation).order_by(Operation.created_at)).first()
        assert first is not None
        oldest = first.created_at
    assert datetime.fromisoformat(outbox["oldestPendingAt"]) == oldest
    assert 0.5 <= outbox["oldestPendingAgeSeconds"] <= waited + 0.1
    [provider] = outbox["providers"]
    assert provider["provider"] == "flaky"
    assert (provider["pending"], provider["dead"]) == (3, 0)


def metric_total(client: TestClient, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_the_overview_counts_calls_errors_and_latency_per_plugin_after_real_calls(
    flaky: tuple[TestClient, Any], api: str
) -> None:
    client, tool = flaky
    for i in range(3):
        submit(client, api, f"down{i}")
    tool.UP[0] = True
    for i in range(2):
        submit(client, api, f"up{i}")

    [stats] = [c for c in overview(client, api)["calls"] if c["plugin"] == "flaky"]
    assert stats["capability"] == "orchestration"
    assert (stats["calls"], stats["ok"], stats["errors"], stats["refused"]) == (5, 2, 3, 0)
    assert stats["errorRate"] == pytest.approx(3 / 5)
    assert stats["errorsByType"] == {"IntegrationUnavailable": 3}
    assert stats["latency"]["count"] == 5
    assert stats["latency"]["meanMs"] > 0
    assert stats["latency"]["p95Ms"] > 0  # estimated from the buckets
    # the same numbers /metrics serves
    labels = {"plugin": "flaky", "capability": "orchestration"}
    assert metric_total(client, "llmops_integration_calls_total", **labels) == 5
    assert metric_total(client, "llmops_integration_calls_total", outcome="error", **labels) == 3
    duration_sum = metric_total(client, "llmops_integration_call_duration_seconds_sum", **labels)
    assert stats["latency"]["meanMs"] == pytest.approx(duration_sum / 5 * 1000)


# -- throughput ------------------------------------------------------------------------


def test_the_overview_counts_finished_training_jobs_and_pipelines_per_hour_by_outcome(
    client: TestClient, api: str
) -> None:
    ids = []
    for command in (["true"], ["false"]):
        answer = client.post(
            f"{api}/workflows/pipelines",
            json={"name": "p", "stages": [{"name": "a", "command": command}]},
        )
        assert answer.status_code == 201, answer.text
        ids.append(f"{api}/workflows/pipelines/{answer.json()['id']}")
    job = client.post(f"{api}/training/jobs", json={"name": "job", "command": ["true"]})
    assert job.status_code == 201, job.text
    ids.append(f"{api}/training/jobs/{job.json()['id']}")

    def finished(url: str) -> bool:
        return client.get(url).json()["status"] in {"succeeded", "failed"}

    for url in ids:
        wait_for(partial(finished, url), what=f"{url} to finish")

    body = overview(client, api)
    now = datetime.fromisoformat(body["generatedAt"])
    throughput = body["throughput"]
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(throughput["since"]) == this_hour - timedelta(hours=23)
    pipelines, training = throughput["pipelines"], throughput["training"]
    # the training job runs as a pipeline of its own
    assert pipelines["total"] == {"succeeded": 2, "failed": 1, "cancelled": 0}
    assert training["total"] == {"succeeded": 1, "failed": 0, "cancelled": 0}
    for kind in (pipelines, training):
        assert len(kind["hourly"]) == 24
        assert datetime.fromisoformat(kind["hourly"][-1]["start"]) == this_hour
        for outcome in ("succeeded", "failed", "cancelled"):
            assert sum(h[outcome] for h in kind["hourly"]) == kind["total"][outcome]
    assert pipelines["hourly"][-1]["succeeded"] >= 1  # finished within this hour or the last


# -- inference traffic -----------------------------------------------------------------


async def _answering(scope: Any, receive: Any, send: Any) -> None:
    """An OpenAI-ish backend: every chat completion answers "ok", with its usage."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": "tiny-gpt2",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        }
    ).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _failing(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"the backend broke"})


def test_the_overview_reports_inference_traffic_per_endpoint(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> None:
    install("direct", DIRECT_SERVING_PLUGIN)
    with (
        serving_in_thread(_answering) as good_url,
        serving_in_thread(_failing) as broken_url,
        TestClient(create_app(make_settings(plugins="direct"), start_worker=False)) as client,
    ):
        authenticate(client)
        for name, url in (("good", good_url), ("broken", broken_url), ("idle", good_url)):
            model = client.post(
                f"{api}/catalog/models", json={"name": f"model-{name}", "uri": f"{url}/v1"}
            )
            assert model.status_code == 201, model.text
            created = client.post(
                f"{api}/serving/endpoints",
                json={"name": name, "modelId": model.json()["id"], "framework": "direct"},
            )
            assert created.status_code == 201, created.text
        chat = {"messages": [{"role": "user", "content": "Hi"}]}
        for _ in range(3):
            answer = client.post(
                f"{api}/openai/v1/chat/completions", json={**chat, "model": "good"}
            )
            assert answer.status_code == 200, answer.text
        for _ in range(2):
            answer = client.post(
                f"{api}/openai/v1/chat/completions", json={**chat, "model": "broken"}
            )
            assert answer.status_code == 502, answer.text

        endpoints = {e["name"]: e for e in overview(client, api)["endpoints"]}

    good, broken, idle = endpoints["good"], endpoints["broken"], endpoints["idle"]
    assert good["endpointId"]
    assert good["status"] == "ready"
    assert (good["requests"], good["outcomes"], good["errorRate"]) == (3, {"ok": 3}, 0)
    assert (good["duration"]["count"], good["firstByte"]["count"]) == (3, 3)
    assert 0 < good["firstByte"]["meanMs"] <= good["duration"]["meanMs"]
    assert (good["promptTokens"], good["completionTokens"]) == (21, 6)
    assert (broken["requests"], broken["outcomes"]) == (2, {"upstream_error": 2})
    assert broken["errorRate"] == 1
    assert broken["duration"] == {"count": 0, "meanMs": None, "p95Ms": None}
    assert (idle["requests"], idle["errorRate"], idle["outcomes"]) == (0, None, {})


# -- who may read it -------------------------------------------------------------------


def test_the_overview_needs_a_key_and_a_role_that_reads_health(
    client: TestClient, api: str, authenticate: Callable[..., str]
) -> None:
    url = f"{api}{OVERVIEW}"
    assert client.get(url, headers={"Authorization": ""}).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer llmops_nope_nope"}).status_code == 401
    with platform_of(client).transaction() as session:
        _, job_key = create_api_key(
            session=session, name="job", role=Role.JOB, training_job_id="0" * 32
        )
    refused = client.get(url, headers={"Authorization": f"Bearer {job_key}"})
    assert refused.status_code == 403, refused.text
    authenticate(client, "viewer")
    assert client.get(url).status_code == 200
