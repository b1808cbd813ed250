"""Model registry (US4): search, metadata, import at a pinned revision, export."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from llmops.capabilities.common import Health, Value


class RegistryFile(Value):
    path: str
    size_bytes: int | None = None
    sha256: str | None = None


class RegistryModelSummary(Value):
    repo_id: str
    author: str | None = None
    pipeline_tag: str | None = None
    library: str | None = None
    tags: list[str] = Field(default_factory=list)
    downloads: int | None = None
    likes: int | None = None
    last_modified: datetime | None = None
    url: str | None = None


class RegistryModelMetadata(Value):
    repo_id: str
    revision: str = Field(description="the commit the metadata was read at")
    license: str | None = None
    pipeline_tag: str | None = None
    library: str | None = None
    tags: list[str] = Field(default_factory=list)
    card: str | None = Field(default=None, description="the model card's text")
    files: list[RegistryFile] = Field(default_factory=list)
    last_modified: datetime | None = None
    url: str | None = None
    degraded: str | None = Field(
        default=None,
        description="set when the registry could not be asked (down, rate limited) and this "
        "was read from the provider's local cache instead: why",
    )


class ImportPhase(StrEnum):
    """Where an import is: the revision resolved and the file list read, the files
    checked, the files downloaded and placed, finished."""

    RESOLVING = "resolving"
    CHECKING = "checking"
    DOWNLOADING = "downloading"
    DONE = "done"


class ImportProgress(Value):
    """How far an import is, in files and bytes of the files it places."""

    phase: ImportPhase
    files_total: int = 0
    files_done: int = 0
    bytes_total: int | None = Field(default=None, description="None until the sizes are known")
    bytes_done: int = 0


#: Receives an import's progress: called from the provider's threads, one call at a time,
#: a few times a second at most and once with ``ImportPhase.DONE``. An exception it raises
#: stops the import (and is raised by ``import_model``).
ProgressSink = Callable[[ImportProgress], None]


class ImportRequest(Value):
    repo_id: str
    revision: str = "main"
    allow_patterns: list[str] = Field(default_factory=list)
    destination: Path
    progress: SkipJsonSchema[ProgressSink | None] = Field(
        default=None,
        exclude=True,
        repr=False,
        description="where the provider reports progress (never serialised); a provider "
        "that cannot report progress ignores it",
    )


class ImportResult(Value):
    repo_id: str
    revision: str = Field(description="the resolved commit, never a branch name")
    local_path: Path
    files: list[RegistryFile]
    metadata: RegistryModelMetadata
    branch: str | None = Field(
        default=None,
        description="the branch the request's revision named (None when it named a commit "
        "or a tag): the one check_update(branch=...) follows",
    )
    skipped: list[str] = Field(
        default_factory=list,
        description="files the request matched that were left out for safety (pickle "
        "weights beside safetensors ones)",
    )
    degraded: str | None = Field(
        default=None,
        description="set when the registry could not be asked and the files came from the "
        "provider's local cache: why",
    )


class ImportPlan(Value):
    """What :meth:`RegistryProvider.import_model` would bring in for a request, decided
    before any weights are downloaded (:class:`ChecksImports`)."""

    repo_id: str
    revision: str = Field(description="the resolved commit, never a branch name")
    branch: str | None = Field(
        default=None,
        description="the branch the request's revision named (None for a commit or a tag)",
    )
    files: list[RegistryFile] = Field(
        default_factory=list, description="the files the import would place, as listed"
    )
    skipped: list[str] = Field(
        default_factory=list, description="files the request matched that it would leave out"
    )
    metadata: RegistryModelMetadata
    degraded: str | None = Field(
        default=None,
        description="set when the registry could not be asked and the plan was read from the "
        "provider's local cache: why",
    )


class ExportRequest(Value):
    repo_id: str
    local_path: Path
    commit_message: str = "Upload from llmops"
    private: bool = True
    create_pr: bool = False
    idempotency_key: str | None = Field(
        default=None,
        description="the same key again returns the commit the first export made instead "
        "of a second one (the provider keeps it with the commit: a trailer in its message, "
        "a tag), so a retried export never commits twice",
    )


class ExportResult(Value):
    repo_id: str
    commit: str
    url: str | None = None


class RegistryCommit(Value):
    """A commit of a model's history, as the registry lists it."""

    id: str
    title: str = ""
    message: str = ""
    authors: list[str] = Field(default_factory=list)
    created_at: datetime | None = None


class FileChange(Value):
    """A file both commits hold, with different content."""

    path: str
    old_size_bytes: int | None = None
    new_size_bytes: int | None = None
    old_sha256: str | None = None
    new_sha256: str | None = None


class UpdateCheck(Value):
    repo_id: str
    current_revision: str
    latest_revision: str
    update_available: bool
    branch: str | None = Field(default=None, description="the branch compared with")
    files_added: list[RegistryFile] = Field(default_factory=list)
    files_removed: list[RegistryFile] = Field(default_factory=list)
    files_modified: list[FileChange] = Field(default_factory=list)
    commits: list[RegistryCommit] = Field(
        default_factory=list,
        description="the commits after current_revision up to latest_revision, newest "
        "first, where the registry lists them",
    )
    commits_truncated: bool = Field(
        default=False, description="more commits lie in between than `commits` holds"
    )


class RegistryRevision(Value):
    """A branch or a tag of a repository and the commit it points at now."""

    name: str
    kind: str = Field(description='"branch" or "tag"')
    commit: str


class RegistryLink(Value):
    kind: str  # "model-page", "files", "commit", ...
    url: str
    label: str


@runtime_checkable
class RegistryProvider(Protocol):
    """A model hub (Hugging Face Hub, ...). Optionally also :class:`ChecksImports`: an
    import it would refuse answered before anything is recorded."""

    def search(
        self, query: str, *, limit: int = 20, tags: list[str] | None = None
    ) -> list[RegistryModelSummary]: ...
    def metadata(self, repo_id: str, revision: str | None = None) -> RegistryModelMetadata: ...
    def import_model(self, request: ImportRequest) -> ImportResult: ...
    def export_model(self, request: ExportRequest) -> ExportResult: ...
    def check_update(
        self, repo_id: str, revision: str, *, branch: str | None = None
    ) -> UpdateCheck: ...
    def links(self, repo_id: str, revision: str | None = None) -> list[RegistryLink]: ...
    def health(self) -> Health: ...


@runtime_checkable
class ChecksImports(Protocol):
    """A registry that can tell, before anything heavy is downloaded, what an import
    would bring in, and refuse one it would refuse."""

    def check_import(
        self, repo_id: str, revision: str = "main", *, allow_patterns: list[str] | None = None
    ) -> ImportPlan:
        """Resolve ``revision`` to its commit and run the checks :meth:`import_model`
        runs (file names, weight formats, remote code...), reading at most what they read
        (configs, the card); raise :class:`~llmops.errors.InvalidRequest` for an import
        it would refuse. The core calls it when an import is asked for, so a refusal is
        answered at once (422) with nothing recorded, then imports ``plan.revision`` as
        long work (the same checks run again there)."""
        ...


@runtime_checkable
class ListsRevisions(Protocol):
    """A registry that lists a repository's branches and tags (what a revision picker
    offers)."""

    def revisions(self, repo_id: str) -> list[RegistryRevision]:
        """The repository's branches, then its tags, each with the commit it points at;
        raises the registry's errors (the core shows no picker when it cannot ask)."""
        ...
