"""What the plugin remembers of the Hub under its data dir, so that a model it has read
can be described and imported while the Hub cannot be asked (down, 5xx, 429).

* ``commits/<org>--<name>/<sha>.json``: a commit's listing as ``model_info`` gave it
  (the files with sizes, git blob ids and LFS sha256; the card's text and the card data).
  A commit never changes, so this stays true.
* ``refs/<org>--<name>.json``: the commit each branch or tag was last seen at.

Written atomically (a temporary file renamed over the old one), read leniently: a file
that does not parse is as good as none.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import InvalidRequest

log = logging.getLogger(__name__)

#: ``owner/name`` as the Hub allows it, or a bare ``name`` (the Hub's first models, such as
#: ``gpt2``): letters, digits, ``-``, ``_``, ``.``; no ``--`` or ``..``, no leading or
#: trailing ``-`` or ``.``; at most 96 characters a part.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(rf"^(?!.*(--|\.\.))(?:{_PART}/)?{_PART}$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it names a model as ``owner/name``; else 422."""
    if not REPO_ID.match(repo_id):
        raise InvalidRequest(
            f"{repo_id!r} is not a Hub model id: owner/name (or a bare name), with "
            "letters, digits, '-', '_' and '.'",
            repo_id=repo_id,
        )
    return repo_id


def is_commit(revision: str) -> bool:
    return COMMIT_SHA.match(revision) is not None


class StoredFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    path: str
    size: int | None = None
    blob_id: str | None = None
    lfs_sha256: str | None = None


class StoredCommit(BaseModel):
    """A commit's listing and card, as the Hub described them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    repo_id: str
    sha: str
    files: list[StoredFile] = Field(default_factory=list)
    card: str | None = None
    license: str | None = None
    pipeline_tag: str | None = None
    library: str | None = None
    tags: list[str] = Field(default_factory=list)
    auto_map: bool = Field(default=False, description="the Hub's config summary has auto_map")
    last_modified: datetime | None = None
    card_read: bool = Field(
        default=False, description="``card`` holds the README's text (None: it has none)"
    )

    def file(self, path: str) -> StoredFile | None:
        for stored in self.files:
            if stored.path == path:
                return stored
        return None


class HubState:
    """The plugin's memory of the Hub, under ``root`` (made on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def save_commit(self, commit: StoredCommit) -> None:
        """Keep ``commit`` (with its card read: what is kept is complete)."""
        if not commit.card_read:
            raise ValueError("a commit is kept with its card read")
        self._write(self._commit_path(commit.repo_id, commit.sha), commit.model_dump_json())

    def commit(self, repo_id: str, sha: str) -> StoredCommit | None:
        text = self._read(self._commit_path(repo_id, sha))
        if text is None:
            return None
        try:
            return StoredCommit.model_validate_json(text)
        except ValidationError:
            return None

    def save_ref(self, repo_id: str, revision: str, sha: str) -> None:
        with self._lock:
            refs = self._refs(repo_id)
            if refs.get(revision) == sha:
                return
            refs[revision] = sha
            self._write(self._refs_path(repo_id), json.dumps(refs, sort_keys=True))

    def ref(self, repo_id: str, revision: str) -> str | None:
        """The commit ``revision`` (a branch or tag) was last seen at."""
        found = self._refs(repo_id).get(revision)
        return found if isinstance(found, str) and is_commit(found) else None

    # -- files --------------------------------------------------------------------------------

    def _folder(self, repo_id: str) -> str:
        return check_repo_id(repo_id).replace("/", "--")

    def _commit_path(self, repo_id: str, sha: str) -> Path:
        if not is_commit(sha):
            raise ValueError(f"not a commit sha: {sha!r}")
        return self.root / "commits" / self._folder(repo_id) / f"{sha}.json"

    def _refs_path(self, repo_id: str) -> Path:
        return self.root / "refs" / f"{self._folder(repo_id)}.json"

    def _refs(self, repo_id: str) -> dict[str, str]:
        text = self._read(self._refs_path(repo_id))
        try:
            refs = json.loads(text) if text else {}
        except json.JSONDecodeError:
            return {}
        return refs if isinstance(refs, dict) else {}

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            log.warning("could not read %s: %s", path, exc)
            return None

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
