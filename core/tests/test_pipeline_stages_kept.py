"""An orchestrator that no longer knows a pipeline's stages (its workflow vanished, and
the plugin restarted since it last saw it) answers with none: the platform keeps the
stages it recorded, and closes those that had not ended once the pipeline has."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.testing.plugins import PluginInstaller, orchestrator_plugin
from llmops.testing.waiting import wait_for

PLUGIN = orchestrator_plugin(
    "forgetful",
    """
from llmops.capabilities.orchestration import (
    PipelineState, PipelineStatus, StageState, StageStatus,
)
from llmops.testing.plugins import QuietOrchestrator

#: what the tool says of every run: "running" (a runs, b waits), or a state it reports
#: without stages, as after the workflow vanished
SAYS = ["running"]


class Orchestrator(QuietOrchestrator):
    def submit(self, spec):
        return self.status(spec.idempotency_key)

    def status(self, external_id):
        if SAYS[0] == "running":
            return PipelineStatus(
                external_id=external_id, state=PipelineState.RUNNING,
                stages=[
                    StageStatus(name="a", state=StageState.SUCCEEDED, attempts=1),
                    StageStatus(name="b", state=StageState.RUNNING, attempts=2),
                    StageStatus(name="c", state=StageState.PENDING),
                ],
            )
        return PipelineStatus(
            external_id=external_id, state=PipelineState(SAYS[0]), stages=[],
            message="the workflow is gone",
        )
""",
)

STAGES = [
    {"name": "a", "command": ["true"]},
    {"name": "b", "command": ["true"], "dependsOn": ["a"]},
    {"name": "c", "command": ["true"], "dependsOn": ["b"]},
]


@pytest.fixture
def forgetful(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[tuple[TestClient, Any]]:
    module = install("forgetful", PLUGIN)
    settings = make_settings(plugins="forgetful", sync_interval_seconds=0.1)
    with TestClient(create_app(settings)) as client:
        authenticate(client)
        yield client, sys.modules[module]


def _running_pipeline(client: TestClient, api: str) -> str:
    body = {"name": "p", "provider": "forgetful", "stages": STAGES}
    created = client.post(f"{api}/workflows/pipelines", json=body)
    assert created.status_code == 201, created.text
    pipeline_id: str = created.json()["id"]
    return pipeline_id


def _states(pipeline: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for s in pipeline["stages"]}


def _synced_to(client: TestClient, api: str, pipeline_id: str, status: str) -> Any:
    def reached() -> Any:
        pipeline = client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()
        return pipeline if pipeline["status"] == status else None

    return wait_for(reached, what=f"the pipeline to be {status}")


@pytest.mark.parametrize(
    ("ended", "b", "c"),
    [("failed", "failed", "skipped"), ("cancelled", "cancelled", "skipped")],
)
def test_an_ended_pipeline_whose_orchestrator_forgot_its_stages_keeps_them_closed(
    forgetful: tuple[TestClient, Any], api: str, ended: str, b: str, c: str
) -> None:
    client, plugin = forgetful
    pipeline_id = _running_pipeline(client, api)
    assert _states(_synced_to(client, api, pipeline_id, "running")) == {
        "a": "succeeded",
        "b": "running",
        "c": "pending",
    }

    plugin.SAYS[0] = ended
    pipeline = _synced_to(client, api, pipeline_id, ended)

    assert _states(pipeline) == {"a": "succeeded", "b": b, "c": c}
    stages = {s["name"]: s for s in pipeline["stages"]}
    assert stages["b"]["attempts"] == 2, "what was recorded of the stage stays"
    assert stages["b"]["message"] == "the workflow is gone"
    assert stages["a"]["message"] == ""


def test_a_running_pipeline_whose_orchestrator_gives_no_stages_keeps_the_recorded_ones(
    forgetful: tuple[TestClient, Any], api: str
) -> None:
    client, plugin = forgetful
    pipeline_id = _running_pipeline(client, api)
    before = _synced_to(client, api, pipeline_id, "running")

    plugin.SAYS[0] = "pending"
    wait_for(
        lambda: (
            client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()["message"]
            == "the workflow is gone"
        ),
        what="the stageless status to be synced",
    )

    after = client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()
    assert after["stages"] == before["stages"]
