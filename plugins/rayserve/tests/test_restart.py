"""The embedded default across a restart: `llmops up` stops its local Ray when it stops,
and the Serve applications with it. Started again on the same data dir, the platform
deploys its endpoints again from its own records, with no call from anyone, and they
answer through the gateway as before."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from llmops.testing.console import running_platform
from llmops.testing.models import tiny_causal_lm
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"


def _chat(url: str, key: str) -> str:
    with OpenAI(base_url=f"{url}{API}/openai/v1", api_key=key, max_retries=0) as client:
        answer = client.chat.completions.create(
            model="survivor",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=5,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
    return answer.choices[0].message.content or ""


def _wait_ready(api: httpx.Client, endpoint_id: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        deployment = api.get(f"{API}/serving/endpoints/{endpoint_id}/deployment").json()
        assert deployment["state"] != "failed", deployment
        ok = deployment["state"] == "ready" and not deployment["degraded"]
        return dict(deployment) if ok else None

    return wait_for(ready, timeout=180, interval=1, what="the endpoint to be ready")


def test_a_restarted_platform_deploys_its_endpoints_again_on_its_local_ray(
    tmp_path: Path,
) -> None:
    model_dir = tiny_causal_lm(tmp_path / "model")
    data_dir = Path(tempfile.mkdtemp(prefix="llmops-restart-"))
    env = {
        "LLMOPS_PLUGINS": "rayserve",
        "LLMOPS_SERVING_SYNC_INTERVAL_SECONDS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    try:
        with running_platform(env=env, console=False, data_dir=data_dir) as first:
            model = first.api.post(
                f"{API}/catalog/models", json={"name": "tiny", "uri": model_dir.as_uri()}
            ).json()
            endpoint = first.api.post(
                f"{API}/serving/endpoints",
                json={"name": "survivor", "modelId": model["id"], "framework": "rayserve"},
            ).json()
            _wait_ready(first.api, endpoint["id"])
            before = _chat(first.url, first.admin_key)

        with running_platform(env=env, console=False, data_dir=data_dir) as second:
            deployment = _wait_ready(second.api, endpoint["id"])
            assert deployment["spec"]["modelUri"] == model_dir.as_uri()
            assert _chat(second.url, second.admin_key) == before
            operations = second.api.get(
                f"{API}/operations", params={"resourceId": endpoint["id"]}
            ).json()["items"]
            deploys = [op["status"] for op in operations if op["kind"] == "endpoint.deploy"]
            assert deploys == ["succeeded", "succeeded"], operations  # created, then again
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
