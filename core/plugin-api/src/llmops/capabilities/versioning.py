"""Dataset versioning (US5): versions, diffs, restore, lineage."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import Field

from llmops.capabilities.common import Health, Value


class VersionSpec(Value):
    dataset_id: str
    source_path: Path = Field(description="the dataset's files as they are now")
    message: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None


class DatasetVersionInfo(Value):
    version_id: str = Field(description="the tool's id of the version (a commit, a hash)")
    dataset_id: str
    created_at: datetime
    message: str = ""
    file_count: int = 0
    size_bytes: int = 0
    checksum: str | None = None
    parent_version_id: str | None = None


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"


class FileChange(Value):
    path: str
    change: ChangeKind
    size_before: int | None = None
    size_after: int | None = None


class VersionDiff(Value):
    from_version_id: str
    to_version_id: str
    changes: list[FileChange]


class LineageNode(Value):
    kind: str  # "dataset-version", "training-job", "model", "pipeline"
    id: str
    label: str


class LineageEdge(Value):
    source: str
    target: str
    relation: str  # "derived-from", "used-by", "produced"


class Lineage(Value):
    nodes: list[LineageNode]
    edges: list[LineageEdge]


@runtime_checkable
class VersioningProvider(Protocol):
    """A data versioning tool (DVC, ...)."""

    def create_version(self, spec: VersionSpec) -> DatasetVersionInfo: ...
    def list_versions(self, dataset_id: str) -> list[DatasetVersionInfo]: ...
    def diff(self, dataset_id: str, from_version_id: str, to_version_id: str) -> VersionDiff: ...
    def restore(
        self, dataset_id: str, version_id: str, destination: Path
    ) -> DatasetVersionInfo: ...
    def lineage(self, dataset_id: str, version_id: str) -> Lineage: ...
    def health(self) -> Health: ...


class PushResult(Value):
    """What :meth:`PushesVersions.push_version` did: the files it uploaded (0 when the
    remote held them all already) and whether the version was known to be there before."""

    dataset_id: str
    version_id: str
    remote: str = Field(description="the remote, as a URL or a folder, without credentials")
    uploaded_files: int = Field(default=0, ge=0)
    already_pushed: bool = False


@runtime_checkable
class PushesVersions(Protocol):
    """Optional for a :class:`VersioningProvider` whose tool keeps a remote besides its
    local repository (DVC). ``create_version`` then commits locally only, and never fails
    for want of the remote; the platform queues the push in its outbox and retries it.

    ``push_version`` uploads what the remote lacks of the version's data and is idempotent:
    pushing a version already pushed is a success that uploads nothing.

    :raises NotFound: the dataset has no such version.
    :raises IntegrationUnavailable: the remote cannot be reached (the outbox retries).
    """

    def push_version(self, dataset_id: str, version_id: str) -> PushResult: ...
