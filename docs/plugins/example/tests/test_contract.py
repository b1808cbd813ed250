"""FolderRegistry passes the whole registry contract suite of llmops-plugin-api[testing]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llmops.capabilities.registry import ExportRequest
from llmops.testing.contracts import write_tree
from llmops.testing.contracts.registry import RegistryContract, SeededModel, SeededRevision

from llmops_folder_registry.registry import FolderRegistry

WEB_URL = "http://127.0.0.1:8900"

#: The seeded model's two commits, oldest first.
REVISIONS = [
    {"config.json": b'{"layers": 2}', "README.md": b"# tiny-gpt\n"},
    {
        "config.json": b'{"layers": 4}',
        "model.safetensors": b"\x00" * 64,
        "README.md": b"# tiny-gpt\n\nNow with four layers.\n",
    },
]


class TestFolderRegistryContract(RegistryContract):
    supports = frozenset({"export", "revisions", "search_tags", "unreachable"})

    @pytest.fixture
    def provider(self, tmp_path: Path) -> FolderRegistry:
        root = tmp_path / "registry"
        root.mkdir()
        return FolderRegistry(root, web_url=WEB_URL)

    @pytest.fixture
    def seeded_model(self, provider: FolderRegistry, tmp_path: Path) -> SeededModel:
        repo_id = "acme/tiny-gpt"
        revisions = []
        for files in REVISIONS:  # each export makes a commit: the suite learns its id
            folder = write_tree(tmp_path / "seed", files)
            exported = provider.export_model(ExportRequest(repo_id=repo_id, local_path=folder))
            revisions.append(SeededRevision(commit=exported.commit, files=files))
        tags = ["text-generation", "tiny"]
        (provider.root / repo_id / "repo.json").write_text(json.dumps({"tags": tags}))
        return SeededModel(repo_id=repo_id, revisions=revisions, tags=frozenset(tags))

    @pytest.fixture
    def unreachable_provider(self, tmp_path: Path) -> FolderRegistry:
        return FolderRegistry(tmp_path / "not-mounted", web_url=WEB_URL)
