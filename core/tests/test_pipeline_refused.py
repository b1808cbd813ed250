"""A pipeline its orchestrator refuses: the answer says why, the pipeline records it, and
a retry submits it again under its first idempotency key."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.testing.plugins import PluginInstaller, orchestrator_plugin

PLUGIN = orchestrator_plugin(
    "picky",
    """
from llmops.capabilities.orchestration import (
    PipelineState, PipelineStatus, StageState, StageStatus,
)
from llmops.errors import IntegrationRejected
from llmops.testing.plugins import QuietOrchestrator

REFUSE = [True]
KEYS = []


class Orchestrator(QuietOrchestrator):
    def submit(self, spec):
        KEYS.append(spec.idempotency_key)
        if REFUSE[0]:
            raise IntegrationRejected("quota exceeded")
        return self.status(spec.idempotency_key)

    def status(self, external_id):
        return PipelineStatus(
            external_id=external_id, state=PipelineState.SUCCEEDED,
            stages=[StageStatus(name="a", state=StageState.SUCCEEDED)],
        )
""",
)


@pytest.fixture
def picky(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[tuple[TestClient, Any]]:
    module = install("picky", PLUGIN)
    with TestClient(create_app(make_settings(plugins="picky"))) as client:
        authenticate(client)
        yield client, sys.modules[module]


def test_a_refused_pipeline_says_why_and_can_be_submitted_again(
    picky: tuple[TestClient, Any], api: str
) -> None:
    client, plugin = picky
    body = {"name": "p", "provider": "picky", "stages": [{"name": "a", "command": ["true"]}]}
    refused = client.post(f"{api}/workflows/pipelines", json=body)
    assert refused.status_code == 502
    assert "quota exceeded" in refused.json()["detail"]

    [pipeline] = client.get(f"{api}/workflows/pipelines").json()["items"]
    assert pipeline["status"] == "failed"
    assert "quota exceeded" in pipeline["message"]
    operations = client.get(f"{api}/operations", params={"resourceId": pipeline["id"]}).json()
    assert [o["status"] for o in operations["items"]] == ["dead"]

    plugin.REFUSE[0] = False
    retried = client.post(f"{api}/workflows/pipelines/{pipeline['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "succeeded"
    assert plugin.KEYS == [f"pipeline-{pipeline['id']}"] * 2  # the same key both times
