"""Model registry (US4): search, metadata, import at a pinned revision, export."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import Field

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


class ImportRequest(Value):
    repo_id: str
    revision: str = "main"
    allow_patterns: list[str] = Field(default_factory=list)
    destination: Path


class ImportResult(Value):
    repo_id: str
    revision: str = Field(description="the resolved commit, never a branch name")
    local_path: Path
    files: list[RegistryFile]
    metadata: RegistryModelMetadata


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


class UpdateCheck(Value):
    repo_id: str
    current_revision: str
    latest_revision: str
    update_available: bool


class RegistryLink(Value):
    kind: str  # "model-page", "files", "commit", ...
    url: str
    label: str


@runtime_checkable
class RegistryProvider(Protocol):
    """A model hub (Hugging Face Hub, ...)."""

    def search(
        self, query: str, *, limit: int = 20, tags: list[str] | None = None
    ) -> list[RegistryModelSummary]: ...
    def metadata(self, repo_id: str, revision: str | None = None) -> RegistryModelMetadata: ...
    def import_model(self, request: ImportRequest) -> ImportResult: ...
    def export_model(self, request: ExportRequest) -> ExportResult: ...
    def check_update(self, repo_id: str, revision: str) -> UpdateCheck: ...
    def links(self, repo_id: str, revision: str | None = None) -> list[RegistryLink]: ...
    def health(self) -> Health: ...
