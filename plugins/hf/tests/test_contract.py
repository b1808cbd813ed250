"""The registry contract, against the Hugging Face Hub double: a model at two commits,
its files read back from the double itself (the Hub's .gitattributes and the card
included)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from llmops.testing.contracts.registry import RegistryContract, SeededModel, SeededRevision
from llmops.testing.hf import HfHubDouble
from llmops_hf.provider import HfRegistry

if TYPE_CHECKING:
    from conftest import Kit

# huggingface_hub's LFS upload hands httpx2 a file object as ``data=``
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

MakeProvider = Callable[..., HfRegistry]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _revision(hub: HfHubDouble, repo_id: str, sha: str) -> SeededRevision:
    paths = hub.file_hashes(repo_id, sha)
    return SeededRevision(sha, {path: hub.file_bytes(repo_id, path, sha) for path in paths})


class TestHfContract(RegistryContract):
    supports = frozenset(RegistryContract.features)

    @pytest.fixture
    def provider(self, make_provider: MakeProvider) -> HfRegistry:
        # the suite's export round trip carries weights/part-0.bin, a pickle suffix the
        # plugin refuses by default (tests/test_import.py covers that refusal)
        return make_provider(allow_pickle=True)

    @pytest.fixture
    def seeded_model(self, hub: HfHubDouble, kit: Kit) -> SeededModel:
        first = kit.seed()
        second = hub.push_commit(
            "acme/tiny-model",
            {"model.safetensors": kit.weights(1.0, 2.0), "extra/notes.txt": "grown"},
            deletions=["tokenizer/vocab.txt"],
            message="Retrain",
        )
        return SeededModel(
            repo_id="acme/tiny-model",
            revisions=[_revision(hub, "acme/tiny-model", s) for s in (first, second)],
            tags=frozenset({"tiny"}),
        )

    @pytest.fixture
    def export_repo_id(self, hub: HfHubDouble) -> str:
        return f"{hub.user}/export-{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    def unreachable_provider(self, make_provider: MakeProvider) -> HfRegistry:
        return make_provider(endpoint=f"http://127.0.0.1:{_closed_port()}")
