"""Bodies of the model registry routes: imports, exports, registry links, update checks,
the search of the catalog and a registry together (camelCase on the wire, like
schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from llmops.api.schemas import (
    NAME,
    NAME_LENGTH,
    PROVIDER_LENGTH,
    ApiModel,
    Degradable,
    Input,
    ModelOut,
)

#: a repository id of a registry ("acme/tiny-model"; the Hub's are at most 96 characters)
REPO_ID_LENGTH = 300
#: a revision: a branch, a tag or a commit
REVISION_LENGTH = 200
#: one allow pattern (a glob) and how many an import takes
PATTERN_LENGTH = 500
MAX_PATTERNS = 100
Pattern = Annotated[str, Field(min_length=1, max_length=PATTERN_LENGTH)]


class RegistryFileOut(ApiModel):
    path: str
    size_bytes: int | None = None
    sha256: str | None = Field(
        default=None,
        description="of the file on disk once imported; before that, as the registry lists "
        "it (the Hub lists it for LFS files only)",
    )


class ModelExportOut(ApiModel):
    """One export of a catalog model's files to a registry."""

    id: str
    provider: str
    repo_id: str
    state: str = Field(description="pending, succeeded or failed")
    commit: str | None = Field(default=None, description="the commit it made")
    url: str | None = Field(default=None, description="the commit's (or pull request's) page")
    private: bool = True
    create_pr: bool = False
    operation_id: str | None = None
    reason: str | None = Field(default=None, description="why it failed")
    created_at: datetime


class ModelDetail(ModelOut):
    """One catalog model with its files and, when imported, its card and exports."""

    files: list[RegistryFileOut] = Field(
        default_factory=list,
        description="an imported model's files: on disk once ready (sha256 of each), the "
        "ones it will place until then",
    )
    skipped_files: list[str] = Field(
        default_factory=list,
        description="files the import left out for safety (pickle weights beside safetensors ones)",
    )
    card: str | None = Field(default=None, description="the model card's text, as imported")
    exports: list[ModelExportOut] = Field(default_factory=list, description="newest first")


class ModelImportIn(Input):
    repo_id: str = Field(
        min_length=1, max_length=REPO_ID_LENGTH, description="the repository: acme/tiny-model"
    )
    revision: str = Field(
        default="main",
        min_length=1,
        max_length=REVISION_LENGTH,
        description="a branch, a tag or a commit; resolved to its commit, which is what is pinned",
    )
    name: str | None = Field(
        default=None,
        pattern=NAME,
        max_length=NAME_LENGTH,
        description="the catalog name; default: the repository id with '/' as '-'",
    )
    allow_patterns: list[Pattern] = Field(
        default_factory=list,
        max_length=MAX_PATTERNS,
        description="globs of the files to import (all when empty)",
    )
    provider: str | None = Field(
        default=None,
        max_length=PROVIDER_LENGTH,
        description="the registry (default: the registry capability's default, hf)",
    )


class ModelImportAccepted(ModelDetail, Degradable):
    """An import on its way (202): the model, ``importing``, with the commit it pinned,
    and the operation that brings its files. Poll GET /catalog/models/{modelId} (its
    ``importStatus``) or, as an admin, /operations/{operationId}."""


class ModelExportIn(Input):
    repo_id: str = Field(min_length=1, max_length=REPO_ID_LENGTH)
    private: bool = Field(default=True, description="a new repository is private")
    create_pr: bool = Field(default=False, description="open a pull request instead of a commit")
    commit_message: str = Field(default="Upload from llmops", min_length=1, max_length=1000)
    provider: str | None = Field(default=None, max_length=PROVIDER_LENGTH)


class ExportAcceptedOut(Degradable):
    """An export on its way (202): it is delivered once, whatever the retries."""

    model_id: str
    export: ModelExportOut


class RegistryLinkOut(ApiModel):
    kind: str = Field(description="model-page, files, commit, commits, ...")
    url: str
    label: str
    provider: str
    repo_id: str
    revision: str | None = Field(default=None, description="the commit the link is at")
    origin: str = Field(
        description="import (the pinned commit), export (a commit an export made) or "
        "registry (a repository before it is imported)"
    )


class RegistryLinksOut(ApiModel):
    model_id: str
    links: list[RegistryLinkOut]
    degraded: bool = Field(
        default=False, description="true when the registry plugin could not make some links"
    )
    degraded_reason: str | None = None


class FileChangeOut(ApiModel):
    path: str
    old_size_bytes: int | None = None
    new_size_bytes: int | None = None
    old_sha256: str | None = None
    new_sha256: str | None = None


class RegistryCommitOut(ApiModel):
    id: str
    title: str = ""
    message: str = ""
    authors: list[str] = Field(default_factory=list)
    created_at: datetime | None = None


class UpdateCheckOut(ApiModel):
    """The pinned commit against the head of the branch the import followed; the pin
    never moves (import the newer commit to take it)."""

    model_id: str
    provider: str
    repo_id: str
    current_revision: str = Field(description="the pinned commit")
    latest_revision: str
    update_available: bool
    branch: str | None = None
    files_added: list[RegistryFileOut] = Field(default_factory=list)
    files_removed: list[RegistryFileOut] = Field(default_factory=list)
    files_modified: list[FileChangeOut] = Field(default_factory=list)
    commits: list[RegistryCommitOut] = Field(
        default_factory=list, description="after the pinned commit, newest first"
    )
    commits_truncated: bool = False
    checked_at: datetime | None = Field(
        default=None, description="when the registry answered this (older when degraded)"
    )
    degraded: bool = Field(
        default=False,
        description="true when the registry could not be asked: this is the last check "
        "recorded, from checkedAt",
    )
    degraded_reason: str | None = None


class RegistryModelSummaryOut(ApiModel):
    repo_id: str
    author: str | None = None
    pipeline_tag: str | None = None
    library: str | None = None
    tags: list[str] = Field(default_factory=list)
    downloads: int | None = None
    likes: int | None = None
    last_modified: datetime | None = None
    url: str | None = None


class ModelSearchHitOut(ApiModel):
    source: str = Field(description="catalog, or the registry's provider name (hf)")
    model: ModelOut | None = Field(default=None, description="a catalog hit")
    registry_model: RegistryModelSummaryOut | None = Field(
        default=None, description="a registry hit"
    )
    catalog_model_ids: list[str] = Field(
        default_factory=list,
        description="for a registry hit: the catalog models imported from that repository",
    )


class ModelSearchOut(ApiModel):
    """Catalog models first, then the registry's, each marked with its source."""

    items: list[ModelSearchHitOut]
    registry_provider: str | None = Field(
        default=None, description="the registry asked (null when none is enabled)"
    )
    degraded: bool = Field(
        default=False,
        description="true when the registry could not be asked: its part is empty",
    )
    degraded_reason: str | None = None


class RegistryRevisionOut(ApiModel):
    """A branch or a tag of the repository, and the commit it points at now."""

    name: str
    kind: str = Field(description='"branch" or "tag"')
    commit: str


class RegistryMetadataOut(ApiModel):
    """A repository at a revision, as the registry describes it, before an import."""

    provider: str
    repo_id: str
    revision: str = Field(description="the commit the revision named")
    requested_revision: str | None = None
    license: str | None = None
    pipeline_tag: str | None = None
    library: str | None = None
    tags: list[str] = Field(default_factory=list)
    card: str | None = None
    files: list[RegistryFileOut] = Field(default_factory=list)
    last_modified: datetime | None = None
    url: str | None = None
    links: list[RegistryLinkOut] = Field(default_factory=list)
    revisions: list[RegistryRevisionOut] = Field(
        default_factory=list,
        description="the repository's branches and tags (empty when the registry does not "
        "list them or cannot be asked now)",
    )
    catalog_model_ids: list[str] = Field(
        default_factory=list, description="catalog models imported from this repository"
    )
    degraded: bool = Field(
        default=False,
        description="true when the registry could not be asked and this is its cache",
    )
    degraded_reason: str | None = None
