"""The platform on a Ray cluster it did not start (``address``): a head node started with
``ray start --head`` (token authentication on, as an operator would run it), and
``llmops up`` pointed at it. An endpoint is deployed, called through the gateway with the
official OpenAI SDK, and deleted; stopping the platform leaves the cluster running."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from llmops.testing.console import running_platform
from llmops.testing.models import tiny_causal_lm
from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for
from llmops_rayserve.cluster import tcp_reachable

API = "/llm-ops/v1"


@dataclass(frozen=True)
class RayCluster:
    address: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    root = Path(tempfile.mkdtemp(prefix="llmops-rc-"))  # short: Ray's socket paths
    token = root / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    }
    port = free_port()
    ray = Path(sys.executable).with_name("ray")
    log = (root / "head.log").open("wb")
    head = subprocess.Popen(
        [
            str(ray), "start", "--head", "--block", "--port", str(port),
            "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
            "--object-store-memory", str(100 * 1024 * 1024), "--temp-dir", str(root / "ray"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert head.poll() is None, (root / "head.log").read_text()
            return tcp_reachable(address, timeout=1) is None

        wait_for(up, timeout=120, interval=0.5, what="the Ray head node")
        yield RayCluster(address=address, env=env)
    finally:
        # `ray start --block` stops the processes it started when it is terminated; it
        # takes its time (half a minute), and everything it started is in its group
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_an_endpoint_on_a_ray_cluster_answers_through_the_gateway_and_the_cluster_stays_up(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    model_dir = tiny_causal_lm(tmp_path / "model")
    env = {
        "LLMOPS_PLUGINS": "rayserve",
        "LLMOPS_RAYSERVE__ADDRESS": ray_cluster.address,
        "LLMOPS_RAYSERVE__HTTP_PORT": str(free_port()),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **ray_cluster.env,
    }
    with running_platform(env=env, console=False) as platform:
        api = platform.api
        model = api.post(
            f"{API}/catalog/models", json={"name": "tiny", "uri": model_dir.as_uri()}
        ).json()
        created = api.post(
            f"{API}/serving/endpoints",
            json={"name": "on-cluster", "modelId": model["id"], "framework": "rayserve"},
        )
        assert created.status_code in {201, 202}, created.text
        endpoint = created.json()

        def ready() -> dict[str, Any] | None:
            deployment = api.get(f"{API}/serving/endpoints/{endpoint['id']}/deployment").json()
            assert deployment["state"] != "failed", deployment
            return deployment if deployment["state"] == "ready" else None

        deployment = wait_for(ready, timeout=180, interval=1, what="the endpoint on the cluster")
        target = deployment["status"]["target"]["baseUrl"]
        assert target.startswith("http://127.0.0.1:"), target
        assert target.endswith("/on-cluster/v1"), target

        base = f"{platform.url}{API}/openai/v1"
        with OpenAI(base_url=base, api_key=platform.admin_key, max_retries=0) as client:
            answer = client.chat.completions.create(
                model="on-cluster",
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=4,
                extra_body={"ignore_eos": True},
            )
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 4

        [rayserve] = [
            i for i in api.get(f"{API}/integrations").json()["items"] if i["name"] == "rayserve"
        ]
        assert [h["status"] for h in rayserve["health"]] == ["ok"], rayserve["health"]
        assert api.delete(f"{API}/serving/endpoints/{endpoint['id']}").status_code in {202, 204}

    # the platform stopped: it leaves the cluster it did not start alone
    assert tcp_reachable(ray_cluster.address, timeout=2) is None
