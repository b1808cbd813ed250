"""The orchestration contract, against the Argo Server double: the stages are the suite's
shell commands, which the double runs as the pods' processes."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from llmops.testing.argo import ArgoServerDouble
from llmops.testing.contracts.orchestration import OrchestrationContract
from llmops_argo.provider import ArgoOrchestrator

MakeProvider = Callable[..., ArgoOrchestrator]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class TestArgoContract(OrchestrationContract):
    supports = frozenset(
        {
            "parallel",
            "max_parallel",
            "retries",
            "retry",
            "cancel",
            "logs",
            "timeout",
            "env",
            "restart",
            "unreachable",
        }
    )
    # Argo's timestamps have whole seconds: stages that prove parallelism run longer
    parallel_stage_seconds = 1.5

    @pytest.fixture
    def provider(self, make_provider: MakeProvider) -> ArgoOrchestrator:
        return make_provider()

    @pytest.fixture
    def restarted_provider(self, make_provider: MakeProvider) -> ArgoOrchestrator:
        return make_provider()

    @pytest.fixture
    def unreachable_provider(
        self, make_provider: MakeProvider, argo: ArgoServerDouble
    ) -> ArgoOrchestrator:
        return make_provider(server_url=f"http://127.0.0.1:{_closed_port()}")
