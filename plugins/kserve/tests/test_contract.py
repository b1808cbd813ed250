"""KServeBackend passes the serving contract suite against the Kubernetes API double
(llmops.testing.kubernetes): real InferenceService objects, validated against KServe's
CRD, taken to Ready by the double's controller with tiny real models behind status.url."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llmops.testing.contracts.serving import ServingContract
from llmops.testing.processes import free_port
from llmops_kserve.backend import KServeBackend


class TestKServeContract(ServingContract):
    supports = frozenset({"traffic", "canary", "autoscaling", "restart", "unreachable"})
    # a revision loads a tiny model (torch and transformers are imported once)
    ready_timeout = 60.0
    poll_interval = 0.1

    @pytest.fixture
    def provider(self, backend: KServeBackend) -> KServeBackend:
        return backend

    @pytest.fixture
    def model_uris(self, models: object) -> tuple[str, str]:
        first: Path = models.first  # type: ignore[attr-defined]
        second: Path = models.second  # type: ignore[attr-defined]
        return first.as_uri(), str(second)

    @pytest.fixture
    def restarted_provider(self, make_backend: Callable[..., KServeBackend]) -> KServeBackend:
        # a new provider object: what it knows comes from the objects' labels and annotations
        return make_backend()

    @pytest.fixture
    def unreachable_provider(self, make_backend: Callable[..., KServeBackend]) -> KServeBackend:
        return make_backend(api_url=f"http://127.0.0.1:{free_port()}", request_timeout_seconds=2)
