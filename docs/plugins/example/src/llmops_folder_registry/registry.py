"""FolderRegistry: a model registry whose hub is a folder on the local disk.

One folder per repository (``owner/name``)::

    <root>/<owner>/<name>/
        repo.json              optional, kept by hand: tags, license, pipeline_tag, library
        refs/main              the id of the latest commit
        commits/<commit>/
            commit.json        its parent, message and time, and every file's size and sha256
            files/...          the snapshot, never changed once written

A commit's id is a hash of its parent's id and of its files' paths and contents. Served
by any static web server (``python -m http.server --directory <root>``), the folder is
also the registry's web UI, which ``links()`` points at.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.registry import (
    ExportRequest,
    ExportResult,
    ImportRequest,
    ImportResult,
    RegistryFile,
    RegistryLink,
    RegistryModelMetadata,
    RegistryModelSummary,
    RegistryRevision,
    UpdateCheck,
)
from llmops.errors import IntegrationUnavailable, InvalidRequest, NotFound
from pydantic import BaseModel, Field

BRANCH = "main"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"  # no "/", no leading "." or "-": never leaves the root
_REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$")
_REVISION = re.compile(rf"^{_NAME}$")


class RepoInfo(BaseModel):
    """``repo.json``: what a repository says about itself (every field optional)."""

    tags: list[str] = Field(default_factory=list)
    license: str | None = None
    pipeline_tag: str | None = None
    library: str | None = None


class Commit(BaseModel):
    """``commit.json``: one snapshot's record."""

    parent: str | None
    message: str
    created_at: datetime
    files: list[RegistryFile]
    #: the export request's key: asked again with it, export returns this commit
    idempotency_key: str | None = None


class FolderRegistry:
    """A model registry over a local folder (the ``registry`` capability)."""

    def __init__(self, root: Path, *, web_url: str) -> None:
        # Nothing is touched here: providers are built whenever the settings change and
        # must not contact their tool; health() is where the folder is checked.
        self.root = Path(root)
        self.web_url = web_url.rstrip("/")
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------

    def search(
        self, query: str, *, limit: int = 20, tags: list[str] | None = None
    ) -> list[RegistryModelSummary]:
        found = []
        for repo_id in self._repo_ids():
            info = self._info(repo_id)
            if query.lower() not in repo_id.lower() or not set(tags or []) <= set(info.tags):
                continue
            latest = self._commit(repo_id, self._resolve(repo_id, BRANCH))
            found.append(
                RegistryModelSummary(
                    repo_id=repo_id,
                    author=repo_id.split("/")[0],
                    pipeline_tag=info.pipeline_tag,
                    library=info.library,
                    tags=info.tags,
                    last_modified=latest.created_at,
                    url=self._page(repo_id),
                )
            )
        return found[: max(limit, 0)]

    def metadata(self, repo_id: str, revision: str | None = None) -> RegistryModelMetadata:
        commit = self._resolve(repo_id, revision or BRANCH)
        info, record = self._info(repo_id), self._commit(repo_id, commit)
        card = self._files(repo_id, commit) / "README.md"
        return RegistryModelMetadata(
            repo_id=repo_id,
            revision=commit,
            license=info.license,
            pipeline_tag=info.pipeline_tag,
            library=info.library,
            tags=info.tags,
            card=card.read_text(encoding="utf-8") if card.is_file() else None,
            files=record.files,
            last_modified=record.created_at,
            url=self._page(repo_id),
        )

    def check_update(
        self, repo_id: str, revision: str, *, branch: str | None = None
    ) -> UpdateCheck:
        current = self._resolve(repo_id, revision)
        latest = self._resolve(repo_id, branch or BRANCH)
        return UpdateCheck(
            repo_id=repo_id,
            current_revision=current,
            latest_revision=latest,
            update_available=current != latest,
        )

    def links(self, repo_id: str, revision: str | None = None) -> list[RegistryLink]:
        commit = self._resolve(repo_id, revision or BRANCH)
        return [
            RegistryLink(kind="model-page", url=self._page(repo_id), label=repo_id),
            RegistryLink(
                kind="files", url=self._files_url(repo_id, commit), label=f"files at {commit[:12]}"
            ),
        ]

    def revisions(self, repo_id: str) -> list[RegistryRevision]:
        """Its one branch, ``main`` (``ListsRevisions``: the console's revision picker)."""
        return [RegistryRevision(name=BRANCH, kind="branch", commit=self._resolve(repo_id, BRANCH))]

    # -- import and export ------------------------------------------------------------

    def import_model(self, request: ImportRequest) -> ImportResult:
        commit = self._resolve(request.repo_id, request.revision)  # "main" -> a commit id
        metadata = self.metadata(request.repo_id, commit)
        patterns = request.allow_patterns or ["*"]
        files = [f for f in metadata.files if any(fnmatch.fnmatch(f.path, p) for p in patterns)]
        source = self._files(request.repo_id, commit)
        request.destination.mkdir(parents=True, exist_ok=True)
        for file in files:
            target = request.destination / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / file.path, target)
        return ImportResult(
            repo_id=request.repo_id,
            revision=commit,
            local_path=request.destination,
            files=files,
            metadata=metadata,
        )

    def export_model(self, request: ExportRequest) -> ExportResult:
        if request.create_pr:
            raise InvalidRequest("a folder registry has no pull requests: export to main")
        if not request.local_path.is_dir():
            raise InvalidRequest(f"{request.local_path} is not a folder")
        self._check_root()
        repo = self._repo(request.repo_id)
        with self._lock:
            parent = self._latest(repo)
            done = self._exported_with(request.repo_id, parent, request.idempotency_key)
            if done is not None:  # a retried export: the commit it made the first time
                return ExportResult(
                    repo_id=request.repo_id, commit=done, url=self._files_url(request.repo_id, done)
                )
            staging = repo / "commits" / f".staging-{uuid.uuid4().hex}"
            shutil.copytree(request.local_path, staging / "files")
            files = _list_files(staging / "files")
            if parent is not None and self._commit(request.repo_id, parent).files == files:
                shutil.rmtree(staging)  # nothing changed (a retried export): no new commit
                commit = parent
            else:
                commit = _commit_id(parent, files)
                record = Commit(
                    parent=parent,
                    message=request.commit_message,
                    created_at=datetime.now(UTC),
                    files=files,
                    idempotency_key=request.idempotency_key,
                )
                (staging / "commit.json").write_text(record.model_dump_json(indent=2))
                if (repo / "commits" / commit).is_dir():  # made before a crash: reuse it
                    shutil.rmtree(staging)
                else:
                    staging.rename(repo / "commits" / commit)  # the snapshot appears whole
                _write_atomically(repo / "refs" / BRANCH, commit)
        url = self._files_url(request.repo_id, commit)
        return ExportResult(repo_id=request.repo_id, commit=commit, url=url)

    # -- health -----------------------------------------------------------------------

    def health(self) -> Health:
        started = time.perf_counter()
        try:
            with os.scandir(self.root) as entries:  # a real probe: is it there, readable?
                next(entries, None)
        except OSError as exc:
            return Health(
                status=HealthStatus.DOWN,
                latency_ms=_ms_since(started),
                detail=f"cannot read the registry folder: {exc}",
            )
        if not os.access(self.root, os.W_OK):
            return Health(
                status=HealthStatus.DEGRADED,
                latency_ms=_ms_since(started),
                detail=f"{self.root} is read-only: imports work, exports fail",
            )
        return Health(
            status=HealthStatus.OK,
            latency_ms=_ms_since(started),
            detail=f"models in {self.root}",
        )

    # -- the folder -------------------------------------------------------------------

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise IntegrationUnavailable(f"the registry folder {self.root} is not there")

    def _repo(self, repo_id: str) -> Path:
        if not _REPO_ID.match(repo_id):
            raise InvalidRequest(f"{repo_id!r} is not a repository id of the form owner/name")
        return self.root / repo_id

    def _repo_ids(self) -> list[str]:
        self._check_root()
        refs = self.root.glob(f"*/*/refs/{BRANCH}")
        repo_ids = (ref.parents[1].relative_to(self.root).as_posix() for ref in refs)
        return sorted(repo_id for repo_id in repo_ids if _REPO_ID.match(repo_id))

    def _latest(self, repo: Path) -> str | None:
        ref = repo / "refs" / BRANCH
        return ref.read_text(encoding="utf-8").strip() if ref.is_file() else None

    def _resolve(self, repo_id: str, revision: str) -> str:
        """The commit ``revision`` names: the branch ("main") or a commit id."""
        repo = self._repo(repo_id)
        latest = self._latest(repo)
        if latest is None:
            self._check_root()
            raise NotFound(f"no model {repo_id!r} in {self.root}", repo_id=repo_id)
        if revision == BRANCH:
            return latest
        if _REVISION.match(revision) and (repo / "commits" / revision / "commit.json").is_file():
            return revision
        raise NotFound(f"{repo_id!r} has no revision {revision!r}", repo_id=repo_id)

    def _info(self, repo_id: str) -> RepoInfo:
        path = self._repo(repo_id) / "repo.json"
        return RepoInfo.model_validate_json(path.read_bytes()) if path.is_file() else RepoInfo()

    def _exported_with(self, repo_id: str, head: str | None, key: str | None) -> str | None:
        """The commit on the branch that an export with ``key`` made, newest first."""
        commit = head if key is not None else None
        while commit is not None:
            record = self._commit(repo_id, commit)
            if record.idempotency_key == key:
                return commit
            commit = record.parent
        return None

    def _commit(self, repo_id: str, commit: str) -> Commit:
        path = self._repo(repo_id) / "commits" / commit / "commit.json"
        return Commit.model_validate_json(path.read_bytes())

    def _files(self, repo_id: str, commit: str) -> Path:
        return self._repo(repo_id) / "commits" / commit / "files"

    def _page(self, repo_id: str) -> str:
        return f"{self.web_url}/{repo_id}/"

    def _files_url(self, repo_id: str, commit: str) -> str:
        return f"{self._page(repo_id)}commits/{commit}/files/"


def _list_files(folder: Path) -> list[RegistryFile]:
    return [
        RegistryFile(
            path=path.relative_to(folder).as_posix(),
            size_bytes=path.stat().st_size,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]


def _commit_id(parent: str | None, files: list[RegistryFile]) -> str:
    content = json.dumps([parent, [(f.path, f.sha256) for f in files]])
    return hashlib.sha256(content.encode()).hexdigest()[:40]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
