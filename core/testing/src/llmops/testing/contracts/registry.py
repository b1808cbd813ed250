"""The model registry contract: what the core relies on from every
:class:`~llmops.capabilities.registry.RegistryProvider`.

Subclass :class:`RegistryContract`, provide ``provider`` and ``seeded_model`` (a model the
registry holds, at two or more commits whose files you know: seed your double with it),
and declare ``supports``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from llmops.capabilities.common import HealthStatus, Provider
from llmops.capabilities.registry import (
    ExportRequest,
    ExportResult,
    ImportRequest,
    ImportResult,
    ListsRevisions,
    RegistryFile,
    RegistryLink,
    RegistryModelMetadata,
    RegistryModelSummary,
    RegistryProvider,
    RegistryRevision,
    UpdateCheck,
)
from llmops.errors import NotFound
from llmops.testing.contracts import ContractSuite, read_tree, requires, timed_health, write_tree

__all__ = ["RegistryContract", "SeededModel", "SeededRevision"]


@dataclass(frozen=True)
class SeededRevision:
    """One commit of a seeded model and the files the repository holds at it."""

    commit: str
    files: Mapping[str, bytes]


@dataclass(frozen=True)
class SeededModel:
    """A model the registry under test holds, as the suite expects to find it."""

    repo_id: str
    #: Oldest first; at least two, with different files; the latest with two or more.
    revisions: Sequence[SeededRevision]
    #: Tags the model carries (the ``search_tags`` feature needs at least one).
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def latest(self) -> SeededRevision:
        return self.revisions[-1]

    @property
    def oldest(self) -> SeededRevision:
        return self.revisions[0]


class RegistryContract(ContractSuite):
    """The suite every model registry provider passes."""

    capability = "registry"
    protocol = RegistryProvider
    features = {
        "export": "export_model() pushes a folder as a new commit that import_model() "
        "then returns, once per idempotency key (fixture export_repo_id names a repository "
        "the test may create)",
        "search_tags": "search(tags=[...]) keeps to models carrying every tag "
        "(SeededModel.tags must hold one)",
        "unreachable": "the subclass can build a provider whose hub cannot be reached "
        "(fixture unreachable_provider)",
        "revisions": "the provider is also ListsRevisions: revisions() lists the "
        "repository's branches and tags with their commits (the seeded model's default "
        "branch points at its latest revision)",
    }

    #: Seconds health() may take.
    health_deadline: ClassVar[float] = 5.0

    # -- what the subclass provides ----------------------------------------------------

    @pytest.fixture
    def provider(self) -> RegistryProvider:
        """The registry under test (override this)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a `provider` fixture returning the "
            "RegistryProvider under test"
        )

    @pytest.fixture
    def seeded_model(self) -> SeededModel:
        """A model the registry holds at two or more known commits (override this)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a `seeded_model` fixture describing a "
            "model the registry under test holds"
        )

    @pytest.fixture
    def export_repo_id(self) -> str:
        """A repository id the ``export`` tests may create (override for your namespace)."""
        return f"llmops-contract/export-{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    def unreachable_provider(self) -> RegistryProvider:
        """A provider whose hub cannot be reached (needed by ``unreachable``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'unreachable' and must define an "
            "`unreachable_provider` fixture"
        )

    @pytest.fixture
    def model(self, seeded_model: SeededModel) -> SeededModel:
        """``seeded_model``, checked to be usable by the suite."""
        assert len(seeded_model.revisions) >= 2, "seeded_model needs at least two revisions"
        assert seeded_model.oldest.files != seeded_model.latest.files, (
            "seeded_model's oldest and latest revisions must hold different files"
        )
        assert seeded_model.oldest.commit != seeded_model.latest.commit
        assert len(seeded_model.latest.files) >= 2, (
            "seeded_model's latest revision needs two or more files (allow_patterns picks one)"
        )
        return seeded_model

    # -- the Protocol ----------------------------------------------------------------

    def test_provider_is_a_registry_provider(self, provider: RegistryProvider) -> None:
        assert isinstance(provider, RegistryProvider), (
            f"{type(provider).__name__} lacks methods of the RegistryProvider Protocol"
        )
        assert isinstance(provider, Provider)

    def test_health_answers_within_the_deadline(self, provider: RegistryProvider) -> None:
        health = timed_health(provider, self.health_deadline)
        assert health.status in {HealthStatus.OK, HealthStatus.DEGRADED}, (
            f"a working provider reports {health.status}: {health.detail}"
        )

    @requires("unreachable")
    def test_health_of_an_unreachable_hub_is_down_and_says_why(
        self, unreachable_provider: RegistryProvider
    ) -> None:
        health = timed_health(unreachable_provider, self.health_deadline)
        assert health.status is HealthStatus.DOWN, f"got {health.status}: {health.detail}"
        assert health.detail, "a DOWN health must say why in detail"

    # -- metadata --------------------------------------------------------------------

    def test_metadata_is_read_at_the_latest_commit(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        metadata = provider.metadata(model.repo_id)

        assert isinstance(metadata, RegistryModelMetadata)
        assert metadata.repo_id == model.repo_id
        assert metadata.revision == model.latest.commit, (
            "metadata() without a revision is read at the latest commit and names it "
            f"(expected {model.latest.commit}, got {metadata.revision})"
        )
        _assert_lists_files(metadata.files, model.latest.files)

    def test_metadata_at_a_pinned_commit_describes_that_commit(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        metadata = provider.metadata(model.repo_id, model.oldest.commit)

        assert metadata.revision == model.oldest.commit
        _assert_lists_files(metadata.files, model.oldest.files)

    def test_metadata_of_an_unknown_model_or_revision_is_not_found(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        with pytest.raises(NotFound):
            provider.metadata(f"llmops-contract/missing-{uuid.uuid4().hex[:10]}")
        with pytest.raises(NotFound):
            provider.metadata(model.repo_id, "0" * 40)

    # -- search ----------------------------------------------------------------------

    def test_search_finds_the_model_by_part_of_its_name(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        query = model.repo_id.rsplit("/", 1)[-1]

        found = provider.search(query)

        assert all(isinstance(m, RegistryModelSummary) for m in found)
        assert model.repo_id in [m.repo_id for m in found], (
            f"search({query!r}) must find {model.repo_id}"
        )

    def test_search_honours_the_limit(self, provider: RegistryProvider, model: SeededModel) -> None:
        query = model.repo_id.rsplit("/", 1)[-1]

        assert len(provider.search(query, limit=1)) <= 1

    def test_search_without_a_match_is_empty(self, provider: RegistryProvider) -> None:
        assert provider.search(f"no-model-is-called-{uuid.uuid4().hex}") == []

    @requires("search_tags")
    def test_search_keeps_to_models_with_the_tags(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        assert model.tags, "seeded_model.tags must hold a tag for the search_tags feature"
        query = model.repo_id.rsplit("/", 1)[-1]
        tag = sorted(model.tags)[0]

        tagged = provider.search(query, tags=[tag])
        untagged = provider.search(query, tags=[f"no-such-tag-{uuid.uuid4().hex[:8]}"])

        assert model.repo_id in [m.repo_id for m in tagged]
        assert all(tag in m.tags for m in tagged), "every result carries the asked tag"
        assert untagged == []

    # -- import ----------------------------------------------------------------------

    def test_import_downloads_the_latest_commit_and_names_it(
        self, provider: RegistryProvider, model: SeededModel, tmp_path: Path
    ) -> None:
        destination = tmp_path / "imported"

        result = provider.import_model(
            ImportRequest(repo_id=model.repo_id, destination=destination)
        )

        assert isinstance(result, ImportResult)
        assert result.repo_id == model.repo_id
        assert result.revision == model.latest.commit, (
            "an import names the resolved commit, never a branch name "
            f"(expected {model.latest.commit}, got {result.revision})"
        )
        assert result.metadata.revision == result.revision
        _assert_holds(result.local_path, model.latest.files)
        assert {f.path for f in result.files} >= set(model.latest.files)

    def test_import_at_a_pinned_commit_gets_that_commits_files(
        self, provider: RegistryProvider, model: SeededModel, tmp_path: Path
    ) -> None:
        result = provider.import_model(
            ImportRequest(
                repo_id=model.repo_id,
                revision=model.oldest.commit,
                destination=tmp_path / "imported",
            )
        )

        assert result.revision == model.oldest.commit
        _assert_holds(result.local_path, model.oldest.files)

    def test_import_with_allow_patterns_downloads_only_the_matching_files(
        self, provider: RegistryProvider, model: SeededModel, tmp_path: Path
    ) -> None:
        wanted = sorted(model.latest.files)[0]
        others = set(model.latest.files) - {wanted}

        result = provider.import_model(
            ImportRequest(
                repo_id=model.repo_id, allow_patterns=[wanted], destination=tmp_path / "one"
            )
        )

        held = set(read_tree(result.local_path))
        assert wanted in held
        assert not held & others, f"files outside allow_patterns came too: {held & others}"
        assert [f.path for f in result.files] == [wanted]

    def test_import_of_an_unknown_model_is_not_found(
        self, provider: RegistryProvider, tmp_path: Path
    ) -> None:
        with pytest.raises(NotFound):
            provider.import_model(
                ImportRequest(
                    repo_id=f"llmops-contract/missing-{uuid.uuid4().hex[:10]}",
                    destination=tmp_path / "nothing",
                )
            )

    # -- updates and links -------------------------------------------------------------

    def test_check_update_compares_with_the_latest_commit(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        behind = provider.check_update(model.repo_id, model.oldest.commit)
        current = provider.check_update(model.repo_id, model.latest.commit)

        assert isinstance(behind, UpdateCheck)
        assert (behind.current_revision, behind.latest_revision, behind.update_available) == (
            model.oldest.commit,
            model.latest.commit,
            True,
        )
        assert (current.latest_revision, current.update_available) == (
            model.latest.commit,
            False,
        )

    def test_check_update_follows_the_named_branch_and_what_it_lists_is_true(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        behind = provider.check_update(model.repo_id, model.oldest.commit, branch="main")
        current = provider.check_update(model.repo_id, model.latest.commit, branch="main")

        assert (behind.latest_revision, behind.update_available) == (model.latest.commit, True)
        assert (current.files_added, current.files_removed, current.files_modified) == (
            [],
            [],
            [],
        ), "an up-to-date pin has no changes"
        assert current.commits == []
        # the changes and commits are optional, but what a registry lists must be true
        old, new = model.oldest.files, model.latest.files
        assert {f.path for f in behind.files_added} <= set(new) - set(old)
        assert {f.path for f in behind.files_removed} <= set(old) - set(new)
        changed = {p for p in set(old) & set(new) if old[p] != new[p]}
        assert {c.path for c in behind.files_modified} <= changed
        assert model.oldest.commit not in [c.id for c in behind.commits]
        if behind.commits:
            assert behind.commits[0].id == model.latest.commit, "newest first"

    @requires("revisions")
    def test_revisions_list_the_default_branch_at_the_latest_commit(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        assert isinstance(provider, ListsRevisions)
        revisions = provider.revisions(model.repo_id)

        assert all(isinstance(r, RegistryRevision) for r in revisions)
        assert {r.kind for r in revisions} <= {"branch", "tag"}
        branches = {r.name: r.commit for r in revisions if r.kind == "branch"}
        assert model.latest.commit in branches.values(), (
            f"no branch points at the latest commit {model.latest.commit}: {revisions}"
        )
        with pytest.raises(NotFound):
            provider.revisions(f"{model.repo_id}-missing-{uuid.uuid4().hex[:8]}")

    def test_links_are_absolute_and_a_pinned_one_names_its_commit(
        self, provider: RegistryProvider, model: SeededModel
    ) -> None:
        links = provider.links(model.repo_id)
        pinned = provider.links(model.repo_id, model.oldest.commit)

        assert links, "a model has at least a link to its page"
        for link in [*links, *pinned]:
            assert isinstance(link, RegistryLink)
            assert link.url.startswith(("http://", "https://")), link.url
            assert link.kind, f"{link.url} has no kind"
            assert link.label, f"{link.url} has no label"
        assert any(model.oldest.commit in link.url for link in pinned), (
            "links(repo_id, revision) must point at that revision somewhere"
        )

    # -- export ----------------------------------------------------------------------

    @requires("export")
    def test_an_exported_folder_comes_back_by_import(
        self, provider: RegistryProvider, export_repo_id: str, tmp_path: Path
    ) -> None:
        files = {"config.json": b'{"layers": 2}', "weights/part-0.bin": b"\x00\x01\x02"}
        source = write_tree(tmp_path / "export", files)

        exported = provider.export_model(ExportRequest(repo_id=export_repo_id, local_path=source))
        imported = provider.import_model(
            ImportRequest(
                repo_id=export_repo_id,
                revision=exported.commit,
                destination=tmp_path / "back",
            )
        )

        assert isinstance(exported, ExportResult)
        assert exported.repo_id == export_repo_id
        assert exported.commit, "an export names the commit it made"
        assert imported.revision == exported.commit
        _assert_holds(imported.local_path, files)

    @requires("export")
    def test_a_second_export_is_a_new_commit_and_an_update(
        self, provider: RegistryProvider, export_repo_id: str, tmp_path: Path
    ) -> None:
        source = write_tree(tmp_path / "export", {"config.json": b'{"layers": 2}'})
        first = provider.export_model(ExportRequest(repo_id=export_repo_id, local_path=source))
        write_tree(source, {"config.json": b'{"layers": 4}'})

        second = provider.export_model(ExportRequest(repo_id=export_repo_id, local_path=source))

        assert second.commit != first.commit
        check = provider.check_update(export_repo_id, first.commit)
        assert (check.latest_revision, check.update_available) == (second.commit, True)

    @requires("export")
    def test_an_export_retried_with_its_key_makes_no_second_commit(
        self, provider: RegistryProvider, export_repo_id: str, tmp_path: Path
    ) -> None:
        first_files = {"config.json": b'{"layers": 2}', "weights.bin": b"\x01\x02"}
        source = write_tree(tmp_path / "first", first_files)
        request = ExportRequest(
            repo_id=export_repo_id, local_path=source, idempotency_key="export-a1"
        )
        first = provider.export_model(request)
        # another export lands in between, then the first one's caller retries
        other = write_tree(tmp_path / "other", {"config.json": b'{"layers": 8}'})
        between = provider.export_model(
            ExportRequest(repo_id=export_repo_id, local_path=other, idempotency_key="export-b2")
        )

        retried = provider.export_model(request)

        assert retried.commit == first.commit, "the retry names the first export's commit"
        assert between.commit != first.commit
        check = provider.check_update(export_repo_id, between.commit)
        assert check.latest_revision == between.commit, "the retry made no new commit"
        assert check.update_available is False


def _assert_lists_files(listed: Sequence[RegistryFile], expected: Mapping[str, bytes]) -> None:
    missing = set(expected) - {f.path for f in listed}
    assert not missing, f"the metadata does not list the files {sorted(missing)}"
    for listed_file in listed:
        if listed_file.path in expected and listed_file.size_bytes is not None:
            assert listed_file.size_bytes == len(expected[listed_file.path]), (
                f"{listed_file.path}: size {listed_file.size_bytes}, expected "
                f"{len(expected[listed_file.path])}"
            )


def _assert_holds(folder: Path, expected: Mapping[str, bytes]) -> None:
    assert folder.is_dir(), f"{folder} is not a folder"
    held = read_tree(folder)
    for path, content in expected.items():
        assert path in held, f"{path} was not downloaded into {folder}"
        assert held[path] == content, f"{path} does not hold the expected bytes"
