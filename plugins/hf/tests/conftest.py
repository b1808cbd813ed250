"""One Hugging Face Hub double (llmops.testing.hf) for the session, reset before each test;
the provider under test talks to it with huggingface_hub, its endpoint set to the double,
its cache and state under the test's temporary folder."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from huggingface_hub import constants
from huggingface_hub.utils.tqdm import disable_progress_bars, enable_progress_bars

from llmops.testing.hf import HfHubDouble, running_hf_hub
from llmops_hf import provider as provider_module
from llmops_hf.provider import HfRegistry
from llmops_hf.settings import HfSettings

# huggingface_hub's LFS upload hands httpx2 a file object as ``data=``
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

REPO = "acme/tiny-model"
CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2}


def safetensors_bytes(*values: float) -> bytes:
    """A safetensors file holding one float32 tensor ``w`` with ``values``."""
    data = struct.pack(f"<{len(values)}f", *values)
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


@dataclass(frozen=True)
class Kit:
    """What the tests seed the double with (a fixture: test modules cannot import this
    one under pytest's importlib mode)."""

    hub: HfHubDouble
    repo: str = REPO
    config: dict[str, Any] = field(default_factory=lambda: dict(CONFIG))

    @staticmethod
    def weights(*values: float) -> bytes:
        return safetensors_bytes(*(values or (0.5, -1.0, 2.0, 0.25)))

    def files(self, extra: dict[str, bytes | str] | None = None) -> dict[str, bytes | str]:
        """The tiny model's files (config, safetensors weights, a vocabulary), with
        ``extra`` added or replacing them."""
        files: dict[str, bytes | str] = {
            "config.json": json.dumps(self.config),
            "model.safetensors": self.weights(),
            "tokenizer/vocab.txt": "a\nb\nc\n",
        }
        files.update(extra or {})
        return files

    def seed(
        self,
        repo_id: str = REPO,
        files: dict[str, bytes | str] | None = None,
        **options: Any,
    ) -> str:
        """``repo_id`` on the double with ``files`` (the tiny model's by default) and a
        card (license mit, tags tiny and test); the head's sha."""
        options.setdefault("license", "mit")
        options.setdefault("pipeline_tag", "text-generation")
        options.setdefault("library_name", "transformers")
        options.setdefault("tags", ["tiny", "test"])
        return self.hub.add_repo(repo_id, self.files() if files is None else files, **options)


@pytest.fixture(scope="session")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HfHubDouble]:
    disable_progress_bars()
    with running_hf_hub(work_dir=tmp_path_factory.mktemp("hf-hub")) as double:
        yield double
    enable_progress_bars()


@pytest.fixture
def hub(started: HfHubDouble, monkeypatch: pytest.MonkeyPatch) -> Iterator[HfHubDouble]:
    """The session's double, fresh for each test, checked for crashes after it; no token
    of a developer's (HF_TOKEN) in reach, huggingface_hub online."""
    started.reset()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    yield started
    started.check_errors()


MakeProvider = Callable[..., HfRegistry]


@pytest.fixture
def make_provider(hub: HfHubDouble, tmp_path: Path) -> MakeProvider:
    """``make_provider(**settings)``: a provider on the double with the write token, its
    cache and state under ``tmp_path`` (the same for every provider of the test)."""

    def make(**overrides: Any) -> HfRegistry:
        values: dict[str, Any] = {
            "endpoint": hub.url,
            "token": hub.write_token,
            "cache_dir": tmp_path / "hf-cache",
            "request_timeout_seconds": 3,
            "retry_budget_seconds": 1,
            "max_workers": 4,
        }
        values.update(overrides)
        return HfRegistry(HfSettings.model_validate(values), data_dir=tmp_path / "data")

    return make


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the provider asks for between tries (recorded, not slept)."""
    asked: list[float] = []
    real = provider_module.time
    fake = SimpleNamespace(
        sleep=asked.append, monotonic=real.monotonic, perf_counter=real.perf_counter
    )
    monkeypatch.setattr(provider_module, "time", fake)
    return asked


@pytest.fixture
def kit(hub: HfHubDouble) -> Kit:
    return Kit(hub)


@pytest.fixture
def platform(hub: HfHubDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The platform (``create_app``, started: migrated, plugins loaded, worker running) on
    SQLite with the plugin pointed at the double through ``LLMOPS_HF__*`` (the write token,
    the cache under ``tmp_path``, as ``make_provider``'s), called with an admin key."""
    from llmops.config import CoreSettings
    from llmops.testing.pytest_plugin import started_client

    for name in list(os.environ):
        if name.startswith("LLMOPS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    plugin = {
        "ENDPOINT": hub.url,
        "TOKEN": hub.write_token,
        "CACHE_DIR": str(tmp_path / "hf-cache"),
        "REQUEST_TIMEOUT_SECONDS": "3",
        "RETRY_BUDGET_SECONDS": "1",
        "MAX_WORKERS": "4",
    }
    for key, value in plugin.items():
        monkeypatch.setenv(f"LLMOPS_HF__{key}", value)
    data = tmp_path / "data"
    settings = CoreSettings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'llmops.db'}",
        plugins="hf",
        sync_interval_seconds=0.1,
        health_cache_seconds=0.1,
        circuit_reset_seconds=0.5,
    )
    with started_client(settings) as client:
        yield client
