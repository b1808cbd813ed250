"""A tiny real model deployed on the local Ray Serve and called through Serve's proxy with
the official OpenAI SDK; autoscaling bounds in status; an update; deletion; and Ray's
code-running HTTP APIs kept off the network."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from openai import OpenAI

from llmops.capabilities.common import HealthStatus
from llmops.capabilities.serving import (
    AutoscalingSpec,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    DeploymentUpdate,
)
from llmops.errors import NotFound
from llmops.testing.waiting import wait_for
from llmops_rayserve.backend import RayServeBackend
from llmops_rayserve.cluster import RaySession

READY_TIMEOUT = 120.0


def _wait_ready(backend: RayServeBackend, name: str, model_uri: str) -> DeploymentStatus:
    def ready() -> DeploymentStatus | None:
        status = backend.status(name)
        assert status.state is not DeploymentState.FAILED, status.message
        served = status.traffic[0].model_uri if status.traffic else None
        return status if status.ready and served == model_uri else None

    return wait_for(ready, timeout=READY_TIMEOUT, interval=0.5, what=f"{name} ready on {model_uri}")


def test_a_deployed_model_answers_chat_and_streams_through_serves_proxy(
    backend: RayServeBackend, model_dirs: tuple[Path, Path]
) -> None:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    first, second = (str(path) for path in model_dirs)
    scaling = AutoscalingSpec(min_replicas=1, max_replicas=2, target_ongoing_requests=4)
    spec = DeploymentSpec(endpoint_id="ep-1", name=name, model_uri=first, autoscaling=scaling)

    deployed = backend.deploy(spec)
    try:
        assert deployed.state is DeploymentState.DEPLOYING
        ready = _wait_ready(backend, name, first)
        assert ready.desired_replicas is not None
        assert 1 <= ready.desired_replicas <= 2, ready.desired_replicas
        assert [r.state for r in ready.replicas] == ["running"] * len(ready.replicas)

        target = backend.inference_target(name)
        assert target.base_url == f"{backend.session.proxy_url}/{name}/v1"
        with OpenAI(base_url=target.base_url, api_key="unused", max_retries=0) as client:
            assert [m.id for m in client.models.list()] == [target.model_name]
            answer = client.chat.completions.create(
                model=target.model_name,
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=8,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            assert answer.choices[0].message.content
            assert answer.usage is not None
            assert answer.usage.completion_tokens == 8
            stream = client.chat.completions.create(
                model=target.model_name,
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=8,
                temperature=0,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            pieces = [c.choices[0].delta.content for c in stream if c.choices]
            texts = [p for p in pieces if p]
            assert len(texts) >= 4, f"a streamed answer comes in several chunks: {pieces}"
            assert "".join(texts) == answer.choices[0].message.content

        updated = backend.update(name, DeploymentUpdate(model_uri=second))
        assert updated.external_id == name
        assert _wait_ready(backend, name, second).traffic[0].model_uri == second
    finally:
        backend.delete(name)

    def gone() -> bool:
        try:
            return backend.status(name).state is DeploymentState.DELETING and False
        except NotFound:
            return True

    wait_for(gone, timeout=60, interval=0.5, what=f"{name} to be deleted")


def test_the_local_ray_keeps_its_dashboard_off_and_its_job_api_behind_a_token(
    backend: RayServeBackend, ray_session: RaySession
) -> None:
    import httpx
    import ray

    assert backend.health().status is HealthStatus.OK
    # the dashboard is off: nothing answers on its default port
    with socket.socket() as sock:
        sock.settimeout(1)
        assert sock.connect_ex(("127.0.0.1", 8265)) != 0, "something answers on :8265"

    # Ray 2.60 still starts the dashboard agent's HTTP server (job-agent routes) on the
    # node's address: without the token in the data dir it refuses to run anything
    (node,) = ray.nodes()
    port = node.get("DashboardAgentListenPort")
    if isinstance(port, int) and port > 0:  # the agent's HTTP server listens: it refuses
        url = f"http://{node['NodeManagerAddress']}:{port}/api/job_agent/jobs/"
        refused = httpx.post(url, json={"entrypoint": "touch /tmp/pwned"}, timeout=5)
        assert refused.status_code in {401, 403}, (refused.status_code, refused.text[:200])
    # else no job-agent HTTP server runs at all (seen under a loaded parallel suite)
    token_file = ray_session.config.data_dir / "ray-auth-token"
    assert token_file.stat().st_mode & 0o077 == 0, "the token file is private"
    assert backend.session.proxy_url.startswith("http://127.0.0.1:")


def test_health_says_not_started_rather_than_starting_ray(tmp_path: Path) -> None:
    from llmops_rayserve.cluster import RayConfig

    idle = RayServeBackend(RaySession(RayConfig(address=None, data_dir=tmp_path)))

    health = idle.health()

    assert health.status is HealthStatus.DEGRADED
    assert "not started yet" in health.detail
    assert not idle.session.starting


@pytest.mark.parametrize("options", [{"bogus": 1}, {"num_cpus": -1}])
def test_unknown_or_bad_options_are_refused_before_anything_is_deployed(
    backend: RayServeBackend, model_dirs: tuple[Path, Path], options: dict[str, object]
) -> None:
    from llmops.errors import InvalidRequest

    spec = DeploymentSpec(
        endpoint_id="x",
        name=f"bad-{uuid.uuid4().hex[:6]}",
        model_uri=str(model_dirs[0]),
        options=options,
    )
    with pytest.raises(InvalidRequest):
        backend.deploy(spec)
    with pytest.raises(NotFound):
        backend.status(spec.name)
