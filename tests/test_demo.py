"""`llmops demo` against a real `llmops up` with the MLflow plugin (its local store), the
DVC plugin (a real git + DVC repository per dataset, a folder remote) and the Ray Serve
plugin (a local Ray the platform starts on the first deployment): from an empty data dir,
with nothing downloaded, to a chat through the gateway, the dataset versioned and the
lineage from that version to the endpoint. Then the endpoint
it left is driven through the platform's API: the official OpenAI SDK (plain and
streamed), its deployment's replicas, an in-place scaling change, and deletion, which
removes the application from Ray."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from openai import OpenAI

from llmops.cli import main as llmops_cli
from llmops.testing.console import ConsoleServer, running_platform
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    home = tmp_path_factory.mktemp("demo-home")
    env = {
        "LLMOPS_PLUGINS": "mlflow,rayserve,dvc",
        "DVC_NO_ANALYTICS": "1",
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "DO_NOT_TRACK": "1",
        # replicas take 1 CPU each: room for two on a 2-core machine
        "LLMOPS_RAYSERVE__NUM_CPUS": "4",
    }
    with running_platform(env=env, console=False) as server:
        yield server


@pytest.fixture(scope="module")
def demo_output(platform: ConsoleServer) -> str:
    result = CliRunner().invoke(
        llmops_cli,
        [
            "demo", "--url", platform.url, "--api-key", platform.admin_key,
            "--steps", "30", "-p", "batch_size=8", "-p", "vocab_size=500",
            "--max-tokens", "12", "--timeout", "300",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


def _endpoint(api: httpx.Client) -> dict[str, Any]:
    items = api.get(f"{API}/serving/endpoints").json()["items"]
    [endpoint] = [e for e in items if e["name"] == "tiny-gpt2-demo"]
    return dict(endpoint)


def test_the_demo_goes_from_the_shipped_sample_to_a_streamed_chat(
    platform: ConsoleServer, demo_output: str
) -> None:
    output = demo_output
    assert "created dataset" in output
    versioned = re.search(r"version v1 \((\w+)\) by dvc: 1 files, push pushed", output)
    assert versioned, output
    tracked = re.search(r"tracked in mlflow run (\w+): .*loss", output)
    assert tracked, output
    job_id = re.search(r"training job (\w+) succeeded", output)[1]  # type: ignore[index]
    assert re.search(r"model tiny-gpt2-demo-\w+ \(\w+\) at file://", output), output
    assert re.search(r"endpoint \w+ created", output), output
    assert "ready: a one-token chat completion succeeded" in output
    streamed = re.search(r"(\d+) chunks streamed", output)
    assert streamed, output
    assert int(streamed[1]) >= 2, output
    endpoint = _endpoint(platform.api)
    for page in (f"/training/{job_id}", f"/serving/{endpoint['id']}", "/llm-ops/v1/openai/v1"):
        assert f"{platform.url}{page}" in output

    # what the demo left, read back through the API
    run = platform.api.get(f"{API}/training/jobs/{job_id}/experiment-run").json()
    assert (run["provider"], run["externalId"], run["status"]) == (
        "mlflow",
        tracked[1],
        "finished",
    )
    history = platform.api.post(
        f"{API}/experiments/compare", json={"runIds": [tracked[1]], "metrics": ["loss"]}
    ).json()
    losses = [p["value"] for p in history["runs"][0]["metrics"]["loss"]]
    assert len(losses) >= 2, losses
    assert losses[-1] < losses[0], losses
    model = platform.api.get(f"{API}/catalog/models/{endpoint['modelId']}").json()
    assert model["labels"]["llmops.training_job_id"] == job_id
    job = platform.api.get(f"{API}/training/jobs/{job_id}").json()
    assert job["datasetVersionId"] == versioned[1]
    assert job["outputModelIds"] == [model["id"]]
    node = f"serving-endpoint:{endpoint['id']}"
    assert f"{platform.url}/lineage?node={node}" in output  # the console's graph
    assert f"{platform.url}/llm-ops/v1/lineage?node={node}" in output
    graph = platform.api.get(f"{API}/lineage", params={"node": node}).json()
    edges = {(e["source"], e["target"], e["relation"]) for e in graph["edges"]}
    assert {
        (f"dataset-version:{versioned[1]}", f"training-job:{job_id}", "trained"),
        (f"training-job:{job_id}", f"model:{model['id']}", "produced"),
        (f"model:{model['id']}", node, "served-by"),
    } <= edges
    assert endpoint["framework"] == "rayserve"
    assert endpoint["status"] == "ready"


def test_the_demo_endpoint_serves_the_openai_sdk_and_scales_and_goes_away(
    platform: ConsoleServer, demo_output: str
) -> None:
    endpoint = _endpoint(platform.api)
    base = f"{platform.url}{API}/openai/v1"
    with OpenAI(base_url=base, api_key=platform.admin_key, max_retries=0) as client:
        assert "tiny-gpt2-demo" in [m.id for m in client.models.list()]
        request: dict[str, Any] = {
            "model": "tiny-gpt2-demo",
            "messages": [{"role": "user", "content": "The town"}],
            "max_tokens": 6,
            "temperature": 0,
            "extra_body": {"ignore_eos": True},
        }
        answer = client.chat.completions.create(**request)
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 6
        chunks = [c.choices[0].delta.content for c in client.chat.completions.create(
            **request, stream=True
        ) if c.choices and c.choices[0].delta.content]  # fmt: skip
        assert len(chunks) >= 3, chunks
        assert "".join(chunks) == answer.choices[0].message.content

    deployment = platform.api.get(f"{API}/serving/endpoints/{endpoint['id']}/deployment").json()
    assert deployment["provider"] == "rayserve"
    assert [r["state"] for r in deployment["status"]["replicas"]] == ["running"]
    assert deployment["spec"]["autoscaling"]["maxReplicas"] == 2

    scaled = platform.api.patch(
        f"{API}/serving/endpoints/{endpoint['id']}/deployment",
        json={"autoscaling": {"minReplicas": 2, "maxReplicas": 2}},
    )
    assert scaled.status_code == 200, scaled.text

    def two_running() -> bool:
        status = platform.api.get(f"{API}/serving/endpoints/{endpoint['id']}/deployment").json()
        states = [r["state"] for r in status["status"]["replicas"]]
        return status["state"] == "ready" and states == ["running", "running"]

    wait_for(two_running, timeout=120, interval=1, what="two running replicas")
    health = platform.api.get(f"{API}/serving/endpoints/{endpoint['id']}/health").json()
    assert health["healthy"] is True, health

    deleted = platform.api.delete(f"{API}/serving/endpoints/{endpoint['id']}")
    assert deleted.status_code in {202, 204}, deleted.text
    gone = platform.api.post(
        f"{base}/chat/completions",
        json={"model": "tiny-gpt2-demo", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert gone.status_code == 404, gone.text

    def removed_from_ray() -> bool:
        integrations = platform.api.get(f"{API}/integrations").json()["items"]
        [rayserve] = [i for i in integrations if i["name"] == "rayserve"]
        details = " ".join(h.get("detail", "") for h in rayserve["health"])
        return "0 application(s)" in details

    wait_for(removed_from_ray, timeout=60, interval=1, what="the Serve application deleted")
