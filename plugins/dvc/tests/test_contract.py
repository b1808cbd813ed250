"""The versioning contract on real git + DVC repositories under the test's temporary folder,
with a folder remote: every feature declared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llmops.testing.contracts.versioning import VersioningContract
from llmops_dvc.provider import DvcVersioner

MakeProvider = Callable[..., DvcVersioner]


class TestDvcContract(VersioningContract):
    supports = frozenset(VersioningContract.features)

    @pytest.fixture
    def provider(self, make_provider: MakeProvider) -> DvcVersioner:
        return make_provider()

    @pytest.fixture
    def restarted_provider(self, make_provider: MakeProvider) -> DvcVersioner:
        return make_provider()

    @pytest.fixture
    def unreachable_provider(self, make_provider: MakeProvider, tmp_path: Path) -> DvcVersioner:
        """Its repositories' folder is a file: nothing can be versioned."""
        blocked = tmp_path / "not-a-folder"
        blocked.write_text("a file where the repositories should be")
        return make_provider(repos_dir=blocked)

    @pytest.fixture
    def offline_remote_provider(self, make_provider: MakeProvider, tmp_path: Path) -> DvcVersioner:
        """Its folder remote is a file: DVC cannot write there (the tests run as root, so a
        read-only folder would not stop it)."""
        blocked = tmp_path / "remote-is-a-file"
        blocked.write_text("not a folder")
        return make_provider(remote_url=str(blocked))
