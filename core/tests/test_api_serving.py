"""Serving endpoints through a serving plugin, with an in-memory backend as the tool."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.db.models import ServingDeployment
from llmops.secrets import is_encrypted
from llmops.services import serving
from llmops.testing.plugins import memory_serving_plugin, temporary_plugin
from llmops.testing.waiting import wait_for

PLUGIN = memory_serving_plugin("memserve")


@pytest.fixture
def serving_client(
    tmp_path: Path, make_settings: Callable[..., CoreSettings], authenticate: Callable[..., str]
) -> Iterator[tuple[TestClient, Any]]:
    with (
        temporary_plugin(tmp_path, "memserve", PLUGIN) as module,
        TestClient(create_app(make_settings(plugins="memserve"))) as client,
    ):
        authenticate(client)
        yield client, sys.modules[module]


def test_frameworks_lists_the_enabled_serving_backend(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    client, _ = serving_client
    frameworks = client.get(f"{api}/serving/frameworks").json()
    assert frameworks == [
        {
            "name": "memory",
            "displayName": "In-memory",
            "plugin": "memserve",
            "protocols": ["openai"],
            "supportsAutoscaling": True,
            "supportsCanary": True,
            "supportsGpu": False,
            "supportsScaleToZero": False,
            "scaleMetrics": [],
            "runtimes": [],
            "default": True,
        }
    ]


def test_the_backends_credentials_in_an_inference_target_are_encrypted_at_rest(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    """Before: the target's headers (the framework's own credentials) sat in clear in
    serving_deployments.status."""
    client, _ = serving_client
    platform = client.app.state.platform  # type: ignore[attr-defined]
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///v1"}).json()
    endpoint = client.post(
        f"{api}/serving/endpoints", json={"name": "chat", "modelId": model["id"]}
    ).json()

    def stored() -> tuple[str, ServingDeployment]:
        with platform.sessions() as session:
            row = session.scalars(select(ServingDeployment)).one()
            session.expunge(row)
        raw = json.dumps(row.status)
        return raw, row

    raw, row = stored()
    assert "tool-secret" not in raw
    assert is_encrypted(row.status["target"]["headers"]["Authorization"])
    target = serving.inference_target(platform.runtime, row)
    assert target is not None
    assert target.headers == {"Authorization": "Bearer tool-secret"}  # what the gateway sends
    # each sync stores the status again, encrypted again
    client.get(f"{api}/serving/endpoints/{endpoint['id']}/deployment").raise_for_status()
    again, row = stored()
    assert "tool-secret" not in again
    assert again != raw  # a sync did happen (a new token and check time)


def test_the_models_list_names_endpoints_not_ready_yet_with_their_state(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    """Before: an endpoint still deploying was missing from /openai/v1/models, so a client
    could not tell it from one that does not exist."""
    client, plugin = serving_client
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///v1"}).json()
    for name in ("chat", "later"):
        created = client.post(
            f"{api}/serving/endpoints", json={"name": name, "modelId": model["id"]}
        )
        assert created.status_code == 201, created.text
    plugin.OBJECTS["mem-later"]["test_state"] = "deploying"  # its framework: on its way
    later = next(
        e for e in client.get(f"{api}/serving/endpoints").json()["items"] if e["name"] == "later"
    )
    client.get(f"{api}/serving/endpoints/{later['id']}/deployment")  # a read syncs its state

    listed = client.get(f"{api}/openai/v1/models")

    assert listed.status_code == 200, listed.text
    models = {m["id"]: m for m in listed.json()["data"]}
    assert (models["chat"]["ready"], models["chat"]["state"]) == (True, "ready")
    assert (models["later"]["ready"], models["later"]["state"]) == (False, "deploying")
    assert {m["object"] for m in models.values()} == {"model"}
    answer = client.post(
        f"{api}/openai/v1/chat/completions",
        json={"model": "later", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.status_code == 503, answer.text  # listed, but not served yet
    assert "is deploying, not ready" in answer.text


def test_endpoint_is_deployed_updated_with_a_canary_promoted_and_deleted(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    client, plugin = serving_client
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///v1"}).json()
    created = client.post(
        f"{api}/serving/endpoints",
        json={
            "name": "chat",
            "modelId": model["id"],
            "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targetOngoingRequests": 4},
            "options": {"num_cpus": 1, "served_model_name": "x"},
        },
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["framework"] == "memory"
    assert endpoint["status"] == "ready"
    assert plugin.CALLS == [("deploy", f"endpoint-{endpoint['id']}")]

    deployment = client.get(f"{api}/serving/endpoints/{endpoint['id']}/deployment").json()
    assert deployment["state"] == "ready"
    assert deployment["spec"]["autoscaling"]["maxReplicas"] == 3
    # the user's option names come back as given; the backend's credentials never do
    assert deployment["spec"]["options"] == {"num_cpus": 1, "served_model_name": "x"}
    assert deployment["status"]["target"]["headers"] == {"Authorization": "<redacted>"}
    assert "tool-secret" not in client.get(f"{api}/serving/endpoints/{endpoint['id']}").text
    assert deployment["status"]["traffic"] == [
        {"tag": "stable", "modelUri": "file:///v1", "percent": 100}
    ]

    canary = client.patch(
        f"{api}/serving/endpoints/{endpoint['id']}/deployment",
        json={"canary": {"modelUri": "file:///v2", "trafficPercent": 10}},
    ).json()
    assert [t["percent"] for t in canary["status"]["traffic"]] == [90, 10]

    promoted = client.patch(
        f"{api}/serving/endpoints/{endpoint['id']}/deployment", json={"promoteCanary": True}
    ).json()
    assert promoted["status"]["traffic"] == [
        {"tag": "stable", "modelUri": "file:///v2", "percent": 100}
    ]

    assert client.delete(f"{api}/serving/endpoints/{endpoint['id']}").status_code == 204
    assert plugin.CALLS[-1] == ("delete", "mem-chat")
    assert client.get(f"{api}/serving/endpoints/{endpoint['id']}").status_code == 404


def test_a_new_model_version_is_rolled_out_by_its_catalog_id(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    client, plugin = serving_client
    first = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///v1"}).json()
    second = client.post(
        f"{api}/catalog/models", json={"name": "m2", "version": "2", "uri": "file:///v2"}
    ).json()
    endpoint = client.post(
        f"{api}/serving/endpoints", json={"name": "chat", "modelId": first["id"]}
    ).json()

    missing = client.patch(
        f"{api}/serving/endpoints/{endpoint['id']}/deployment", json={"modelId": "nope"}
    )
    assert missing.status_code == 404
    assert plugin.CALLS == [("deploy", f"endpoint-{endpoint['id']}")]

    rolled = client.patch(
        f"{api}/serving/endpoints/{endpoint['id']}/deployment", json={"modelId": second["id"]}
    )

    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["spec"]["modelUri"] == "file:///v2"
    assert rolled.json()["status"]["traffic"] == [
        {"tag": "stable", "modelUri": "file:///v2", "percent": 100}
    ]
    assert client.get(f"{api}/serving/endpoints/{endpoint['id']}").json()["modelId"] == second["id"]


def test_an_endpoint_its_framework_lost_is_deployed_again_by_the_worker(
    tmp_path: Path,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> None:
    settings = make_settings(plugins="memserve", serving_sync_interval_seconds=0.2)
    with (
        temporary_plugin(tmp_path, "memserve", PLUGIN) as module,
        TestClient(create_app(settings)) as client,
    ):
        authenticate(client)
        plugin = sys.modules[module]
        model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///v1"})
        endpoint = client.post(
            f"{api}/serving/endpoints", json={"name": "chat", "modelId": model.json()["id"]}
        ).json()
        assert plugin.CALLS == [("deploy", f"endpoint-{endpoint['id']}")]

        plugin.OBJECTS.clear()  # the framework lost it (the local Ray stopped, say)

        wait_for(lambda: len(plugin.CALLS) == 2, timeout=10, what="a second deploy")
        assert plugin.CALLS[1] == ("deploy", f"endpoint-{endpoint['id']}")
        deployment = client.get(f"{api}/serving/endpoints/{endpoint['id']}/deployment").json()
        assert deployment["state"] == "ready"
        assert deployment["spec"]["modelUri"] == "file:///v1"


def test_bad_endpoint_requests_change_nothing(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    client, plugin = serving_client
    no_uri = client.post(f"{api}/catalog/models", json={"name": "bare"}).json()
    with_uri = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///m"}).json()
    cases = [
        {"name": "Bad_Name", "modelId": with_uri["id"]},
        {"name": "x", "modelId": no_uri["id"]},
        {"name": "x", "modelId": with_uri["id"], "framework": "nope"},
        {
            "name": "x",
            "modelId": with_uri["id"],
            "autoscaling": {"minReplicas": 5, "maxReplicas": 2},
        },
        {"name": "x", "modelId": "missing"},
    ]
    statuses = [client.post(f"{api}/serving/endpoints", json=c).status_code for c in cases]
    assert statuses == [422, 422, 409, 422, 404]
    assert plugin.CALLS == []
    assert client.get(f"{api}/serving/endpoints").json()["items"] == []


def test_a_disabled_serving_plugin_keeps_its_endpoints_readable_and_stale(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    client, _ = serving_client
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///m"}).json()
    endpoint = client.post(
        f"{api}/serving/endpoints", json={"name": "chat", "modelId": model["id"]}
    ).json()
    assert client.patch(f"{api}/integrations/memserve", json={"enabled": False}).status_code == 200
    deployment = client.get(f"{api}/serving/endpoints/{endpoint['id']}/deployment").json()
    assert deployment["degraded"] is True
    assert "not enabled" in deployment["degradedReason"]
    assert deployment["state"] == "ready"


def test_the_recorded_spec_follows_promotions_and_rollbacks_of_canaries(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    client, _ = serving_client
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///v1"}).json()
    endpoint = client.post(
        f"{api}/serving/endpoints", json={"name": "chat", "modelId": model["id"]}
    ).json()
    url = f"{api}/serving/endpoints/{endpoint['id']}/deployment"

    def patched(body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        answer = client.patch(url, json=body)
        assert answer.status_code == status, answer.text
        result: dict[str, Any] = answer.json()
        return result

    started = patched({"canary": {"modelUri": "file:///v2", "trafficPercent": 20}})
    assert started["spec"]["canary"] == {"modelUri": "file:///v2", "trafficPercent": 20}
    rolled_back = patched({"rollbackCanary": True})
    assert rolled_back["spec"]["canary"] is None
    assert rolled_back["spec"]["modelUri"] == "file:///v1"

    patched({"canary": {"modelUri": "file:///v3", "trafficPercent": 50}})
    promoted = patched({"promoteCanary": True})
    assert promoted["spec"]["canary"] is None
    assert promoted["spec"]["modelUri"] == "file:///v3", "the worker redeploys the promoted model"

    problem = client.patch(url, json={"rollbackCanary": True})
    assert problem.status_code == 422, problem.text
    assert problem.json()["parameter"] == "rollbackCanary"
    assert client.get(url).json()["spec"]["modelUri"] == "file:///v3"


def test_a_spec_the_framework_refuses_is_answered_at_once_and_nothing_is_recorded(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    client, plugin = serving_client
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "ftp://x/m"}).json()

    refused = client.post(f"{api}/serving/endpoints", json={"name": "chat", "modelId": model["id"]})

    assert refused.status_code == 422, refused.text
    assert refused.json()["parameter"] == "modelUri"
    assert client.get(f"{api}/serving/endpoints").json()["items"] == []
    assert plugin.CALLS == []

    good = client.post(f"{api}/catalog/models", json={"name": "g", "uri": "file:///g"}).json()
    endpoint = client.post(
        f"{api}/serving/endpoints", json={"name": "chat", "modelId": good["id"]}
    ).json()
    url = f"{api}/serving/endpoints/{endpoint['id']}/deployment"
    refused_update = client.patch(url, json={"modelUri": "ftp://x/other"})
    assert refused_update.status_code == 422, refused_update.text
    assert client.get(url).json()["spec"]["modelUri"] == "file:///g"


def test_a_runtime_the_framework_does_not_list_is_refused(
    serving_client: tuple[TestClient, Any], api: str
) -> None:
    client, _ = serving_client
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///v1"}).json()

    refused = client.post(
        f"{api}/serving/endpoints",
        json={"name": "chat", "modelId": model["id"], "runtime": "triton"},
    )

    assert refused.status_code == 422, refused.text
    assert refused.json()["parameter"] == "runtime"
