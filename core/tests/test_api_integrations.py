"""The integrations API, health, plugin routes and the experiment routes, through HTTP.

Fake plugins are installed with :func:`llmops.testing.plugins.temporary_plugin` before
the app starts; each test runs on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.capabilities.common import Capability
from llmops.config import CoreSettings
from llmops.integrations import IntegrationRuntime
from llmops.testing.plugins import PluginInstaller as InstallPlugin
from llmops.testing.plugins import memory_tracker_plugin
from llmops.testing.waiting import wait_for

PROBLEM = "application/problem+json"
CANARY = "canary-secret-5b0f9e2d71c4"

BROKEN_PLUGIN = """
raise RuntimeError("cannot import the tool's SDK: boom-41c7")
"""


StartApp = Callable[..., TestClient]


@pytest.fixture
def start(
    install: InstallPlugin,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[StartApp]:
    """Start an app on the test's database; stopped before the plugins are removed."""
    with ExitStack() as stack:

        def start_app(**overrides: Any) -> TestClient:
            client = stack.enter_context(TestClient(create_app(make_settings(**overrides))))
            authenticate(client)
            return client

        yield start_app


@pytest.fixture
def memtrack(install: InstallPlugin) -> str:
    """The module name of an installed (not yet imported) tracking plugin "memtrack"."""
    return install("memtrack", memory_tracker_plugin("memtrack"))


def runtime_of(client: TestClient) -> IntegrationRuntime:
    runtime: IntegrationRuntime = client.app.state.platform.runtime  # type: ignore[attr-defined]
    return runtime


def first_health_round(client: TestClient) -> None:
    """Wait until the background health checks have finished their first round."""
    checker = client.app.state.platform.health  # type: ignore[attr-defined]
    wait_for(lambda: checker.rounds >= 1, what="the first background health round")


def integrations(client: TestClient, api: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"{api}/integrations")
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["items"]}


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].endswith(f"/{slug}")
    return body


def set_enabled(client: TestClient, api: str, name: str, enabled: bool) -> dict[str, Any]:
    response = client.patch(f"{api}/integrations/{name}", json={"enabled": enabled})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["enabled"] is enabled
    return body


def submit_job(client: TestClient, api: str, name: str = "job-one", track: bool = False) -> str:
    """A job; without ``track`` its run is left to the experiment-run route."""
    body = {"name": name, "command": ["true"], "track": track}
    response = client.post(f"{api}/training/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


# -- listing ---------------------------------------------------------------------------


def test_local_is_listed_as_builtin_enabled_loaded_default_orchestrator(
    client: TestClient, api: str
) -> None:
    local = integrations(client, api)["local"]

    assert local["builtin"] is True
    assert local["enabled"] is True
    assert local["loaded"] is True
    assert local["error"] is None
    assert local["capabilities"] == ["orchestration"]
    assert local["defaultFor"] == ["orchestration"]
    assert local["providers"] == {"orchestration": ["local"]}
    assert local["settings"] == {
        "max_parallel": 4,
        "kill_grace_seconds": 1.0,
        "isolation": "auto",
        "inherit_env": [],
        "writable_paths": [],
    }
    defaults = client.get(f"{api}/integrations/defaults").json()["defaults"]
    assert defaults["orchestration"] == "local"
    assert defaults["tracking"] is None


def test_disabling_the_builtin_plugin_is_a_conflict(client: TestClient, api: str) -> None:
    response = client.patch(f"{api}/integrations/local", json={"enabled": False})

    body = assert_problem(response, 409, "conflict")
    assert "built in" in body["detail"]
    assert integrations(client, api)["local"]["enabled"] is True


def test_unknown_plugin_is_not_found(client: TestClient, api: str) -> None:
    assert_problem(client.get(f"{api}/integrations/nosuchplugin"), 404, "not-found")
    assert_problem(
        client.patch(f"{api}/integrations/nosuchplugin", json={"enabled": True}), 404, "not-found"
    )


def test_installed_plugin_is_listed_with_its_metadata(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="memtrack")

    item = integrations(client, api)["memtrack"]

    assert item["builtin"] is False
    assert item["enabled"] is True
    assert item["loaded"] is True
    assert item["version"] == "1.2.3"
    assert item["distribution"] == "llmops-test-memtrack"
    assert item["capabilities"] == ["tracking"]
    assert item["defaultFor"] == ["tracking"]
    assert item["providers"] == {"tracking": ["memtrack"]}
    assert item["links"] == {"ui": "http://tracker.invalid/"}
    assert item["secretsSet"] == {"token": False}
    token_schema = item["settingsSchema"]["properties"]["token"]
    assert {"format": "password", "type": "string", "writeOnly": True} in token_schema["anyOf"]


def test_broken_plugin_is_listed_with_its_error_and_every_other_route_answers(
    start: StartApp, install: InstallPlugin, api: str
) -> None:
    install("broken", BROKEN_PLUGIN)
    client = start(plugins="broken")

    broken = integrations(client, api)["broken"]

    assert broken["enabled"] is True
    assert broken["loaded"] is False
    assert broken["error"]["stage"] == "import"
    assert "RuntimeError" in broken["error"]["error"]
    assert "boom-41c7" in broken["error"]["error"]
    assert client.get(f"{api}/integrations/broken").json()["error"] == broken["error"]
    paths = client.get("/openapi.json").json()["paths"]
    plain_gets = [
        p
        for p, ops in paths.items()
        if "get" in ops
        and "{" not in p
        and not any(q.get("required") for q in ops["get"].get("parameters", []))
    ]
    assert f"{api}/integrations" in plain_gets
    assert f"{api}/health" in plain_gets
    for path in plain_gets:
        assert client.get(path).status_code == 200, path
    assert client.get(f"{api}/integrations/local").status_code == 200
    job_id = submit_job(client, api)
    assert client.get(f"{api}/training/jobs/{job_id}").status_code == 200


# -- enabling and disabling ------------------------------------------------------------


def test_disable_and_enable_take_effect_at_once_and_are_stored(
    memtrack: str,
    api: str,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> None:
    with TestClient(create_app(make_settings(plugins="memtrack"))) as client:
        authenticate(client)
        job_id = submit_job(client, api)
        run = client.post(f"{api}/training/jobs/{job_id}/experiment-run", json={}).json()
        search = client.post(f"{api}/experiments/search", json={})
        assert [r["runId"] for r in search.json()["runs"]] == [run["externalId"]]

        disabled = set_enabled(client, api, "memtrack", False)

        assert disabled["loaded"] is False
        assert disabled["providers"] == {}
        assert not runtime_of(client).plugin_manager.has_plugin("memtrack")
        assert_problem(
            client.post(f"{api}/experiments/search", json={}), 409, "no-provider-enabled"
        )

        enabled = set_enabled(client, api, "memtrack", True)

        assert enabled["loaded"] is True
        assert enabled["providers"] == {"tracking": ["memtrack"]}
        found = client.post(f"{api}/experiments/search", json={})
        assert found.status_code == 200, found.text
        assert [r["runId"] for r in found.json()["runs"]] == [run["externalId"]]

        set_enabled(client, api, "memtrack", False)
    sys.modules.pop(memtrack)

    with TestClient(create_app(make_settings(plugins="memtrack"))) as second:
        authenticate(second)
        item = integrations(second, api)["memtrack"]
        assert item["enabled"] is False
        assert item["loaded"] is False
        assert memtrack not in sys.modules
        assert_problem(
            second.post(f"{api}/experiments/search", json={}), 409, "no-provider-enabled"
        )


def test_enabling_a_plugin_that_was_off_at_start_up_imports_and_loads_it(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="none")
    assert integrations(client, api)["memtrack"]["enabled"] is False
    assert memtrack not in sys.modules

    enabled = set_enabled(client, api, "memtrack", True)

    assert enabled["loaded"] is True
    assert memtrack in sys.modules
    assert client.post(f"{api}/experiments/search", json={}).status_code == 200


# -- configuration ---------------------------------------------------------------------


def put_config(client: TestClient, api: str, name: str, settings: dict[str, Any]) -> httpx.Response:
    response: httpx.Response = client.put(
        f"{api}/integrations/{name}/config", json={"settings": settings}
    )
    return response


def test_config_is_validated_and_applied(start: StartApp, memtrack: str, api: str) -> None:
    client = start(plugins="memtrack")
    old_tracker = runtime_of(client).provider(Capability.TRACKING)[1]

    response = put_config(client, api, "memtrack", {"timeout_seconds": 2.5, "url": "memory://b"})

    assert response.status_code == 200, response.text
    assert response.json()["settings"] == {
        "url": "memory://b",
        "timeout_seconds": 2.5,
        "healthy": True,
    }
    tracker = runtime_of(client).provider(Capability.TRACKING)[1]
    assert tracker is not old_tracker
    assert old_tracker.closed
    assert tracker.settings.url == "memory://b"


def test_config_with_a_wrong_type_is_refused_and_nothing_is_stored(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="memtrack")
    assert put_config(client, api, "memtrack", {"timeout_seconds": 2.5}).status_code == 200
    tracker = runtime_of(client).provider(Capability.TRACKING)[1]

    response = put_config(client, api, "memtrack", {"timeout_seconds": "slow", "url": "memory://x"})

    body = assert_problem(response, 422, "invalid-request")
    assert [e["location"] for e in body["errors"]] == [["timeout_seconds"]]
    settings = client.get(f"{api}/integrations/memtrack").json()["settings"]
    assert settings["timeout_seconds"] == 2.5
    assert settings["url"] == "memory://default"
    assert runtime_of(client).provider(Capability.TRACKING)[1] is tracker


def test_config_with_an_unknown_field_is_refused(start: StartApp, memtrack: str, api: str) -> None:
    client = start(plugins="memtrack")

    response = put_config(client, api, "memtrack", {"colour": "blue"})

    body = assert_problem(response, 422, "invalid-request")
    assert body["fields"] == ["colour"]
    assert "colour" not in client.get(f"{api}/integrations/memtrack").json()["settings"]


def test_config_of_a_disabled_plugin_is_a_conflict(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="none")

    assert_problem(put_config(client, api, "memtrack", {"url": "memory://x"}), 409, "conflict")


def test_secret_settings_are_write_only(start: StartApp, memtrack: str, api: str) -> None:
    client = start(plugins="memtrack")
    responses: list[httpx.Response] = []

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = client.request(method, f"{api}{path}", **kwargs)
        responses.append(response)
        return response

    refused = call(
        "PUT",
        "/integrations/memtrack/config",
        json={"settings": {"token": CANARY, "timeout_seconds": "slow"}},
    )
    assert refused.status_code == 422
    assert call("GET", "/integrations/memtrack").json()["secretsSet"] == {"token": False}

    stored = call("PUT", "/integrations/memtrack/config", json={"settings": {"token": CANARY}})

    assert stored.status_code == 200, stored.text
    assert stored.json()["secretsSet"] == {"token": True}
    assert "token" not in stored.json()["settings"]
    tracker = runtime_of(client).provider(Capability.TRACKING)[1]
    assert tracker.settings.token.get_secret_value() == CANARY

    kept = call("PUT", "/integrations/memtrack/config", json={"settings": {"timeout_seconds": 3}})

    assert kept.json()["secretsSet"] == {"token": True}
    assert kept.json()["settings"]["timeout_seconds"] == 3
    tracker = runtime_of(client).provider(Capability.TRACKING)[1]
    assert tracker.settings.token.get_secret_value() == CANARY
    assert call("GET", "/integrations").status_code == 200
    assert call("GET", "/integrations/memtrack").json()["secretsSet"] == {"token": True}
    assert call("GET", "/integrations/defaults").status_code == 200
    assert call("POST", "/integrations/memtrack/test").json()["ok"] is True
    assert call("GET", "/health").status_code == 200
    assert call("PATCH", "/integrations/memtrack", json={"enabled": True}).status_code == 200

    removed = call("PUT", "/integrations/memtrack/config", json={"settings": {"token": None}})

    assert removed.json()["secretsSet"] == {"token": False}
    assert runtime_of(client).provider(Capability.TRACKING)[1].settings.token is None
    for response in responses:
        assert CANARY not in response.text, (response.request.method, response.request.url)


def test_invalid_secret_from_the_environment_is_not_shown_in_the_load_error(
    start: StartApp, memtrack: str, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_MEMTRACK__TOKEN", json.dumps([CANARY]))
    client = start(plugins="memtrack")

    listed = client.get(f"{api}/integrations")
    item = client.get(f"{api}/integrations/memtrack")

    error = item.json()["error"]
    assert error["stage"] == "configure"
    assert "token" in error["error"]
    assert CANARY not in listed.text
    assert CANARY not in item.text


# -- defaults --------------------------------------------------------------------------


def test_two_providers_of_the_same_priority_wait_for_an_admin_to_choose_and_guess_nothing(
    start: StartApp, install: InstallPlugin, api: str
) -> None:
    """Before: the first by name won, so the example plugin took tracking over."""
    install("alpha", memory_tracker_plugin("alpha"))
    install("beta", memory_tracker_plugin("beta"))
    client = start(plugins="alpha,beta")
    listed = integrations(client, api)
    assert (listed["alpha"]["defaultFor"], listed["beta"]["defaultFor"]) == ([], [])
    assert listed["alpha"]["choiceNeededFor"] == listed["beta"]["choiceNeededFor"] == ["tracking"]
    defaults = client.get(f"{api}/integrations/defaults").json()
    assert defaults["defaults"]["tracking"] is None
    [choice] = defaults["choicesNeeded"]
    assert (choice["capability"], choice["providers"]) == ("tracking", ["alpha", "beta"])
    assert "PUT /llm-ops/v1/integrations/defaults/tracking" in choice["detail"]
    health = client.get(f"{api}/health").json()
    assert health["choicesNeeded"] == defaults["choicesNeeded"]
    assert health["status"] != "ok"

    job = client.post(
        f"{api}/training/jobs", json={"name": "tune", "command": ["true"], "track": True}
    )
    assert_problem(job, 409, "provider-choice-needed")
    assert job.json()["providers"] == ["alpha", "beta"]
    assert client.get(f"{api}/training/jobs").json()["items"] == []  # nothing was written

    unknown = client.put(f"{api}/integrations/defaults/tracking", json={"provider": "nope"})
    assert_problem(unknown, 422, "invalid-request")
    not_offered = client.put(f"{api}/integrations/defaults/serving", json={"provider": "beta"})
    assert_problem(not_offered, 422, "invalid-request")
    bad_capability = client.put(f"{api}/integrations/defaults/teleport", json={"provider": "beta"})
    assert_problem(bad_capability, 422, "validation-error")
    assert integrations(client, api)["alpha"]["choiceNeededFor"] == ["tracking"]

    chosen = client.put(f"{api}/integrations/defaults/tracking", json={"provider": "beta"})

    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["defaults"]["tracking"] == "beta"
    assert chosen.json()["choicesNeeded"] == []
    listed = integrations(client, api)
    assert listed["beta"]["defaultFor"] == ["tracking"]
    assert listed["alpha"]["defaultFor"] == []
    assert listed["alpha"]["choiceNeededFor"] == listed["beta"]["choiceNeededFor"] == []
    assert client.get(f"{api}/integrations/defaults").json()["defaults"]["tracking"] == "beta"
    assert client.get(f"{api}/health").json()["choicesNeeded"] == []
    assert runtime_of(client).provider(Capability.TRACKING)[0] == "beta"


def test_the_plugin_with_the_highest_declared_priority_serves_a_capability_nobody_chose(
    start: StartApp, install: InstallPlugin, api: str
) -> None:
    install("alpha", memory_tracker_plugin("alpha", priority=-50))  # an example plugin's
    install("beta", memory_tracker_plugin("beta"))
    client = start(plugins="alpha,beta")

    listed = integrations(client, api)
    assert listed["beta"]["defaultFor"] == ["tracking"]
    assert listed["alpha"]["defaultFor"] == []
    assert client.get(f"{api}/integrations/defaults").json()["choicesNeeded"] == []
    assert runtime_of(client).provider(Capability.TRACKING)[0] == "beta"
    # an admin's choice still beats the priority
    assert (
        client.put(f"{api}/integrations/defaults/tracking", json={"provider": "alpha"}).json()[
            "defaults"
        ]["tracking"]
        == "alpha"
    )
    assert runtime_of(client).provider(Capability.TRACKING)[0] == "alpha"


UNCONFIGURED_TRACKER = """
import llmops
from llmops.capabilities.common import Capability
from llmops.plugins.info import PluginInfo, PluginSettings


class Settings(PluginSettings):
    url: str | None = None


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="later", version="1.0", display_name="Later",
        capabilities=frozenset({Capability.TRACKING}), settings_model=Settings,
    )


@llmops.hookimpl
def llmops_tracking(settings, context):
    return None if settings.url is None else object()
"""


def test_a_plugin_whose_tool_is_not_configured_offers_no_provider_and_says_so(
    start: StartApp, install: InstallPlugin, api: str
) -> None:
    install("later", UNCONFIGURED_TRACKER)
    install("beta", memory_tracker_plugin("beta"))
    client = start(plugins="later,beta")

    later = integrations(client, api)["later"]

    assert later["loaded"] is True
    assert later["error"] is None
    assert later["notConfiguredFor"] == ["tracking"]
    assert later["providers"] == {}
    assert later["choiceNeededFor"] == []  # no tie with the one that works
    assert integrations(client, api)["beta"]["defaultFor"] == ["tracking"]


def test_a_priority_out_of_range_is_a_load_error_of_that_plugin(
    start: StartApp, install: InstallPlugin, api: str
) -> None:
    install("alpha", memory_tracker_plugin("alpha", priority=1000))
    client = start(plugins="alpha")
    error = integrations(client, api)["alpha"]["error"]
    assert error is not None
    assert "priority" in error["error"]


# -- connection test and health --------------------------------------------------------


def test_connection_test_calls_the_providers_health_check(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="memtrack", health_cache_seconds=60)
    calls = sys.modules[memtrack].CALLS
    first_health_round(client)
    assert calls["health"] == 1  # the background round's; the next is 60 s away

    first = client.post(f"{api}/integrations/memtrack/test")
    second = client.post(f"{api}/integrations/memtrack/test")

    assert first.status_code == 200, first.text
    assert first.json()["ok"] is True
    [result] = first.json()["results"]
    assert result["plugin"] == "memtrack"
    assert result["capability"] == "tracking"
    assert result["provider"] == "memtrack"
    assert result["status"] == "ok"
    assert second.json()["ok"] is True
    assert calls["health"] == 3, "each connection test checks now"

    assert put_config(client, api, "memtrack", {"healthy": False}).status_code == 200
    down = client.post(f"{api}/integrations/memtrack/test").json()

    assert down["ok"] is False
    assert down["results"][0]["status"] == "down"
    assert down["results"][0]["detail"] == "told to be down"
    # the rebuilt provider also wakes the background round: it may have run its check
    assert calls["health"] in {4, 5}


def test_connection_test_of_a_plugin_without_providers_is_not_ok(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="none")

    response = client.post(f"{api}/integrations/memtrack/test")

    assert response.status_code == 200, response.text
    assert response.json() == {"name": "memtrack", "ok": False, "results": []}


def test_health_lists_each_provider_from_the_background_checks(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="memtrack", health_cache_seconds=60)
    calls = sys.modules[memtrack].CALLS
    first_health_round(client)

    first = client.get(f"{api}/health")

    assert first.status_code == 200, first.text
    body = first.json()
    assert body["cached"] is True
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    by_provider = {(i["capability"], i["provider"]): i for i in body["integrations"]}
    assert set(by_provider) == {("orchestration", "local"), ("tracking", "memtrack")}
    tracker = by_provider[("tracking", "memtrack")]
    assert tracker["plugin"] == "memtrack"
    assert tracker["status"] == "ok"
    assert tracker["latencyMs"] is not None
    assert tracker["latencyMs"] >= 0
    assert tracker["checkedAt"]
    assert calls["health"] == 1  # the background round's, none on the request's path

    second = client.get(f"{api}/health")

    assert second.json()["cached"] is True
    assert second.json()["integrations"] == body["integrations"]
    assert calls["health"] == 1


def test_health_reports_a_provider_that_is_down(start: StartApp, memtrack: str, api: str) -> None:
    client = start(plugins="memtrack", health_cache_seconds=60)
    assert put_config(client, api, "memtrack", {"healthy": False}).status_code == 200

    def tracker_down() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"{api}/health").json()
        tracker = next(i for i in body["integrations"] if i["plugin"] == "memtrack")
        return body if tracker["status"] == "down" else None

    # the rebuilt provider is checked by the next round, which the rebuild starts at once
    body = wait_for(tracker_down, timeout=10, what="the reconfigured tracker to be checked")

    assert body["status"] == "degraded"
    tracker = next(i for i in body["integrations"] if i["plugin"] == "memtrack")
    assert tracker["detail"] == "told to be down"


# -- experiment routes -----------------------------------------------------------------


def test_experiment_run_of_a_training_job_through_the_tracker(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="memtrack")
    plugin = sys.modules[memtrack]
    job_id = submit_job(client, api)
    run_url = f"{api}/training/jobs/{job_id}/experiment-run"

    created = client.post(run_url, json={"params": {"lr": "0.1"}})
    again = client.post(run_url, json={})

    assert created.status_code == 201, created.text
    run = created.json()
    assert run["trainingJobId"] == job_id
    assert client.get(f"{api}/training/jobs/{job_id}").json()["experimentRunId"] == run["id"]
    assert run["provider"] == "memtrack"
    assert run["experimentName"] == "default"
    assert run["status"] == "running"
    assert run["params"] == {"lr": "0.1"}
    assert run["degraded"] is False
    assert again.status_code == 200, again.text
    assert again.json()["id"] == run["id"]
    assert plugin.CALLS["create_run"] == 1
    fetched = client.get(run_url)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["id"] == run["id"]
    assert fetched.json()["externalId"] == run["externalId"]

    points = [{"key": "loss", "value": 1.0 / (step + 1), "step": step} for step in range(5)]
    logged = client.post(f"{run_url}/metrics", json={"metrics": points})

    assert logged.status_code == 200, logged.text
    assert logged.json()["accepted"] == 5
    assert logged.json()["batches"] == 3
    assert logged.json()["degraded"] is False
    assert [len(batch) for batch in plugin.BATCHES] == [2, 2, 1]
    assert client.get(run_url).json()["latestMetrics"] == {"loss": 0.2}

    search = client.post(f"{api}/experiments/search", json={"experiments": ["default"]})

    assert search.status_code == 200, search.text
    [found] = search.json()["runs"]
    assert found["runId"] == run["externalId"]
    assert found["latestMetrics"] == {"loss": 0.2}
    assert found["tags"]["llmops.training_job_id"] == job_id


def test_a_run_made_for_a_job_that_has_already_ended_is_ended_too(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="memtrack")
    job_id = submit_job(client, api)  # untracked; `true` ends at once
    wait_for(
        lambda: client.get(f"{api}/training/jobs/{job_id}").json()["status"] == "succeeded",
        timeout=30,
        what="the job to end",
    )
    run_url = f"{api}/training/jobs/{job_id}/experiment-run"

    created = client.post(run_url, json={})

    assert created.status_code == 201, created.text
    wait_for(
        lambda: client.get(run_url).json()["status"] == "finished",
        timeout=30,
        what="the run to be ended",
    )


def test_experiment_routes_without_a_tracking_plugin_answer_409(
    client: TestClient, api: str
) -> None:
    job_id = submit_job(client, api, track=True)  # no tracker: no run, nothing refused
    assert client.get(f"{api}/training/jobs/{job_id}").json()["experimentRunId"] is None
    run_url = f"{api}/training/jobs/{job_id}/experiment-run"

    body = assert_problem(client.post(run_url, json={}), 409, "no-provider-enabled")
    assert body["capability"] == "tracking"
    assert_problem(client.post(f"{api}/experiments/search", json={}), 409, "no-provider-enabled")
    assert_problem(client.get(run_url), 404, "not-found")  # no run was ever made


def test_experiment_run_of_a_disabled_tracker_is_stale_and_refuses_metrics(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="memtrack")
    job_id = submit_job(client, api)
    run_url = f"{api}/training/jobs/{job_id}/experiment-run"
    run = client.post(run_url, json={}).json()
    set_enabled(client, api, "memtrack", False)

    stale = client.get(run_url)
    metrics = client.post(f"{run_url}/metrics", json={"metrics": [{"key": "loss", "value": 1}]})

    assert stale.status_code == 200, stale.text
    assert stale.json()["id"] == run["id"]
    assert stale.json()["stale"] is True
    assert stale.json()["degraded"] is True
    assert_problem(metrics, 409, "no-provider-enabled")


# -- plugin routes ---------------------------------------------------------------------


def test_plugin_routes_are_served_under_the_plugin_prefix_while_enabled(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="memtrack")
    hello = f"{api}/plugins/memtrack/hello"

    served = client.get(hello)

    assert served.status_code == 200, served.text
    assert served.json() == {"plugin": "memtrack", "url": "memory://default"}

    set_enabled(client, api, "memtrack", False)
    assert_problem(client.get(hello), 404, "not-found")
    assert sys.modules[memtrack].CALLS["hello"] == 1

    set_enabled(client, api, "memtrack", True)
    assert client.get(hello).status_code == 200


def test_plugin_routes_of_a_plugin_enabled_after_start_up_are_served(
    start: StartApp, memtrack: str, api: str
) -> None:
    client = start(plugins="none")
    hello = f"{api}/plugins/memtrack/hello"
    assert_problem(client.get(hello), 404, "not-found")

    set_enabled(client, api, "memtrack", True)

    assert client.get(hello).json() == {"plugin": "memtrack", "url": "memory://default"}


def test_plugin_routes_are_served_when_the_console_is_mounted(
    memtrack: str,
    api: str,
    make_settings: Callable[..., CoreSettings],
    tmp_path: Path,
    authenticate: Callable[..., str],
) -> None:
    console = tmp_path / "console"
    console.mkdir()
    (console / "index.html").write_text("<!doctype html><title>llmops</title>")
    app = create_app(make_settings(plugins="memtrack"), console_dir=console)

    with TestClient(app) as client:
        authenticate(client)
        assert client.get("/").status_code == 200
        assert client.get(f"{api}/integrations").status_code == 200
        assert client.get(f"{api}/plugins/memtrack/hello").status_code == 200
