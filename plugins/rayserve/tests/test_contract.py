"""RayServeBackend passes the serving contract suite on a real local Ray with Serve,
deploying tiny real models with llmops' model runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.testing.contracts.serving import ServingContract
from llmops.testing.processes import free_port
from llmops_rayserve.backend import RayServeBackend
from llmops_rayserve.cluster import RayConfig, RaySession


class TestRayServeContract(ServingContract):
    supports = frozenset({"traffic", "autoscaling", "restart", "unreachable"})
    # a replica imports torch and transformers and loads the model: ~10-20 s on 2 cores
    ready_timeout = 120.0
    poll_interval = 0.5

    @pytest.fixture
    def provider(self, backend: RayServeBackend) -> RayServeBackend:
        return backend

    @pytest.fixture
    def model_uris(self, model_dirs: tuple[Path, Path]) -> tuple[str, str]:
        return model_dirs[0].as_uri(), str(model_dirs[1])

    @pytest.fixture
    def restarted_provider(self, ray_session: RaySession) -> RayServeBackend:
        # a new provider object: what it knows comes from Ray (the deployments' user_config)
        return RayServeBackend(ray_session, request_timeout=5)

    @pytest.fixture
    def unreachable_provider(self, tmp_path: Path) -> RayServeBackend:
        config = RayConfig(address=f"127.0.0.1:{free_port()}", data_dir=tmp_path)
        return RayServeBackend(RaySession(config), request_timeout=2)
