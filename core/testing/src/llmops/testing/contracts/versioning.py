"""The dataset versioning contract: what the core relies on from every
:class:`~llmops.capabilities.versioning.VersioningProvider`.

Subclass :class:`VersioningContract`, provide ``provider``, and declare ``supports``.
Every test versions a dataset id of its own (the ``dataset_id`` fixture), so the suite
also runs against one repository shared by the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from llmops.capabilities.common import HealthStatus, Provider
from llmops.capabilities.versioning import (
    ChangeKind,
    DatasetVersionInfo,
    FileChange,
    Lineage,
    PushesVersions,
    PushResult,
    VersionDiff,
    VersioningProvider,
    VersionSpec,
)
from llmops.errors import IntegrationUnavailable, NotFound
from llmops.testing.contracts import (
    ContractSuite,
    read_tree,
    requires,
    signature_mismatches,
    timed_health,
    write_tree,
)

__all__ = ["VersioningContract"]

FIRST = {
    "train.jsonl": b'{"text": "hello"}\n',
    "eval.jsonl": b'{"text": "bye"}\n',
    "docs/README.md": b"# the dataset\n",
}
SECOND = {
    "train.jsonl": b'{"text": "hello"}\n{"text": "again"}\n',  # modified
    "docs/README.md": b"# the dataset\n",  # unchanged
    "test.jsonl": b'{"text": "new"}\n',  # added; eval.jsonl is removed
}


class VersioningContract(ContractSuite):
    """The suite every dataset versioning provider passes."""

    capability = "versioning"
    protocol = VersioningProvider
    features = {
        "restart": "a second provider on the same repository (fixture restarted_provider) "
        "knows the first one's versions and idempotency keys",
        "unreachable": "the subclass can build a provider whose tool or remote cannot be "
        "reached (fixture unreachable_provider)",
        "push": "the provider is also PushesVersions: versions are made locally and "
        "push_version uploads one to the tool's remote, once; a provider whose remote cannot "
        "be reached (fixture offline_remote_provider) still makes versions, and its pushes "
        "raise IntegrationUnavailable",
    }

    #: Seconds health() may take.
    health_deadline: ClassVar[float] = 5.0

    # -- what the subclass provides ----------------------------------------------------

    @pytest.fixture
    def provider(self) -> VersioningProvider:
        """The versioner under test (override this)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a `provider` fixture returning the "
            "VersioningProvider under test"
        )

    @pytest.fixture
    def restarted_provider(self, provider: VersioningProvider) -> VersioningProvider:
        """Another provider on the same repository (needed by ``restart``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'restart' and must define a "
            "`restarted_provider` fixture"
        )

    @pytest.fixture
    def unreachable_provider(self) -> VersioningProvider:
        """A provider whose tool cannot be reached (needed by ``unreachable``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'unreachable' and must define an "
            "`unreachable_provider` fixture"
        )

    @pytest.fixture
    def offline_remote_provider(self) -> VersioningProvider:
        """A provider that makes versions locally while its remote cannot be reached
        (needed by ``push``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'push' and must define an "
            "`offline_remote_provider` fixture"
        )

    @pytest.fixture
    def dataset_id(self) -> str:
        """A dataset id no other test uses."""
        return f"contract-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def source(self, tmp_path: Path) -> Path:
        """The folder the suite writes a dataset's files into before versioning them."""
        return tmp_path / "contract-source"

    # -- helpers ---------------------------------------------------------------------

    def version(
        self,
        provider: VersioningProvider,
        dataset_id: str,
        source: Path,
        files: Mapping[str, bytes],
        **fields: object,
    ) -> DatasetVersionInfo:
        write_tree(source, files)
        spec = VersionSpec.model_validate(
            {"dataset_id": dataset_id, "source_path": source, **fields}
        )
        return provider.create_version(spec)

    # -- the Protocol ----------------------------------------------------------------

    def test_provider_is_a_versioning_provider(self, provider: VersioningProvider) -> None:
        assert isinstance(provider, VersioningProvider), (
            f"{type(provider).__name__} lacks methods of the VersioningProvider Protocol"
        )
        assert isinstance(provider, Provider)

    def test_health_answers_within_the_deadline(self, provider: VersioningProvider) -> None:
        health = timed_health(provider, self.health_deadline)
        assert health.status in {HealthStatus.OK, HealthStatus.DEGRADED}, (
            f"a working provider reports {health.status}: {health.detail}"
        )

    @requires("unreachable")
    def test_health_of_an_unreachable_tool_is_down_and_says_why(
        self, unreachable_provider: VersioningProvider
    ) -> None:
        health = timed_health(unreachable_provider, self.health_deadline)
        assert health.status is HealthStatus.DOWN, f"got {health.status}: {health.detail}"
        assert health.detail, "a DOWN health must say why in detail"

    # -- versions --------------------------------------------------------------------

    def test_create_version_describes_the_files_it_versioned(
        self, provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        info = self.version(provider, dataset_id, source, FIRST, message="first cut")

        assert isinstance(info, DatasetVersionInfo)
        assert info.version_id, "a version has an id"
        assert info.dataset_id == dataset_id
        assert info.message == "first cut"
        assert info.created_at.tzinfo is not None, "created_at is timezone-aware"
        assert info.file_count == len(FIRST)
        assert info.size_bytes == sum(len(c) for c in FIRST.values())
        assert info.parent_version_id is None, "the first version has no parent"

    def test_a_second_version_names_the_first_as_its_parent(
        self, provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        first = self.version(provider, dataset_id, source, FIRST)

        second = self.version(provider, dataset_id, source, SECOND)

        assert second.version_id != first.version_id
        assert second.parent_version_id == first.version_id
        assert second.file_count == len(SECOND)

    def test_list_versions_returns_the_datasets_versions_only(
        self, provider: VersioningProvider, dataset_id: str, source: Path, tmp_path: Path
    ) -> None:
        first = self.version(provider, dataset_id, source, FIRST)
        second = self.version(provider, dataset_id, source, SECOND)
        self.version(provider, dataset_id + "-other", tmp_path / "other", FIRST)

        listed = provider.list_versions(dataset_id)

        assert all(isinstance(v, DatasetVersionInfo) for v in listed)
        assert sorted(v.version_id for v in listed) == sorted([first.version_id, second.version_id])
        assert all(v.dataset_id == dataset_id for v in listed)

    def test_a_dataset_without_versions_lists_none(
        self, provider: VersioningProvider, dataset_id: str
    ) -> None:
        assert provider.list_versions(dataset_id) == []

    def test_the_same_idempotency_key_returns_the_first_version(
        self, provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        key = f"contract-{uuid.uuid4().hex}"
        first = self.version(provider, dataset_id, source, FIRST, idempotency_key=key)

        again = self.version(provider, dataset_id, source, SECOND, idempotency_key=key)

        assert again.version_id == first.version_id, (
            "a second create_version with the same idempotency key must return the first "
            f"version (got {first.version_id} then {again.version_id})"
        )
        assert [v.version_id for v in provider.list_versions(dataset_id)] == [first.version_id]

    @requires("restart")
    def test_a_restarted_provider_knows_the_first_ones_versions_and_keys(
        self,
        provider: VersioningProvider,
        restarted_provider: VersioningProvider,
        dataset_id: str,
        source: Path,
    ) -> None:
        key = f"contract-{uuid.uuid4().hex}"
        first = self.version(provider, dataset_id, source, FIRST, idempotency_key=key)

        again = self.version(restarted_provider, dataset_id, source, FIRST, idempotency_key=key)

        assert again.version_id == first.version_id, (
            "after a restart, create_version with a known idempotency key must return the "
            "first version: the outbox redelivers after restarts"
        )
        assert [v.version_id for v in restarted_provider.list_versions(dataset_id)] == [
            first.version_id
        ]

    # -- diff ------------------------------------------------------------------------

    def test_diff_lists_added_removed_and_modified_files(
        self, provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        first = self.version(provider, dataset_id, source, FIRST)
        second = self.version(provider, dataset_id, source, SECOND)

        diff = provider.diff(dataset_id, first.version_id, second.version_id)

        assert isinstance(diff, VersionDiff)
        assert (diff.from_version_id, diff.to_version_id) == (
            first.version_id,
            second.version_id,
        )
        assert all(isinstance(c, FileChange) for c in diff.changes)
        assert {c.path: c.change for c in diff.changes} == {
            "train.jsonl": ChangeKind.MODIFIED,
            "eval.jsonl": ChangeKind.REMOVED,
            "test.jsonl": ChangeKind.ADDED,
        }, "unchanged files are not listed; every path is relative with '/' separators"
        sizes = {c.path: (c.size_before, c.size_after) for c in diff.changes}
        _assert_sizes(sizes["train.jsonl"], len(FIRST["train.jsonl"]), len(SECOND["train.jsonl"]))
        _assert_sizes(sizes["eval.jsonl"], len(FIRST["eval.jsonl"]), None)
        _assert_sizes(sizes["test.jsonl"], None, len(SECOND["test.jsonl"]))

    def test_a_version_has_no_diff_with_itself(
        self, provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        first = self.version(provider, dataset_id, source, FIRST)

        assert provider.diff(dataset_id, first.version_id, first.version_id).changes == []

    # -- restore and lineage -------------------------------------------------------------

    def test_restore_brings_back_a_versions_files_exactly(
        self, provider: VersioningProvider, dataset_id: str, source: Path, tmp_path: Path
    ) -> None:
        first = self.version(provider, dataset_id, source, FIRST)
        self.version(provider, dataset_id, source, SECOND)
        destination = tmp_path / "restored"

        restored = provider.restore(dataset_id, first.version_id, destination)

        assert isinstance(restored, DatasetVersionInfo)
        assert restored.version_id == first.version_id
        held = {p: c for p, c in read_tree(destination).items() if not _hidden(p)}
        assert held == FIRST, "the destination holds exactly the version's files"

    def test_lineage_links_a_version_to_its_parent(
        self, provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        first = self.version(provider, dataset_id, source, FIRST)
        second = self.version(provider, dataset_id, source, SECOND)

        lineage = provider.lineage(dataset_id, second.version_id)

        assert isinstance(lineage, Lineage)
        ids = {node.id for node in lineage.nodes}
        assert {first.version_id, second.version_id} <= ids, (
            "the lineage of a version holds it and its parent as nodes"
        )
        for edge in lineage.edges:
            assert {edge.source, edge.target} <= ids, f"edge {edge} names a missing node"
        assert any(
            (e.source, e.target, e.relation)
            == (second.version_id, first.version_id, "derived-from")
            for e in lineage.edges
        ), "a version is 'derived-from' its parent (source: the version, target: the parent)"

    @pytest.mark.parametrize("method", ["diff-from", "diff-to", "restore", "lineage"])
    def test_an_unknown_version_is_not_found(
        self,
        provider: VersioningProvider,
        dataset_id: str,
        source: Path,
        tmp_path: Path,
        method: str,
    ) -> None:
        known = self.version(provider, dataset_id, source, FIRST).version_id
        missing = f"missing{uuid.uuid4().hex[:8]}"
        calls: dict[str, Callable[[], object]] = {
            "diff-from": lambda: provider.diff(dataset_id, missing, known),
            "diff-to": lambda: provider.diff(dataset_id, known, missing),
            "restore": lambda: provider.restore(dataset_id, missing, tmp_path / "nowhere"),
            "lineage": lambda: provider.lineage(dataset_id, missing),
        }

        with pytest.raises(NotFound):
            calls[method]()

    # -- push ------------------------------------------------------------------------------

    def test_a_provider_that_pushes_declares_push(self, provider: VersioningProvider) -> None:
        if isinstance(provider, PushesVersions):
            assert "push" in self.supports, (
                f"{type(provider).__name__} has push_version: declare 'push' so the suite "
                "checks it (the core queues a push for every version of such a provider)"
            )

    @requires("push")
    def test_push_version_takes_the_protocols_parameters(
        self, provider: VersioningProvider
    ) -> None:
        assert isinstance(provider, PushesVersions), (
            f"{type(provider).__name__} declares 'push' but has no push_version"
        )
        problems = signature_mismatches(provider, PushesVersions)
        assert not problems, "\n".join(problems)

    @requires("push")
    def test_a_version_is_pushed_once_and_a_second_push_uploads_nothing(
        self, provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        assert isinstance(provider, PushesVersions)
        info = self.version(provider, dataset_id, source, FIRST)

        first = provider.push_version(dataset_id, info.version_id)
        again = provider.push_version(dataset_id, info.version_id)

        assert isinstance(first, PushResult)
        assert (first.dataset_id, first.version_id) == (dataset_id, info.version_id)
        assert first.uploaded_files > 0, "the first push of a new version uploads its files"
        assert not first.already_pushed
        assert again.uploaded_files == 0, (
            "pushing a version already pushed uploads nothing: the outbox redelivers"
        )
        assert again.version_id == info.version_id

    @requires("push")
    def test_pushing_an_unknown_version_is_not_found(
        self, provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        assert isinstance(provider, PushesVersions)
        self.version(provider, dataset_id, source, FIRST)

        with pytest.raises(NotFound):
            provider.push_version(dataset_id, f"missing{uuid.uuid4().hex[:8]}")

    @requires("push")
    def test_with_the_remote_away_versions_are_made_and_pushes_are_unavailable(
        self, offline_remote_provider: VersioningProvider, dataset_id: str, source: Path
    ) -> None:
        assert isinstance(offline_remote_provider, PushesVersions)

        info = self.version(offline_remote_provider, dataset_id, source, FIRST)

        assert [v.version_id for v in offline_remote_provider.list_versions(dataset_id)] == [
            info.version_id
        ], "a version is made locally while the remote is away"
        with pytest.raises(IntegrationUnavailable):
            offline_remote_provider.push_version(dataset_id, info.version_id)


def _assert_sizes(
    got: tuple[int | None, int | None], before: int | None, after: int | None
) -> None:
    """Sizes are optional; when a provider reports one, it is right."""
    if got[0] is not None or before is None:
        assert got[0] == before, f"size_before {got[0]}, expected {before}"
    if got[1] is not None or after is None:
        assert got[1] == after, f"size_after {got[1]}, expected {after}"


def _hidden(path: str) -> bool:
    """Tool bookkeeping in a restored folder (``.dvc``, ``.gitignore``) is not data."""
    return any(part.startswith(".") for part in path.split("/"))
