"""One local Ray with Serve for the whole test session (llmops_rayserve.testing), and two
tiny real model folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.testing.models import tiny_causal_lm
from llmops_rayserve.backend import RayServeBackend
from llmops_rayserve.cluster import RaySession
from llmops_rayserve.testing import local_ray


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaySession]:
    hf_home = tmp_path_factory.mktemp("hf-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(hf_home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        with local_ray(num_cpus=4) as session:
            yield session


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return tiny_causal_lm(root / "model-a", seed=0), tiny_causal_lm(root / "model-b", seed=1)


@pytest.fixture
def backend(ray_session: RaySession) -> RayServeBackend:
    return RayServeBackend(ray_session, request_timeout=5)
