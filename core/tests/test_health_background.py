"""Health answered from background checks: /health, /readyz and the integrations' health
answer at once from the last round, whatever the tools or the database do.

The tool behind the test plugin "hangtrack" is a module-level switch: ``MODE[0]`` is
"ok", "down" or "hang" (its ``health()`` then waits on ``RELEASE``, set when the test
ends, for up to 30 s). Timings are bounded with wide margins only.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from llmops.api.app import create_app
from llmops.capabilities.common import Capability
from llmops.config import CoreSettings
from llmops.platform import Platform
from llmops.testing.plugins import PluginInstaller
from llmops.testing.waiting import wait_for

#: an answer "at once": far below the hung check's 30 s and above any CI hiccup
AT_ONCE = 1.0

_TOOL = """
import threading
from collections import Counter

import llmops
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.plugins.info import PluginInfo, PluginSettings

MODE = [{mode!r}]
RELEASE = threading.Event()
CALLS = Counter()


class Settings(PluginSettings):
    detail: str = "fine"


class Tracker:
    def __init__(self, settings):
        self.settings = settings

    def health(self):
        CALLS["health"] += 1
        if MODE[0] == "hang":
            RELEASE.wait(30)
            return Health(status=HealthStatus.OK, detail="answered late")
        if MODE[0] == "down":
            return Health(status=HealthStatus.DOWN, detail="told to be down")
        return Health(status=HealthStatus.OK, detail=self.settings.detail)


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="hangtrack",
        version="1.0.0",
        display_name="A tracker whose tool may hang",
        capabilities=frozenset({{Capability.TRACKING}}),
        settings_model=Settings,
    )


@llmops.hookimpl
def llmops_tracking(settings, context):
    return Tracker(settings)
"""

Start = Callable[..., tuple[TestClient, Any]]


@pytest.fixture
def start(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[Start]:
    """``start(mode, **settings)``: the app with "hangtrack" (and the built-in "local");
    returns the client and the plugin's module. The hung check is released before the
    app stops."""
    with ExitStack() as stack:

        def start_app(mode: str = "ok", **overrides: Any) -> tuple[TestClient, Any]:
            module = install("hangtrack", _TOOL.format(mode=mode))
            settings = make_settings(plugins="hangtrack", **overrides)
            client = stack.enter_context(TestClient(create_app(settings, start_worker=False)))
            tool = sys.modules[module]
            stack.callback(tool.RELEASE.set)  # runs before the app stops
            authenticate(client)
            return client, tool

        yield start_app


def platform_of(client: TestClient) -> Platform:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform


def timed_get(client: TestClient, url: str) -> tuple[Any, float]:
    started = time.monotonic()
    response = client.get(url)
    return response, time.monotonic() - started


def entries(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["plugin"]: i for i in body["integrations"]}


def health_when(
    client: TestClient, api: str, predicate: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll /health (each answer at once) until ``predicate(body)``."""

    def answer() -> dict[str, Any] | None:
        response, took = timed_get(client, f"{api}/health")
        assert response.status_code == 200, response.text
        assert took < AT_ONCE, f"/health took {took:.2f} s"
        body: dict[str, Any] = response.json()
        return body if predicate(body) else None

    found = wait_for(answer, timeout=10, what=what)
    assert found is not None
    return found


def tracker_is(status: str, detail: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(body: dict[str, Any]) -> bool:
        entry = entries(body).get("hangtrack")
        return (
            entry is not None
            and entry["status"] == status
            and (detail is None or entry["detail"] == detail)
        )

    return check


# -- a hung tool -----------------------------------------------------------------------


def test_health_answers_at_once_while_a_tool_hangs_and_reports_it_down_after_its_timeout(
    start: Start, api: str
) -> None:
    client, tool = start("hang", health_check_timeout_seconds=0.5, health_cache_seconds=0.2)

    body = health_when(client, api, tracker_is("down"), "the hung check to be reported down")

    by_plugin = entries(body)
    assert by_plugin["hangtrack"]["detail"] == "no answer within 0.5 s"
    assert by_plugin["hangtrack"]["checkedAt"]
    assert by_plugin["local"]["status"] == "ok"
    assert by_plugin["local"]["latencyMs"] is not None
    assert body["status"] == "degraded"
    assert body["database"]["status"] == "ok"
    assert body["cached"] is True
    assert tool.CALLS["health"] == 1, "the hung check is still the first one"
    ready, took = timed_get(client, "/readyz")
    assert ready.status_code == 200, ready.text
    assert took < AT_ONCE
    listed, took = timed_get(client, f"{api}/integrations/hangtrack")
    assert listed.status_code == 200, listed.text
    assert took < AT_ONCE
    assert [h["status"] for h in listed.json()["health"]] == ["down"]


def test_before_its_first_check_finishes_a_provider_is_unknown_not_checked_yet(
    start: Start, api: str
) -> None:
    client, _ = start("hang", health_check_timeout_seconds=30)

    body = health_when(
        client,
        api,
        lambda b: entries(b)["local"]["status"] == "ok",
        "the built-in provider's first check",
    )

    tracker = entries(body)["hangtrack"]
    assert (tracker["status"], tracker["detail"]) == ("unknown", "not checked yet")
    assert tracker["latencyMs"] is None
    ready, took = timed_get(client, "/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "database": "ok"})
    assert took < AT_ONCE


def test_a_hung_check_is_not_started_again_and_its_late_answer_is_used(
    start: Start, api: str
) -> None:
    client, tool = start("hang", health_check_timeout_seconds=0.2, health_cache_seconds=60)
    checker = platform_of(client).health
    health_when(client, api, tracker_is("down"), "the hung check to be reported down")

    for _ in range(3):  # rounds while the first check still hangs
        checker.run_round()
    started = time.monotonic()
    tested = client.post(f"{api}/integrations/hangtrack/test")
    took = time.monotonic() - started

    assert tested.status_code == 200, tested.text
    assert took < AT_ONCE + 0.2
    assert tested.json()["ok"] is False
    assert tested.json()["results"][0]["detail"] == "no answer within 0.2 s"
    assert tool.CALLS["health"] == 1, "no second check against the hung tool"
    assert sum(t.name.startswith("llmops-health-hangtrack") for t in threading.enumerate()) == 1

    tool.RELEASE.set()

    health_when(client, api, tracker_is("ok", "answered late"), "the late answer")
    assert tool.CALLS["health"] == 1


def test_a_recovered_tool_is_ok_again_on_the_next_round(start: Start, api: str) -> None:
    client, tool = start("down", health_cache_seconds=0.1)
    health_when(client, api, tracker_is("down", "told to be down"), "the tool to be down")

    tool.MODE[0] = "ok"

    body = health_when(client, api, tracker_is("ok", "fine"), "the tool to be ok again")
    assert body["status"] == "ok"


def test_the_connection_test_is_bounded_by_the_check_timeout(start: Start, api: str) -> None:
    client, _ = start("hang", health_check_timeout_seconds=0.3)

    started = time.monotonic()
    tested = client.post(f"{api}/integrations/hangtrack/test")

    assert time.monotonic() - started < AT_ONCE + 0.3
    assert tested.status_code == 200, tested.text
    [result] = tested.json()["results"]
    assert (result["status"], result["detail"]) == ("down", "no answer within 0.3 s")


# -- changes between rounds ------------------------------------------------------------


def test_a_settings_change_is_checked_by_the_next_round_and_a_removed_provider_is_gone(
    start: Start, api: str
) -> None:
    client, _ = start("ok", health_cache_seconds=60)
    health_when(client, api, tracker_is("ok", "fine"), "the first round")

    changed = client.put(
        f"{api}/integrations/hangtrack/config", json={"settings": {"detail": "second"}}
    )
    assert changed.status_code == 200, changed.text

    # the rebuilt provider wakes the background checks: no 60 s wait for the next round
    health_when(client, api, tracker_is("ok", "second"), "the rebuilt provider's check")

    disabled = client.patch(f"{api}/integrations/hangtrack", json={"enabled": False})
    assert disabled.status_code == 200, disabled.text
    body = client.get(f"{api}/health").json()
    assert "hangtrack" not in entries(body)
    assert "local" in entries(body)


def test_a_circuit_that_opens_between_rounds_shows_degraded_at_once(start: Start, api: str) -> None:
    client, _ = start("ok", health_cache_seconds=60, circuit_failure_threshold=2)
    health_when(client, api, tracker_is("ok"), "the first round")
    breaker = platform_of(client).runtime.breaker(Capability.TRACKING, "hangtrack")

    breaker.record_failure("refused-7c1e")
    breaker.record_failure("refused-7c1e")

    tracker = entries(client.get(f"{api}/health").json())["hangtrack"]
    assert (tracker["status"], tracker["circuit"]) == ("degraded", "open")
    assert "refused-7c1e" in tracker["detail"]


def test_the_integration_up_gauge_is_set_by_the_background_round(start: Start, api: str) -> None:
    client, _ = start("down", health_cache_seconds=0.1)
    gauge = 'llmops_integration_up{capability="tracking",plugin="hangtrack",provider="hangtrack"}'

    def scraped(value: str) -> bool:
        return f"{gauge} {value}" in client.get("/metrics").text

    wait_for(lambda: scraped("0.0"), timeout=10, what="the gauge without a /health call")


# -- the database ----------------------------------------------------------------------


def refusing_engine() -> Engine:
    def refuse() -> Any:
        raise ConnectionRefusedError("database refused-3f9a")

    return create_engine("sqlite://", creator=refuse)


def hanging_engine(release: threading.Event) -> Engine:
    def hang() -> Any:
        release.wait(30)
        raise ConnectionRefusedError("gave up")

    return create_engine("sqlite://", creator=hang)


def test_readyz_is_503_from_the_background_check_while_the_database_is_down(
    start: Start, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = start("ok", health_cache_seconds=0.1)
    platform = platform_of(client)
    assert client.get("/readyz").status_code == 200
    monkeypatch.setattr(platform, "engine", refusing_engine())

    def ready_is(status: int) -> Any:
        response, took = timed_get(client, "/readyz")
        assert took < AT_ONCE
        return response if response.status_code == status else None

    down = wait_for(lambda: ready_is(503), timeout=10, what="readiness to see the database down")
    assert down.json()["status"] == "down"
    assert "refused-3f9a" in down.json()["database"]
    body = client.get(f"{api}/health").json()
    assert body["status"] == "down"
    assert body["database"]["status"] == "down"
    assert "refused-3f9a" in body["database"]["detail"]

    monkeypatch.undo()

    wait_for(lambda: ready_is(200), timeout=10, what="readiness to see the database again")


def test_readyz_answers_at_once_while_the_database_hangs(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = start("ok", health_cache_seconds=0.1, health_check_timeout_seconds=0.3)
    release = threading.Event()
    monkeypatch.setattr(platform_of(client), "engine", hanging_engine(release))
    try:

        def ready_down() -> Any:
            response, took = timed_get(client, "/readyz")
            assert took < AT_ONCE
            return response if response.status_code == 503 else None

        down = wait_for(ready_down, timeout=10, what="readiness to give up on the database")
        assert down.json()["database"] == "no answer within 0.3 s"
    finally:
        release.set()
