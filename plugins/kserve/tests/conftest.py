"""One Kubernetes API double (llmops.testing.kubernetes) for the session, serving two tiny
real models from a folder it mounts as the PVC ``llmops-models``, the way KServe's storage
initializer reads ``pvc://llmops-models/...``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmops.testing.kubernetes import KubernetesApiDouble
from llmops.testing.models import tiny_causal_lm
from llmops_kserve.backend import KServeBackend
from llmops_kserve.client import KubernetesApi
from llmops_kserve.settings import KServeSettings

TOKEN = "kserve-test-token"
CLAIM = "llmops-models"


@dataclass(frozen=True)
class Models:
    root: Path
    first: Path
    second: Path

    @property
    def prefixes(self) -> dict[str, str]:
        return {f"{self.root}/": f"pvc://{CLAIM}/"}


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("kserve-models")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return Models(
        root=root,
        first=tiny_causal_lm(root / "model-a", seed=0),
        second=tiny_causal_lm(root / "model-b", seed=1),
    )


@pytest.fixture(scope="session")
def cluster_double(models: Models) -> Iterator[KubernetesApiDouble]:
    with KubernetesApiDouble(
        namespaces=("default", "serving"), token=TOKEN, storage={CLAIM: models.root}
    ) as double:
        yield double


@pytest.fixture
def cluster(cluster_double: KubernetesApiDouble) -> Iterator[KubernetesApiDouble]:
    """The session's double, emptied after each test; no handler may have crashed."""
    yield cluster_double
    cluster_double.check_errors()
    cluster_double.reset()


def kserve_settings(api_url: str, models: Models, **extra: Any) -> KServeSettings:
    values: dict[str, Any] = {
        "api_url": api_url,
        "token": TOKEN,
        "namespace": "serving",
        "storage_uri_prefixes": models.prefixes,
        "request_timeout_seconds": 5,
    }
    values.update(extra)
    return KServeSettings.model_validate(values)


def kserve_backend(settings: KServeSettings) -> KServeBackend:
    return KServeBackend(KubernetesApi(settings), settings)


MakeBackend = Callable[..., KServeBackend]


@pytest.fixture
def make_backend(cluster: KubernetesApiDouble, models: Models) -> MakeBackend:
    """``make_backend(**settings)``: a new backend on the double (settings overridable)."""

    def make(**extra: Any) -> KServeBackend:
        return kserve_backend(kserve_settings(extra.pop("api_url", cluster.url), models, **extra))

    return make


@pytest.fixture
def backend(make_backend: MakeBackend) -> KServeBackend:
    return make_backend()
